//! A memo, per worker thread, of the `GET /codette/context` query strings parsed last:
//! query → request and key. Both are pure functions of the query, the key namespace and
//! the `normalize` flag, and percent-decoding plus MD5 were a sixth of a memory hit's
//! instructions; a query seen before (what hits are made of) now costs a hash and a
//! compare, and shares its request and key instead of copying them. Set-associative
//! (a query's hash picks a set of eight slots; a new one pushes out the set's oldest),
//! with no lock: direct-mapped, a third of 100 busy queries kept pushing each other
//! out. What a slot holds is checked whole (the query, the namespace, the flag), so a
//! collision can only cost a parse, never give another query's key.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::key::Key;
use crate::origins::ContextRequest;

/// Sets per thread (a power of two), and slots per set.
const SETS: usize = 64;
const WAYS: usize = 8;

/// Longer queries are parsed each time: with the message they are at most
/// `SETS` × `WAYS` × 3 × this (1.5 MiB) a thread.
const LONGEST: usize = 1024;

/// A request as the chain takes it, with its key.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub request: Arc<ContextRequest>,
    pub key: Key,
}

struct Slot {
    hash: u64,
    query: Box<str>,
    /// The key's first this many bytes are its namespace.
    namespace_len: usize,
    normalize: bool,
    parsed: Parsed,
}

thread_local! {
    /// `SETS` sets of `WAYS` slots, newest first; allocated on first use.
    static MEMO: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// `query`'s request and key under `namespace` and `normalize`: this thread's memo of
/// them, or what `parse` makes of it (remembered when it succeeds).
///
/// # Errors
/// `parse`'s, which is asked again each time.
pub fn parsed<E>(
    query: &str,
    namespace: &str,
    normalize: bool,
    parse: impl FnOnce() -> Result<Parsed, E>,
) -> Result<Parsed, E> {
    if query.len() > LONGEST {
        return parse();
    }
    let hash = foldhash::fast::FixedState::default().hash_one(query);
    let set = (hash >> (64 - SETS.trailing_zeros())) as usize * WAYS;
    let remembered = MEMO.with_borrow(|memo| {
        let slots = memo.get(set..set + WAYS)?;
        slots.iter().flatten().find_map(|slot| {
            let same = slot.hash == hash
                && *slot.query == *query
                && slot.normalize == normalize
                && slot.namespace_len == namespace.len()
                && slot.parsed.key.as_str().starts_with(namespace);
            same.then(|| slot.parsed.clone())
        })
    });
    if let Some(parsed) = remembered {
        return Ok(parsed);
    }
    let parsed = parse()?;
    MEMO.with_borrow_mut(|memo| {
        if memo.is_empty() {
            memo.resize_with(SETS * WAYS, || None);
        }
        let slots = &mut memo[set..set + WAYS];
        slots.rotate_right(1);
        slots[0] = Some(Slot {
            hash,
            query: query.into(),
            namespace_len: namespace.len(),
            normalize,
            parsed: parsed.clone(),
        });
    });
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
        let long = format!("message={}", "x".repeat(LONGEST));
        for _ in 0..2 {
            parsed::<()>(&long, "context:", false, || {
                parses.set(parses.get() + 1);
                Ok(parsed_as(&long, "context:", false))
            })
            .unwrap();
        }
        assert_eq!(parses.get(), 4);
        for round in 0..2 {
            for i in 0..SETS * WAYS * 4 {
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
