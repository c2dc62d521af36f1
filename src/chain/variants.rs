//! Counts queries that differ from an earlier one only by case or whitespace (the seed's
//! "look for variations in user queries"), in bounded memory: a fixed-size sample of
//! recent normalised-message hashes, each remembering one raw-message hash. Messages
//! themselves are never stored.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

use crate::key::normalized;

/// Distinct normalised queries remembered; ~50 bytes each, so well under 1 MiB.
const SAMPLE_SIZE: u64 = 8_192;

pub struct Variants {
    seen: Cache<u64, u64>,
    hasher: RandomState,
    variants: AtomicU64,
    observed: AtomicU64,
}

impl Default for Variants {
    fn default() -> Self {
        Self {
            seen: Cache::new(SAMPLE_SIZE),
            hasher: RandomState::new(),
            variants: AtomicU64::new(0),
            observed: AtomicU64::new(0),
        }
    }
}

impl Variants {
    /// Notes one distinct (cache-missing) message.
    pub fn observe(&self, message: &str) {
        let raw = self.hasher.hash_one(message);
        let norm = self.hasher.hash_one(normalized(message));
        self.observed.fetch_add(1, Ordering::Relaxed);
        let first = self.seen.get_with(norm, || raw);
        if first != raw {
            self.variants.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (messages that were a case/whitespace variant of an earlier one, messages observed)
    pub fn counts(&self) -> (u64, u64) {
        (
            self.variants.load(Ordering::Relaxed),
            self.observed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Case and spacing variants are counted; different queries and repeats are not.
    #[test]
    fn counts_only_variants() {
        let v = Variants::default();
        v.observe("how to use reverb");
        v.observe("How to use reverb");
        v.observe("how  to use reverb ");
        v.observe("EQ strategies for drums");
        v.observe("how to use reverb");
        assert_eq!(v.counts(), (2, 5));
    }
}
