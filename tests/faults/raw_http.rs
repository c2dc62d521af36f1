//! Raw HTTP for the drain tests: keep-alive connections the test controls.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::CONTEXT;

// ---------------------------------------------------------------------------------------
// Raw HTTP for the drain tests (keep-alive connections the test controls)
// ---------------------------------------------------------------------------------------

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Reads one response with a Content-Length; its status.
fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("read response head");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).expect("read response body");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

/// A connection that made one keep-alive request, read its answer and now sits idle.
pub(crate) fn idle_keep_alive(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(addr(port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut stream), 200);
    stream
}

/// Sends one context request on its own connection (Connection: close) from a thread;
/// the thread gives the status line and body, or the error, and when it ended.
pub(crate) fn slow_request(
    port: u16,
    message: &str,
) -> std::thread::JoinHandle<(Result<String, String>, Instant)> {
    let body = json!({ "message": message }).to_string();
    std::thread::spawn(move || {
        let exchange = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect(addr(port))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            let request = format!(
                "POST {CONTEXT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes())?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        let result = exchange().map_err(|e| e.to_string());
        (result, Instant::now())
    })
}

/// Waits until connecting to `port` is refused (the listener is closed).
pub(crate) fn wait_refused(port: u16, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(Instant::now()),
            _ => {}
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
