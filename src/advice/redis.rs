//! Redis advice: configured but down, or absent while several daemons share the load.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

pub struct RedisDisconnected;

impl Rule for RedisDisconnected {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, _: &AdviceConfig) -> Vec<Advice> {
        match s.shared_tier() {
            Some(t) if !t.health.is_serving() => vec![Advice::new(
                "redis_disconnected",
                Severity::Critical,
                "Redis is configured but disconnected: serving from memory and the origin; check `redis-cli ping` (or `redis-cli cluster info`) and the tier's url or nodes".into(),
                "redis_up",
                0.0,
            )],
            _ => Vec::new(),
        }
    }
}

pub struct NoSharedTier;

impl Rule for NoSharedTier {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        if s.shared_tier().is_some() {
            return Vec::new();
        }
        let n = f64::from(c.expected_instances);
        vec![if c.expected_instances > 1 {
            Advice::new(
                "no_shared_tier",
                Severity::Warning,
                format!(
                    "{} instances are expected but there is no Redis tier: each caches alone and repeats the others' origin calls",
                    c.expected_instances
                ),
                "expected_instances",
                n,
            )
        } else {
            Advice::new(
                "no_shared_tier",
                Severity::Info,
                "Consider Redis if scaling to multiple backend instances".into(),
                "expected_instances",
                n,
            )
        }]
    }
}
