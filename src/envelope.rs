//! A proxied RPC answer as the tiers hold it: the upstream's status, the response
//! headers a client needs replayed, and the body, in one value. Text on top so
//! `redis-cli GET` stays readable:
//!
//! ```text
//! codette-rpc/1 200
//! content-type: application/json; charset=utf-8
//! content-range: 0-0/*
//!
//! {"snippets": …}
//! ```
//!
//! Only the headers in [`KEPT`] travel; the rest (dates, request ids, hop-by-hop) are
//! the upstream's business. Whether an envelope may be stored is [`Envelope::storable_for`].

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use warp::http::{HeaderMap, HeaderName, HeaderValue};

const MAGIC: &str = "codette-rpc/1 ";

/// Declares the kept headers once: their names as text ([`KEPT`]) and as prebuilt
/// [`HeaderName`]s ([`NAMES`], so a replay neither parses nor allocates a name).
macro_rules! kept_headers {
    ($($name:literal),* $(,)?) => {
        /// Response headers an envelope keeps (lowercase): what a client reads, plus
        /// what decides whether the answer may be stored.
        pub const KEPT: &[&str] = &[$($name),*];
        /// [`KEPT`] as header names, index for index.
        static NAMES: [HeaderName; KEPT.len()] = [$(HeaderName::from_static($name)),*];
    };
}

kept_headers![
    "content-type",
    "content-range",
    "content-profile",
    "preference-applied",
    "content-encoding",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "location",
    "set-cookie",
    "www-authenticate",
    "retry-after",
];

/// `name` as it is in [`KEPT`], if it is.
pub fn kept(name: &str) -> Option<&'static str> {
    KEPT.iter().find(|k| **k == name).copied()
}

/// A decoded envelope; `body` shares the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub status: u16,
    /// Lowercase names, in the upstream's order.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored RPC answer: {0}")]
