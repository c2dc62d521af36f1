//! Origin health advice: too many origin calls failing or timing out.

use super::{Advice, AdviceConfig, Rule, Severity};
use crate::stats::Snapshot;

/// Fewer origin calls than this are too few to call a rate.
const MIN_CALLS: u64 = 5;

pub struct OriginErrors;

impl Rule for OriginErrors {
    fn needs_traffic(&self) -> bool {
        false
    }

    fn evaluate(&self, s: &Snapshot, c: &AdviceConfig) -> Vec<Advice> {
        let failed = s.origin_errors + s.origin_timeouts;
        let calls = s.origin_ok + failed;
        if calls < MIN_CALLS {
            return Vec::new();
        }
        let percent = failed as f64 * 100.0 / calls as f64;
        if percent <= c.origin_error_percent {
            return Vec::new();
        }
        vec![Advice::new(
            "origin_errors",
            Severity::Critical,
            format!(
                "{percent:.1}% of {calls} origin calls failed ({} errors, {} timeouts): check the {} origin",
                s.origin_errors, s.origin_timeouts, s.origin_kind
            ),
            "origin_error_percent",
            percent,
        )]
    }
}
