//! Seed Part 7's latency targets: hits under 100 ms, misses under 400 ms (configurable).

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

pub struct HitLatency;

impl Rule for HitLatency {
    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        if s.hits == 0 || s.avg_hit_ms <= c.hit_latency_target_ms {
            return Vec::new();
        }
        vec![Advice::new(
            "hit_latency",
            Severity::Warning,
            format!(
                "Average hit latency {:.2} ms is over the {} ms target: check Redis latency and connection",
                s.avg_hit_ms, c.hit_latency_target_ms
            ),
            "average_hit_latency_ms",
            s.avg_hit_ms,
        )]
    }
}

pub struct MissLatency;

impl Rule for MissLatency {
    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        if s.misses == 0 || s.avg_miss_ms <= c.miss_latency_target_ms {
            return Vec::new();
        }
        vec![Advice::new(
            "miss_latency",
            Severity::Warning,
            format!(
                "Average miss latency {:.2} ms is over the {} ms target: the origin ({}) is slow",
                s.avg_miss_ms, c.miss_latency_target_ms, s.origin_kind
            ),
            "average_miss_latency_ms",
            s.avg_miss_ms,
        )]
    }
}
