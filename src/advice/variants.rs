//! Seed Part 8's "look for variations in user queries": queries that differ only by case
//! or whitespace miss separately unless normalisation is on.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

/// Fewer variants than this are noise, whatever their share.
const MIN_VARIANTS: u64 = 3;

pub struct QueryVariants;

impl Rule for QueryVariants {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        if s.normalize_queries || s.query_variants < MIN_VARIANTS || s.distinct_queries == 0 {
            return Vec::new();
        }
        let percent = s.query_variants as f64 * 100.0 / s.distinct_queries as f64;
        if percent < c.query_variant_percent {
            return Vec::new();
        }
        vec![Advice::new(
            "query_variants",
            Severity::Warning,
            format!(
                "{} of {} missed queries differed from an earlier one only by case or whitespace: set [cache] normalize_queries = true",
                s.query_variants, s.distinct_queries
            ),
            "query_variant_percent",
            percent,
        )]
    }
}
