//! Raw HTTP/1.1 over std::net: the client connection, response parsing, and the
//! assertions every daemon case shares.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::Value;

use crate::common::Daemon;

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 over std::net
// ---------------------------------------------------------------------------------------

/// Longest any single exchange may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(5);

/// One parsed response.
#[derive(Debug)]
pub(crate) struct Response {
    head: String,
    pub(crate) status: u16,
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

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}\n{}", self.head, self.text()))
    }

    /// Head and body as text (what a client could see).
    pub(crate) fn raw(&self) -> String {
        format!("{}\r\n\r\n{}", self.head, self.text())
    }
}

enum Fill {
    Data,
    Closed,
    TimedOut,
}

/// A client connection that keeps unparsed bytes between responses.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
    closed: bool,
    pub(crate) opened: Instant,
}

impl Raw {
    pub(crate) fn connect(port: u16) -> Raw {
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

    pub(crate) fn send(&mut self, bytes: &[u8]) {
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
    pub(crate) fn response(&mut self, timeout: Duration) -> Result<Response, String> {
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
    pub(crate) fn expect_response(&mut self) -> Response {
        self.response(HANG).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the server to close; the time from the call when it did within `timeout`.
    /// Bytes that arrive meanwhile stay in `buf` for the caller to inspect.
    pub(crate) fn closed_within(&mut self, timeout: Duration) -> Option<Duration> {
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

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
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
pub(crate) fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
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

pub(crate) fn get_request(path: &str) -> Vec<u8> {
    request("GET", path, &[], None)
}

pub(crate) fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, &[], Some(body))
}

/// One request on a fresh connection.
pub(crate) fn call(port: u16, bytes: &[u8]) -> Response {
    let mut conn = Raw::connect(port);
    conn.send(bytes);
    conn.expect_response()
}

pub(crate) fn get(port: u16, path: &str) -> Response {
    call(port, &get_request(path))
}

pub(crate) fn post(port: u16, path: &str, body: &[u8]) -> Response {
    call(port, &post_request(path, body))
}

/// Asserts a JSON error `{"error": {"code", "message"}}` with this status and code;
/// returns the message.
#[track_caller]
pub(crate) fn assert_error(response: &Response, status: u16, code: &str) -> String {
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
pub(crate) fn assert_context(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.raw());
    let v = response.json();
    assert!(v.get("context").is_some(), "{v}");
    let key = v["cache"]["key"].as_str().unwrap_or_default();
    assert!(is_context_key(key), "key {key:?} in {v}");
    v
}

/// The process is alive, has not panicked, and serves a fresh client normally.
#[track_caller]
pub(crate) fn assert_still_serving(daemon: &mut Daemon) {
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
pub(crate) fn key_of(message: &str, filename: Option<&str>) -> String {
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
pub(crate) fn is_context_key(key: &str) -> bool {
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
pub(crate) fn percent_encode(s: &str) -> String {
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
