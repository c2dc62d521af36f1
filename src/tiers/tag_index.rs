//! The memory tier's tag index: which keys hold an answer that depends on a tag, so a
//! purge by tag removes exactly those. Only the tags an entry cannot be reached by
//! otherwise are indexed (see `Entry::indexed`): most entries have none, and cost
//! nothing here.
//!
//! Each indexing gets a generation, kept in the cached value too; an eviction removes
//! the index entries only of its own generation, so the eviction of a replaced value
//! never unindexes the value that replaced it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Default)]
struct Maps {
    /// Key -> (generation, tag digests).
    keys: HashMap<Arc<str>, (u64, Box<[u128]>)>,
    /// Tag digest -> keys.
    tags: HashMap<u128, HashSet<Arc<str>>>,
    next_generation: u64,
}

#[derive(Default)]
pub struct TagIndex {
    maps: Mutex<Maps>,
}

impl TagIndex {
    /// Indexes `key` under `tags` (replacing what it had); gives its generation.
    pub fn insert(&self, key: &Arc<str>, tags: Box<[u128]>) -> u64 {
        let mut maps = self.maps.lock();
        maps.next_generation += 1;
        let generation = maps.next_generation;
        let old = if tags.is_empty() {
            maps.keys.remove(key)
        } else {
            for digest in &tags {
                maps.tags
                    .entry(*digest)
                    .or_default()
                    .insert(Arc::clone(key));
            }
            maps.keys
                .insert(Arc::clone(key), (generation, tags.clone()))
        };
        if let Some((_, old_tags)) = old {
            for digest in old_tags.iter().filter(|d| !tags.contains(d)) {
                unlink(&mut maps.tags, *digest, key);
            }
        }
        generation
    }

    /// Forgets `key` if it is still indexed at `generation` (its value was evicted).
    pub fn evicted(&self, key: &str, generation: u64) {
        let mut maps = self.maps.lock();
        if maps.keys.get(key).is_none_or(|(g, _)| *g != generation) {
            return;
        }
        if let Some((key, (_, tags))) = maps.keys.remove_entry(key) {
            for digest in tags.iter() {
                unlink(&mut maps.tags, *digest, &key);
            }
        }
    }

    /// Takes every key indexed under any of `tags` out of the index.
    pub fn take(&self, tags: &[u128]) -> Vec<Arc<str>> {
        let mut maps = self.maps.lock();
        let mut taken = Vec::new();
        for digest in tags {
            let Some(keys) = maps.tags.remove(digest) else {
                continue;
            };
            for key in keys {
                if let Some((_, others)) = maps.keys.remove(&key) {
                    for other in others.iter().filter(|d| *d != digest) {
                        unlink(&mut maps.tags, *other, &key);
                    }
                    taken.push(key);
                }
            }
        }
        taken
    }

    /// Indexed keys and tags.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let maps = self.maps.lock();
        (maps.keys.len(), maps.tags.len())
    }
}

fn unlink(tags: &mut HashMap<u128, HashSet<Arc<str>>>, digest: u128, key: &Arc<str>) {
    if let Some(keys) = tags.get_mut(&digest) {
        keys.remove(key);
        if keys.is_empty() {
            tags.remove(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replacing, evicting and taking keep the two maps in step.
    #[test]
    fn index_follows_inserts_evictions_and_takes() {
        let index = TagIndex::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("context:a"), Arc::from("context:b"));
        let first = index.insert(&a, Box::new([1, 2]));
        let second = index.insert(&a, Box::new([2, 3]));
        index.insert(&b, Box::new([3]));
        // The first value's eviction (after its replacement) changes nothing.
        index.evicted(&a, first);
        assert_eq!(index.len(), (2, 2));
        assert!(index.take(&[1]).is_empty());
        let mut taken = index.take(&[3]);
        taken.sort();
        assert_eq!(taken, vec![a.clone(), b.clone()]);
        assert_eq!(index.len(), (0, 0));
        index.insert(&a, Box::new([4]));
        index.evicted(&a, second);
        assert_eq!(index.len(), (1, 1));
        let third = index.insert(&a, Box::new([]));
        index.evicted(&a, third);
        assert_eq!(index.len(), (0, 0));
    }
}
