//! Hostile input: bad requests always get a clear error, never a panic, a hang or lost
//! data. Most cases talk raw bytes to a running daemon over TCP (std::net), because
//! well-behaved clients cannot send what is tested here; the property tests drive the
//! warp filter in-process with `warp::test`. After every daemon case the process must be
//! alive, its log free of panics, and a fresh client served normally.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section, free_port,
    log_section, memory_tier, redis_tier, sample_origin, supabase_origin, toml_str,
};
use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 over std::net
// ---------------------------------------------------------------------------------------

/// Longest any single exchange may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(5);

/// One parsed response.
#[derive(Debug)]
struct Response {
    head: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}\n{}", self.head, self.text()))
    }

    /// Head and body as text (what a client could see).
    fn raw(&self) -> String {
        format!("{}\r\n\r\n{}", self.head, self.text())
    }
}

enum Fill {
    Data,
    Closed,
    TimedOut,
}

/// A client connection that keeps unparsed bytes between responses.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
    opened: Instant,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, HANG).expect("connect to the daemon");
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(HANG)).expect("write timeout");
        Raw {
            stream,
            buf: Vec::new(),
            closed: false,
            opened: Instant::now(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// One read into the buffer, bounded by `deadline`.
    fn fill(&mut self, deadline: Instant) -> Fill {
        if self.closed {
            return Fill::Closed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Fill::TimedOut;
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                Fill::Closed
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Fill::TimedOut
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            // Reset, aborted: the server is gone from this connection.
            Err(_) => {
                self.closed = true;
                Fill::Closed
            }
        }
    }

    /// Reads one complete response; `Err` says why there was none within `timeout`.
    fn response(&mut self, timeout: Duration) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(response) = parse_response(&mut self.buf, self.closed)? {
                return Ok(response);
            }
            match self.fill(deadline) {
                Fill::Data | Fill::Closed => {}
                Fill::TimedOut => {
                    return Err(format!(
                        "no complete response within {timeout:?}; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
            }
        }
    }

    /// A response that must arrive, or the test fails.
    fn expect_response(&mut self) -> Response {
        self.response(HANG).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the server to close; the time from the call when it did within `timeout`.
    /// Bytes that arrive meanwhile stay in `buf` for the caller to inspect.
    fn closed_within(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            match self.fill(deadline) {
                Fill::Closed => return Some(started.elapsed()),
                Fill::Data => {}
                Fill::TimedOut => return None,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response off the front of `buf`; `Ok(None)` when more bytes are needed.
fn parse_response(buf: &mut Vec<u8>, closed: bool) -> Result<Option<Response>, String> {
    let incomplete = |buf: &[u8]| {
        if closed {
            Err(format!(
                "connection closed before a complete response; got {:?}",
                String::from_utf8_lossy(buf)
            ))
        } else {
            Ok(None)
        }
    };
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return incomplete(buf);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let rest = &buf[end + 4..];
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        match decode_chunked(rest) {
            Some(done) => done,
            None => return incomplete(buf),
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len}"))?;
        if rest.len() < len {
            return incomplete(buf);
        }
        (rest[..len].to_vec(), len)
    } else if closed {
        (rest.to_vec(), rest.len())
    } else {
        return Ok(None);
    };
    buf.drain(..end + 4 + used);
    Ok(Some(Response {
        head,
        status,
        headers,
        body,
    }))
}

/// A complete chunked body and the bytes it took, or `None` when incomplete.
fn decode_chunked(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = rest.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let end = find(rest, b"\r\n")?;
            rest = &rest[end + 2..];
            return Some((body, total - rest.len()));
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The bytes of one HTTP/1.1 request; a body gets Content-Length and a JSON type.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

fn get_request(path: &str) -> Vec<u8> {
    request("GET", path, &[], None)
}

fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, &[], Some(body))
}

/// One request on a fresh connection.
fn call(port: u16, bytes: &[u8]) -> Response {
    let mut conn = Raw::connect(port);
    conn.send(bytes);
    conn.expect_response()
}

fn get(port: u16, path: &str) -> Response {
    call(port, &get_request(path))
}

fn post(port: u16, path: &str, body: &[u8]) -> Response {
    call(port, &post_request(path, body))
}

/// Asserts a JSON error `{"error": {"code", "message"}}` with this status and code;
/// returns the message.
#[track_caller]
fn assert_error(response: &Response, status: u16, code: &str) -> String {
    assert_eq!(response.status, status, "{}", response.raw());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{}",
        response.raw()
    );
    let v = response.json();
    assert_eq!(v["error"]["code"], code, "{}", response.raw());
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "no error message: {}", response.raw());
    message.to_owned()
}

/// Asserts a context answer (200, JSON, well-formed key); returns the JSON.
#[track_caller]
fn assert_context(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.raw());
    let v = response.json();
    assert!(v.get("context").is_some(), "{v}");
    let key = v["cache"]["key"].as_str().unwrap_or_default();
    assert!(is_context_key(key), "key {key:?} in {v}");
    v
}

/// The process is alive, has not panicked, and serves a fresh client normally.
#[track_caller]
fn assert_still_serving(daemon: &mut Daemon) {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let message = format!("still serving {}", PROBES.fetch_add(1, Ordering::SeqCst));
    let response = get(
        daemon.port(),
        &format!("/codette/context?message={}", percent_encode(&message)),
    );
    let v = assert_context(&response);
    assert_eq!(v["cache"]["key"], key_of(&message, None));
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "daemon exited:\n{}",
        daemon.logs()
    );
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "daemon panicked:\n{logs}");
}

