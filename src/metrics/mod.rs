//! One `Metrics` struct: every Prometheus family, registered on an explicit `Registry`,
//! and the HDR histograms behind the JSON dashboards. Per-request latencies go into
//! sharded recorders (`recorder.rs`) that feed both `/metrics` (`collector.rs`, at
//! scrape time) and the dashboards, so the two always agree. Label values come from
//! enums; every child is resolved once at start-up so the hot path does no label hashing.

mod collector;
mod freshness;
mod function;
mod hdr;
mod labels;
mod proxy;
mod readers;
mod record;
mod recorder;
mod registrar;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

use collector::{LatencyCollector, Recorders};
pub use freshness::TtlSummary;
pub use function::Function;
pub use hdr::{Percentiles, empty as empty_histogram};
pub use labels::{
    EvictionCause, INVALIDATION_OPS, InvalidationSource, OriginResult, Outcome, Refresh, TierOp,
    ValueRejection,
};
pub use proxy::{ProxyChildren, ProxyResult};
use recorder::Recorder;
use registrar::{Registrar, grid, row};

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
    /// `[function][result]`
    origin_results: Vec<Vec<IntCounter>>,
    tier_errors: Vec<Vec<IntCounter>>,
    /// `[tier][cause]`
    evictions: Vec<Vec<IntCounter>>,
    coalesced: IntCounter,
    entries: IntGaugeVec,
    memory_bytes: IntGauge,
    /// Made on the first `set_tier_up`: only configured tiers have a series.
    tier_up: IntGaugeVec,
    reconnects: Vec<IntCounter>,
    reload_ok: IntGauge,
    reloads: IntCounterVec,
    open_connections: IntGauge,
    rejected_connections: IntCounter,
    /// `[tier][reason]`
    rejected_values: Vec<Vec<IntCounter>>,
    /// By function: each function's chain has its own breaker.
    breaker_state: Vec<IntGauge>,
    /// By function: how many of its breakers are open and half-open now. Two chains
    /// can share a function's name (the original function also proxied); its gauge
    /// shows the worst of them, so an open breaker is never hidden by a closed one.
    breakers_not_closed: Vec<parking_lot::Mutex<[u32; 2]>>,
    /// `[function][BreakerState as usize]`
    breaker_transitions: Vec<Vec<IntCounter>>,
    /// By function.
    breaker_refusals: Vec<IntCounter>,
    /// `[source][op]`, ops as in [`INVALIDATION_OPS`].
    invalidations: Vec<Vec<IntCounter>>,
    invalidation_subscribed: IntGaugeVec,
    invalidation_refused: IntCounter,
    invalidation_losses: IntCounter,
    invalidation_publish_errors: IntCounter,
    /// By [`Refresh`] as usize.
    refreshes: Vec<IntCounter>,
    freshness: freshness::Freshness,
    proxy: proxy::ProxyFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family on a fresh registry, for the original function only.
    pub fn new() -> Self {
        Self::with_functions(std::iter::empty())
    }

    /// Registers every family, the request and origin ones with a `function` series for
    /// the original function, each of `functions` (the proxy's list) and `other`.
    pub fn with_functions<'a>(functions: impl IntoIterator<Item = &'a str>) -> Self {
        let registry = Registry::new();
        let shards = std::thread::available_parallelism().map_or(4, |n| n.get() * 2);
        let r = Registrar(&registry);
        let functions = function::Functions::new(functions);
        let lanes = functions.len();

        let latency = Arc::new(Recorders {
            functions,
            outcomes: Outcome::all()
                .map(|_| Recorder::with_lanes(REQUEST_BUCKETS, true, shards, lanes))
                .collect(),
            tier_ops: TierKind::ALL
                .iter()
                .flat_map(|_| TierOp::ALL.map(|_| Recorder::new(TIER_BUCKETS, true, shards)))
                .collect(),
            origin: Recorder::with_lanes(REQUEST_BUCKETS, true, shards, lanes),
            invalidation_lag: Recorder::new(REQUEST_BUCKETS, true, 1),
        });
        registry
            .register(Box::new(LatencyCollector::new(Arc::clone(&latency))))
            .expect("metric names are unique constants");

        let origin = r.counter_vec(
            "codette_cache_origin_requests_total",
            "Origin calls by function and result.",
            &["function", "result"],
        );
        let function_names: Vec<&str> = latency.functions.iter().map(|(_, n)| n).collect();
        let origin_results = grid(
            &origin,
            &function_names,
            &OriginResult::ALL.map(OriginResult::as_str),
        );
        let tier_err = r.counter_vec(
            "codette_cache_tier_errors_total",
            "Failed tier operations (errors and timeouts) by tier and operation.",
            &["tier", "op"],
        );
        let tiers = TierKind::ALL.map(TierKind::as_str);
        let tier_errors = grid(&tier_err, &tiers, &TierOp::ALL.map(TierOp::as_str));

        let evict = r.counter_vec(
            "codette_cache_evictions_total",
            "Entries that left a tier, by cause.",
            &["tier", "cause"],
        );
        let evictions = grid(
            &evict,
            &tiers,
            &EvictionCause::ALL.map(EvictionCause::as_str),
        );

        let tier_up = r.gauge_vec(
            "codette_cache_tier_up",
            "1 while a tier serves, 0 while requests skip it.",
            &["tier"],
        );
        let reconnect = r.counter_vec(
            "codette_cache_tier_reconnects_total",
            "Times a remote tier came back after being down.",
            &["tier"],
        );
        let reconnects = row(&reconnect, &tiers);

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
        let rejected_values = grid(
            &rejected,
            &tiers,
            &ValueRejection::ALL.map(ValueRejection::as_str),
        );
        let transitions = r.counter_vec(
            "codette_cache_origin_breaker_transitions_total",
            "Times a function's origin circuit breaker moved to a state.",
            &["function", "to"],
        );
        let breaker_transitions = grid(
            &transitions,
            &function_names,
            &BreakerState::ALL.map(BreakerState::as_str),
        );
        let breaker_state = r.gauge_vec(
            "codette_cache_origin_breaker_state",
            "A function's origin circuit breaker: 0 closed, 1 open, 2 half-open.",
            &["function"],
        );
        let breaker_state = row(&breaker_state, &function_names);
        let refusals = r.counter_vec(
            "codette_cache_origin_breaker_refusals_total",
            "Origin calls not made because the function's circuit breaker was open.",
            &["function"],
        );
        let breaker_refusals = row(&refusals, &function_names);

        let refreshed = r.counter_vec(
            "codette_cache_refreshes_total",
            "Origin calls made ahead of a user's miss: ahead (a hit past refresh_ahead of its TTL), revalidate (an expired entry served under stale_while_revalidate), warm (a warming list).",
            &["reason"],
        );
        let refreshes = row(&refreshed, &Refresh::ALL.map(Refresh::as_str));

        let invalidated = r.counter_vec(
            "codette_cache_invalidations_total",
            "Invalidations applied here, by where they came from and what they removed.",
            &["source", "op"],
        );
        let invalidations = grid(
            &invalidated,
            &InvalidationSource::ALL.map(InvalidationSource::as_str),
            &INVALIDATION_OPS,
        );

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
            breakers_not_closed: breaker_state.iter().map(|_| Default::default()).collect(),
            breaker_state,
            breaker_transitions,
            breaker_refusals,
            invalidations,
            invalidation_subscribed: r.gauge_vec(
                "codette_cache_invalidation_subscribed",
                "1 while an invalidation subscription (Redis broadcast, PostgreSQL LISTEN) is live.",
                &["channel"],
            ),
            invalidation_refused: r.int_counter(
                "codette_cache_invalidation_messages_refused_total",
                "Broadcast messages and change notifications refused as malformed.",
            ),
            invalidation_losses: r.int_counter(
                "codette_cache_invalidation_subscription_losses_total",
                "Times an invalidation subscription ended (the memory tier was emptied).",
            ),
            refreshes,
            freshness: freshness::Freshness::new(&r),
            proxy: proxy::ProxyFamilies::new(&r),
            invalidation_publish_errors: r.int_counter(
                "codette_cache_invalidation_publish_errors_total",
                "Invalidations this instance could not publish to the others.",
            ),
            registry,
        }
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
    use std::time::Duration;

    /// Recording shows up in counts, means, percentiles and the text format.
    #[test]
    fn recording_is_visible_everywhere() {
        let m = Metrics::new();
        let f = Function::ORIGINAL;
        m.request(f, Outcome::Miss, Duration::from_millis(300));
        m.request(
            f,
            Outcome::Hit(TierKind::Memory),
            Duration::from_micros(200),
        );
        assert_eq!(m.count(Outcome::Miss), 1);
        assert_eq!(m.mean(Outcome::Miss), Some(Duration::from_millis(300)));
        assert!(m.time_saved() > Duration::from_millis(299));
        assert_eq!(m.percentiles(Outcome::Hit(TierKind::Memory)).count, 1);
        let text = m.encode();
        assert!(text.contains(
            r#"codette_cache_requests_total{function="get_codette_context",result="hit",tier="memory"} 1"#
        ));
        assert!(text.contains("codette_cache_build_info{version="));
    }

    /// Each function's requests and origin calls are its own series; the readers the
    /// dashboards use add them up.
    #[test]
    fn functions_are_labelled_apart() {
        let m = Metrics::with_functions(["search_files"]);
        let search = m.function("search_files");
        assert_ne!(search, Function::ORIGINAL);
        m.request(search, Outcome::Miss, Duration::from_millis(3));
        m.request(Function::ORIGINAL, Outcome::Miss, Duration::from_millis(5));
        m.request(
            m.function("unlisted"),
            Outcome::Error,
            Duration::from_millis(1),
        );
        m.origin_call(search, OriginResult::Timeout, Duration::from_millis(3));
        assert_eq!(m.count(Outcome::Miss), 2);
        assert_eq!(m.origin_count(OriginResult::Timeout), 1);
        let text = m.encode();
        for line in [
            r#"codette_cache_requests_total{function="search_files",result="miss",tier="origin"} 1"#,
            r#"codette_cache_requests_total{function="get_codette_context",result="miss",tier="origin"} 1"#,
            r#"codette_cache_requests_total{function="other",result="error",tier="none"} 1"#,
            r#"codette_cache_requests_total{function="search_files",result="error",tier="none"} 0"#,
            r#"codette_cache_origin_requests_total{function="search_files",result="timeout"} 1"#,
            r#"codette_cache_origin_requests_total{function="get_codette_context",result="timeout"} 0"#,
            r#"codette_cache_origin_request_duration_seconds_count{function="search_files"} 1"#,
            r#"codette_cache_origin_request_duration_seconds_count{function="other"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
