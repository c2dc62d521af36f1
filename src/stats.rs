//! One snapshot of everything the dashboards and the advice rules read: request
//! figures from `Metrics`, live tier state from the chain, and the settings in force.
//! Taking one never waits on the network.

use std::time::{Duration, Instant};

use crate::chain::Chain;
use crate::metrics::{
    EvictionCause, Metrics, OriginResult, Outcome, Percentiles, TierOp, ValueRejection,
};
use crate::tiers::{Health, Size, TierKind, Topology};

/// One configured tier as seen now.
#[derive(Debug, Clone)]
pub struct TierState {
    pub kind: TierKind,
    pub health: Health,
    pub size: Size,
    pub hits: u64,
    pub errors: u64,
    /// Percentiles of each operation on this tier.
    pub ops: Vec<(TierOp, Percentiles)>,
    /// Values found but not served, by reason.
    pub rejected: Vec<(ValueRejection, u64)>,
    /// A distributed tier's nodes.
    pub topology: Option<Topology>,
}

/// The figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Requests answered fresh from any tier.
    pub hits: u64,
    /// Requests answered by the origin (coalesced waiters included).
    pub misses: u64,
    /// Requests answered with an expired entry under a stale rule.
    pub stale: u64,
    /// Requests that failed (origin failure, nothing stale to serve).
    pub errors: u64,
    pub avg_hit_ms: f64,
    pub avg_miss_ms: f64,
    pub hit: Percentiles,
    pub miss: Percentiles,
    pub stale_latency: Percentiles,
    pub error_latency: Percentiles,
    pub per_tier_latency: Vec<(TierKind, Percentiles)>,
    pub origin_latency: Percentiles,
    pub origin_ok: u64,
    pub origin_errors: u64,
    pub origin_timeouts: u64,
    pub coalesced: u64,
    pub evictions: Vec<(EvictionCause, u64)>,
    pub redis_reconnects: u64,
    pub tiers: Vec<TierState>,
    pub origin_kind: &'static str,
    pub origin_step: &'static str,
    pub ttl_secs: u64,
    pub normalize_queries: bool,
    pub query_variants: u64,
    pub distinct_queries: u64,
    pub uptime: Duration,
    pub time_saved: Duration,
}

impl Snapshot {
    /// `ttl_secs` is the `[cache]` TTL in force (the chain knows only its tiers' own).
    pub fn take(chain: &Chain, metrics: &Metrics, ttl_secs: u64, started: Instant) -> Self {
        // Means in f64: a Duration quotient truncates to whole nanoseconds, which moves a
        // thousandfold speedup (a ~10 µs memory hit) in its second decimal.
        let mean_ms = |total: Duration, n: u64| match n {
            0 => 0.0,
            n => total.as_secs_f64() * 1000.0 / n as f64,
        };
        let hits: u64 = TierKind::ALL
            .iter()
            .map(|&k| metrics.count(Outcome::Hit(k)))
            .sum();
        let hit_total: Duration = TierKind::ALL
            .iter()
            .map(|&k| metrics.total(Outcome::Hit(k)))
            .sum();
        let hit_outcomes = TierKind::ALL.map(Outcome::Hit);
        let stale_outcomes = TierKind::ALL.map(Outcome::Stale);
        let per_tier_latency = TierKind::ALL
            .iter()
            .map(|&k| (k, metrics.percentiles(Outcome::Hit(k))))
            .collect();
        let tiers = chain
            .tiers()
            .iter()
            .map(|t| {
                let size = t.size();
                metrics.set_size(t.kind(), size.entries, size.bytes);
                TierState {
                    kind: t.kind(),
                    health: t.health(),
                    topology: t.topology(),
                    size,
                    hits: metrics.count(Outcome::Hit(t.kind())),
                    errors: metrics.tier_errors(t.kind()),
                    ops: TierOp::ALL
                        .map(|op| (op, metrics.tier_op_percentiles(t.kind(), op)))
                        .to_vec(),
                    rejected: ValueRejection::ALL
                        .map(|why| (why, metrics.rejected_values(t.kind(), why)))
                        .to_vec(),
                }
            })
            .collect();
        let (query_variants, distinct_queries) = chain.variants().counts();
        Self {
            hits,
            misses: metrics.count(Outcome::Miss),
            stale: TierKind::ALL
                .iter()
                .map(|&k| metrics.count(Outcome::Stale(k)))
                .sum(),
            errors: metrics.count(Outcome::Error),
            avg_hit_ms: mean_ms(hit_total, hits),
            avg_miss_ms: mean_ms(metrics.total(Outcome::Miss), metrics.count(Outcome::Miss)),
            hit: metrics.percentiles_of(&hit_outcomes),
            miss: metrics.percentiles(Outcome::Miss),
            stale_latency: metrics.percentiles_of(&stale_outcomes),
            error_latency: metrics.percentiles(Outcome::Error),
            per_tier_latency,
            origin_latency: metrics.origin_percentiles(),
            origin_ok: metrics.origin_count(OriginResult::Ok),
            origin_errors: metrics.origin_count(OriginResult::Error),
            origin_timeouts: metrics.origin_count(OriginResult::Timeout),
            coalesced: metrics.coalesced(),
            evictions: EvictionCause::ALL
                .iter()
                .map(|&c| (c, metrics.evictions(TierKind::Memory, c)))
                .collect(),
            redis_reconnects: TierKind::ALL
                .into_iter()
                .filter(|k| k.is_shared())
                .map(|k| metrics.reconnects(k))
                .sum(),
            tiers,
            origin_kind: chain.origin().kind(),
            origin_step: chain.origin().describe(),
            ttl_secs,
            normalize_queries: chain.policy().normalize,
            query_variants,
            distinct_queries,
            uptime: started.elapsed(),
            time_saved: metrics.time_saved(),
        }
    }

