//! A memo, per worker thread, of the verdicts given to values read from shared tiers:
//! key → the value's bytes and what [`storable::judge`] said of them. Judging is a pure
//! function of the bytes and the shape, and it was a quarter of a Redis hit's
//! instructions (a serde pass over every string of the value); a hot key's value that
//! has not changed since this thread last read it now costs a compare of its bytes.
//!
//! Nothing is served from here: every read still goes to the tier, and what it brought
//! is what is served. A kept verdict is used only when the bytes read now are exactly
//! the bytes it was given to (and the shape is the same), so a value another writer
//! changed is judged afresh; no hash stands in for the bytes.
//!
//! The bytes are held, so they are bounded: a value over [`LONGEST`] is judged every
//! time, and past [`BUDGET`] bytes held the thread's memo starts afresh.

use std::cell::{Cell, RefCell};

use bytes::Bytes;

use super::storable::{self, Shape, Verdict};
use crate::key::Key;
use crate::memo::{self, Memo};

/// Longer values are judged every time.
const LONGEST: usize = 64 * 1024;

/// The most value bytes one thread's memo holds.
const BUDGET: usize = 1024 * 1024;

#[derive(Clone)]
struct Kept {
    body: Bytes,
    shape: Shape,
    verdict: Verdict,
}

thread_local! {
    static MEMO: RefCell<Memo<Kept>> = const { RefCell::new(Memo::new()) };
    /// Bytes of the values `MEMO` holds.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// [`storable::judge`] of `body`, read under `key`: this thread's kept verdict when
/// `body` is byte for byte what it was given to, otherwise judged (and kept).
pub fn judge(key: &Key, body: &Bytes, shape: Shape) -> Verdict {
    if body.len() > LONGEST {
        return storable::judge(body, shape);
    }
    let name = key.as_str().as_bytes();
    let hash = memo::hash(name);
    let fits = |k: &Kept| k.shape == shape && k.body == *body;
    if let Some(kept) = MEMO.with_borrow(|m| m.get(hash, name, fits)) {
        return kept.verdict;
    }
    let verdict = storable::judge(body, shape);
    let kept = Kept {
        body: body.clone(),
        shape,
        verdict,
    };
    MEMO.with_borrow_mut(|m| {
        let mut held = HELD.get() + body.len();
        if held > BUDGET {
            m.clear();
            held = body.len();
        }
        if let Some(out) = m.put(hash, name, kept) {
            held -= out.body.len();
        }
        HELD.set(held);
    });
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        Key::derive(&format!("verdict memo {n}"), None, false)
    }

    /// A kept verdict is given only to the same bytes under the same shape: a value
    /// changed in place (same length, one byte different) is judged again.
    #[test]
    fn a_changed_value_is_judged_afresh() {
        let k = key(0);
        let good = Bytes::from_static(br#"{"snippets":[1],"file":null,"chat_history":[]}"#);
        let bad = Bytes::from_static(br#"{"snippets":[1],"file":null,"chat_history":[}"#);
        assert_eq!(good.len(), bad.len() + 1);
        let bad_same_len = Bytes::from_static(br#"{"snippets":[1],"file":null,"chat_history":[]]"#);
        assert_eq!(judge(&k, &good, Shape::Context), Verdict::Store);
        assert_eq!(judge(&k, &good, Shape::Context), Verdict::Store);
        assert_eq!(judge(&k, &bad_same_len, Shape::Context), Verdict::Invalid);
        assert_eq!(judge(&k, &bad, Shape::Context), Verdict::Invalid);
        assert_eq!(judge(&k, &good, Shape::Context), Verdict::Store);
        let other_shape = Bytes::from_static(b"[1,2]");
        assert_eq!(judge(&k, &other_shape, Shape::Any), Verdict::Store);
        assert_eq!(judge(&k, &other_shape, Shape::Context), Verdict::Keep);
    }

    /// Every verdict the memo gives equals a fresh judgement, over many keys and
    /// values (more than the memo keeps) read in turn; the bytes held stay in budget.
    #[test]
    fn agrees_with_judging_and_stays_in_budget() {
        let values: Vec<Bytes> = (0..7)
            .map(|i| match i % 3 {
                0 => format!(
                    r#"{{"snippets":["{}"],"file":null,"chat_history":[]}}"#,
                    "x".repeat(i * 900)
                ),
                1 => format!(r#"{{"snippets":[],"file":{i},"chat_history":[]}}"#),
                _ => format!(r#"{{"snippets":[{}"#, "y".repeat(i * 500)),
            })
            .map(Bytes::from)
            .collect();
        for round in 0..3 {
            for n in 0..1500 {
                let body = &values[(n * 7 + round) % values.len()];
                let k = key(n % 700);
                assert_eq!(
                    judge(&k, body, Shape::Context),
                    storable::judge(body, Shape::Context)
                );
                assert!(HELD.get() <= BUDGET);
            }
        }
    }
}
