//! A minimal HTTP/1.1 client connection for the load generator: requests are bytes
//! prepared once, answers are framed by Content-Length only (what the daemon and the
//! ceiling send), and the buffer is reused. It does what wrk does, so the generator costs
//! the shared CPU as little as possible; it is not a general HTTP client.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// Why a request failed; the text is the error kind reported.
pub type WireError = &'static str;

impl Conn {
    pub async fn connect(authority: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends a prepared request and returns the status and the body (valid until the
    /// next call).
    pub async fn request(&mut self, request: &[u8]) -> Result<(u16, &[u8]), WireError> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| "connection: write")?;
        self.buf.clear();
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = &self.buf[..head_len];
        let status = parse_status(head).ok_or("response: bad status line")?;
        let length = content_length(head).ok_or("response: no content-length")?;
        while self.buf.len() < head_len + length {
            self.fill().await?;
        }
        let body = &self.buf[head_len..head_len + length];
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection: closed"),
            Ok(_) => Ok(()),
            Err(_) => Err("connection: read"),
        }
    }
}

/// `GET path HTTP/1.1` with Host, as bytes.
pub fn get_request(authority: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.get(..head.iter().position(|&b| b == b'\r')?)?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        name.eq_ignore_ascii_case(b"content-length")
            .then(|| std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status and Content-Length are read from a response head, any header case.
    #[test]
    fn head_parsing() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(parse_status(head), Some(200));
        assert_eq!(content_length(head), Some(42));
        assert_eq!(content_length(b"HTTP/1.1 204 No Content\r\n\r\n"), None);
        assert_eq!(find(head, b"\r\n\r\n"), Some(head.len() - 4));
    }
}
