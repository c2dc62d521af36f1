//! Memory-tier advice: evicting for lack of space, or close to its byte bound.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

const MIB: f64 = 1024.0 * 1024.0;

pub struct EvictingForSize;

impl Rule for EvictingForSize {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, _: &AdviceConfig) -> Vec<Advice> {
        let evicted = s.size_evictions();
        if evicted == 0 {
            return Vec::new();
        }
        let max = s.memory_size().max_bytes.unwrap_or(0) as f64 / MIB;
        vec![Advice::new(
            "memory_evicting",
            Severity::Warning,
            format!(
                "The memory tier evicted {evicted} entries for lack of space: raise its max_bytes (now {max:.1} MiB) or max_entries"
            ),
            "size_evictions",
            evicted as f64,
        )]
    }
}

pub struct NearBound;

impl Rule for NearBound {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        let size = s.memory_size();
        let (Some(bytes), Some(max)) = (size.bytes, size.max_bytes) else {
            return Vec::new();
        };
        let percent = bytes as f64 * 100.0 / max.max(1) as f64;
        if percent < c.memory_near_bound_percent {
            return Vec::new();
        }
        vec![Advice::new(
            "memory_near_bound",
            Severity::Info,
            format!(
                "The memory tier is {percent:.1}% full ({:.1} of {:.1} MiB): it will start evicting",
                bytes as f64 / MIB,
                max as f64 / MIB
            ),
            "memory_used_percent",
            percent,
        )]
    }
}
