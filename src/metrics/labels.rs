//! The label values of the daemon's series, as enums with `as_str()`: bounded by
//! construction, never a key or a message.

use crate::names::TierKind;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit(TierKind),
    Miss,
    Stale(TierKind),
    Error,
}

pub(super) const TIERS: usize = TierKind::ALL.len();
pub(super) const OUTCOMES: usize = 2 * TIERS + 2;

impl Outcome {
    /// Every outcome, in index order.
    pub fn all() -> impl Iterator<Item = Outcome> {
        TierKind::ALL
            .into_iter()
            .map(Outcome::Hit)
            .chain([Outcome::Miss])
            .chain(TierKind::ALL.into_iter().map(Outcome::Stale))
            .chain([Outcome::Error])
    }

    pub(super) fn index(self) -> usize {
        match self {
            Outcome::Hit(k) => k.index(),
            Outcome::Miss => TIERS,
            Outcome::Stale(k) => TIERS + 1 + k.index(),
            Outcome::Error => OUTCOMES - 1,
        }
    }

    /// `(tier, result)` label values.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Hit(k) => (k.as_str(), "hit"),
            Outcome::Miss => ("origin", "miss"),
            Outcome::Stale(k) => (k.as_str(), "stale"),
            Outcome::Error => ("none", "error"),
        }
    }
}

/// A tier operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierOp {
    Get,
    Put,
    Remove,
    Clear,
}

impl TierOp {
    pub const ALL: [TierOp; 4] = [TierOp::Get, TierOp::Put, TierOp::Remove, TierOp::Clear];

    pub fn as_str(self) -> &'static str {
        match self {
            TierOp::Get => "get",
            TierOp::Put => "put",
            TierOp::Remove => "remove",
            TierOp::Clear => "clear",
        }
    }
}

/// Why an entry left a tier (moka's removal causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionCause {
    Size,
    Expired,
    Explicit,
    Replaced,
}

impl EvictionCause {
    pub const ALL: [EvictionCause; 4] = [
        EvictionCause::Size,
        EvictionCause::Expired,
        EvictionCause::Explicit,
        EvictionCause::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvictionCause::Size => "size",
            EvictionCause::Expired => "expired",
            EvictionCause::Explicit => "explicit",
            EvictionCause::Replaced => "replaced",
        }
    }
}

/// How an origin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginResult {
    Ok,
    Error,
    Timeout,
}

impl OriginResult {
    pub const ALL: [OriginResult; 3] =
        [OriginResult::Ok, OriginResult::Error, OriginResult::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            OriginResult::Ok => "ok",
            OriginResult::Error => "error",
            OriginResult::Timeout => "timeout",
        }
    }
}

/// Why a value read from a shared tier was not served (a miss instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRejection {
    /// Larger than the origin's `max_response_bytes`; not read whole.
    TooLarge,
    /// Not UTF-8 JSON.
    Invalid,
    /// JSON the daemon would not have stored (empty, or not the answer's shape).
    NotStorable,
}

impl ValueRejection {
    pub const ALL: [ValueRejection; 3] = [
        ValueRejection::TooLarge,
        ValueRejection::Invalid,
        ValueRejection::NotStorable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValueRejection::TooLarge => "too_large",
            ValueRejection::Invalid => "invalid",
            ValueRejection::NotStorable => "not_storable",
        }
    }
}

/// Where an invalidation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationSource {
    /// An admin route on this instance.
    Admin,
    /// Another instance, over the broadcast channel.
    Broadcast,
    /// A PostgreSQL change notification (LISTEN).
    Database,
}

impl InvalidationSource {
    pub const ALL: [InvalidationSource; 3] = [
        InvalidationSource::Admin,
        InvalidationSource::Broadcast,
        InvalidationSource::Database,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationSource::Admin => "admin",
            InvalidationSource::Broadcast => "broadcast",
            InvalidationSource::Database => "database",
        }
    }
}

/// Why an origin call was made ahead of a user's miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A fresh entry past `refresh_ahead` of its TTL.
    Ahead,
    /// An expired entry served under `stale_while_revalidate`.
    Revalidate,
    /// A warming list (start-up file or admin route) asked for it.
    Warm,
}

impl Refresh {
    pub const ALL: [Refresh; 3] = [Refresh::Ahead, Refresh::Revalidate, Refresh::Warm];

    pub fn as_str(self) -> &'static str {
        match self {
            Refresh::Ahead => "ahead",
            Refresh::Revalidate => "revalidate",
            Refresh::Warm => "warm",
        }
    }
}

/// The operations an invalidation can carry (`tags::Purge::as_str`).
pub const INVALIDATION_OPS: [&str; 3] = ["keys", "tags", "clear"];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome has its own slot and labels.
    #[test]
    fn outcome_indices_are_distinct() {
        let mut seen: Vec<usize> = Outcome::all().map(Outcome::index).collect();
        assert_eq!(seen.len(), OUTCOMES);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), OUTCOMES);
    }
}
