//! What may be stored, and so what a shared tier may serve: one rule for both sides.
//! Another writer (the original server, `redis-cli`, a bug) can put anything under our
//! keys, and a hit's bytes go into the response verbatim, so a value read from a remote
//! tier is served only if the daemon itself would have stored it: UTF-8 JSON, not empty
//! (unless negative entries are on, `ttl.rs`),
//! and for the original function an object with the answer's shape (`snippets` array,
//! `file` object or null, `chat_history` array; other members are kept as they are).
//! The memory tier holds only what passed this check, so its hits are not re-checked.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::envelope::Envelope;

/// The answers a chain's function gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `get_codette_context`: `{"snippets": [...], "file": {...}|null, "chat_history": [...]}`.
    Context,
    /// Any other function: any JSON value.
    Any,
    /// A proxied RPC answer, an [`Envelope`] whose function keeps answers this long.
    Rpc(Duration),
}

/// What to do with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed and worth keeping.
    Store,
    /// A proxied answer HTTP lets a shared cache keep, for at most this long.
    StoreFor(Duration),
    /// The original function's answer with all three parts empty. The original stored
    /// it like any other; with `negative_ttl_secs` it is a negative entry.
    Blank,
    /// `null` or `{}`: never stored (the original's rule) unless `negative_ttl_secs` is
    /// set, then stored as a negative entry.
    Empty,
    /// JSON, but (for the original function) not of the answer's shape: an origin
    /// answer is served but not stored; a tier's value is a miss.
    Keep,
    /// Not UTF-8 JSON: an origin answer is an error; a tier's value is a miss.
    Invalid,
}

/// Judges a body by the shape its function's answers have. Parses without building a
/// tree: members are checked for their type and skipped.
pub fn judge(body: &[u8], shape: Shape) -> Verdict {
    // serde_json does not check the UTF-8 of strings it skips: check it first.
    let text = match (shape, std::str::from_utf8(body)) {
        // Any bytes the upstream sent; what HTTP allows decides.
        (Shape::Rpc(ttl), _) => {
            return match Envelope::head(body) {
                Ok(head) => head
                    .storable_for(ttl)
                    .map_or(Verdict::Keep, Verdict::StoreFor),
                Err(_) => Verdict::Invalid,
            };
        }
        (_, Ok(text)) => text,
        (_, Err(_)) => return Verdict::Invalid,
    };
    if shape == Shape::Context {
        match serde_json::from_str::<Option<ContextShape>>(text) {
            Ok(Some(c)) if c.is_blank() => Verdict::Blank,
            Ok(Some(_)) => Verdict::Store,
            Ok(None) => Verdict::Empty,
            // `{}` lacks the members: told apart from other misshapen objects here only.
            Err(e) if e.is_data() => match serde_json::from_str::<NotEmpty>(text) {
                Ok(NotEmpty(false)) => Verdict::Empty,
                _ => Verdict::Keep,
            },
            Err(_) => Verdict::Invalid,
        }
    } else {
        match serde_json::from_str::<Option<NotEmpty>>(text) {
            Ok(Some(NotEmpty(true))) => Verdict::Store,
            Ok(_) => Verdict::Empty,
            Err(_) => Verdict::Invalid,
        }
    }
}

/// The original function's answer, checked member by member and kept nowhere.
#[derive(Deserialize)]
struct ContextShape {
    snippets: Vec<IgnoredAny>,
    file: Option<AnyObject>,
    chat_history: Vec<IgnoredAny>,
}

impl ContextShape {
    fn is_blank(&self) -> bool {
        self.snippets.is_empty() && self.file.is_none() && self.chat_history.is_empty()
    }
}

/// Whether a served body is a negative entry: an empty answer. Bodies longer than any
/// empty answer (whitespace aside) are not parsed, so hits pay nothing for the check.
pub fn is_empty_answer(body: &[u8], shape: Shape) -> bool {
    body.len() <= 128 && matches!(judge(body, shape), Verdict::Empty | Verdict::Blank)
}

/// A JSON object, skipped.
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = AnyObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// Any JSON value; `false` for `{}` (the original never stored it).
struct NotEmpty(bool);

impl<'de> Deserialize<'de> for NotEmpty {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnyVisitor;
        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = NotEmpty;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NotEmpty, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NotEmpty(any))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NotEmpty, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(NotEmpty(true))
            }
            fn visit_bool<E>(self, _: bool) -> Result<NotEmpty, E> {
                Ok(NotEmpty(true))
            }
            fn visit_i64<E>(self, _: i64) -> Result<NotEmpty, E> {
                Ok(NotEmpty(true))
            }
            fn visit_u64<E>(self, _: u64) -> Result<NotEmpty, E> {
                Ok(NotEmpty(true))
            }
            fn visit_f64<E>(self, _: f64) -> Result<NotEmpty, E> {
                Ok(NotEmpty(true))
            }
            fn visit_str<E>(self, _: &str) -> Result<NotEmpty, E> {
                Ok(NotEmpty(true))
            }
        }
        d.deserialize_any(AnyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers the daemon stores, keeps without storing, and refuses.
    #[test]
    fn verdicts() {
        use Verdict::*;
        let context = |b: &[u8]| judge(b, Shape::Context);
        assert_eq!(
            context(br#"{"snippets":[],"file":null,"chat_history":[]}"#),
            Blank
        );
        assert_eq!(context(b"null"), Empty);
        assert_eq!(context(b" { } "), Empty);
        assert_eq!(
            context(
                br#" {"snippets": [{"a":1}], "file": {"id":"x"}, "chat_history": [], "x": 2} "#
            ),
            Store
        );
        for keep in [
            &b"42"[..],
            b"[1,2,3]",
            b"\"text\"",
            br#"{"snippets":{},"file":null,"chat_history":[]}"#,
            br#"{"snippets":[],"file":3,"chat_history":[]}"#,
            br#"{"snippets":[],"file":null}"#,
        ] {
            assert_eq!(context(keep), Keep, "{}", String::from_utf8_lossy(keep));
        }
        for invalid in [
            &b"<html>"[..],
            b"",
            b"{\"snippets\":[],\"file\":null,\"chat_history\":[],\"x\":\"\xff\xfe\"}",
            br#"{"snippets":[],"file":null,"chat_history":[]} trailing"#,
        ] {
            assert_eq!(context(invalid), Invalid, "{invalid:?}");
        }
        let any = |b: &[u8]| judge(b, Shape::Any);
        assert_eq!(any(b"[1,2,3]"), Store);
        assert_eq!(any(b"42"), Store);
        assert_eq!(any(br#"{"a":null}"#), Store);
        assert_eq!(any(b"null"), Empty);
        assert_eq!(any(b" { } "), Empty);
        assert!(is_empty_answer(
            br#"{"snippets": [], "file": null, "chat_history": []}"#,
            Shape::Context
        ));
        assert!(!is_empty_answer(
            br#"{"snippets":[1],"file":null,"chat_history":[]}"#,
            Shape::Context
        ));
        assert_eq!(any(b"\"\xff\""), Invalid);
        assert_eq!(any(b"<html>"), Invalid);
    }
}
