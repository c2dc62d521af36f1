//! `Secret`: a string that never prints. Used for API keys, passwords and tokens so that
//! `check-config`, logs and error messages cannot leak them by accident.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// What every secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A secret string; `Debug`, `Display` and `Serialize` all show [`REDACTED`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value: call only where the secret is used (a header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` is this secret, in a time that depends on the lengths alone. Eight
    /// bytes at a time with one `subtle` comparison at the end: `subtle`'s byte-by-byte
    /// slice comparison costs ~15 instructions a byte, on every proxied call.
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        let (ours, theirs) = (self.0.as_bytes(), given.as_bytes());
        if ours.len() != theirs.len() {
            return false;
        }
        let word = |chunk: &[u8]| {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            u64::from_ne_bytes(w)
        };
        let diff = ours
            .chunks(8)
            .zip(theirs.chunks(8))
            // black_box: the differences are folded whole, never cut short on the first.
            .fold(0u64, |acc, (a, b)| {
                std::hint::black_box(acc | (word(a) ^ word(b)))
            });
        bool::from(diff.ct_eq(&0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL with its password (if any) replaced by [`REDACTED`], for printing.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host... -> scheme://user:<redacted>@host...
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{}{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            REDACTED,
            &rest[at..]
        ),
        None if !userinfo.is_empty() => {
            // redis://password@host is also a password form.
            format!("{}{}{}", &url[..scheme_end + 3], REDACTED, &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Reads a secret from a file (trimmed); relative paths resolve against systemd's
/// `$CREDENTIALS_DIRECTORY` when it is set. `None` when unreadable or empty.
pub fn read_secret_file(path: &Path) -> Option<Secret> {
    let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => PathBuf::from(dir).join(path),
        _ => path.to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal only when every byte is, whatever the length (the tail of a word too).
    #[test]
    fn matches_compares_every_byte() {
        for len in 0..40 {
            let value: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let secret = Secret::new(value.clone());
            assert!(secret.matches(&value), "{len}");
            assert!(!secret.matches(&format!("{value}x")), "{len}");
            for i in 0..len {
                let mut other = value.clone().into_bytes();
                other[i] = b'#';
                assert!(
                    !secret.matches(std::str::from_utf8(&other).unwrap()),
                    "{len} {i}"
                );
            }
        }
    }

    /// No formatting path shows the value.
    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }

    /// Passwords in URLs are masked, the rest is kept for debugging.
    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://app:pw@127.0.0.1:6379/0"),
            "redis://app:<redacted>@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db"),
            "postgres://u:<redacted>@h/db"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