    /// hits + misses (errors and stale answers are reported apart).
    pub fn total_requests(&self) -> u64 {
        self.hits + self.misses
    }

    pub fn hit_rate_percent(&self) -> f64 {
        match self.total_requests() {
            0 => 0.0,
            n => self.hits as f64 * 100.0 / n as f64,
        }
    }

    /// Mean miss / mean hit; 0 when either side has no requests yet.
    pub fn speedup(&self) -> f64 {
        if self.hits == 0 || self.misses == 0 || self.avg_hit_ms <= 0.0 {
            0.0
        } else {
            self.avg_miss_ms / self.avg_hit_ms
        }
    }

    /// Mean miss - mean hit; 0 when either side has no requests yet.
    pub fn time_saved_per_hit_ms(&self) -> f64 {
        if self.hits == 0 || self.misses == 0 {
            0.0
        } else {
            self.avg_miss_ms - self.avg_hit_ms
        }
    }

    pub fn cumulative_time_saved_ms(&self) -> f64 {
        self.hits as f64 * self.time_saved_per_hit_ms()
    }

    pub fn tier(&self, kind: TierKind) -> Option<&TierState> {
        self.tiers.iter().find(|t| t.kind == kind)
    }

    /// The first tier every instance shares (Redis or a Redis Cluster).
    pub fn shared_tier(&self) -> Option<&TierState> {
        self.tiers.iter().find(|t| t.kind.is_shared())
    }

    pub fn memory_size(&self) -> Size {
        self.tier(TierKind::Memory)
            .map(|t| t.size)
            .unwrap_or_default()
    }

    pub fn size_evictions(&self) -> u64 {
        self.evictions
            .iter()
            .find(|(c, _)| *c == EvictionCause::Size)
            .map_or(0, |(_, n)| *n)
    }

    /// "dual" when memory and Redis (one server or a cluster) both serve, "memory-only"
    /// when Redis is absent or down, "redis-only" with Redis alone, "origin-only" when
    /// no tier serves.
    pub fn mode(&self) -> &'static str {
        let serving = |t: Option<&TierState>| t.is_some_and(|t| t.health.is_serving());
        match (
            serving(self.tier(TierKind::Memory)),
            serving(self.shared_tier()),
        ) {
            (true, true) => "dual",
            (true, false) => "memory-only",
            (false, true) => "redis-only",
            (false, false) => "origin-only",
        }
    }
}
