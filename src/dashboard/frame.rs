//! One second of the daemon, as the live dashboard draws it: counts of that second
//! (differences of the cumulative counters), percentiles of that second (the difference
//! of two merged HDR histograms), and the state at its end.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::chain::Chain;
use crate::metrics::{InvalidationSource, Metrics, OriginResult, Outcome};
use crate::names::TierKind;

/// What `/dashboard/events` sends each second, and `/dashboard/history` keeps.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// Unix milliseconds at the end of the second; increasing, so `Last-Event-ID` works
    /// across a daemon restart too.
    pub id: u64,
    /// Requests answered this second, by where the answer came from.
    pub requests: BySource,
    /// Hits / (hits + misses) this second; `None` without either.
    pub hit_ratio: Option<f64>,
    /// Percentiles of this second's requests, in milliseconds; `None` without any.
    pub latency_ms: Option<Latency>,
    pub origin: OriginFrame,
    pub tiers: Vec<TierFrame>,
    pub memory: Option<MemoryFrame>,
    /// Requests that waited on another's origin call, this second.
    pub coalesced: u64,
    /// Invalidations applied this second (admin, broadcast, database).
    pub invalidations: u64,
    /// Since start, as `/codette/cache/metrics` counts them.
    pub totals: Totals,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct BySource {
    pub memory: u64,
    pub redis: u64,
    pub origin: u64,
    pub stale: u64,
    pub error: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginFrame {
    pub calls: u64,
    pub errors: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierFrame {
    pub tier: &'static str,
    /// `active`, `connected` or `unavailable`.
    pub status: &'static str,
    pub up: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryFrame {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// hits + misses, as `total_requests` in the seed's routes.
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
}

/// The cumulative counters a frame is the difference of.
#[derive(Clone, Copy, Default)]
struct Counts {
    by_source: BySource,
    origin_calls: u64,
    origin_errors: u64,
    coalesced: u64,
    invalidations: u64,
}

impl Counts {
    fn read(metrics: &Metrics) -> Self {
        let sum = |outcomes: &mut dyn Iterator<Item = Outcome>| -> u64 {
            outcomes.map(|o| metrics.count(o)).sum()
        };
        let origin_errors =
            metrics.origin_count(OriginResult::Error) + metrics.origin_count(OriginResult::Timeout);
        Self {
            by_source: BySource {
                memory: metrics.count(Outcome::Hit(TierKind::Memory)),
                redis: sum(&mut TierKind::ALL
                    .into_iter()
                    .filter(|k| k.is_shared())
                    .map(Outcome::Hit)),
                origin: metrics.count(Outcome::Miss),
                stale: sum(&mut TierKind::ALL.into_iter().map(Outcome::Stale)),
                error: metrics.count(Outcome::Error),
            },
            origin_calls: metrics.origin_count(OriginResult::Ok) + origin_errors,
            origin_errors,
            coalesced: metrics.coalesced(),
            invalidations: InvalidationSource::ALL
                .iter()
                .map(|&s| metrics.invalidations(s))
                .sum(),
        }
    }
}

/// Turns the cumulative metrics into frames, one call a second.
pub struct Sampler {
    last: Counts,
    histogram: Histogram<u64>,
    last_id: u64,
}

impl Sampler {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            last: Counts::read(metrics),
            histogram: metrics.requests_histogram(),
            last_id: 0,
        }
    }

    /// The frame of the time since the last call, stamped `now_ms`.
    pub fn next(&mut self, chain: &Chain, metrics: &Metrics, now_ms: u64) -> Frame {
        let now = Counts::read(metrics);
        let (was, is) = (self.last.by_source, now.by_source);
        let requests = BySource {
            memory: is.memory.saturating_sub(was.memory),
            redis: is.redis.saturating_sub(was.redis),
            origin: is.origin.saturating_sub(was.origin),
            stale: is.stale.saturating_sub(was.stale),
            error: is.error.saturating_sub(was.error),
        };
        let hits = requests.memory + requests.redis;
        let answered = hits + requests.origin;
        let histogram = metrics.requests_histogram();
        let mut second = histogram.clone();
        let latency_ms = second
            .subtract(&self.histogram)
            .ok()
            .filter(|()| !second.is_empty())
            .map(|()| {
                let ms = |q| second.value_at_quantile(q) as f64 / 1000.0;
                Latency {
                    p50: ms(0.5),
                    p90: ms(0.9),
                    p99: ms(0.99),
                }
            });
        let tiers = chain
            .tiers()
            .iter()
            .map(|t| TierFrame {
                tier: t.kind().as_str(),
                status: t.health().as_str(),
                up: t.health().is_serving(),
            })
            .collect();
        let memory = chain
            .tiers()
            .iter()
            .find(|t| t.kind() == TierKind::Memory)
            .map(|t| {
                let size = t.size();
                MemoryFrame {
                    entries: size.entries.unwrap_or(0),
                    bytes: size.bytes.unwrap_or(0),
                }
            });
        let id = now_ms.max(self.last_id + 1);
        let frame = Frame {
            id,
            requests,
            hit_ratio: (answered > 0).then(|| hits as f64 / answered as f64),
            latency_ms,
            origin: OriginFrame {
                calls: now.origin_calls.saturating_sub(self.last.origin_calls),
                errors: now.origin_errors.saturating_sub(self.last.origin_errors),
                breaker: chain.breaker().state().as_str(),
            },
            tiers,
            memory,
            coalesced: now.coalesced.saturating_sub(self.last.coalesced),
            invalidations: now.invalidations.saturating_sub(self.last.invalidations),
            totals: Totals {
                requests: is.memory + is.redis + is.origin,
                hits: is.memory + is.redis,
                misses: is.origin,
            },
        };
        self.last = now;
        self.histogram = histogram;
        self.last_id = id;
        frame
    }
}