/// The key the original server derives: `context:` + md5(message + ":" + (filename or
/// "none")), where that layout is unambiguous; otherwise `context:p-` + md5 of
/// `len(message) ":" message filename` (the README's key section).
fn key_of(message: &str, filename: Option<&str>) -> String {
    let mut md5 = Md5::new();
    if let Some(f) = filename.filter(|f| !f.is_empty()) {
        if f == "none" || f.contains(':') || message.contains(':') {
            md5.update(format!("{}:{message}{f}", message.len()).as_bytes());
            return format!("context:p-{:x}", md5.finalize());
        }
    }
    md5.update(message.as_bytes());
    md5.update(b":");
    md5.update(
        filename
            .filter(|f| !f.is_empty())
            .unwrap_or("none")
            .as_bytes(),
    );
    format!("context:{:x}", md5.finalize())
}

/// `^context:(p-)?[0-9a-f]{32}$`
fn is_context_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("context:") else {
        return false;
    };
    let digest = rest.strip_prefix("p-").unwrap_or(rest);
    digest.len() == 32
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Percent-encodes every byte but the unreserved ones.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// Memory tier + sample origin, no admin token, these `[server]` lines.
fn config(server: &str) -> String {
    [
        format!("[server]\n{server}\n\n"),
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        sample_origin(),
    ]
    .concat()
}

/// The header-read timeout used where the tests wait on it.
const SHORT_TIMEOUT_MS: u64 = 500;

fn short_timeout_config() -> String {
    config(&format!("header_read_timeout_ms = {SHORT_TIMEOUT_MS}"))
}

// ---------------------------------------------------------------------------------------
// Bodies and queries
// ---------------------------------------------------------------------------------------

/// Malformed JSON is a 400 `invalid_body`, and the keep-alive connection stays usable.
#[test]
fn malformed_json_is_400_and_the_connection_stays_usable() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    let bodies: &[&[u8]] = &[
        b"{\"message\": ",
        b"{message: \"reverb\"}",
        b"not json at all",
        b"{\"message\": \"reverb\"}}",
        b"{\"message\": \"reverb\",}",
        b"",
        b"\"",
    ];
    for body in bodies {
        conn.send(&post_request("/codette/context", body));
        let response = conn.expect_response();
        let message = assert_error(&response, 400, "invalid_body");
        assert!(
            message.contains("not valid"),
            "{:?}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    // Same connection, after seven errors: still answered.
    conn.send(&get_request("/codette/context?message=reverb"));
    assert_context(&conn.expect_response());
    assert_still_serving(&mut daemon);
}

/// Right JSON, wrong types (numbers, null, arrays, objects, a bare string) are 400s.
#[test]
fn wrong_types_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let bodies = [
        r#"{"message": 42}"#,
        r#"{"message": null}"#,
        r#"{"message": true}"#,
        r#"{"message": ["reverb"]}"#,
        r#"{"message": {"text": "reverb"}}"#,
        r#"{"message": "reverb", "filename": 7}"#,
        r#"{"message": "reverb", "filename": ["a.ts"]}"#,
        r#"[{"message": "reverb"}]"#,
        r#""reverb""#,
        "42",
        "null",
    ];
    for body in bodies {
        let response = post(daemon.port(), "/codette/context", body.as_bytes());
        let message = assert_error(&response, 400, "invalid_body");
        assert!(message.contains("invalid type"), "{body}: {message}");
    }
    // A null filename is no filename; extra fields are ignored (the backend forwards all).
    let ok = post(
        daemon.port(),
        "/codette/context",
        br#"{"message": "reverb", "filename": null, "session_id": 5, "perspective": {"a": [1]}}"#,
    );
    assert_eq!(assert_context(&ok)["cache"]["key"], key_of("reverb", None));
    assert_still_serving(&mut daemon);
}

/// Missing or empty `message` (body or query) is a 400 naming what is missing.
#[test]
fn missing_fields_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for body in ["{}", r#"{"filename": "a.ts"}"#] {
        let message = assert_error(
            &post(port, "/codette/context", body.as_bytes()),
            400,
            "invalid_body",
        );
        assert!(message.contains("missing field `message`"), "{message}");
    }
    for path in [
        "/codette/context",
        "/codette/context?",
        "/codette/context?filename=a.ts",
        "/codette/context?messag=reverb",
    ] {
        let message = assert_error(&get(port, path), 400, "invalid_query");
        assert!(message.contains("message=<text>"), "{path}: {message}");
    }
    for path in [
        "/codette/context?message=",
        "/codette/context?message=%20%09+",
    ] {
        assert_error(&get(port, path), 400, "empty_message");
    }
    assert_error(
        &post(port, "/codette/context", br#"{"message": " \n\t "}"#),
        400,
        "empty_message",
    );
    assert_still_serving(&mut daemon);
}

/// A declared 10 MB body gets 413 at once, before a byte of it is read, and is closed.
#[test]
fn declared_body_over_the_limit_is_413_without_reading_it() {
    // The default header/body timeout (5 s): a prompt answer cannot be a timeout.
    let mut daemon = Daemon::start(&config(""));
    let mut conn = Raw::connect(daemon.port());
    let started = Instant::now();
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{\"message\":\"",
    );
    let response = conn.expect_response();
    let elapsed = started.elapsed();
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(
        message.contains("65536") && message.contains("max_body_bytes"),
        "{message}"
    );
    assert!(elapsed < Duration::from_secs(1), "413 took {elapsed:?}");
    // hyper cannot reuse a connection whose body was not read: it closes it.
    let closed = conn.closed_within(Duration::from_secs(2));
    assert!(closed.is_some(), "connection left open after the 413");
    assert!(conn.buf.is_empty(), "extra bytes: {:?}", conn.buf);
    assert_still_serving(&mut daemon);
}

