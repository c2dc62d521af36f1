//! What the dashboards and the advice read back: counts, means and percentiles, with
//! shards added up and histograms merged (the slow side, off the request path).

use std::time::Duration;

use prometheus::IntCounter;

use super::{
    EvictionCause, Function, InvalidationSource, Metrics, OriginResult, Outcome, Percentiles,
    Refresh, TierOp, ValueRejection, hdr,
};
use crate::names::TierKind;

impl Metrics {
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.latency.outcome(outcome).totals().count
    }

    /// Exact total latency of an outcome.
    pub fn total(&self, outcome: Outcome) -> Duration {
        Duration::from_nanos(self.latency.outcome(outcome).totals().nanos)
    }

    /// Mean latency of an outcome, `None` before the first one.
    pub fn mean(&self, outcome: Outcome) -> Option<Duration> {
        let t = self.latency.outcome(outcome).totals();
        (t.count > 0).then(|| Duration::from_nanos(t.nanos / t.count))
    }

    pub fn percentiles(&self, outcome: Outcome) -> Percentiles {
        self.percentiles_of(&[outcome])
    }

    /// Percentiles of several outcomes' requests together (e.g. hits of every tier),
    /// from their histograms merged: percentiles cannot be combined any other way.
    pub fn percentiles_of(&self, outcomes: &[Outcome]) -> Percentiles {
        let mut all = hdr::empty();
        for outcome in outcomes {
            self.latency.outcome(*outcome).merge_into(&mut all);
        }
        Percentiles::of(&all)
    }

    /// Every request's latency so far, all outcomes merged (the live dashboard takes
    /// per-second percentiles from the difference of two of these).
    pub fn requests_histogram(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = hdr::empty();
        for outcome in Outcome::all() {
            self.latency.outcome(outcome).merge_into(&mut all);
        }
        all
    }

    pub fn origin_percentiles(&self) -> Percentiles {
        let mut all = hdr::empty();
        self.latency.origin.merge_into(&mut all);
        Percentiles::of(&all)
    }

    /// Origin calls with `result`, every function's.
    pub fn origin_count(&self, result: OriginResult) -> u64 {
        self.origin_results
            .iter()
            .map(|by_result| by_result[result as usize].get())
            .sum()
    }

    pub fn refreshes(&self, reason: Refresh) -> u64 {
        self.refreshes[reason as usize].get()
    }

    pub fn coalesced(&self) -> u64 {
        self.coalesced.get()
    }

    pub fn evictions(&self, tier: TierKind, cause: EvictionCause) -> u64 {
        self.evictions[tier.index()][cause as usize].get()
    }

    pub fn reconnects(&self, tier: TierKind) -> u64 {
        self.reconnects[tier.index()].get()
    }

    pub fn tier_errors(&self, tier: TierKind) -> u64 {
        self.tier_errors[tier.index()]
            .iter()
            .map(IntCounter::get)
            .sum()
    }

    pub fn rejected_values(&self, tier: TierKind, why: ValueRejection) -> u64 {
        self.rejected_values[tier.index()][why as usize].get()
    }

    /// Percentiles of the broadcast invalidation lag.
    pub fn invalidation_lag(&self) -> Percentiles {
        let mut all = hdr::empty();
        self.latency.invalidation_lag.merge_into(&mut all);
        Percentiles::of(&all)
    }

    pub fn invalidations(&self, source: InvalidationSource) -> u64 {
        self.invalidations[source as usize]
            .iter()
            .map(IntCounter::get)
            .sum()
    }

    /// Calls of `function` refused by its open breaker.
    pub fn breaker_refusals(&self, function: Function) -> u64 {
        self.breaker_refusals[function.0].get()
    }

    /// Percentiles of one tier operation (HDR, like the requests').
    pub fn tier_op_percentiles(&self, tier: TierKind, op: TierOp) -> Percentiles {
        let mut all = hdr::empty();
        self.latency.tier_op(tier, op).merge_into(&mut all);
        Percentiles::of(&all)
    }

    pub fn time_saved(&self) -> Duration {
        let nanos = TierKind::ALL
            .iter()
            .map(|&k| self.latency.outcome(Outcome::Hit(k)).totals().saved_nanos)
            .sum();
        Duration::from_nanos(nanos)
    }
}
