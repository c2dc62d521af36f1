//! What the freshness rules did: the TTL each origin answer was stored with (adaptive
//! or not), how often a refresh found the answer changed, and the negative entries
//! (empty answers stored under `negative_ttl_secs`).

use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, IntCounter};
use serde::Serialize;

use super::registrar::Registrar;

/// TTL buckets in seconds: a few seconds (tests, negative entries) to a day.
const TTL_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0,
];

/// Longest TTL the dashboard histogram keeps apart (a week); longer ones are counted there.
const HIGHEST_SECS: u64 = 7 * 24 * 3600;

pub(super) struct Freshness {
    ttl: Histogram,
    /// The same TTLs for the dashboard's percentiles.
    ttl_hdr: Mutex<Hdr<u64>>,
    compared: IntCounter,
    changed: IntCounter,
    negative_stored: IntCounter,
    negative_served: IntCounter,
}

impl Freshness {
    pub(super) fn new(r: &Registrar<'_>) -> Self {
        let negative = r.counter_vec(
            "codette_cache_negative_answers_total",
            "Empty answers stored for negative_ttl_secs (stored) and served from such an entry (served).",
            &["event"],
        );
        Self {
            ttl: r.add(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "codette_cache_ttl_seconds",
                        "TTL each origin answer was stored with: adapted, negative, or [cache] ttl_secs (a tier's own ttl_secs is not seen here).",
                    )
                    .buckets(TTL_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            ttl_hdr: Mutex::new(
                Hdr::new_with_bounds(1, HIGHEST_SECS, 2).expect("constant bounds are valid"),
            ),
            compared: r.int_counter(
                "codette_cache_answer_comparisons_total",
                "Refreshes whose answer was compared with the entry it replaced.",
            ),
            changed: r.int_counter(
                "codette_cache_answer_changes_total",
                "Refreshes whose answer differed from the entry it replaced.",
            ),
            negative_stored: negative.with_label_values(&["stored"]),
            negative_served: negative.with_label_values(&["served"]),
        }
    }
}

/// The TTLs in force and the change counts, for `/codette/analytics/dashboard`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct TtlSummary {
    /// Origin answers stored.
    pub stored: u64,
    pub min_secs: u64,
    pub p50_secs: u64,
    pub p90_secs: u64,
    pub max_secs: u64,
    /// Refreshes compared with the entry they replaced, and how many had changed.
    pub compared: u64,
    pub changed: u64,
    pub negative_stored: u64,
    pub negative_served: u64,
}

impl super::Metrics {
    /// An origin answer was stored for `ttl`.
    pub fn ttl_assigned(&self, ttl: Duration) {
        let f = &self.freshness;
        f.ttl.observe(ttl.as_secs_f64());
        f.ttl_hdr
            .lock()
            .saturating_record(ttl.as_secs().clamp(1, HIGHEST_SECS));
    }

    /// A refresh compared its answer with the entry it replaces.
    pub fn answer_compared(&self, changed: bool) {
        self.freshness.compared.inc();
        if changed {
            self.freshness.changed.inc();
        }
    }

    pub fn negative_stored(&self) {
        self.freshness.negative_stored.inc();
    }

    pub fn negative_served(&self) {
        self.freshness.negative_served.inc();
    }

    pub fn ttl_summary(&self) -> TtlSummary {
        let f = &self.freshness;
        let h = f.ttl_hdr.lock();
        let at = |q| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        TtlSummary {
            stored: h.len(),
            min_secs: if h.is_empty() { 0 } else { h.min() },
            p50_secs: at(0.5),
            p90_secs: at(0.9),
            max_secs: if h.is_empty() { 0 } else { h.max() },
            compared: f.compared.get(),
            changed: f.changed.get(),
            negative_stored: f.negative_stored.get(),
            negative_served: f.negative_served.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use std::time::Duration;

    /// TTLs reach both the Prometheus histogram and the dashboard summary.
    #[test]
    fn ttls_and_changes_are_visible() {
        let m = Metrics::new();
        for secs in [30, 60, 60, 120] {
            m.ttl_assigned(Duration::from_secs(secs));
        }
        m.answer_compared(true);
        m.answer_compared(false);
        m.negative_stored();
        let s = m.ttl_summary();
        assert_eq!((s.stored, s.min_secs, s.max_secs), (4, 30, 120));
        assert_eq!(s.p50_secs, 60);
        assert_eq!((s.compared, s.changed, s.negative_stored), (2, 1, 1));
        let text = m.encode();
        assert!(text.contains("codette_cache_ttl_seconds_count 4"), "{text}");
        assert!(text.contains("codette_cache_answer_changes_total 1"));
        assert!(text.contains(r#"codette_cache_negative_answers_total{event="stored"} 1"#));
    }
}
