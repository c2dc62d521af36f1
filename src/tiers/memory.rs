//! The in-process tier: a moka cache (TinyLFU admission, LRU eviction) bounded both by
//! entry count and by bytes, with a per-entry lifetime of TTL plus the stale retention
//! window so an expired answer can still be served when the origin fails.
//!
//! Both bounds through one weigher: each entry weighs `max(its bytes, max_bytes /
//! max_entries)`, and the cache holds at most `max_bytes` of weight, so the byte total
//! stays under `max_bytes` and the count under `max_entries`. The size reported is what
//! the entries hold (not that padded weight), so small answers are not overstated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use super::tag_index::TagIndex;
use super::{BuildContext, CacheTier, Entry, Found, Health, Size, TierError, TierKind};
use crate::key::Key;
use crate::metrics::EvictionCause;
use crate::tags::Tag;

/// Bytes charged per entry beyond key and body: moka's nodes (about nine allocations:
/// entry, deque and timer-wheel nodes, key Arcs, hash-table slot), our value header and
/// glibc's per-allocation headers. Measured with moka 0.12.16 on x86_64 by a counting
/// allocator at glibc chunk sizes: ~480 bytes; rounded up.
pub const ENTRY_OVERHEAD_BYTES: usize = 512;

/// `[[tiers]] type = "memory"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// At most this many entries.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// At most this many bytes of keys, bodies and per-entry overhead.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Freshness lifetime for this tier; `[cache] ttl_secs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

fn default_max_entries() -> u64 {
    10_000
}

fn default_max_bytes() -> u64 {
    64 * 1024 * 1024
}

impl MemoryConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_entries == 0 {
            problems.push("max_entries must be > 0".into());
        }
        if self.max_bytes < 64 * 1024 {
            problems.push(format!(
                "max_bytes is {}; at least 65536 is needed to hold a context",
                self.max_bytes
            ));
        }
        if self.ttl_secs == Some(0) {
            problems.push("ttl_secs must be > 0".into());
        }
        problems
    }
}

#[derive(Clone)]
struct Value {
    body: Bytes,
    /// When it was fresh from the origin (a back-filled entry arrives already aged).
    stored_at: Instant,
    ttl: Duration,
    keep_for: Duration,
    /// Its [`TagIndex`] generation.
    generation: u64,
}

struct KeepFor;

impl moka::Expiry<Arc<str>, Value> for KeepFor {
    fn expire_after_create(&self, _: &Arc<str>, v: &Value, _: Instant) -> Option<Duration> {
        Some(v.keep_for)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        v: &Value,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.keep_for)
    }
}

/// The memory tier.
pub struct MemoryTier {
    cache: Cache<Arc<str>, Value, foldhash::fast::RandomState>,
    max_bytes: u64,
    /// Bytes held now ([`entry_bytes`] summed): added on put, released on removal.
    held: Arc<AtomicU64>,
    index: Arc<TagIndex>,
    ttl_ms: AtomicU64,
    retention_ms: AtomicU64,
}