/// A chunked body (no length declared) is cut off at the limit with a 413.
#[test]
fn chunked_body_over_the_limit_is_413() {
    let mut daemon = Daemon::start(&config(""));
    let mut conn = Raw::connect(daemon.port());
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    // 80 chunks of 1 KiB = 80 KiB > 64 KiB; written by a thread, the server may stop reading.
    let mut writer = conn.stream.try_clone().expect("clone");
    let feeder = std::thread::spawn(move || {
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend_from_slice(&[b'a'; 1024]);
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..80 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let response = conn.expect_response();
    assert_error(&response, 413, "payload_too_large");
    let _ = feeder.join();
    assert!(conn.closed_within(Duration::from_secs(2)).is_some());
    assert_still_serving(&mut daemon);
}

/// A body shorter than its Content-Length, then silence: 408 within the timeout, then closed.
#[test]
fn short_body_then_silence_is_answered_within_the_timeout() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    let started = Instant::now();
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"message\": \"rev",
    );
    let response = conn
        .response(Duration::from_millis(SHORT_TIMEOUT_MS + 1_500))
        .unwrap_or_else(|e| panic!("short body held past the timeout: {e}"));
    let elapsed = started.elapsed();
    assert_error(&response, 408, "body_timeout");
    assert!(
        elapsed >= Duration::from_millis(SHORT_TIMEOUT_MS - 50),
        "answered before the timeout could fire: {elapsed:?}"
    );
    assert!(
        conn.closed_within(Duration::from_secs(1)).is_some(),
        "connection with an unfinished body left open"
    );
    assert_still_serving(&mut daemon);
}

/// Invalid UTF-8 (raw bytes, truncated, overlong, lone surrogates) in a JSON body is a 400.
#[test]
fn invalid_utf8_in_the_body_is_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let bodies: &[&[u8]] = &[
        b"{\"message\": \"\xff\xfe reverb\"}",
        b"{\"message\": \"reverb \xc3\"}",
        b"{\"message\": \"\xc0\xaf\"}",
        b"{\"message\": \"\xed\xa0\x80\"}",
        b"{\"message\": \"\\ud800\"}",
        b"{\"message\": \"\\udc00 x\"}",
        b"{\"message\": \"reverb\", \"filename\": \"\xff.ts\"}",
    ];
    for body in bodies {
        let response = post(daemon.port(), "/codette/context", body);
        assert_error(&response, 400, "invalid_body");
    }
    // A valid escaped surrogate pair is an emoji, not an error.
    let ok = post(
        daemon.port(),
        "/codette/context",
        b"{\"message\": \"\\ud83c\\udfb8 reverb\"}",
    );
    assert_eq!(
        assert_context(&ok)["cache"]["key"],
        key_of("\u{1f3b8} reverb", None)
    );
    // In a query string too: replacing the bytes with U+FFFD would give `x%ff`,
    // `x%fe` and `x%EF%BF%BD` one key, so they are refused as in a body.
    for query in [
        "message=%FF%FEreverb",
        "message=x%ff",
        "message=x%fe",
        "message=reverb&filename=%C3.ts",
    ] {
        let response = get(daemon.port(), &format!("/codette/context?{query}"));
        assert_error(&response, 400, "invalid_utf8");
    }
    let replacement = get(daemon.port(), "/codette/context?message=x%EF%BF%BD");
    assert_eq!(
        assert_context(&replacement)["cache"]["key"],
        key_of("x\u{fffd}", None)
    );
    assert_still_serving(&mut daemon);
}

/// NUL in the message or filename (escaped, percent-encoded or raw) is a clear 400.
#[test]
fn nul_characters_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for body in [
        r#"{"message": "reverb\u0000"}"#,
        r#"{"message": "\u0000"}"#,
        r#"{"message": "reverb", "filename": "a\u0000.ts"}"#,
    ] {
        let message = assert_error(
            &post(port, "/codette/context", body.as_bytes()),
            400,
            "nul_character",
        );
        assert!(message.contains("NUL"), "{message}");
    }
    for path in [
        "/codette/context?message=rev%00erb",
        "/codette/context?message=reverb&filename=a%00.ts",
    ] {
        assert_error(&get(port, path), 400, "nul_character");
    }
    // An unescaped NUL byte inside a JSON string is not JSON at all.
    assert_error(
        &post(port, "/codette/context", b"{\"message\": \"rev\0erb\"}"),
        400,
        "invalid_body",
    );
    assert_still_serving(&mut daemon);
}

