//! One `Metrics` struct: every Prometheus family, registered on an explicit `Registry`,
//! and the HDR histograms behind the JSON dashboards. Both are fed by the same calls, so
//! `/metrics` and the dashboards always agree. Label values come from enums; every child
//! is resolved once at start-up so the hot path does no label hashing.

mod hdr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use hdr::{Percentiles, ShardedHistogram, empty as empty_histogram};

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

/// Per-outcome figures kept beside Prometheus: exact counts and sums in nanoseconds
/// (Prometheus' own sum takes a lock; microseconds would truncate a ~5 µs memory hit by
/// up to 20 %), and the HDR histogram.
struct OutcomeSeries {
    count: IntCounter,
    seconds: Histogram,
    nanos_sum: AtomicU64,
    hdr: ShardedHistogram,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    outcomes: Vec<OutcomeSeries>,
    origin_results: Vec<IntCounter>,
    origin_seconds: Histogram,
    origin_hdr: ShardedHistogram,
    /// `[tier][op]`
    tier_seconds: Vec<Vec<Histogram>>,
    tier_errors: Vec<Vec<IntCounter>>,
    /// `[tier][cause]`
    evictions: Vec<Vec<IntCounter>>,
    coalesced: IntCounter,
    entries: IntGaugeVec,
    memory_bytes: IntGauge,
    tier_up: Vec<IntGauge>,
    reconnects: Vec<IntCounter>,
    time_saved: Counter,
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

        let requests = r.counter_vec(
            "codette_cache_requests_total",
            "Context requests by the tier that answered and the result.",
            &["tier", "result"],
        );
        let durations = r.histogram_vec(
            "codette_cache_request_duration_seconds",
            "End-to-end context request latency, received to response ready.",
            &["tier", "result"],
            REQUEST_BUCKETS,
        );
        let outcomes = Outcome::all()
            .map(|o| {
                let (tier, result) = o.labels();
                OutcomeSeries {
                    count: requests.with_label_values(&[tier, result]),
                    seconds: durations.with_label_values(&[tier, result]),
                    nanos_sum: AtomicU64::new(0),
                    hdr: ShardedHistogram::new(shards),
                }
            })
            .collect();

        let origin = r.counter_vec(
            "codette_cache_origin_requests_total",
            "Origin calls by result.",
            &["result"],
        );
        let origin_results = OriginResult::ALL
            .iter()
            .map(|res| origin.with_label_values(&[res.as_str()]))
            .collect();
        let origin_seconds = r.histogram(
            "codette_cache_origin_request_duration_seconds",
            "Origin call latency.",
            REQUEST_BUCKETS,
        );

        let tier_ops = r.histogram_vec(
            "codette_cache_tier_operation_duration_seconds",
            "Tier operation latency by tier and operation.",
            &["tier", "op"],
            TIER_BUCKETS,
        );
        let tier_err = r.counter_vec(
            "codette_cache_tier_errors_total",
            "Failed tier operations (errors and timeouts) by tier and operation.",
            &["tier", "op"],
        );
        let tier_seconds = per_tier_op(|k, op| tier_ops.with_label_values(&[k, op]));
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
            outcomes,
            origin_results,
            origin_seconds,
            origin_hdr: ShardedHistogram::new(shards),
            tier_seconds,
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
            time_saved: r.counter(
                "codette_cache_time_saved_seconds_total",
                "Sum over hits of (mean miss latency at that moment - the hit's latency).",
            ),
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
        let series = &self.outcomes[outcome.index()];
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        series.count.inc();
        series.nanos_sum.fetch_add(nanos, Ordering::Relaxed);
        series.seconds.observe(latency.as_secs_f64());
        series.hdr.record(latency);
        if let Outcome::Hit(_) = outcome {
            if let Some(mean_miss) = self.mean(Outcome::Miss) {
                let saved = mean_miss.saturating_sub(latency);
                self.time_saved.inc_by(saved.as_secs_f64());
            }
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
        self.origin_seconds.observe(latency.as_secs_f64());
        self.origin_hdr.record(latency);
    }

    /// Records one tier operation.
    pub fn tier_op(&self, tier: TierKind, op: TierOp, latency: Duration, failed: bool) {
        self.tier_seconds[tier.index()][op as usize].observe(latency.as_secs_f64());
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
        self.outcomes[outcome.index()].count.get()
    }

    /// Exact total latency of an outcome.
    pub fn total(&self, outcome: Outcome) -> Duration {
        Duration::from_nanos(
            self.outcomes[outcome.index()]
                .nanos_sum
                .load(Ordering::Relaxed),
        )
    }

    /// Mean latency of an outcome, `None` before the first one.
    pub fn mean(&self, outcome: Outcome) -> Option<Duration> {
        let n = self.count(outcome);
        (n > 0).then(|| self.total(outcome) / u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub fn percentiles(&self, outcome: Outcome) -> Percentiles {
        self.percentiles_of(&[outcome])
    }

    /// Percentiles of several outcomes' requests together (e.g. hits of every tier),
    /// from their histograms merged: percentiles cannot be combined any other way.
    pub fn percentiles_of(&self, outcomes: &[Outcome]) -> Percentiles {
        let mut all = hdr::empty();
        for outcome in outcomes {
            self.outcomes[outcome.index()].hdr.merge_into(&mut all);
        }
        Percentiles::of(&all)
    }

    pub fn origin_percentiles(&self) -> Percentiles {
        Percentiles::of(&self.origin_hdr.merged())
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
        Duration::from_secs_f64(self.time_saved.get().max(0.0))
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

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> prometheus::HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(prometheus::HistogramVec::new(opts, labels).expect("valid metric"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }

    fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn counter(&self, name: &str, help: &str) -> Counter {
        self.add(Counter::new(name, help).expect("valid metric"))
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
