//! Bounded names shared by the domain and its metrics. A leaf: metrics label their
//! series with these without importing the plugins they describe, and the plugins name
//! themselves with them without importing each other.

/// The RPC function the original system calls, which `/codette/context` answers.
pub const ORIGINAL_FUNCTION: &str = "get_codette_context";

/// The `function` label value of every function not listed for caching.
pub const OTHER_FUNCTION: &str = "other";

/// The kinds of tier, as bounded label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TierKind {
    Memory,
    Redis,
    RedisCluster,
}

impl TierKind {
    pub const ALL: [TierKind; 3] = [TierKind::Memory, TierKind::Redis, TierKind::RedisCluster];

    pub fn as_str(self) -> &'static str {
        match self {
            TierKind::Memory => "memory",
            TierKind::Redis => "redis",
            TierKind::RedisCluster => "redis_cluster",
        }
    }

    /// A tier every instance of a group shares (invalidations need no broadcast there).
    pub fn is_shared(self) -> bool {
        self != TierKind::Memory
    }

    /// Position in [`TierKind::ALL`], for per-kind metric arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The breaker's state, as the `codette_cache_origin_breaker_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}