/// 1 MiB of emoji: 413 from max_message_bytes (body limit raised), 413 from max_body_bytes (default).
#[test]
fn a_megabyte_of_emoji_is_413() {
    let emoji = "\u{1f3b8}".repeat(256 * 1024);
    assert_eq!(emoji.len(), 1024 * 1024);
    let body = serde_json::to_vec(&json!({ "message": emoji })).unwrap();

    // Body limit raised: the whole body is read and the message limit answers.
    let mut raised = Daemon::start(&config("max_body_bytes = 4194304"));
    let response = post(raised.port(), "/codette/context", &body);
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(
        message.contains("1048576 bytes") && message.contains("max_message_bytes"),
        "{message}"
    );
    assert_still_serving(&mut raised);

    // Default config: the declared length is over 64 KiB; refused before reading.
    let mut default = Daemon::start(&config(""));
    let mut conn = Raw::connect(default.port());
    let mut writer = conn.stream.try_clone().expect("clone");
    let bytes = post_request("/codette/context", &body);
    let feeder = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let response = conn.expect_response();
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(message.contains("max_body_bytes"), "{message}");
    drop(conn);
    let _ = feeder.join();
    assert_still_serving(&mut default);
}

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

// ---------------------------------------------------------------------------------------
// Admin routes
// ---------------------------------------------------------------------------------------

fn admin(port: u16, path: &str, bearer: Option<&str>, body: &[u8]) -> Response {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    call(port, &request("POST", path, &headers, Some(body)))
}

