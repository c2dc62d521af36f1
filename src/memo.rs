//! The store behind the request path's memos (`http/query_memo.rs`,
//! `proxy/plan_memo.rs`, `chain/verdict_memo.rs`): what a pure function made of some bytes, kept per worker
//! thread, so no lock. Set-associative: the bytes' hash picks a set of eight slots and
//! a new entry pushes out the set's oldest (direct-mapped, a third of 100 busy keys
//! kept pushing each other out). A slot is matched on its whole key, never on the hash
//! alone, so a collision costs a recomputation and never gives another key's value.

use std::hash::BuildHasher;

/// Sets (a power of two), and slots per set.
const SETS: usize = 64;
const WAYS: usize = 8;

/// Longer keys are not kept: with their values, at most `SETS` × `WAYS` × 3 × this
/// (1.5 MiB) a memo and thread.
pub const LONGEST: usize = 1024;

/// The hash [`Memo::get`] and [`Memo::put`] take (computed once for both).
pub fn hash(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::default().hash_one(key)
}

/// One thread's memo of `V`s, empty until first used.
pub struct Memo<V> {
    slots: Vec<Option<Slot<V>>>,
}

struct Slot<V> {
    hash: u64,
    key: Box<[u8]>,
    value: V,
}

impl<V: Clone> Memo<V> {
    pub const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// The value kept for `key` that `fits`, if any.
    pub fn get(&self, hash: u64, key: &[u8], fits: impl Fn(&V) -> bool) -> Option<V> {
        let set = set_of(hash);
        let slots = self.slots.get(set..set + WAYS)?;
        slots
            .iter()
            .flatten()
            .find(|s| s.hash == hash && *s.key == *key && fits(&s.value))
            .map(|s| s.value.clone())
    }

    /// Keeps `value` for `key`, pushing out its set's oldest (given back); a key over
    /// [`LONGEST`] is not kept.
    pub fn put(&mut self, hash: u64, key: &[u8], value: V) -> Option<V> {
        if key.len() > LONGEST {
            return None;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SETS * WAYS, || None);
        }
        let set = set_of(hash);
        let slots = &mut self.slots[set..set + WAYS];
        slots.rotate_right(1);
        let oldest = slots[0].replace(Slot {
            hash,
            key: key.into(),
            value,
        });
        oldest.map(|s| s.value)
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

impl<V: Clone> Default for Memo<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// The first slot of a hash's set.
fn set_of(hash: u64) -> usize {
    (hash >> (64 - SETS.trailing_zeros())) as usize * WAYS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many keys (more than the slots) each get their own value back or none; a
    /// hundred busy keys all stay; long keys are not kept.
    #[test]
    fn keeps_what_fits_and_never_another_keys_value() {
        let mut memo = Memo::new();
        for i in 0..SETS * WAYS * 4 {
            let key = format!("k{i}");
            memo.put(hash(key.as_bytes()), key.as_bytes(), key.clone());
        }
        for i in 0..SETS * WAYS * 4 {
            let key = format!("k{i}");
            let got = memo.get(hash(key.as_bytes()), key.as_bytes(), |_| true);
            assert!(got.is_none_or(|v| v == key), "{key}");
        }
        let mut memo = Memo::new();
        let keys: Vec<String> = (0..100)
            .map(|i| format!("message=bench+query+{i}"))
            .collect();
        for key in &keys {
            memo.put(hash(key.as_bytes()), key.as_bytes(), key.len());
        }
        for key in &keys {
            let hash = hash(key.as_bytes());
            assert_eq!(memo.get(hash, key.as_bytes(), |_| true), Some(key.len()));
            assert_eq!(memo.get(hash, key.as_bytes(), |_| false), None);
        }
        let long = vec![b'x'; LONGEST + 1];
        assert_eq!(memo.put(hash(&long), &long, 1), None);
        assert_eq!(memo.get(hash(&long), &long, |_| true), None);
        memo.clear();
        assert!(keys.iter().all(|k| {
            memo.get(hash(k.as_bytes()), k.as_bytes(), |_| true)
                .is_none()
        }));
    }

    /// A full set gives back what it pushes out: its oldest.
    #[test]
    fn a_full_set_gives_back_its_oldest() {
        let mut memo = Memo::new();
        let h = 42;
        for i in 0..WAYS {
            assert_eq!(memo.put(h, &[i as u8], i), None);
        }
        assert_eq!(memo.put(h, b"new", 99), Some(0));
        assert_eq!(memo.put(h, b"newer", 100), Some(1));
    }
}
