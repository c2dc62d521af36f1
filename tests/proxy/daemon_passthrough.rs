//! What the daemon passes through without the cache: tables, auth, unlisted functions
//! and realtime's 501, large bodies, and what a miss sends upstream.

use serde_json::Value;

use crate::common::postgrest::{anon_key, user_token};
use crate::daemon::{cache_status, setup, setup_with_env};

/// Tables, auth and unlisted functions pass through unchanged; realtime gets a 501 that
/// says where to go.
#[test]
fn other_paths_pass_through() {
    let s = setup(false);
    for path in ["/rest/v1/codette?select=*", "/auth/v1/health"] {
        let via = s
            .http
            .get(s.daemon.url(path))
            .header("apikey", anon_key())
            .send()
            .unwrap();
        let direct = s
            .http
            .get(format!("{}{path}", s.rest.url()))
            .header("apikey", anon_key())
            .send()
            .unwrap();
        assert_eq!(via.status(), direct.status(), "{path}");
        for h in ["content-type", "content-range"] {
            assert_eq!(via.headers().get(h), direct.headers().get(h), "{path} {h}");
        }
        assert!(via.headers().get("cache-status").is_none());
        assert_eq!(via.bytes().unwrap(), direct.bytes().unwrap(), "{path}");
    }
    let unlisted = s
        .http
        .post(s.daemon.url("/rest/v1/rpc/no_such_function"))
        .header("apikey", anon_key())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(unlisted.status(), 404);
    let realtime = s
        .http
        .get(s.daemon.url("/realtime/v1/websocket"))
        .send()
        .unwrap();
    assert_eq!(realtime.status(), 501);
    let body: Value = realtime.json().unwrap();
    assert_eq!(body["error"]["code"], "realtime_not_proxied");
    let metrics = s
        .http
        .get(s.daemon.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"codette_cache_proxy_requests_total{function="other",result="passthrough"} 3"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("proxy_requests"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Pass-through bodies are not held to the daemon's own request limit
/// (`max_body_bytes`, 64 KiB): an 8 MiB upload and download cross it byte for byte.
#[test]
fn large_bodies_pass_through() {
    use sha2::Digest;
    let s = setup(false);
    let size = 8 * 1024 * 1024;
    let upload = crate::common::postgrest::pattern_bytes(size);
    let expected: String = sha2::Sha256::digest(upload.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = s
        .http
        .post(s.daemon.url("/storage/v1/object/songs/mix.wav"))
        .header("apikey", anon_key())
        .header("content-type", "application/octet-stream")
        .body(upload.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["size"], size);
    assert_eq!(answer["sha256"], expected);
    let download = s
        .http
        .get(s.daemon.url(&format!(
            "/storage/v1/object/public/songs/mix.wav?bytes={size}"
        )))
        .header("apikey", anon_key())
        .send()
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(
        download.bytes().unwrap() == upload.as_bytes(),
        "the same bytes back"
    );
}

/// A miss asks the upstream with the client's credentials but not its connection's
/// headers, and without `Accept-Encoding` (a stored body must suit every client).
#[test]
fn a_miss_sends_the_call_not_the_connection() {
    let s = setup(false);
    let token = user_token("user-a");
    let r = s
        .http
        .post(s.daemon.url("/rest/v1/rpc/my_notes"))
        .header("apikey", anon_key())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(cache_status(&r), "codette-cache; fwd=uri-miss; stored");
    let sent = s.rest.last_request().unwrap();
    assert_eq!(sent.path, "/rest/v1/rpc/my_notes");
    assert_eq!(sent.header("accept-encoding"), None);
    assert_eq!(sent.header("x-hop"), None);
    let host = s.rest.url().trim_start_matches("http://").to_owned();
    assert_eq!(sent.header("host"), Some(host.as_str()));
    assert_eq!(sent.bearer(), Some(token.as_str()));
}

/// A client that stops reading a large passed-through download is closed after
/// `send_timeout_ms` (here 500 ms): it holds neither a connection slot nor the upstream's
/// response for ever. What it then reads is what the buffers held, not the whole body.
#[test]
fn a_client_that_stops_reading_is_closed() {
    use std::io::{Read, Write};
    let s = setup_with_env(false, &[("CODETTE_CACHE_SERVER__SEND_TIMEOUT_MS", "500")]);
    let size = 32 * 1024 * 1024;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.daemon.port())).unwrap();
    let request = format!(
        "GET /storage/v1/object/public/songs/mix.wav?bytes={size} HTTP/1.1\r\n\
         host: 127.0.0.1\r\napikey: {}\r\nconnection: close\r\n\r\n",
        anon_key()
    );
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let ended = stream.read_to_end(&mut received);
    assert!(
        received.len() < size,
        "the whole body was kept for a client that read nothing for 3 s ({ended:?})"
    );
    assert!(
        s.daemon.logs().contains("within send_timeout_ms"),
        "{}",
        s.daemon.logs()
    );
}