fn admin_raw_auth(port: u16, path: &str, authorization: &str) -> Response {
    call(
        port,
        &request(
            "POST",
            path,
            &[("Authorization", authorization)],
            Some(br#"{"message": "reverb"}"#),
        ),
    )
}

/// Read-only routes answer without any token.
#[track_caller]
fn assert_read_routes_open(port: u16) {
    assert_context(&get(port, "/codette/context?message=reverb"));
    for path in [
        "/codette/cache/stats",
        "/codette/cache/metrics",
        "/codette/analytics/dashboard",
        "/codette/cache/status",
        "/healthz",
        "/readyz",
    ] {
        let response = get(port, path);
        assert_eq!(response.status, 200, "{path}: {}", response.raw());
        response.json();
    }
    assert_eq!(get(port, "/metrics").status, 200);
}

/// With no token configured, admin routes are 403 "admin routes disabled", whatever is sent.
#[test]
fn admin_routes_are_disabled_without_a_token() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for path in ["/codette/cache/clear", "/codette/cache/invalidate"] {
        for bearer in [None, Some(""), Some("anything")] {
            let response = admin(port, path, bearer, br#"{"message": "reverb"}"#);
            let message = assert_error(&response, 403, "admin_disabled");
            assert!(message.contains("admin routes disabled"), "{message}");
        }
    }
    assert_read_routes_open(port);
    assert_still_serving(&mut daemon);
}

/// Checks a daemon whose admin token is `token`: 401 for every wrong form, 200 for it.
fn assert_admin_token_enforced(daemon: &mut Daemon, token: &str) {
    let port = daemon.port();
    for path in ["/codette/cache/clear", "/codette/cache/invalidate"] {
        let body = br#"{"message": "reverb"}"#;
        let wrong_tokens = [
            "wrong".to_owned(),
            format!("{token}x"),
            token[..token.len() - 1].to_owned(),
            format!(" {token}"),
            String::new(),
        ];
        for wrong in &wrong_tokens {
            assert_error(&admin(port, path, Some(wrong), body), 401, "unauthorized");
        }
        assert_error(&admin(port, path, None, body), 401, "unauthorized");
        for auth in [
            token.to_owned(),
            format!("Basic {token}"),
            format!("Token {token}"),
        ] {
            assert_error(&admin_raw_auth(port, path, &auth), 401, "unauthorized");
        }
    }
    // Auth is checked before the body: a bad body without the token is still a 401.
    assert_error(
        &admin(port, "/codette/cache/invalidate", None, b"{not json"),
        401,
        "unauthorized",
    );
    assert_error(
        &admin(port, "/codette/cache/invalidate", Some(token), b"{not json"),
        400,
        "invalid_body",
    );

    // The right token works: fill, invalidate one key, clear.
    let hit = |m: &str| {
        assert_context(&get(
            port,
            &format!("/codette/context?message={}", percent_encode(m)),
        ))["cache"]["hit"]
            .clone()
    };
    hit("reverb");
    hit("compression");
    assert_eq!(hit("reverb"), true);
    let response = admin(
        port,
        "/codette/cache/invalidate",
        Some(token),
        br#"{"message": "reverb"}"#,
    );
    assert_eq!(response.status, 200, "{}", response.raw());
    let v = response.json();
    assert_eq!(v["status"], "invalidated");
    assert_eq!(v["key"], key_of("reverb", None));
    assert_eq!(hit("reverb"), false, "invalidated key still cached");
    assert_eq!(hit("compression"), true, "invalidate removed another key");
    let response = admin(port, "/codette/cache/clear", Some(token), b"");
    assert_eq!(response.status, 200, "{}", response.raw());
    assert_eq!(response.json()["status"], "cleared");
    assert_eq!(hit("compression"), false, "clear left a key");
    // A header that is not text is a 400, not a pass.
    let mut bad = request(
        "POST",
        "/codette/cache/clear",
        &[],
        Some(br#"{"message": "reverb"}"#),
    );
    let at = find(&bad, b"\r\n").expect("request line") + 2;
    bad.splice(
        at..at,
        b"Authorization: Bearer \xff\xfe\r\n".iter().copied(),
    );
    assert_error(&call(port, &bad), 400, "invalid_header");
    // GET on an admin route is not a way round the token.
    assert_error(
        &get(port, "/codette/cache/clear"),
        405,
        "method_not_allowed",
    );
    assert_read_routes_open(port);
    assert_still_serving(daemon);
}

/// The token from `CODETTE_CACHE_ADMIN__TOKEN`: wrong or missing is 401, right is 200.
#[test]
fn admin_token_from_env_is_enforced() {
    let token = "env-admin-token-5d1e";
    let mut daemon = Daemon::start_with_env(
        &short_timeout_config(),
        &[("CODETTE_CACHE_ADMIN__TOKEN", token)],
    );
    assert_admin_token_enforced(&mut daemon, token);
}

/// The token from `[admin] token_file` (trimmed): wrong or missing is 401, right is 200.
#[test]
fn admin_token_from_file_is_enforced() {
    let token = "file-admin-token-8c2a";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin-token");
    std::fs::write(&path, format!("  {token}\n")).expect("write token file");
    let config = format!(
        "{}[admin]\ntoken_file = {}\n",
        short_timeout_config(),
        toml_str(path.to_str().expect("utf-8 path"))
    );
    let mut daemon = Daemon::start(&config);
    assert_admin_token_enforced(&mut daemon, token);
}

// ---------------------------------------------------------------------------------------
// Secrets and keys
// ---------------------------------------------------------------------------------------

/// A redis-server that requires a password (TestRedis has none).
struct PasswordRedis {
    port: u16,
    password: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PasswordRedis {
    fn start(password: &str) -> PasswordRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--requirepass", password])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = PasswordRedis {
            port,
            password: password.to_owned(),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--no-auth-warning", "-a", &self.password])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/codette/cache/status` until the redis tier reports connected.
fn wait_redis_connected(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(port, "/codette/cache/status").json();
        if v["cache_backends"]["redis_cache"] == "connected" {
            return;
        }
        assert!(Instant::now() < deadline, "redis tier never connected: {v}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls redis `KEYS *` until `want` holds; returns the last answer.
fn wait_keys(keys: impl Fn() -> Vec<String>, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = keys();
        if want(&now) || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's `--config` file, read from its command line.
fn config_path_of(daemon: &Daemon) -> std::path::PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.pid())).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--config")
        .expect("--config in the daemon's command line");
    args[at + 1].clone().into()
}

/// Admin token, Supabase key and Redis password appear in no response, log line or check-config.
#[test]
fn secrets_never_leak() {
    const ADMIN: &str = "adm1n-S3CRET-b7e4c1";
    const API_KEY: &str = "supa-S3CRET-key-9f02d6";
    const REDIS_PW: &str = "redis-S3CRET-pw-3a8e51";
    let redis = PasswordRedis::start(REDIS_PW);
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let config = [
        format!("[server]\nheader_read_timeout_ms = {SHORT_TIMEOUT_MS}\n\n"),
        log_section("debug"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(
            &format!("redis://:{REDIS_PW}@127.0.0.1:{}/0", redis.port),
            500,
            300,
        ),
        supabase_origin(&rest.url(), API_KEY, 2_000),
        admin_section(ADMIN),
    ]
    .concat();
    let mut daemon = Daemon::start(&config);
    let port = daemon.port();
    // Connected proves the password was used; answers from the gateway prove the key was.
    wait_redis_connected(port);

    let mut seen = String::new();
    let mut record = |r: Response| {
        seen.push_str(&r.raw());
        seen.push('\n');
        r
    };
    // The product, a miss then a hit, GET and POST, through the gateway.
    let first = record(get(port, "/codette/context?message=reverb"));
    assert_eq!(assert_context(&first)["cache"]["source"], "origin");
    assert_eq!(
        assert_context(&record(get(port, "/codette/context?message=reverb")))["cache"]["hit"],
        true
    );
    assert_context(&record(post(
        port,
        "/codette/context",
        br#"{"message": "compression", "filename": "mix.ts"}"#,
    )));
    assert!(rest.calls() >= 2, "the gateway was not called");
    let stored = wait_keys(
        || {
            redis
                .cli(&["KEYS", "*"])
                .lines()
                .map(str::to_owned)
                .collect()
        },
        |k| k.contains(&key_of("reverb", None)),
    );
    assert!(
        stored.contains(&key_of("reverb", None)),
        "not written to the password-protected redis: {stored:?}"
    );

    // Every kind of bad input.
    for body in [
        &b"{\"message\": "[..],
        br#"{"message": 42}"#,
        br#"{}"#,
        br#"{"message": "a\u0000"}"#,
        br#"{"message": "  "}"#,
        b"{\"message\": \"\xff\"}",
    ] {
        record(post(port, "/codette/context", body));
    }
    let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(9_000));
    record(post(port, "/codette/context", long.as_bytes()));
    for path in [
        "/codette/context",
        "/codette/context?message=",
        "/nowhere",
        "/codette/cache/clear",
    ] {
        record(get(port, path));
    }
    record(call(
        port,
        &request("DELETE", "/codette/context", &[], None),
    ));
    {
        let mut conn = Raw::connect(port);
        conn.send(
            b"POST /codette/context HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n{",
        );
        record(conn.expect_response());
    }
    {
        let mut conn = Raw::connect(port);
        conn.send(b"POST /codette/context HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{");
        record(conn.expect_response());
    }
    // Admin: missing, wrong, and the right token.
    for bearer in [None, Some("wrong-token"), Some(&ADMIN[..ADMIN.len() - 1])] {
        record(admin(port, "/codette/cache/clear", bearer, b""));
    }
    assert_eq!(
        record(admin(
            port,
            "/codette/cache/invalidate",
            Some(ADMIN),
            br#"{"message": "compression", "filename": "mix.ts"}"#
        ))
        .status,
        200
    );
    // Origin failures: an error status, then a refused key never configured.
    rest.set_fail_status(Some(500));
    let failed = record(get(port, "/codette/context?message=origin%20failure"));
    assert_error(&failed, 502, "origin_error");
    rest.set_fail_status(Some(401));
    assert_error(
        &record(get(port, "/codette/context?message=refused")),
        502,
        "origin_error",
    );
    rest.set_fail_status(None);
    // Observability.
    for path in [
        "/metrics",
        "/codette/cache/stats",
        "/codette/cache/metrics",
        "/codette/analytics/dashboard",
        "/codette/cache/status",
        "/readyz",
        "/healthz",
    ] {
        let response = record(get(port, path));
        assert_eq!(response.status, 200, "{path}: {}", response.raw());
    }
    assert_eq!(
        record(admin(port, "/codette/cache/clear", Some(ADMIN), b"")).status,
        200
    );

    // check-config on the very file the daemon runs with, with a clean environment.
    let out = Command::new(env!("CARGO_BIN_EXE_codette-cache"))
        .arg("check-config")
        .arg("--config")
        .arg(config_path_of(&daemon))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run check-config");
    assert!(out.status.success(), "check-config failed: {out:?}");
    let check = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        check.matches("<redacted>").count() >= 3,
        "check-config did not show the secrets redacted:\n{check}"
    );

    let logs = daemon.logs();
    assert!(logs.contains("DEBUG"), "debug logging is not on:\n{logs}");
    for secret in [ADMIN, API_KEY, REDIS_PW] {
        assert!(!seen.contains(secret), "{secret} in a response:\n{seen}");
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
        assert!(
            !check.contains(secret),
            "{secret} in check-config:\n{check}"
        );
    }
    assert_still_serving(&mut daemon);
}

/// Key-like messages map to md5 keys; invalidating one removes exactly that key and no other.
#[test]
fn clients_cannot_choose_raw_redis_keys() {
    let redis = TestRedis::start();
    let config = [
        format!("[server]\nheader_read_timeout_ms = {SHORT_TIMEOUT_MS}\n\n"),
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(&redis.url(), 500, 300),
        sample_origin(),
        admin_section(common::ADMIN_TOKEN),
    ]
    .concat();
    let mut daemon = Daemon::start(&config);
    let port = daemon.port();
    wait_redis_connected(port);

    let hostile = [
        "context:abc",
        "*",
        "context:*",
        "KEYS *",
        "\r\nFLUSHALL\r\n",
        "*3\r\n$3\r\nDEL\r\n",
        "../../etc/passwd",
        "context:367ac8be2a4e9fccd1f5aa007d810371",
    ];
    let mut expected = Vec::new();
    for (i, m) in hostile.iter().enumerate() {
        let filename = (i % 2 == 1).then_some("*");
        let key = key_of(m, filename);
        let query = match filename {
            Some(f) => format!(
                "/codette/context?message={}&filename={}",
                percent_encode(m),
                percent_encode(f)
            ),
            None => format!("/codette/context?message={}", percent_encode(m)),
        };
        let by_get = assert_context(&get(port, &query));
        assert_eq!(by_get["cache"]["key"], key, "{m:?}");
        let body = serde_json::to_vec(&json!({"message": m, "filename": filename})).unwrap();
        let by_post = assert_context(&post(port, "/codette/context", &body));
        assert_eq!(by_post["cache"]["key"], key, "{m:?}");
        expected.push(key);
    }
    expected.sort();
    let redis_keys = || {
        let mut keys: Vec<String> = redis
            .cmd(&["KEYS", "*"])
            .lines()
            .map(str::to_owned)
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys
    };
    let keys = wait_keys(redis_keys, |k| k == expected.as_slice());
    assert_eq!(keys, expected, "redis holds other keys than the md5 ones");
    assert!(keys.iter().all(|k| is_context_key(k)), "{keys:?}");

    // Invalidate "*": exactly md5("*:*") goes, nothing else.
    let response = admin(
        port,
        "/codette/cache/invalidate",
        Some(common::ADMIN_TOKEN),
        br#"{"message": "*", "filename": "*"}"#,
    );
    assert_eq!(response.status, 200, "{}", response.raw());
    let gone = key_of("*", Some("*"));
    assert_eq!(response.json()["key"], gone);
    let left = redis_keys();
    let mut want: Vec<String> = expected.iter().filter(|k| **k != gone).cloned().collect();
    want.sort();
    assert_eq!(left, want, "invalidate removed more (or less) than one key");
    let again = assert_context(&get(port, "/codette/context?message=context%3Aabc"));
    assert_eq!(
        again["cache"]["hit"], true,
        "other entries were lost: {again}"
    );
    assert_still_serving(&mut daemon);
}

// ---------------------------------------------------------------------------------------
// Property tests: the warp filter in-process, no socket
// ---------------------------------------------------------------------------------------

const PROP_TOKEN: &str = "prop-admin-token";

/// The service of a memory-only daemon with the sample origin (what a connection is
/// served by: the fast GET path and warp's routes), on `rt`.
fn prop_routes(rt: &tokio::runtime::Runtime) -> impl PropService {
    let toml = format!(
        "[[tiers]]\ntype = \"memory\"\n\n[origin]\ntype = \"sample\"\n\n[admin]\ntoken = {}\n",
        toml_str(PROP_TOKEN)
    );
    let config = codette_cache::config::Config::from_toml(&toml).expect("prop config");
    assert_eq!(config.tiers.len(), 1, "memory tier only");
    let _guard = rt.enter();
    let metrics = Arc::new(codette_cache::metrics::Metrics::new());
    let state = codette_cache::app::build_state(config, metrics).expect("build_state");
    codette_cache::http::service(Arc::new(state))
}

/// The daemon's hyper service, for in-process requests with a plain body.
trait PropService:
    hyper::service::Service<
        warp::http::Request<http_body_util::Full<bytes::Bytes>>,
        Response = warp::reply::Response,
        Error = std::convert::Infallible,
    >
{
}

impl<S> PropService for S where
    S: hyper::service::Service<
            warp::http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        >
{
}

/// One request for the property tests.
#[derive(Debug, Clone)]
struct Probe {
    method: &'static str,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
    /// The message and filename, when the request carries them as sent.
    known: Option<(String, Option<String>)>,
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

fn query_token() -> impl Strategy<Value = String> {
    let fixed = proptest::sample::select(vec![
        "message",
        "filename",
        "=",
        "&",
        "+",
        "%00",
        "%FF",
        "%",
        "%zz",
        "%F0%9F%8E%B8",
        "%E2%82",
        "%0D%0A",
        "*",
        "context:",
        "%3D",
        "%26",
        ";",
        "message=",
        "&filename=",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => fixed,
        2 => "[A-Za-z0-9._~-]{1,12}",
        1 => "%[0-9A-Fa-f]{2}",
    ]
}

fn json_token() -> impl Strategy<Value = Vec<u8>> {
    let fixed = proptest::sample::select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b"\"message\"",
        b"\"filename\"",
        b":",
        b",",
        b"\"",
        b"null",
        b"true",
        b"42",
        b"1e999",
        b"-0",
        b"\\u0000",
        b"\\ud800",
        b"\\ud83c\\udfb8",
        b"\\",
        b"\0",
        b"\xff",
        b"\xc3",
        b" ",
        b"\n",
    ])
    .prop_map(<[u8]>::to_vec);
    prop_oneof![
        4 => fixed,
        1 => any::<String>().prop_map(|s| serde_json::to_vec(&s).unwrap()),
        1 => "[a-z ]{0,10}".prop_map(String::into_bytes),
    ]
}

/// A message and filename: arbitrary, plus the edges of the limits.
fn message_and_filename() -> impl Strategy<Value = (String, Option<String>)> {
    let message = prop_oneof![
        6 => any::<String>(),
        1 => (8_185usize..8_200).prop_map(|n| "a".repeat(n)),
        1 => (2_040usize..2_060).prop_map(|n| "\u{1f3b8}".repeat(n / 4 + 1)),
    ];
    let filename = prop_oneof![
        4 => proptest::option::of(any::<String>()),
        1 => (1_020usize..1_030).prop_map(|n| Some("f".repeat(n))),
    ];
    (message, filename)
}

fn probe() -> impl Strategy<Value = Probe> {
    let get = proptest::collection::vec(query_token(), 0..12).prop_map(|t| Probe {
        method: "GET",
        path: format!("/codette/context?{}", t.concat()),
        authorization: None,
        body: Vec::new(),
        known: None,
    });
    let post = proptest::collection::vec(json_token(), 0..16).prop_map(|t| Probe {
        method: "POST",
        path: "/codette/context".into(),
        authorization: None,
        body: t.concat(),
        known: None,
    });
    let known_post = (message_and_filename(), any::<bool>()).prop_map(|((m, f), extra)| {
        let mut v = json!({ "message": m });
        if let Some(f) = &f {
            v["filename"] = json!(f);
        }
        if extra {
            v["session_id"] = json!("s-1");
            v["daw_context"] = json!({"bpm": 120, "tracks": [1, 2]});
        }
        Probe {
            method: "POST",
            path: "/codette/context".into(),
            authorization: None,
            body: serde_json::to_vec(&v).unwrap(),
            known: Some((m, f)),
        }
    });
    let known_get = message_and_filename().prop_map(|(m, f)| {
        let mut path = format!("/codette/context?message={}", percent_encode(&m));
        if let Some(f) = &f {
            path.push_str(&format!("&filename={}", percent_encode(f)));
        }
        Probe {
            method: "GET",
            path,
            authorization: None,
            body: Vec::new(),
            known: Some((m, f)),
        }
    });
    let anything = (
        proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        proptest::sample::select(vec![
            "/codette/context",
            "/codette/cache/clear",
            "/codette/cache/invalidate",
            "/codette/cache/stats",
            "/codette/cache/metrics",
            "/codette/analytics/dashboard",
            "/codette/cache/status",
            "/codette/context/extra",
            "/codette//context",
            "/healthz",
            "/metrics",
            "/",
        ]),
        proptest::option::of(proptest::sample::select(vec![
            format!("Bearer {PROP_TOKEN}"),
            "Bearer nope".to_owned(),
            PROP_TOKEN.to_owned(),
        ])),
        proptest::collection::vec(json_token(), 0..8),
    )
        .prop_map(|(method, path, authorization, body)| Probe {
            method,
            path: path.into(),
            authorization,
            body: body.concat(),
            known: None,
        });
    prop_oneof![
        3 => get,
        3 => post,
        2 => known_post,
        2 => known_get,
        2 => anything,
    ]
}

/// Whether the daemon must accept this message and filename.
fn acceptable(message: &str, filename: Option<&str>) -> bool {
    !message.trim().is_empty()
        && message.len() <= 8 * 1024
        && !message.contains('\0')
        && filename.is_none_or(|f| f.len() <= 1024 && !f.contains('\0'))
}

/// Sends one probe through the service; `None` when its path is not a valid URI.
async fn send(service: &impl PropService, p: &Probe) -> Option<warp::http::Response<bytes::Bytes>> {
    let uri = warp::http::Uri::try_from(p.path.as_str()).ok()?;
    let mut req = warp::http::Request::builder().method(p.method).uri(uri);
    if let Some(auth) = &p.authorization {
        req = req.header("authorization", auth.as_str());
    }
    if !p.body.is_empty() {
        req = req.header("content-length", p.body.len());
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(p.body.clone()));
    let response = service
        .call(req.body(body).ok()?)
        .await
        .unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    Some(warp::http::Response::from_parts(parts, bytes))
}

/// 200 with a well-formed answer (and the key the original derives), or a JSON 4xx.
fn check(p: &Probe, response: &warp::http::Response<bytes::Bytes>) -> Result<(), TestCaseError> {
    let status = response.status().as_u16();
    let body = response.body();
    let text = || String::from_utf8_lossy(body).into_owned();
    if let Some((m, f)) = &p.known {
        let ok = acceptable(m, f.as_deref().filter(|f| !f.is_empty()));
        prop_assert_eq!(
            status == 200,
            ok,
            "status {} for {:?}: {}",
            status,
            p,
            text()
        );
    }
    match status {
        200 if p.path == "/metrics" => {}
        200 => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("200 not JSON ({e}): {}", text())))?;
            if p.path.starts_with("/codette/context") {
                let key = v["cache"]["key"].as_str().unwrap_or_default();
                prop_assert!(is_context_key(key), "key {:?} in {}", key, v);
                prop_assert!(v.get("context").is_some(), "{}", v);
                if let Some((m, f)) = &p.known {
                    prop_assert_eq!(key, key_of(m, f.as_deref()));
                }
            }
        }
        // The context routes take GET and POST: a bad query or body is never "wrong method"
        // or "no such route".
        404 | 405
            if matches!(p.method, "GET" | "POST")
                && (p.path == "/codette/context" || p.path.starts_with("/codette/context?")) =>
        {
            prop_assert!(false, "{} for {:?}: {}", status, p, text());
        }
        400..=499 => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("{status} not JSON ({e}): {}", text())))?;
            let code = v["error"]["code"].as_str().unwrap_or_default();
            let message = v["error"]["message"].as_str().unwrap_or_default();
            prop_assert!(!code.is_empty() && !message.is_empty(), "{} {}", status, v);
            prop_assert_eq!(
                response.headers().get("content-type").map(|h| h.as_bytes()),
                Some(&b"application/json"[..])
            );
        }
        _ => prop_assert!(false, "status {} for {:?}: {}", status, p, text()),
    }
    Ok(())
}

