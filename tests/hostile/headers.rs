//! Headers and connections: header floods, slowloris, smuggling, HTTP/1.0, pipelining
//! and the connection cap.

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Daemon;
use crate::raw_http::{
    Raw, Response, assert_context, assert_still_serving, get, get_request, key_of, percent_encode,
    post_request,
};
use crate::{SHORT_TIMEOUT_MS, config, short_timeout_config};

// ---------------------------------------------------------------------------------------
// Headers and connections
// ---------------------------------------------------------------------------------------

/// Writes `bytes` from a thread (the server may stop reading) and returns the response
/// or the close that came instead, within 2 s.
fn flood(port: u16, bytes: Vec<u8>) -> (Option<Response>, bool) {
    let mut conn = Raw::connect(port);
    let mut writer = conn.stream.try_clone().expect("clone");
    let feeder = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let response = conn.response(Duration::from_secs(2)).ok();
    let closed = conn.closed_within(Duration::from_secs(2)).is_some();
    let _ = conn.stream.shutdown(Shutdown::Both);
    let _ = feeder.join();
    (response, closed)
}

/// 10,000 request headers: hyper's limit (100) answers 431 and closes; no hang.
#[test]
fn ten_thousand_headers_are_431_and_closed() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut bytes = b"GET /codette/context?message=reverb HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for i in 0..10_000 {
        bytes.extend_from_slice(format!("X-Hostile-{i}: {i}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let (response, closed) = flood(daemon.port(), bytes);
    let response = response.expect("an answer (431) to 10,000 headers, not silence");
    assert_eq!(response.status, 431, "{}", response.raw());
    assert!(closed, "connection left open after 431");
    assert_still_serving(&mut daemon);
}

/// One 1 MiB header: over hyper's read buffer limit, 431 and closed; no hang.
#[test]
fn a_one_megabyte_header_is_431_and_closed() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut bytes = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    bytes.resize(bytes.len() + 1024 * 1024, b'a');
    bytes.extend_from_slice(b"\r\n\r\n");
    let (response, closed) = flood(daemon.port(), bytes);
    let response = response.expect("an answer (431) to a 1 MiB header, not silence");
    assert_eq!(response.status, 431, "{}", response.raw());
    assert!(closed, "connection left open after 431");
    assert_still_serving(&mut daemon);
}

/// The header timeout counts only while a connection waits for a request head: an
/// answer that takes longer than it (a slow origin) is served whole on a keep-alive
/// connection, which is closed only once it has then sat idle for the timeout.
#[test]
fn a_slow_answer_outlasts_the_header_timeout() {
    use crate::common::{API_KEY, Postgrest, TestPostgres, supabase_origin};
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let slow = Duration::from_millis(SHORT_TIMEOUT_MS * 3);
    rest.set_delay(slow);
    let mut daemon = Daemon::start(
        &[
            format!("[server]\nheader_read_timeout_ms = {SHORT_TIMEOUT_MS}\n\n"),
            crate::common::log_section("info"),
            crate::common::cache_section(300),
            crate::common::memory_tier(10_000, 64 * 1024 * 1024, 300),
            supabase_origin(&rest.url(), API_KEY, 5_000),
        ]
        .concat(),
    );
    let mut conn = Raw::connect(daemon.port());
    for message in ["slow answer one", "slow answer two"] {
        let started = Instant::now();
        conn.send(&get_request(&format!(
            "/codette/context?message={}",
            percent_encode(message)
        )));
        let response = conn
            .response(slow * 3)
            .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", started.elapsed()));
        assert_eq!(response.status, 200, "{}", response.raw());
        assert!(started.elapsed() >= slow, "the origin was asked");
    }
    let idle = conn.closed_within(Duration::from_millis(SHORT_TIMEOUT_MS + 1_500));
    let idle = idle.expect("an idle keep-alive connection outlived the header timeout");
    assert!(
        idle >= Duration::from_millis(SHORT_TIMEOUT_MS - 100),
        "{idle:?}"
    );
    assert_still_serving(&mut daemon);
}

