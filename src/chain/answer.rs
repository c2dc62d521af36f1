//! What a look-up gives: an answer and where it came from, or the failure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::key::Key;
use crate::origins::OriginError;
use crate::tiers::TierKind;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fresh entry in this tier.
    Tier(TierKind),
    /// The origin, just now (or a concurrent request's origin call).
    Origin,
    /// An expired entry in this tier, served under a stale rule.
    Stale(TierKind),
}

impl Source {
    /// The value of `cache.source` in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tier(kind) => kind.as_str(),
            Source::Origin => "origin",
            Source::Stale(_) => "stale",
        }
    }

    pub fn is_hit(self) -> bool {
        !matches!(self, Source::Origin)
    }
}

/// A successful look-up.
#[derive(Debug)]
pub struct Answer {
    pub key: Key,
    pub body: Bytes,
    pub source: Source,
    pub age: Duration,
    /// The entry's TTL, for an answer from a tier.
    pub ttl: Option<Duration>,
    /// This request waited on another request's origin call.
    pub coalesced: bool,
    /// A negative entry: an empty answer stored under `negative_ttl_secs`.
    pub negative: bool,
}

/// A failed look-up: the origin failed and nothing stale could stand in.
#[derive(Debug)]
pub struct Failure {
    pub key: Key,
    pub error: Arc<OriginError>,
}