/// Arbitrary requests through the filter: never a panic, always 200 (md5 key) or a JSON 4xx.
#[test]
fn prop_any_request_is_answered_200_or_json_4xx() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    let result = runner(256).run(&probe(), |p| match rt.block_on(send(&routes, &p)) {
        Some(response) => check(&p, &response),
        None => Ok(()),
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Any acceptable message: GET and POST answer 200 under the original's md5 key.
#[test]
fn prop_get_and_post_derive_the_same_md5_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    let strategy = (any::<String>(), proptest::option::of(any::<String>()))
        .prop_filter("acceptable", |(m, f)| acceptable(m, f.as_deref()));
    let result = runner(128).run(&strategy, |(m, f)| {
        let mut path = format!("/codette/context?message={}", percent_encode(&m));
        if let Some(f) = &f {
            path.push_str(&format!("&filename={}", percent_encode(f)));
        }
        let body = serde_json::to_vec(&json!({"message": m, "filename": f})).unwrap();
        let mut keys = Vec::new();
        for (method, path, body) in [
            ("GET", path, Vec::new()),
            ("POST", "/codette/context".into(), body),
        ] {
            let p = Probe {
                method,
                path,
                authorization: None,
                body,
                known: Some((m.clone(), f.clone())),
            };
            let response = rt.block_on(send(&routes, &p)).expect("valid URI");
            check(&p, &response)?;
            let v: Value = serde_json::from_slice(response.body()).unwrap();
            keys.push(v["cache"]["key"].as_str().unwrap_or_default().to_owned());
        }
        prop_assert_eq!(&keys[0], &keys[1]);
        prop_assert_eq!(&keys[0], &key_of(&m, f.as_deref()));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Regression (proptest): GET with a missing/bad query was 405 (POST route won); now 400 invalid_query.
#[test]
fn regression_get_with_a_bad_query_is_400_not_405() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    for path in [
        "/codette/context?",
        "/codette/context",
        "/codette/context?filename=a.ts",
        "/codette/context?message=a&message=b",
    ] {
        let p = Probe {
            method: "GET",
            path: path.into(),
            authorization: None,
            body: Vec::new(),
            known: None,
        };
        let response = rt.block_on(send(&routes, &p)).expect("valid URI");
        let v: Value = serde_json::from_slice(response.body()).expect("JSON");
        assert_eq!(response.status(), 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{path}: {v}");
    }
}
