//! Cache tiers: the `CacheTier` trait, the config enum tagged by `type`, and `Tier`, the
//! one registry enum that dispatches to each implementation with a plain `match`.
//! Adding a tier: a new file, a variant in `TierConfig` and `Tier`, an arm in `build` and
//! one line in `each_tier!`; the compiler points at anything missed.
//! Timing and error counting live in the chain, not here, so every tier is measured alike.

pub mod memory;
pub mod redis;
mod redis_batch;
pub mod redis_cluster;
mod redis_cluster_fence;
mod redis_cluster_nodes;
mod redis_cluster_purge;
mod redis_fence;
mod redis_link;
mod tag_index;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::key::Key;
use crate::metrics::Metrics;
pub use crate::names::TierKind;
use crate::tags::Tag;

pub use memory::{MemoryConfig, MemoryTier};
pub use redis::{RedisConfig, RedisTier};
pub use redis_cluster::{RedisClusterConfig, RedisClusterTier};

/// `[[tiers]]`: one table per tier, in look-up order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TierConfig {
    Memory(MemoryConfig),
    Redis(RedisConfig),
    RedisCluster(RedisClusterConfig),
}

impl TierConfig {
    pub fn kind(&self) -> TierKind {
        match self {
            TierConfig::Memory(_) => TierKind::Memory,
            TierConfig::Redis(_) => TierKind::Redis,
            TierConfig::RedisCluster(_) => TierKind::RedisCluster,
        }
    }

    /// This tier's own TTL override, if it has one.
    pub fn ttl_secs(&self) -> Option<u64> {
        match self {
            TierConfig::Memory(c) => c.ttl_secs,
            TierConfig::Redis(c) => c.ttl_secs,
            TierConfig::RedisCluster(c) => c.ttl_secs,
        }
    }

    pub(crate) fn validate(&self) -> Vec<String> {
        match self {
            TierConfig::Memory(c) => c.validate(),
            TierConfig::Redis(c) => c.validate(),
            TierConfig::RedisCluster(c) => c.validate(),
        }
    }

    pub(crate) fn redact(&mut self) {
        match self {
            TierConfig::Memory(_) => {}
            TierConfig::Redis(c) => c.url = crate::secret::redact_url(&c.url),
            TierConfig::RedisCluster(c) => c.redact(),
        }
    }

    /// Builds the live tier. Never waits on the network: remote tiers connect lazily.
    ///
    /// # Errors
    /// [`TierError::Config`] when the settings cannot be turned into a client.
    pub fn build(&self, ctx: &BuildContext) -> Result<Tier, TierError> {
        Ok(match self {
            TierConfig::Memory(c) => Tier::Memory(MemoryTier::new(c, ctx)),
            TierConfig::Redis(c) => Tier::Redis(RedisTier::new(c, ctx)?),
            TierConfig::RedisCluster(c) => Tier::RedisCluster(RedisClusterTier::new(c, ctx)?),
        })
    }
}

/// What a tier needs from the rest of the daemon when it is built.
pub struct BuildContext {
    pub metrics: Arc<Metrics>,
    /// Freshness lifetime (`[cache] ttl_secs` unless the tier overrides it).
    pub ttl: Duration,
    /// How long past its TTL an entry may still be served stale (if the tier can keep it).
    pub stale_retention: Duration,
    /// Values larger than this (the origin's `max_response_bytes`) are never read whole.
    pub max_value_bytes: usize,
}

/// A value a tier found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The context JSON exactly as the origin returned it.
    pub body: Bytes,
    /// Time since it was stored.
    pub age: Duration,
    /// The entry's freshness lifetime (a tier that keeps no per-entry TTL gives its own,
    /// or the time left when that is longer).
    pub ttl: Duration,
}

/// What a store carries beside the value (see `chain/fence.rs`, `redis_fence.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Everything the answer depends on.
    pub tags: &'a [Tag],
    /// The tags a purge must find it under; the others reach it through its key.
    pub indexed: &'a [Tag],
    /// What a shared tier noted before the origin was asked ([`CacheTier::watch`]).
    /// A shared tier stores nothing without one.
    pub watch: Option<&'a Watch>,
    /// Its freshness lifetime (adapted, or a negative entry's); the tier's own when `None`.
    pub ttl: Option<Duration>,
    /// How old it already is; zero for an origin answer.
    pub age: Duration,
    /// A back-filled copy of a lower tier's entry: it lives at most this tier's own TTL
    /// from now, and never past the original.
    pub copy: bool,
}

impl Entry<'_> {
    /// No tags, no watch, the tier's TTL: what tests and untagged stores use.
    pub const PLAIN: Entry<'static> = Entry {
        tags: &[],
        indexed: &[],
        watch: None,
        ttl: None,
        age: Duration::ZERO,
        copy: false,
    };
}

/// A shared tier's record of the purge versions of an entry's key and tags, read
/// before the origin call; its write succeeds only if none has moved since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    pub(crate) versions: Vec<i64>,
    /// When it was taken, for a tier whose registration has a lease.
    pub(crate) taken: Option<std::time::Instant>,
}

/// Live state of a tier, as reported by status routes. Reading it never waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// In-process tier: always serving.
    Active,
    /// Remote tier with a working connection.
    Connected,
    /// Remote tier that is down; requests skip it until a probe succeeds.
    Unavailable,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Active => "active",
            Health::Connected => "connected",
            Health::Unavailable => "unavailable",
        }
    }

    pub fn is_serving(self) -> bool {
        self != Health::Unavailable
    }
}