/// Slowloris clients (a byte per 100 ms) are dropped when the header timeout fires; others are served.
#[test]
fn slowloris_is_dropped_after_the_header_timeout() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    let done = Arc::new(AtomicBool::new(false));

    // A normal client, busy for the whole test: every answer 200 and quick.
    let normal = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut served = 0;
            while !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                let response = get(port, "/codette/context?message=reverb");
                assert_eq!(response.status, 200, "{}", response.raw());
                worst = worst.max(started.elapsed());
                served += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            (served, worst)
        })
    };

    let mut lorises = Vec::new();
    for _ in 0..4 {
        let mut conn = Raw::connect(port);
        let sent = Arc::new(AtomicUsize::new(0));
        let mut writer = conn.stream.try_clone().expect("clone");
        let dribbler = {
            let sent = Arc::clone(&sent);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let bytes = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                let mut i = 0;
                while !done.load(Ordering::SeqCst) {
                    let byte = bytes.get(i).copied().unwrap_or(b'a');
                    if writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let closed = {
            let opened = conn.opened;
            conn.closed_within(Duration::from_millis(SHORT_TIMEOUT_MS + 1_500))
                .map(|_| opened.elapsed())
        };
        lorises.push((conn, sent, dribbler, closed));
    }
    done.store(true, Ordering::SeqCst);
    let (served, worst) = normal.join().expect("normal client");

    for (conn, sent, dribbler, closed) in lorises {
        let _ = dribbler.join();
        let closed = closed.expect("slowloris connection still open past the timeout");
        assert!(
            closed >= Duration::from_millis(SHORT_TIMEOUT_MS - 100)
                && closed <= Duration::from_millis(SHORT_TIMEOUT_MS + 1_000),
            "closed after {closed:?}, timeout is {SHORT_TIMEOUT_MS} ms"
        );
        assert!(
            sent.load(Ordering::SeqCst) >= 3,
            "it was never dribbling: closed after {} bytes",
            sent.load(Ordering::SeqCst)
        );
        // hyper drops it silently (no response to a half-read head).
        assert!(conn.buf.is_empty(), "answered: {:?}", conn.buf);
    }
    assert!(served >= 10, "normal client served only {served} times");
    assert!(
        worst < Duration::from_millis(500),
        "normal client waited {worst:?} during the slowloris"
    );
    assert_still_serving(&mut daemon);
}

/// CL + TE: chunked wins, the connection closes after one answer, a smuggled request never runs.
#[test]
fn content_length_with_transfer_encoding_cannot_smuggle() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for (i, te_first) in [false, true].into_iter().enumerate() {
        let smuggled_message = format!("smuggled {i}");
        let json = format!(r#"{{"message": "carrier {i}"}}"#);
        let mut payload = format!("{:x}\r\n{json}\r\n0\r\n\r\n", json.len()).into_bytes();
        payload.extend_from_slice(
            format!(
                "GET /codette/context?message={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                percent_encode(&smuggled_message)
            )
            .as_bytes(),
        );
        let (cl, te) = (
            format!("Content-Length: {}\r\n", payload.len()),
            "Transfer-Encoding: chunked\r\n".to_owned(),
        );
        let framing = if te_first { te + &cl } else { cl + &te };
        let mut bytes = format!(
            "POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(&payload);

        let mut conn = Raw::connect(port);
        conn.send(&bytes);
        let first = conn.expect_response();
        // The chunked framing was used: the body is the carrier JSON.
        assert_eq!(
            assert_context(&first)["cache"]["key"],
            key_of(&format!("carrier {i}"), None)
        );
        assert!(
            conn.closed_within(Duration::from_secs(2)).is_some(),
            "connection kept open after CL+TE"
        );
        assert!(
            conn.buf.is_empty(),
            "the smuggled request was answered: {}",
            String::from_utf8_lossy(&conn.buf)
        );
        // Never looked up: asking for it now is a miss from the origin.
        let later = get(
            port,
            &format!(
                "/codette/context?message={}",
                percent_encode(&smuggled_message)
            ),
        );
        let later = assert_context(&later);
        assert_eq!(
            later["cache"]["hit"], false,
            "smuggled request ran: {later}"
        );
        assert_eq!(later["cache"]["source"], "origin");
    }

    // Framing hyper refuses outright: 400 (its own, bodiless) and closed.
    for framing in [
        "Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 5x\r\n",
    ] {
        let mut conn = Raw::connect(port);
        conn.send(
            format!("POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\nhello")
                .as_bytes(),
        );
        let response = conn.expect_response();
        assert_eq!(response.status, 400, "{framing:?}: {}", response.raw());
        assert!(conn.closed_within(Duration::from_secs(2)).is_some());
    }
    assert_still_serving(&mut daemon);
}

/// HTTP/1.0 without Host is answered, then the connection is closed (1.0 default).
#[test]
fn http_1_0_without_host_is_answered_and_closed() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    conn.send(b"GET /codette/context?message=reverb HTTP/1.0\r\n\r\n");
    let response = conn.expect_response();
    assert_eq!(
        assert_context(&response)["cache"]["key"],
        key_of("reverb", None)
    );
    assert!(
        conn.closed_within(Duration::from_secs(1)).is_some(),
        "HTTP/1.0 connection left open"
    );
    // HTTP/1.0 cannot carry Transfer-Encoding: hyper refuses it with 400.
    let mut conn = Raw::connect(daemon.port());
    conn.send(
        b"POST /codette/context HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(conn.expect_response().status, 400);
    assert_still_serving(&mut daemon);
}

/// Three GETs written at once on one connection are all answered, in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    let messages = ["pipe one", "pipe two", "pipe three"];
    let mut bytes = Vec::new();
    for m in messages {
        bytes.extend(get_request(&format!(
            "/codette/context?message={}",
            percent_encode(m)
        )));
    }
    conn.send(&bytes);
    for m in messages {
        let response = conn.expect_response();
        assert_eq!(assert_context(&response)["cache"]["key"], key_of(m, None));
    }
    // Still open and usable afterwards (keep-alive), with a POST this time.
    conn.send(&post_request(
        "/codette/context",
        br#"{"message": "pipe one"}"#,
    ));
    let v = assert_context(&conn.expect_response());
    assert_eq!(v["cache"]["key"], key_of("pipe one", None));
    assert_eq!(v["cache"]["hit"], true);
    assert_still_serving(&mut daemon);
}

/// Opens a connection and proves it is being served (one keep-alive request).
fn served_connection(port: u16) -> Option<Raw> {
    let mut conn = Raw::connect(port);
    conn.send(&get_request("/healthz"));
    match conn.response(Duration::from_secs(2)) {
        Ok(r) if r.status == 200 => Some(conn),
        _ => None,
    }
}

/// Opens connections until one is served; panics after the deadline.
fn served_connection_within(port: u16, timeout: Duration) -> Raw {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(conn) = served_connection(port) {
            return conn;
        }
        assert!(
            Instant::now() < deadline,
            "no connection served in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Refused: the server closes the connection promptly and answers nothing.
#[track_caller]
fn assert_refused(port: u16) {
    let mut conn = Raw::connect(port);
    let _ = conn.stream.write_all(&get_request("/healthz"));
    let closed = conn.closed_within(Duration::from_secs(1));
    assert!(
        closed.is_some(),
        "connection over the cap was not closed promptly"
    );
    assert!(
        conn.buf.is_empty(),
        "connection over the cap was answered: {}",
        String::from_utf8_lossy(&conn.buf)
    );
}

/// max_connections = 16: the 17th is closed at once; after closing some, new ones are served.
#[test]
fn connection_cap_refuses_extra_connections_promptly() {
    // A long header timeout so idle keep-alive connections are not closed under us.
    let mut daemon = Daemon::start(&config(
        "max_connections = 16\nheader_read_timeout_ms = 20000",
    ));
    let port = daemon.port();
    let mut open: Vec<Raw> = (0..16)
        .map(|_| served_connection_within(port, Duration::from_secs(3)))
        .collect();
    assert_refused(port);
    assert_refused(port);

    // Every held connection is still served.
    for conn in &mut open {
        conn.send(&get_request("/healthz"));
        assert_eq!(conn.expect_response().status, 200);
    }

    // Close four: four new ones get in (as slots free up), the fifth does not.
    open.truncate(12);
    for _ in 0..4 {
        open.push(served_connection_within(port, Duration::from_secs(3)));
    }
    assert_refused(port);
    let metrics = {
        let mut conn = open.pop().expect("a connection");
        conn.send(&get_request("/metrics"));
        conn.expect_response().text()
    };
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("codette_cache_rejected_connections_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rejected_connections metric in:\n{metrics}"));
    assert!(rejected >= 3.0, "rejected {rejected}");
    // Slots free as the server sees each close (asynchronously): wait for one.
    drop(open);
    drop(served_connection_within(port, Duration::from_secs(3)));
    assert_still_serving(&mut daemon);
}
