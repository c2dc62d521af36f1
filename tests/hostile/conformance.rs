//! HTTP conformance: HEAD wherever GET is served, `Allow` on every 405, one rule for a
//! trailing slash, and the rejections hyper writes itself (documented in the README).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::Daemon;
use crate::config;
use crate::raw_http::{assert_context, assert_error, call, get, request};

/// Every GET route.
pub(crate) const GET_ROUTES: &[&str] = &[
    "/codette/context?message=reverb",
    "/codette/cache/stats",
    "/codette/cache/metrics",
    "/codette/analytics/dashboard",
    "/codette/cache/status",
    "/healthz",
    "/readyz",
    "/metrics",
    "/dashboard",
    "/dashboard/history",
];

/// Sends `bytes` on a fresh connection and reads until the server closes it (every
/// request here says `Connection: close` or is one hyper refuses, closing). The write
/// side stays open: hyper may drop a connection whose client half-closed it.
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Status line and header names/values of a raw response, and what follows the head.
fn split(raw: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// HEAD answers every GET route with GET's status and headers and no body.
#[test]
fn head_is_served_wherever_get_is() {
    let daemon = Daemon::start(&config(""));
    for path in GET_ROUTES {
        let get = exchange(
            daemon.port(),
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let head = exchange(
            daemon.port(),
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let (get_status, get_headers, get_body) = split(&get);
        let (head_status, head_headers, head_body) = split(&head);
        assert_eq!(head_status, get_status, "{path}");
        assert!(!get_body.is_empty(), "{path}");
        assert!(
            head_body.is_empty(),
            "HEAD {path} sent a body: {head_body:?}"
        );
        for name in ["content-type", "allow", "retry-after"] {
            assert_eq!(
                header(&head_headers, name),
                header(&get_headers, name),
                "{path} {name}"
            );
        }
        assert!(header(&head_headers, "content-length").is_some(), "{path}");
    }
}

/// A known route asked with a method it does not take is 405, JSON, with `Allow`.
#[test]
fn method_not_allowed_says_what_is() {
    let daemon = Daemon::start(&config(""));
    let cases = [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/codette/cache/stats", "GET, HEAD"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("POST", "/dashboard", "GET, HEAD"),
        ("DELETE", "/dashboard/events", "GET, HEAD"),
        ("POST", "/dashboard/assets/v1/app.js", "GET, HEAD"),
        ("GET", "/codette/cache/clear", "POST"),
        ("HEAD", "/codette/cache/invalidate", "POST"),
        ("GET", "/codette/cache/warm", "POST"),
        ("DELETE", "/codette/context", "GET, HEAD, POST"),
        ("PATCH", "/codette/context/", "GET, HEAD, POST"),
    ];
    for (method, path, allow) in cases {
        let raw = exchange(
            daemon.port(),
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let (status, headers, body) = split(&raw);
        assert!(status.contains(" 405 "), "{method} {path}: {status}");
        assert_eq!(header(&headers, "allow"), Some(allow), "{method} {path}");
        if method != "HEAD" {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            assert_eq!(v["error"]["code"], "method_not_allowed", "{method} {path}");
        }
    }
}

/// One trailing slash is ignored on every route, GET and POST alike.
#[test]
fn a_trailing_slash_is_ignored_everywhere() {
    let daemon = Daemon::start(&config(""));
    let port = daemon.port();
    let plain = assert_context(&get(port, "/codette/context?message=reverb"));
    let slashed = assert_context(&get(port, "/codette/context/?message=reverb"));
    assert_eq!(slashed["cache"]["key"], plain["cache"]["key"]);
    let posted = assert_context(&call(
        port,
        &request(
            "POST",
            "/codette/context/",
            &[("Content-Type", "application/json")],
            Some(br#"{"message":"reverb"}"#),
        ),
    ));
    assert_eq!(posted["cache"]["key"], plain["cache"]["key"]);
    for path in GET_ROUTES.iter().filter(|p| !p.contains('?')) {
        let response = get(port, &format!("{path}/"));
        assert_eq!(response.status, 200, "{path}/");
    }
    assert_error(&get(port, "/nope/"), 404, "not_found");
}

/// A URL long enough to matter but within what hyper parses reaches the service and
/// gets a JSON error; the malformed requests hyper refuses itself get the status the
/// README lists, with the connection closed.
#[test]
fn rejections_are_json_or_as_documented() {
    let daemon = Daemon::start(&config(""));
    let port = daemon.port();
    let long = format!("/codette/context?message={}", "a".repeat(40 * 1024));
    assert_error(&get(port, &long), 413, "payload_too_large");

    // Raw UTF-8 in the path reaches the routes (and is not one).
    let raw_path = exchange(
        port,
        b"GET /h\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&raw_path).contains("\"not_found\""));

    let hyper_answers: [(&[u8], &str); 5] = [
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            " 400 ",
        ),
        (b"G\xc3\xa9T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", " 400 "),
        (b"GET /h\x01 HTTP/1.1\r\nHost: x\r\n\r\n", " 400 "),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            " 400 ",
        ),
        (b"GET /healthz\r\n\r\n", " 400 "),
    ];
    for (bytes, status) in hyper_answers {
        let raw = exchange(port, bytes);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("HTTP/1.1") && text.contains(status),
            "{:?}: {text}",
            String::from_utf8_lossy(bytes)
        );
    }
    let huge = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let text = String::from_utf8_lossy(&exchange(port, huge.as_bytes())).into_owned();
    assert!(text.contains(" 414 "), "{text}");
}
