//! A memo, per worker thread, of the `GET /codette/context` query strings parsed last:
//! query → request and key. Both are pure functions of the query, the key namespace and
//! the `normalize` flag, and percent-decoding plus MD5 were a sixth of a memory hit's
//! instructions; a query seen before (what hits are made of) now costs a hash and a
//! compare, and shares its request and key instead of copying them. Kept in a
//! [`Memo`] (`memo.rs`), checked on the query, the namespace and the flag.

use std::cell::RefCell;
use std::sync::Arc;

use crate::key::Key;
use crate::memo::{self, Memo};
use crate::origins::ContextRequest;

/// A request as the chain takes it, with its key.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub request: Arc<ContextRequest>,
    pub key: Key,
}

/// What a query is kept with: its parse, and what the key was derived under.
#[derive(Clone)]
struct Kept {
    parsed: Parsed,
    /// The key's first this many bytes are its namespace.
    namespace_len: usize,
    normalize: bool,
}

thread_local! {
    static MEMO: RefCell<Memo<Kept>> = const { RefCell::new(Memo::new()) };
}

/// `query`'s request and key under `namespace` and `normalize`: this thread's memo of
/// them, or what `parse` makes of it (kept when it succeeds).
///
/// # Errors
/// `parse`'s, which is asked again each time.
pub fn parsed<E>(
    query: &str,
    namespace: &str,
    normalize: bool,
    parse: impl FnOnce() -> Result<Parsed, E>,
) -> Result<Parsed, E> {
    let hash = memo::hash(query.as_bytes());
    let fits = |k: &Kept| {
        k.normalize == normalize
            && k.namespace_len == namespace.len()
            && k.parsed.key.as_str().starts_with(namespace)
    };
    if let Some(kept) = MEMO.with_borrow(|m| m.get(hash, query.as_bytes(), fits)) {
        return Ok(kept.parsed);
    }
    let parsed = parse()?;
    let kept = Kept {
        parsed: parsed.clone(),
        namespace_len: namespace.len(),
        normalize,
    };
    MEMO.with_borrow_mut(|m| m.put(hash, query.as_bytes(), kept));
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed_as(message: &str, namespace: &str, normalize: bool) -> Parsed {
        Parsed {
            request: Arc::new(ContextRequest {
                message: message.to_owned(),
                filename: None,
            }),
            key: Key::derive_in(namespace, message, None, normalize),
        }
    }

    /// A query seen before is not parsed again and shares the first parse's request;
    /// another namespace, another flag or another query is parsed anew.
    #[test]
    fn remembers_what_it_may_and_nothing_else() {
        let parses = std::cell::Cell::new(0);
        let get = |query: &str, namespace: &str, normalize: bool| {
            parsed::<()>(query, namespace, normalize, || {
                parses.set(parses.get() + 1);
                Ok(parsed_as(query, namespace, normalize))
            })
            .unwrap()
        };
        let first = get("message=a", "context:", false);
        let again = get("message=a", "context:", false);
        assert_eq!(parses.get(), 1);
        assert!(Arc::ptr_eq(&first.request, &again.request));
        assert_eq!(first.key, again.key);

        let other_flag = get("message=a", "context:", true);
        assert_eq!(other_flag.key, Key::derive("message=a", None, true));
        let other_namespace = get("message=a", "context:f:", true);
        let other_query = get("message=b", "context:f:", true);
        assert_eq!(parses.get(), 4);
        assert!(other_namespace.key.as_str().starts_with("context:f:"));
        assert_ne!(other_query.key, other_namespace.key);
        // The namespace that is a prefix of another's does not pass for it.
        assert!(
            get("message=b", "context:", true)
                .key
                .as_str()
                .starts_with("context:")
        );
        assert_eq!(parses.get(), 5);
    }

    /// Errors are not remembered; long queries are parsed each time; many queries (more
    /// than the slots) each get their own answer back.
    #[test]
    fn errors_long_queries_and_collisions_are_parsed_again() {
        let parses = std::cell::Cell::new(0);
        for _ in 0..2 {
            let e = parsed::<&str>("message=", "context:", false, || {
                parses.set(parses.get() + 1);
                Err("empty")
            });
            assert_eq!(e.unwrap_err(), "empty");
        }
        assert_eq!(parses.get(), 2);
        let long = format!("message={}", "x".repeat(crate::memo::LONGEST));
        for _ in 0..2 {
            parsed::<()>(&long, "context:", false, || {
                parses.set(parses.get() + 1);
                Ok(parsed_as(&long, "context:", false))
            })
            .unwrap();
        }
        assert_eq!(parses.get(), 4);
        for round in 0..2 {
            for i in 0..2048 {
                let query = format!("message=q{i}");
                let got = parsed::<()>(&query, "context:", false, || {
                    Ok(parsed_as(&query, "context:", false))
                })
                .unwrap();
                assert_eq!(got.request.message, query, "round {round}");
                assert_eq!(got.key, Key::derive(&query, None, false));
            }
        }
    }

    /// A hundred queries asked over and over are each parsed once: eight slots a set
    /// hold what one slot a query could not.
    #[test]
    fn a_hundred_busy_queries_stay_remembered() {
        let parses = std::cell::Cell::new(0);
        for _ in 0..5 {
            for i in 0..100 {
                let query = format!("message=bench+query+{i}");
                parsed::<()>(&query, "context:n:", false, || {
                    parses.set(parses.get() + 1);
                    Ok(parsed_as(&query, "context:n:", false))
                })
                .unwrap();
            }
        }
        assert_eq!(parses.get(), 100);
    }
}