pub struct Malformed(&'static str);

impl Envelope {
    /// The stored form.
    pub fn encode(&self) -> Bytes {
        let head: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 3)
            .sum();
        let mut out = BytesMut::with_capacity(MAGIC.len() + 5 + head + 1 + self.body.len());
        out.put_slice(MAGIC.as_bytes());
        out.put_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.put_u8(b'\n');
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Reads a stored value.
    ///
    /// # Errors
    /// [`Malformed`] for anything [`Envelope::encode`] would not have written.
    pub fn decode(stored: &Bytes) -> Result<Envelope, Malformed> {
        let (mut envelope, start) = owned(stored)?;
        envelope.body = stored.slice(start..);
        Ok(envelope)
    }

    /// [`Envelope::decode`] without the body, for judging bytes in place.
    ///
    /// # Errors
    /// As [`Envelope::decode`].
    pub fn head(stored: &[u8]) -> Result<Envelope, Malformed> {
        owned(stored).map(|(envelope, _)| envelope)
    }

    /// The stored body's bytes, if `stored` is an envelope.
    pub fn body_of(stored: &[u8]) -> Option<&[u8]> {
        owned(stored).ok().map(|(_, start)| &stored[start..])
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How long this answer may be stored when its function's TTL is `ttl`: `None` for
    /// what HTTP says a shared cache must not keep (not 2xx, `Set-Cookie`, `no-store`,
    /// `private`, `no-cache`, an encoded body, `max-age=0`), else the shorter of `ttl`
    /// and the upstream's `s-maxage`/`max-age`.
    pub fn storable_for(&self, ttl: Duration) -> Option<Duration> {
        if !(200..300).contains(&self.status)
            || self.header("set-cookie").is_some()
            || self
                .header("content-encoding")
                .is_some_and(|e| e != "identity")
        {
            return None;
        }
        let mut limit = ttl;
        let mut shared_age = None;
        for directive in self
            .headers
            .iter()
            .filter(|(n, _)| *n == "cache-control")
            .flat_map(|(_, v)| v.split(','))
        {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, value) = directive
                .split_once('=')
                .map_or((directive.as_str(), None), |(n, v)| (n, Some(v)));
            match (name, value.map(|v| v.trim_matches('"').parse::<u64>())) {
                ("no-store" | "private" | "no-cache", _) => return None,
                ("s-maxage", Some(Ok(secs))) => shared_age = Some(secs),
                ("max-age", Some(Ok(secs))) => limit = limit.min(Duration::from_secs(secs)),
                ("s-maxage" | "max-age", Some(Err(_))) => return None,
                _ => {}
            }
        }
        if let Some(secs) = shared_age {
            limit = ttl.min(Duration::from_secs(secs));
        }
        (!limit.is_zero()).then_some(limit)
    }
}

/// A stored answer replayed without copying: its headers appended to `out` (prebuilt
/// names, values sharing `stored`), its status and body returned. What [`Envelope::decode`]
/// refuses is refused here too, though `out` may then hold part of the headers.
///
/// # Errors
/// [`Malformed`], as [`Envelope::decode`].
pub fn replay(stored: &Bytes, out: &mut HeaderMap) -> Result<(u16, Bytes), Malformed> {
    let (status, start) = parse(stored, |name, value| {
        // A value the head's check lets through but HTTP refuses (DEL) is left out.
        if let Ok(value) = HeaderValue::from_maybe_shared(stored.slice_ref(value.as_bytes())) {
            out.append(&NAMES[name], value);
        }
    })?;
    Ok((status, stored.slice(start..)))
}

/// The envelope without its body, and where the body starts.
fn owned(stored: &[u8]) -> Result<(Envelope, usize), Malformed> {
    let mut headers = Vec::new();
    let (status, start) = parse(stored, |name, value| {
        headers.push((KEPT[name], value.to_owned()));
    })?;
    let envelope = Envelope {
        status,
        headers,
        body: Bytes::new(),
    };
    Ok((envelope, start))
}

/// Checks a stored head and hands each header to `each` (its index in [`KEPT`], its
/// value); returns the status and where the body starts.
fn parse<'s>(
    stored: &'s [u8],
    mut each: impl FnMut(usize, &'s str),
) -> Result<(u16, usize), Malformed> {
    let rest = stored
        .strip_prefix(MAGIC.as_bytes())
        .ok_or(Malformed("no codette-rpc/1 line"))?;
    // A short head: the next newline, as long as it is not followed by another (a
    // searcher for "\n\n" costs more to build than this scan of a few lines).
    let end = memchr::memchr_iter(b'\n', rest)
        .find(|&i| rest.get(i + 1) == Some(&b'\n'))
        .ok_or(Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&rest[..end]).map_err(|_| Malformed("head not UTF-8"))?;
    // Split with memchr: `str::split` and `split_once` build a searcher per call, which
    // was most of a replay on every proxied hit. Slicing at ASCII bytes keeps UTF-8.
    let mut start = 0;
    let mut lines = memchr::memchr_iter(b'\n', head.as_bytes())
        .chain(std::iter::once(head.len()))
        .map(|end| {
            let line = &head[start..end];
            start = end + 1;
            line
        });
    let status: u16 = lines
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(Malformed("bad status"))?;
    for line in lines {
        // Names hold no `:`, so the first one must be the `: ` encode wrote.
        let (name, value) = memchr::memchr(b':', line.as_bytes())
            .and_then(|i| Some((&line[..i], line[i + 1..].strip_prefix(' ')?)))
            .ok_or(Malformed("bad header line"))?;
        let name = KEPT
            .iter()
            .position(|k| *k == name)
            .ok_or(Malformed("unexpected header"))?;
        if value.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(Malformed("unexpected header"));
        }
        each(name, value);
    }
    Ok((status, stored.len() - (rest.len() - end - 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(status: u16, headers: &[(&str, &str)], body: &str) -> Envelope {
        Envelope {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (kept(n).unwrap(), (*v).to_owned()))
                .collect(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// What is encoded decodes the same, a body with blank lines included.
    #[test]
    fn round_trip() {
        let e = envelope(
            206,
            &[("content-type", "text/csv"), ("content-range", "0-1/2")],
            "a,b\n\n1,2\n",
        );
        let stored = e.encode();
        assert!(stored.starts_with(b"codette-rpc/1 206\ncontent-type: text/csv\n"));
        assert_eq!(Envelope::decode(&stored).unwrap(), e);
        let empty = envelope(204, &[], "");
        assert_eq!(Envelope::decode(&empty.encode()).unwrap(), empty);
    }

    /// Another writer's bytes are not served as an answer.
    #[test]
    fn foreign_values_are_refused() {
        for bad in [
            &b"{\"snippets\": []}"[..],
            b"codette-rpc/1 200\ncontent-type: x",
            b"codette-rpc/1 999\n\nx",
            b"codette-rpc/1 200\nx-evil: 1\n\nbody",
            b"codette-rpc/1 200\nset-cookie: a\rb\n\nbody",
            b"codette-rpc/1 200\ncontent-type:x\n\nbody",
            b"codette-rpc/1 200\ncontent-type x\n\nbody",
            b"codette-rpc/1 200\ncontent-type:x: y\n\nbody",
        ] {
            let bad = Bytes::from_static(bad);
            assert!(Envelope::decode(&bad).is_err(), "{bad:?}");
            assert!(replay(&bad, &mut HeaderMap::new()).is_err(), "{bad:?}");
        }
    }

    /// HTTP's rules for a shared cache decide what is kept, and for how long.
    #[test]
    fn storability_follows_http() {
        let ttl = Duration::from_secs(300);
        let json = ("content-type", "application/json");
        assert_eq!(envelope(200, &[json], "1").storable_for(ttl), Some(ttl));
        assert_eq!(envelope(400, &[json], "{}").storable_for(ttl), None);
        assert_eq!(
            envelope(200, &[json, ("set-cookie", "a=b")], "1").storable_for(ttl),
            None
        );
        for refused in [
            "no-store",
            "private, max-age=60",
            "no-cache",
            "max-age=0",
            "max-age=x",
        ] {
            let e = envelope(200, &[("cache-control", refused)], "1");
            assert_eq!(e.storable_for(ttl), None, "{refused}");
        }
        let capped = envelope(200, &[("cache-control", "public, max-age=60")], "1");
        assert_eq!(capped.storable_for(ttl), Some(Duration::from_secs(60)));
        let shared = envelope(200, &[("cache-control", "max-age=10, s-maxage=120")], "1");
        assert_eq!(shared.storable_for(ttl), Some(Duration::from_secs(120)));
        let gzip = envelope(200, &[("content-encoding", "gzip")], "x");
        assert_eq!(gzip.storable_for(ttl), None);
    }

    proptest::proptest! {
        /// Any envelope encode can write decodes to itself: kept headers with any
        /// value a header may hold (`: ` included), any body (blank lines included).
        #[test]
        fn any_envelope_round_trips(
            status in 100u16..600,
            headers in proptest::collection::vec((0..KEPT.len(), "[ -~\t]{0,40}"), 0..5),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let e = Envelope {
                status,
                headers: headers.into_iter().map(|(i, v)| (KEPT[i], v)).collect(),
                body: Bytes::from(body),
            };
            let stored = e.encode();
            proptest::prop_assert_eq!(Envelope::decode(&stored), Ok(e.clone()));
            // A replay gives the same answer: each header's values in their order (a
            // header map keeps no order between names).
            let mut replayed = HeaderMap::new();
            let (status, body) = replay(&stored, &mut replayed).unwrap();
            for name in KEPT {
                let got: Vec<&str> = replayed
                    .get_all(*name)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                let sent: Vec<&str> = e.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
                proptest::prop_assert_eq!(got, sent);
            }
            proptest::prop_assert_eq!((status, body), (e.status, e.body));
        }
    }
}
