//! The seed's hit-rate bands (> 80 % optimal, 50-80 % monitor, < 50 % low), the speedup
//! line that goes with an optimal cache, and Part 7's > 95 % over-caching note.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

/// Above this hit rate the cache is performing optimally (seed Part 3).
pub const OPTIMAL_PERCENT: f64 = 80.0;
/// Below this hit rate the cache is inefficient (seed Part 3).
pub const LOW_PERCENT: f64 = 50.0;
/// Above this hit rate answers may be staying too long (seed Part 7).
pub const OVER_CACHING_PERCENT: f64 = 95.0;

pub struct HitRateBand;

impl Rule for HitRateBand {
    fn evaluate(&self, s: &Snapshot, _: &AdviceConfig) -> Vec<Advice> {
        let rate = s.hit_rate_percent();
        let (severity, message) = if rate > OPTIMAL_PERCENT {
            (
                Severity::Info,
                "✅ Cache performing optimally with high hit rate".to_owned(),
            )
        } else if rate >= LOW_PERCENT {
            (
                Severity::Info,
                format!("Hit rate {rate:.1}% is moderate: monitor for optimization opportunities"),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "⚠️ Cache efficiency low ({rate:.1}% hits) - consider adjusting TTL or query patterns"
                ),
            )
        };
        vec![Advice::new(
            "hit_rate",
            severity,
            message,
            "hit_rate_percent",
            rate,
        )]
    }
}

pub struct Speedup;

impl Rule for Speedup {
    fn evaluate(&self, s: &Snapshot, _: &AdviceConfig) -> Vec<Advice> {
        let speedup = s.speedup();
        if s.hit_rate_percent() <= OPTIMAL_PERCENT || speedup <= 0.0 {
            return Vec::new();
        }
        vec![Advice::new(
            "speedup",
            Severity::Info,
            format!("Maintaining {speedup:.2}x performance improvement"),
            "speedup_multiplier",
            speedup,
        )]
    }
}

pub struct OverCaching;

impl Rule for OverCaching {
    fn evaluate(&self, s: &Snapshot, _: &AdviceConfig) -> Vec<Advice> {
        let rate = s.hit_rate_percent();
        if rate <= OVER_CACHING_PERCENT {
            return Vec::new();
        }
        vec![Advice::new(
            "over_caching",
            Severity::Info,
            format!(
                "Hit rate {rate:.1}% may indicate over-caching: check answers do not stay stale (ttl_secs = {})",
                s.ttl_secs
            ),
            "hit_rate_percent",
            rate,
        )]
    }
}
