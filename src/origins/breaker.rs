//! The origin circuit breaker, shared by every origin type. After `breaker_failures`
//! consecutive timeouts or connection errors it opens: calls are refused at once (the
//! chain serves a stale entry or answers 503) instead of each waiting for the timeout.
//! After `breaker_open_ms` one call is let through as a probe (half-open); its success
//! closes the breaker, its failure opens it again. Errors the origin raised while
//! reachable (a function error, a bad answer) prove it is up and reset the count.
//! It decides and reports; the chain records the metrics of what it reports.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use crate::names::BreakerState;

pub(super) fn default_failures() -> u32 {
    5
}

pub(super) fn default_open_ms() -> u64 {
    2_000
}

/// Breaker settings: part of every `[origin]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long it stays open before a probe call.
    pub open_for: Duration,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: call.
    Call,
    /// Half-open and this call is the probe; a state change is reported.
    Probe,
    /// Open (or a probe is already out): do not call; try again after this long.
    Refuse { retry_after: Duration },
}

/// How a call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The origin answered (even with an error of its own).
    Reached,
    /// A timeout or a connection-level error.
    Failed,
}

/// A change of state, as the breaker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// The breaker.
pub struct Breaker {
    /// Fixed for the process, like the rest of `[origin]` (a change needs a restart).
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    consecutive: u32,
    opened_at: Instant,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                opened_at: Instant::now(),
            }),
        }
    }

    /// How long it stays open before a probe.
    pub fn open_for(&self) -> Duration {
        self.settings.open_for
    }

    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// Consecutive failures counted now.
    pub fn consecutive_failures(&self) -> u32 {
        self.inner.lock().consecutive
    }

    /// Asks to call the origin. Returns the decision and the move it made, if any.
    pub fn admit(&self) -> (Admit, Option<Moved>) {
        let open_for = self.settings.open_for;
        let mut inner = self.inner.lock();
        match inner.state {
            BreakerState::Closed => (Admit::Call, None),
            BreakerState::Open => {
                let open = inner.opened_at.elapsed();
                if open >= open_for {
                    inner.state = BreakerState::HalfOpen;
                    let moved = Moved {
                        from: BreakerState::Open,
                        to: BreakerState::HalfOpen,
                    };
                    (Admit::Probe, Some(moved))
                } else {
                    let retry_after = open_for - open;
                    (Admit::Refuse { retry_after }, None)
                }
            }
            // One probe at a time; the others are refused until it ends.
            BreakerState::HalfOpen => (
                Admit::Refuse {
                    retry_after: open_for,
                },
                None,
            ),
        }
    }

    /// Records how a call ended. Returns the move it made, if any.
    pub fn record(&self, result: CallResult) -> Option<Moved> {
        let failures = self.settings.failures;
        let mut inner = self.inner.lock();
        let next = match result {
            CallResult::Reached => {
                inner.consecutive = 0;
                BreakerState::Closed
            }
            CallResult::Failed => {
                inner.consecutive = inner.consecutive.saturating_add(1);
                let opens = inner.state == BreakerState::HalfOpen
                    || (failures > 0 && inner.consecutive >= failures);
                if opens {
                    inner.opened_at = Instant::now();
                    BreakerState::Open
                } else {
                    inner.state
                }
            }
        };
        let from = std::mem::replace(&mut inner.state, next);
        (from != next).then_some(Moved { from, to: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, open_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings {
            failures,
            open_for: Duration::from_millis(open_ms),
        })
    }

    /// Closed -> open after N consecutive failures; a success in between resets the count.
    #[test]
    fn opens_after_consecutive_failures() {
        let b = breaker(3, 60_000);
        assert_eq!(b.record(CallResult::Failed), None);
        assert_eq!(b.record(CallResult::Failed), None);
        assert_eq!(b.record(CallResult::Reached), None);
        assert_eq!(b.record(CallResult::Failed), None);
        assert_eq!(b.record(CallResult::Failed), None);
        assert_eq!(
            b.record(CallResult::Failed).map(|m| m.to),
            Some(BreakerState::Open)
        );
        assert!(
            matches!(b.admit(), (Admit::Refuse { retry_after }, None) if retry_after > Duration::from_secs(59))
        );
    }

    /// After the open time one probe goes out; others are refused; its result decides.
    /// Each move names where it came from (the metrics combine a function's breakers).
    #[test]
    fn half_open_lets_one_probe_through() {
        use BreakerState::{Closed, HalfOpen, Open};
        let moved = |from, to| Some(Moved { from, to });
        let b = breaker(1, 0);
        assert_eq!(b.record(CallResult::Failed), moved(Closed, Open));
        assert_eq!(b.admit(), (Admit::Probe, moved(Open, HalfOpen)));
        assert!(matches!(b.admit(), (Admit::Refuse { .. }, None)));
        assert_eq!(b.record(CallResult::Failed), moved(HalfOpen, Open));
        assert_eq!(b.admit(), (Admit::Probe, moved(Open, HalfOpen)));
        assert_eq!(b.record(CallResult::Reached), moved(HalfOpen, Closed));
        assert_eq!(b.admit(), (Admit::Call, None));
        assert_eq!(b.consecutive_failures(), 0);
    }

    /// `breaker_failures = 0` never opens.
    #[test]
    fn zero_failures_turns_it_off() {
        let b = breaker(0, 0);
        for _ in 0..100 {
            assert_eq!(b.record(CallResult::Failed), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
