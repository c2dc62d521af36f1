//! HDR histograms of microseconds: the bounds every latency here uses and the
//! percentiles the JSON dashboards show. Recording into them is `recorder.rs`'s job.

use hdrhistogram::Histogram;

/// Lowest recordable value: 1 µs.
pub const LOWEST_MICROS: u64 = 1;
/// Highest recordable value: 60 s; longer requests are recorded as 60 s.
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Significant figures kept: 3, so any value is within 0.1 %.
pub const SIGFIG: u8 = 3;

/// An empty histogram with the bounds every latency here uses.
pub fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGFIG)
        .expect("constant bounds are valid")
}

/// Percentiles of one histogram in milliseconds, for the JSON dashboards.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles of a known spread, in milliseconds.
    #[test]
    fn percentiles_of_a_spread() {
        let mut h = empty();
        for i in 1..=8u64 {
            for _ in 0..1000 {
                h.record(100 * i).unwrap();
            }
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 8000);
        assert!((p.max_ms - 0.8).abs() < 0.01, "{p:?}");
        assert!(p.p50_ms >= 0.4 && p.p50_ms <= 0.5, "{p:?}");
        assert_eq!(Percentiles::of(&empty()).count, 0);
    }
}
