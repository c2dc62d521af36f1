//! Too little traffic for a verdict: says so instead of judging a hit rate from 3 requests.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

pub struct NotEnoughTraffic;

impl Rule for NotEnoughTraffic {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        let n = s.total_requests();
        if n >= c.min_requests {
            return Vec::new();
        }
        vec![Advice::new(
            "not_enough_traffic",
            Severity::Info,
            format!(
                "Not enough traffic to judge yet: {n} of {} requests (advice.min_requests)",
                c.min_requests
            ),
            "total_requests",
            n as f64,
        )]
    }
}
