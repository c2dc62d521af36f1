//! What the daemon records: one method per event, each touching only its own shard or
//! counter (the request path's side; readers add up in `readers.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    EvictionCause, Function, INVALIDATION_OPS, InvalidationSource, Metrics, OriginResult, Outcome,
    Refresh, TierOp, ValueRejection,
};
use crate::names::{BreakerState, TierKind};

impl Metrics {
    /// Records one finished request through `function`'s chain.
    pub fn request(&self, function: Function, outcome: Outcome, latency: Duration) {
        let saved = match outcome {
            Outcome::Hit(_) => Duration::from_nanos(self.mean_miss_nanos.load(Ordering::Relaxed))
                .saturating_sub(latency),
            _ => Duration::ZERO,
        };
        self.latency
            .outcome(outcome)
            .record_in(function.0, latency, saved);
        if outcome == Outcome::Miss {
            // Misses wait on the origin (milliseconds): adding up the shards here
            // keeps the hits' read a single load.
            let mean = self.mean(Outcome::Miss).unwrap_or_default();
            let nanos = u64::try_from(mean.as_nanos()).unwrap_or(u64::MAX);
            self.mean_miss_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    /// Records one origin call of `function`.
    pub fn origin_call(&self, function: Function, result: OriginResult, latency: Duration) {
        self.origin_results[function.0][result as usize].inc();
        self.latency
            .origin
            .record_in(function.0, latency, Duration::ZERO);
    }

    /// The slot of a cached function's requests and origin calls (`other` for a
    /// function not listed at start-up).
    pub fn function(&self, name: &str) -> Function {
        self.latency.function(name)
    }

    /// Records one tier operation.
    pub fn tier_op(&self, tier: TierKind, op: TierOp, latency: Duration, failed: bool) {
        self.latency.tier_op(tier, op).record(latency);
        if failed {
            self.tier_errors[tier.index()][op as usize].inc();
        }
    }

    pub fn eviction(&self, tier: TierKind, cause: EvictionCause) {
        self.evictions[tier.index()][cause as usize].inc();
    }

    /// A value a shared tier held was not served.
    pub fn value_rejected(&self, tier: TierKind, why: ValueRejection) {
        self.rejected_values[tier.index()][why as usize].inc();
    }

    /// One of `function`'s origin breakers moved from `from` to `to`. The gauge shows
    /// the worst of the function's breakers: open, else half-open, else closed.
    pub fn breaker_moved(&self, function: Function, from: BreakerState, to: BreakerState) {
        // [open, half-open]; every breaker starts closed.
        let slot = |state| match state {
            BreakerState::Open => Some(0),
            BreakerState::HalfOpen => Some(1),
            BreakerState::Closed => None,
        };
        let mut not_closed = self.breakers_not_closed[function.0].lock();
        if let Some(i) = slot(from) {
            not_closed[i] = not_closed[i].saturating_sub(1);
        }
        if let Some(i) = slot(to) {
            not_closed[i] += 1;
        }
        let worst = match *not_closed {
            [open, _] if open > 0 => BreakerState::Open,
            [_, half_open] if half_open > 0 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        };
        // Set under the lock, so two moves cannot leave the older figure.
        self.breaker_state[function.0].set(worst as i64);
        self.breaker_transitions[function.0][to as usize].inc();
    }

    /// An origin call of `function` was refused by its open breaker.
    pub fn breaker_refused(&self, function: Function) {
        self.breaker_refusals[function.0].inc();
    }

    /// An invalidation applied here; `lag` from when it was published, for broadcasts.
    pub fn invalidation(&self, source: InvalidationSource, op: &str, lag: Option<Duration>) {
        if let Some(i) = INVALIDATION_OPS.iter().position(|o| *o == op) {
            self.invalidations[source as usize][i].inc();
        }
        if let Some(lag) = lag {
            self.latency.invalidation_lag.record(lag);
        }
    }

    pub fn set_invalidation_subscribed(&self, channel: &str, live: bool) {
        self.invalidation_subscribed
            .with_label_values(&[channel])
            .set(i64::from(live));
    }

    pub fn invalidation_refused(&self) {
        self.invalidation_refused.inc();
    }

    pub fn invalidation_subscription_lost(&self) {
        self.invalidation_losses.inc();
    }

    pub fn invalidation_publish_failed(&self) {
        self.invalidation_publish_errors.inc();
    }

    pub fn refresh_started(&self, reason: Refresh) {
        self.refreshes[reason as usize].inc();
    }

    /// The proxy series of `function` (a listed function, or `other`).
    pub fn proxy_children(&self, function: &str) -> super::ProxyChildren {
        self.proxy.children(function)
    }

    pub fn coalesced_waiter(&self) {
        self.coalesced.inc();
    }

    pub fn set_tier_up(&self, tier: TierKind, up: bool) {
        self.tier_up
            .with_label_values(&[tier.as_str()])
            .set(i64::from(up));
    }

    pub fn tier_reconnected(&self, tier: TierKind) {
        self.reconnects[tier.index()].inc();
    }

    /// Refreshes size gauges (called before each scrape).
    pub fn set_size(&self, tier: TierKind, entries: Option<u64>, bytes: Option<u64>) {
        if let Some(n) = entries {
            self.entries
                .with_label_values(&[tier.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let (TierKind::Memory, Some(b)) = (tier, bytes) {
            self.memory_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }

    pub fn config_reloaded(&self, success: bool) {
        self.reload_ok.set(i64::from(success));
        self.reloads
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn connection_rejected(&self) {
        self.rejected_connections.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two breakers under one function's name: the gauge shows the worst of them, and
    /// each move is counted.
    #[test]
    fn a_functions_gauge_shows_its_worst_breaker() {
        use BreakerState::{Closed, HalfOpen, Open};
        let metrics = Metrics::with_functions(["get_codette_context"]);
        let f = metrics.function("get_codette_context");
        let gauge = || metrics.breaker_state[f.0].get();
        let steps = [
            ((Closed, Open), 1), // a opens
            ((Closed, Open), 1), // b opens
            ((Open, HalfOpen), 1),
            ((HalfOpen, Closed), 1), // b closes: a is still open
            ((Open, HalfOpen), 2),   // a probes
            ((HalfOpen, Closed), 0),
        ];
        for ((from, to), shown) in steps {
            metrics.breaker_moved(f, from, to);
            assert_eq!(gauge(), shown, "after {from:?} -> {to:?}");
        }
        let opened = metrics.breaker_transitions[f.0][Open as usize].get();
        assert_eq!(opened, 2);
    }
}
