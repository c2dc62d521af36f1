//! Optimisation advice: small rules evaluated in a fixed order on a [`Snapshot`]. Each
//! piece of advice carries a severity, a message and the figure that triggered it;
//! the dashboard lists the messages as the original's `optimization_recommendations`.
//! Adding a rule: a type implementing [`Rule`] and one line in [`RULES`].

mod hit_rate;
mod latency;
mod memory;
mod origin;
mod redis;
mod traffic;
mod variants;

use serde::{Deserialize, Serialize};

use crate::stats::Snapshot;

/// `[advice]`: the thresholds the rules use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceConfig {
    /// Below this many requests, no verdict on hit rate or latency is given.
    pub min_requests: u64,
    /// How many daemons share the traffic; above 1 without Redis each caches alone.
    pub expected_instances: u32,
    /// Mean hit latency target (seed Part 7: < 100 ms).
    pub hit_latency_target_ms: f64,
    /// Mean miss latency target (seed Part 7: < 400 ms).
    pub miss_latency_target_ms: f64,
    /// Origin calls failing or timing out above this share get a warning.
    pub origin_error_percent: f64,
    /// Memory tier fuller than this share of `max_bytes` gets a note.
    pub memory_near_bound_percent: f64,
    /// Case/whitespace variants above this share of distinct queries get a warning.
    pub query_variant_percent: f64,
}

impl Default for AdviceConfig {
    fn default() -> Self {
        Self {
            min_requests: 20,
            expected_instances: 1,
            hit_latency_target_ms: 100.0,
            miss_latency_target_ms: 400.0,
            origin_error_percent: 5.0,
            memory_near_bound_percent: 90.0,
            query_variant_percent: 10.0,
        }
    }
}

impl AdviceConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let percent = [
            ("origin_error_percent", self.origin_error_percent),
            ("memory_near_bound_percent", self.memory_near_bound_percent),
            ("query_variant_percent", self.query_variant_percent),
        ];
        let mut problems: Vec<String> = percent
            .iter()
            .filter(|(_, v)| !(0.0..=100.0).contains(v))
            .map(|(name, v)| format!("advice.{name} is {v}; it must be a percentage (0 to 100)"))
            .collect();
        if self.expected_instances == 0 {
            problems.push("advice.expected_instances must be at least 1".into());
        }
        if self.hit_latency_target_ms <= 0.0 || self.miss_latency_target_ms <= 0.0 {
            problems.push("advice latency targets must be > 0".into());
        }
        problems
    }
}

/// How much an advice matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// The figure that triggered an advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
}

/// One piece of advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub figure: Figure,
}

impl Advice {
    pub fn new(
        rule: &'static str,
        severity: Severity,
        message: String,
        name: &'static str,
        value: f64,
    ) -> Self {
        Self {
            rule,
            severity,
            message,
            figure: Figure {
                name,
                value: crate::figures::round2(value),
            },
        }
    }
}

/// A rule reads a snapshot and may give advice.
pub trait Rule: Sync {
    /// Rules judging rates and latencies stay silent until there is enough traffic.
    fn needs_traffic(&self) -> bool {
        true
    }
    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice>;
}

/// Every rule, in the order their advice is listed.
pub static RULES: &[&dyn Rule] = &[
    &traffic::NotEnoughTraffic,
    &hit_rate::HitRateBand,
    &hit_rate::Speedup,
    &hit_rate::OverCaching,
    &latency::HitLatency,
    &latency::MissLatency,
    &redis::RedisDisconnected,
    &redis::NoSharedTier,
    &memory::EvictingForSize,
    &memory::NearBound,
    &variants::QueryVariants,
    &origin::OriginErrors,
];

/// Evaluates every rule on one snapshot.
pub fn evaluate(s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
    let enough = s.total_requests() >= c.min_requests;
    RULES
        .iter()
        .filter(|r| enough || !r.needs_traffic())
        .flat_map(|r| r.evaluate(s, c))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