impl MemoryTier {
    pub fn new(config: &MemoryConfig, ctx: &BuildContext) -> Self {
        let unit = config.max_bytes.div_ceil(config.max_entries.max(1));
        ctx.metrics.set_tier_up(TierKind::Memory, true);
        let metrics = Arc::clone(&ctx.metrics);
        let held = Arc::new(AtomicU64::new(0));
        let released = Arc::clone(&held);
        let index = Arc::new(TagIndex::default());
        let unindex = Arc::clone(&index);
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |k: &Arc<str>, v: &Value| {
                u32::try_from(entry_bytes(k, v).max(unit)).unwrap_or(u32::MAX)
            })
            .expire_after(KeepFor)
            .eviction_listener(move |k: Arc<Arc<str>>, v: Value, cause| {
                released.fetch_sub(entry_bytes(&k, &v), Ordering::Relaxed);
                unindex.evicted(&k, v.generation);
                metrics.eviction(TierKind::Memory, eviction_cause(cause));
            })
            // Seeded per process, so keys cannot be picked to collide; SipHash, the
            // default, was a fifth of a memory-tier read.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            cache,
            max_bytes: config.max_bytes,
            held,
            index,
            ttl_ms: AtomicU64::new(millis(ctx.ttl)),
            retention_ms: AtomicU64::new(millis(ctx.stale_retention)),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// Applies pending evictions so counts and sizes are exact (tests, status routes).
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

/// Bytes one entry holds: key, body and the per-entry overhead.
fn entry_bytes(key: &str, value: &Value) -> u64 {
    (key.len() + value.body.len() + ENTRY_OVERHEAD_BYTES) as u64
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn eviction_cause(cause: RemovalCause) -> EvictionCause {
    match cause {
        RemovalCause::Expired => EvictionCause::Expired,
        RemovalCause::Explicit => EvictionCause::Explicit,
        RemovalCause::Replaced => EvictionCause::Replaced,
        RemovalCause::Size => EvictionCause::Size,
    }
}

impl CacheTier for MemoryTier {
    async fn get(&self, key: &Key) -> Result<Option<Found>, TierError> {
        Ok(self.cache.get(key.as_str()).map(|v| Found {
            body: v.body,
            age: v.stored_at.elapsed(),
            ttl: v.ttl,
        }))
    }

    async fn put(&self, key: &Key, body: &Bytes, entry: &Entry<'_>) -> Result<(), TierError> {
        let key: Arc<str> = Arc::from(key.as_str());
        // Indexed before the insert: a purge that comes between finds the key.
        let generation = self
            .index
            .insert(&key, entry.indexed.iter().map(Tag::digest).collect());
        let own = self.ttl();
        let ttl = match entry.ttl {
            None => own,
            Some(ttl) if !entry.copy => ttl,
            Some(ttl) => ttl.min(entry.age + own),
        };
        let now = Instant::now();
        let stored_at = now.checked_sub(entry.age).unwrap_or(now);
        // Older than this host's monotonic clock (a copy soon after boot): what cannot be
        // counted from `stored_at` comes off the TTL, so it expires with the original.
        let ttl = ttl.saturating_sub(entry.age.saturating_sub(now - stored_at));
        let retention = Duration::from_millis(self.retention_ms.load(Ordering::Relaxed));
        let keep_for = ttl
            .saturating_add(retention)
            .saturating_sub(now - stored_at);
        let value = Value {
            // A copy of exactly its length: the caller's buffer may be up to twice as
            // large (grown while read) or a slice of a bigger one, and the byte bound
            // must hold in real memory.
            body: Bytes::copy_from_slice(body),
            stored_at,
            ttl,
            keep_for,
            generation,
        };
        // Counted before the insert, so its removal (even an at-once rejection) comes after.
        self.held
            .fetch_add(entry_bytes(&key, &value), Ordering::Relaxed);
        self.cache.insert(key, value);
        Ok(())
    }

    async fn remove(&self, key: &Key) -> Result<(), TierError> {
        self.cache.invalidate(key.as_str());
        Ok(())
    }

    async fn remove_tags(&self, tags: &[Tag]) -> Result<u64, TierError> {
        let digests: Vec<u128> = tags.iter().map(Tag::digest).collect();
        let keys = self.index.take(&digests);
        for key in &keys {
            self.cache.invalidate(key);
        }
        Ok(keys.len() as u64)
    }

    async fn clear(&self) -> Result<u64, TierError> {
        self.cache.run_pending_tasks();
        let before = self.cache.entry_count();
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        Ok(before)
    }

    fn health(&self) -> Health {
        Health::Active
    }

    fn size(&self) -> Size {
        self.cache.run_pending_tasks();
        Size {
            entries: Some(self.cache.entry_count()),
            bytes: Some(self.held.load(Ordering::Relaxed)),
            max_bytes: Some(self.max_bytes),
        }
    }

    fn set_ttl(&self, ttl: Duration, stale_retention: Duration) {
        self.ttl_ms.store(millis(ttl), Ordering::Relaxed);
        self.retention_ms
            .store(millis(stale_retention), Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
