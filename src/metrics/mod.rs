//! One `Metrics` struct: every Prometheus family, registered on an explicit `Registry`,
//! and the HDR histograms behind the JSON dashboards. Per-request latencies go into
//! sharded recorders (`recorder.rs`) that feed both `/metrics` (`collector.rs`, at
//! scrape time) and the dashboards, so the two always agree. Label values come from
//! enums; every child is resolved once at start-up so the hot path does no label hashing.

mod collector;
mod hdr;
mod recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use collector::{LatencyCollector, Recorders};
pub use hdr::{Percentiles, empty as empty_histogram};
use recorder::Recorder;

use crate::origins::OriginError;
use crate::tiers::TierKind;

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

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit(TierKind),
    Miss,
    Stale(TierKind),
    Error,
}

const TIERS: usize = TierKind::ALL.len();
const OUTCOMES: usize = 2 * TIERS + 2;

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

    fn index(self) -> usize {
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
                .flat_map(|_| TierOp::ALL.map(|_| Recorder::new(TIER_BUCKETS, false, shards)))
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
    pub fn origin_call(&self, result: Result<(), &OriginError>, latency: Duration) {
        let r = match result {
            Ok(()) => OriginResult::Ok,
            Err(e) if e.is_timeout() => OriginResult::Timeout,
            Err(_) => OriginResult::Error,
        };
        self.origin_results[r as usize].inc();
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

    // Readers for the dashboards.

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.latency.outcomes[outcome.index()].totals().count
    }

    /// Exact total latency of an outcome.
    pub fn total(&self, outcome: Outcome) -> Duration {
        Duration::from_nanos(self.latency.outcomes[outcome.index()].totals().nanos)
    }

    /// Mean latency of an outcome, `None` before the first one.
    pub fn mean(&self, outcome: Outcome) -> Option<Duration> {
        let t = self.latency.outcomes[outcome.index()].totals();
        (t.count > 0).then(|| Duration::from_nanos(t.nanos / t.count))
    }

    pub fn percentiles(&self, outcome: Outcome) -> Percentiles {
        self.percentiles_of(&[outcome])
    }

    /// Percentiles of several outcomes' requests together (e.g. hits of every tier),
    /// from their histograms merged: percentiles cannot be combined any other way.
    pub fn percentiles_of(&self, outcomes: &[Outcome]) -> Percentiles {
        let mut all = hdr::empty();
        for outcome in outcomes {
            self.latency.outcomes[outcome.index()].merge_into(&mut all);
        }
        Percentiles::of(&all)
    }

    pub fn origin_percentiles(&self) -> Percentiles {
        let mut all = hdr::empty();
        self.latency.origin.merge_into(&mut all);
        Percentiles::of(&all)
    }

    pub fn origin_count(&self, result: OriginResult) -> u64 {
        self.origin_results[result as usize].get()
    }

    pub fn coalesced(&self) -> u64 {
        self.coalesced.get()
    }

    pub fn evictions(&self, tier: TierKind, cause: EvictionCause) -> u64 {
        self.evictions[tier.index()][cause as usize].get()
    }

    pub fn reconnects(&self, tier: TierKind) -> u64 {
        self.reconnects[tier.index()].get()
    }

    pub fn tier_errors(&self, tier: TierKind) -> u64 {
        self.tier_errors[tier.index()]
            .iter()
            .map(IntCounter::get)
            .sum()
    }

    pub fn time_saved(&self) -> Duration {
        let nanos = TierKind::ALL
            .iter()
            .map(|&k| {
                self.latency.outcomes[Outcome::Hit(k).index()]
                    .totals()
                    .saved_nanos
            })
            .sum();
        Duration::from_nanos(nanos)
    }
}

/// One child per (tier, op), indexed `[tier][op]`.
fn per_tier_op<T>(child: impl Fn(&str, &str) -> T) -> Vec<Vec<T>> {
    TierKind::ALL
        .iter()
        .map(|k| {
            TierOp::ALL
                .iter()
                .map(|op| child(k.as_str(), op.as_str()))
                .collect()
        })
        .collect()
}

/// Registers families, panicking only on a programming error (a duplicate or
/// malformed constant name), which every test run would hit first.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("metric names are unique constants");
        c
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }
}

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
