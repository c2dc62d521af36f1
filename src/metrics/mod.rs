//! One `Metrics` struct: every Prometheus family, registered on an explicit `Registry`,
//! and the HDR histograms behind the JSON dashboards. Per-request latencies go into
//! sharded recorders (`recorder.rs`) that feed both `/metrics` (`collector.rs`, at
//! scrape time) and the dashboards, so the two always agree. Label values come from
//! enums; every child is resolved once at start-up so the hot path does no label hashing.

mod collector;
mod hdr;
mod labels;
mod readers;
mod recorder;
mod registrar;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

use collector::{LatencyCollector, Recorders};
pub use hdr::{Percentiles, empty as empty_histogram};
pub use labels::{EvictionCause, OriginResult, Outcome, TierOp, ValueRejection};
use recorder::Recorder;
use registrar::{Registrar, per_tier_op};

use crate::names::{BreakerState, TierKind};

/// Request latency buckets: 100 µs (a memory hit) to 10 s (past any origin timeout).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Tier operation buckets: 10 µs (memory) to 1 s (a Redis far past its timeout).
pub const TIER_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// Request, tier operation and origin latencies (exact counts and nanosecond sums:
    /// microseconds would truncate a ~5 µs memory hit by up to 20 %).
    latency: Arc<Recorders>,
    /// The mean miss latency in nanoseconds, refreshed on every miss, read on every hit.
    mean_miss_nanos: AtomicU64,
    origin_results: Vec<IntCounter>,
    tier_errors: Vec<Vec<IntCounter>>,
    /// `[tier][cause]`
    evictions: Vec<Vec<IntCounter>>,
    coalesced: IntCounter,
    entries: IntGaugeVec,
    memory_bytes: IntGauge,
    tier_up: Vec<IntGauge>,
    reconnects: Vec<IntCounter>,
    reload_ok: IntGauge,
    reloads: IntCounterVec,
    open_connections: IntGauge,
    rejected_connections: IntCounter,
    /// `[tier][reason]`
    rejected_values: Vec<Vec<IntCounter>>,
    breaker_state: IntGauge,
    /// By `BreakerState as usize`.
    breaker_transitions: Vec<IntCounter>,
    breaker_refusals: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family on a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let shards = std::thread::available_parallelism().map_or(4, |n| n.get() * 2);
        let r = Registrar(&registry);

        let latency = Arc::new(Recorders {
            outcomes: Outcome::all()
                .map(|_| Recorder::new(REQUEST_BUCKETS, true, shards))
                .collect(),
            tier_ops: TierKind::ALL
                .iter()
                .flat_map(|_| TierOp::ALL.map(|_| Recorder::new(TIER_BUCKETS, true, shards)))
                .collect(),
            origin: Recorder::new(REQUEST_BUCKETS, true, shards),
        });
        registry
            .register(Box::new(LatencyCollector::new(Arc::clone(&latency))))
            .expect("metric names are unique constants");

        let origin = r.counter_vec(
            "codette_cache_origin_requests_total",
            "Origin calls by result.",
            &["result"],
        );
        let origin_results = OriginResult::ALL
            .iter()
            .map(|res| origin.with_label_values(&[res.as_str()]))
            .collect();
        let tier_err = r.counter_vec(
            "codette_cache_tier_errors_total",
            "Failed tier operations (errors and timeouts) by tier and operation.",
            &["tier", "op"],
        );
        let tier_errors = per_tier_op(|k, op| tier_err.with_label_values(&[k, op]));

        let evict = r.counter_vec(
            "codette_cache_evictions_total",
            "Entries that left a tier, by cause.",
            &["tier", "cause"],
        );
        let evictions = TierKind::ALL
            .iter()
            .map(|k| {
                EvictionCause::ALL
                    .iter()
                    .map(|c| evict.with_label_values(&[k.as_str(), c.as_str()]))
                    .collect()
            })
            .collect();

        let up = r.gauge_vec(
            "codette_cache_tier_up",
            "1 while a tier serves, 0 while requests skip it.",
            &["tier"],
        );
        let tier_up = TierKind::ALL
            .iter()
            .map(|k| up.with_label_values(&[k.as_str()]))
            .collect();
        let reconnect = r.counter_vec(
            "codette_cache_tier_reconnects_total",
            "Times a remote tier came back after being down.",
            &["tier"],
        );
        let reconnects = TierKind::ALL
            .iter()
            .map(|k| reconnect.with_label_values(&[k.as_str()]))
            .collect();

        let start = r.gauge(
            "codette_cache_start_time_seconds",
            "Start time of the process since the Unix epoch.",
        );
        start.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let build = r.gauge_vec(
            "codette_cache_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        let reload_ok = r.int_gauge(
            "codette_cache_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none happened yet).",
        );
        reload_ok.set(1);
        let reloads = r.counter_vec(
            "codette_cache_config_reloads_total",
            "Configuration reloads by result.",
            &["result"],
        );
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }

        let rejected = r.counter_vec(
            "codette_cache_tier_rejected_values_total",
            "Values found in a shared tier but not served (a miss instead), by reason.",
            &["tier", "reason"],
        );
        let rejected_values = TierKind::ALL
            .iter()
            .map(|k| {
                ValueRejection::ALL
                    .iter()
                    .map(|why| rejected.with_label_values(&[k.as_str(), why.as_str()]))
                    .collect()
            })
            .collect();
        let transitions = r.counter_vec(
            "codette_cache_origin_breaker_transitions_total",
            "Times the origin circuit breaker moved to a state.",
            &["to"],
        );
        let breaker_transitions = BreakerState::ALL
            .iter()
            .map(|s| transitions.with_label_values(&[s.as_str()]))
            .collect();

        let process = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(process));

        Self {
            latency,
            mean_miss_nanos: AtomicU64::new(0),
            origin_results,
            tier_errors,
            evictions,
            coalesced: r.int_counter(
                "codette_cache_coalesced_waiters_total",
                "Requests that waited on another request's origin call instead of making one.",
            ),
            entries: r.gauge_vec(
                "codette_cache_entries",
                "Entries held by a tier (local tiers only).",
                &["tier"],
            ),
            memory_bytes: r.int_gauge(
                "codette_cache_memory_bytes",
                "Bytes the memory tier holds: keys, bodies and a fixed per-entry overhead.",
            ),
            tier_up,
            reconnects,
            reload_ok,
            reloads,
            open_connections: r.int_gauge(
                "codette_cache_open_connections",
                "HTTP connections open now.",
            ),
            rejected_connections: r.int_counter(
                "codette_cache_rejected_connections_total",
                "Connections refused because max_connections were open.",
            ),
            rejected_values,
            breaker_state: r.int_gauge(
                "codette_cache_origin_breaker_state",
                "The origin circuit breaker: 0 closed, 1 open, 2 half-open.",
            ),
            breaker_transitions,
            breaker_refusals: r.int_counter(
                "codette_cache_origin_breaker_refusals_total",
                "Origin calls not made because the circuit breaker was open.",
            ),
            registry,
        }
    }

    /// Records one finished context request.
    pub fn request(&self, outcome: Outcome, latency: Duration) {
        let recorder = &self.latency.outcomes[outcome.index()];
        match outcome {
            Outcome::Hit(_) => {
                let mean_miss = Duration::from_nanos(self.mean_miss_nanos.load(Ordering::Relaxed));
                recorder.record_saving(latency, mean_miss.saturating_sub(latency));
            }
            Outcome::Miss => {
                recorder.record(latency);
                // Misses wait on the origin (milliseconds): adding up the shards here
                // keeps the hits' read a single load.
                let mean = self.mean(Outcome::Miss).unwrap_or_default();
                let nanos = u64::try_from(mean.as_nanos()).unwrap_or(u64::MAX);
                self.mean_miss_nanos.store(nanos, Ordering::Relaxed);
            }
            Outcome::Stale(_) | Outcome::Error => recorder.record(latency),
        }
    }

    /// Records one origin call.
    pub fn origin_call(&self, result: OriginResult, latency: Duration) {
        self.origin_results[result as usize].inc();
        self.latency.origin.record(latency);
    }

    /// Records one tier operation.
    pub fn tier_op(&self, tier: TierKind, op: TierOp, latency: Duration, failed: bool) {
        self.latency.tier_op(tier, op).record(latency);
        if failed {
            self.tier_errors[tier.index()][op as usize].inc();
        }
    }

    pub fn eviction(&self, tier: TierKind, cause: EvictionCause) {
        self.evictions[tier.index()][cause as usize].inc();
    }

    /// A value a shared tier held was not served.
    pub fn value_rejected(&self, tier: TierKind, why: ValueRejection) {
        self.rejected_values[tier.index()][why as usize].inc();
    }

    /// The origin breaker moved to `to`.
    pub fn breaker_moved(&self, to: BreakerState) {
        self.breaker_state.set(to as i64);
        self.breaker_transitions[to as usize].inc();
    }

    /// An origin call was refused by the open breaker.
    pub fn breaker_refused(&self) {
        self.breaker_refusals.inc();
    }

    pub fn coalesced_waiter(&self) {
        self.coalesced.inc();
    }

    pub fn set_tier_up(&self, tier: TierKind, up: bool) {
        self.tier_up[tier.index()].set(i64::from(up));
    }

    pub fn tier_reconnected(&self, tier: TierKind) {
        self.reconnects[tier.index()].inc();
    }

    /// Refreshes size gauges (called before each scrape).
    pub fn set_size(&self, tier: TierKind, entries: Option<u64>, bytes: Option<u64>) {
        if let Some(n) = entries {
            self.entries
                .with_label_values(&[tier.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let (TierKind::Memory, Some(b)) = (tier, bytes) {
            self.memory_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }

    pub fn config_reloaded(&self, success: bool) {
        self.reload_ok.set(i64::from(success));
        self.reloads
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn connection_rejected(&self) {
        self.rejected_connections.inc();
    }

    /// Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recording shows up in counts, means, percentiles and the text format.
    #[test]
    fn recording_is_visible_everywhere() {
        let m = Metrics::new();
        m.request(Outcome::Miss, Duration::from_millis(300));
        m.request(Outcome::Hit(TierKind::Memory), Duration::from_micros(200));
        assert_eq!(m.count(Outcome::Miss), 1);
        assert_eq!(m.mean(Outcome::Miss), Some(Duration::from_millis(300)));
        assert!(m.time_saved() > Duration::from_millis(299));
        assert_eq!(m.percentiles(Outcome::Hit(TierKind::Memory)).count, 1);
        let text = m.encode();
        assert!(text.contains(r#"codette_cache_requests_total{result="hit",tier="memory"} 1"#));
        assert!(text.contains("codette_cache_build_info{version="));
    }
}
