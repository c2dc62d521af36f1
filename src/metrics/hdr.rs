//! HDR latency histograms that many threads record into without serialising behind one
//! lock: each histogram is split into shards, a thread always records into "its" shard
//! (assigned round-robin the first time it records), so with shards >= worker threads
//! the locks are uncontended. Readers merge the shards; they are the slow side.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Lowest recordable value: 1 µs.
pub const LOWEST_MICROS: u64 = 1;
/// Highest recordable value: 60 s; longer requests are recorded as 60 s.
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Significant figures kept: 3, so any value is within 0.1 %.
pub const SIGFIG: u8 = 3;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

/// An empty histogram with the bounds every latency here uses.
pub fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGFIG)
        .expect("constant bounds are valid")
}

/// A histogram of microseconds, sharded by thread.
pub struct ShardedHistogram {
    shards: Box<[Mutex<Histogram<u64>>]>,
}

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Mutex::new(empty())).collect();
        Self { shards }
    }

    /// Records one duration (clamped to the histogram's range).
    pub fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros())
            .unwrap_or(HIGHEST_MICROS)
            .clamp(LOWEST_MICROS, HIGHEST_MICROS);
        let shard = SHARD.with(|s| *s) % self.shards.len();
        self.shards[shard].lock().saturating_record(micros);
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = empty();
        self.merge_into(&mut all);
        all
    }

    /// Adds every shard into `all` (a histogram from [`empty`]).
    pub fn merge_into(&self, all: &mut Histogram<u64>) {
        for shard in self.shards.iter() {
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
    }

    /// Empties every shard.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            shard.lock().reset();
        }
    }
}

/// Percentiles of one histogram in milliseconds, for the JSON dashboards.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records from many threads all land in the merged view.
    #[test]
    fn shards_merge() {
        let h = std::sync::Arc::new(ShardedHistogram::new(4));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.record(Duration::from_micros(100 * (i + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let merged = h.merged();
        assert_eq!(merged.len(), 8000);
        let p = Percentiles::of(&merged);
        assert!((p.max_ms - 0.8).abs() < 0.01, "{p:?}");
        assert!(p.p50_ms >= 0.4 && p.p50_ms <= 0.5, "{p:?}");
    }

    /// Out-of-range values are clamped, not lost.
    #[test]
    fn extremes_are_clamped() {
        let h = ShardedHistogram::new(1);
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(3600));
        assert_eq!(h.merged().len(), 2);
    }
}