/// What a tier knows locally about its size (no network round trip).
#[derive(Debug, Clone, Copy, Default)]
pub struct Size {
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
    /// The byte bound, when the tier has one.
    pub max_bytes: Option<u64>,
}

/// A distributed tier's nodes, as its probe last saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// `ok`, `fail` (the cluster's own verdict) or `unknown` (no node answered).
    pub state: &'static str,
    /// Nodes the cluster knows, masters and replicas.
    pub known_nodes: u32,
    /// Masters serving slots.
    pub masters: u32,
}

/// Why a tier operation failed. The chain skips the tier for that request.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The operation did not finish within the tier's timeout.
    #[error("{tier} timed out after {after:?}")]
    Timeout { tier: &'static str, after: Duration },
    /// The tier is known to be down (circuit open); not tried.
    #[error("{tier} is unavailable")]
    Unavailable { tier: &'static str },
    /// The backend answered with an error.
    #[error("{tier}: {message}")]
    Backend { tier: &'static str, message: String },
    /// The value under the key is larger than the tier may read; a miss.
    #[error("{tier}: the value is larger than {limit} bytes")]
    TooLarge { tier: &'static str, limit: usize },
    /// The settings could not be turned into a client.
    #[error("{tier} configuration: {message}")]
    Config { tier: &'static str, message: String },
}

/// The operations every tier offers.
pub trait CacheTier: Send + Sync {
    /// Looks a key up. Expired-but-retained entries are returned with `age >= ttl`.
    fn get(&self, key: &Key) -> impl Future<Output = Result<Option<Found>, TierError>> + Send;
    /// Notes what a later [`CacheTier::put`] of this key must find unchanged. Local
    /// tiers need nothing (the chain's fence covers them).
    fn watch(
        &self,
        _key: &Key,
        _tags: &[Tag],
    ) -> impl Future<Output = Result<Option<Watch>, TierError>> + Send {
        std::future::ready(Ok(None))
    }
    /// Stores a value under a key for `entry.ttl` (the tier's own TTL when `None`).
    fn put(
        &self,
        key: &Key,
        body: &Bytes,
        entry: &Entry<'_>,
    ) -> impl Future<Output = Result<(), TierError>> + Send;
    /// Removes one key.
    fn remove(&self, key: &Key) -> impl Future<Output = Result<(), TierError>> + Send;
    /// Removes every entry indexed under one of `tags`; returns how many.
    fn remove_tags(&self, tags: &[Tag]) -> impl Future<Output = Result<u64, TierError>> + Send;
    /// Removes every key this daemon's namespace owns; returns how many were removed.
    fn clear(&self) -> impl Future<Output = Result<u64, TierError>> + Send;
    /// Last known health; never waits on the network.
    fn health(&self) -> Health;
    /// Locally known size.
    fn size(&self) -> Size;
    /// What a distributed tier last learnt of its nodes; never waits.
    fn topology(&self) -> Option<Topology> {
        None
    }
    /// Applies a reloaded TTL to future reads and writes.
    fn set_ttl(&self, ttl: Duration, stale_retention: Duration);
}

/// The registry: one variant per implementation.
pub enum Tier {
    Memory(MemoryTier),
    Redis(RedisTier),
    RedisCluster(RedisClusterTier),
}

/// Dispatches one expression over every variant.
macro_rules! each_tier {
    ($tier:expr, $t:ident => $body:expr) => {
        match $tier {
            Tier::Memory($t) => $body,
            Tier::Redis($t) => $body,
            Tier::RedisCluster($t) => $body,
        }
    };
}

impl Tier {
    pub fn kind(&self) -> TierKind {
        match self {
            Tier::Memory(_) => TierKind::Memory,
            Tier::Redis(_) => TierKind::Redis,
            Tier::RedisCluster(_) => TierKind::RedisCluster,
        }
    }

    /// In-process tiers are written inline; remote ones in the background on back-fill.
    pub fn is_local(&self) -> bool {
        matches!(self, Tier::Memory(_))
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Found>, TierError> {
        each_tier!(self, t => t.get(key).await)
    }

    pub async fn watch(&self, key: &Key, tags: &[Tag]) -> Result<Option<Watch>, TierError> {
        each_tier!(self, t => t.watch(key, tags).await)
    }

    pub async fn put(&self, key: &Key, body: &Bytes, entry: &Entry<'_>) -> Result<(), TierError> {
        each_tier!(self, t => t.put(key, body, entry).await)
    }

    pub async fn remove_tags(&self, tags: &[Tag]) -> Result<u64, TierError> {
        each_tier!(self, t => t.remove_tags(tags).await)
    }

    pub async fn remove(&self, key: &Key) -> Result<(), TierError> {
        each_tier!(self, t => t.remove(key).await)
    }

    pub async fn clear(&self) -> Result<u64, TierError> {
        each_tier!(self, t => t.clear().await)
    }

    pub fn health(&self) -> Health {
        each_tier!(self, t => t.health())
    }

    pub fn size(&self) -> Size {
        each_tier!(self, t => t.size())
    }

    pub fn topology(&self) -> Option<Topology> {
        each_tier!(self, t => t.topology())
    }

    pub fn set_ttl(&self, ttl: Duration, stale_retention: Duration) {
        each_tier!(self, t => t.set_ttl(ttl, stale_retention))
    }
}
