//! Latency recording that many threads do at once without sharing a cache line: each
//! recorder is split into shards, a thread always records into "its" shard (assigned
//! round-robin the first time it records), and each shard keeps everything one record
//! touches behind one uncontended lock: the count, the exact sum in nanoseconds, the
//! Prometheus bucket counts and, where the dashboards need percentiles, an HDR
//! histogram. Readers (a scrape, a dashboard) lock and add up the shards; they are the
//! slow side. Prometheus' own histogram updates shared atomics on every observation,
//! which on a memory hit cost more than the look-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::hdr::{self, HIGHEST_MICROS, LOWEST_MICROS};

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

/// What one shard holds.
struct Cell {
    count: u64,
    nanos: u64,
    /// A second sum recorded alongside (time saved, for hits).
    saved_nanos: u64,
    /// Observations per bucket (not cumulative); past the last bound only `count` grows.
    buckets: Box<[u64]>,
    hdr: Option<Histogram<u64>>,
}

/// A shard on its own cache lines, so two threads' locks never share one.
#[repr(align(128))]
struct Shard(Mutex<Cell>);

/// The figures of a recorder, all shards added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub count: u64,
    pub nanos: u64,
    pub saved_nanos: u64,
    /// Cumulative counts, one per bound: observations <= that bound.
    pub cumulative: Vec<u64>,
}

/// A sharded latency recorder with fixed bucket bounds (seconds).
pub struct Recorder {
    bounds_nanos: Box<[u64]>,
    shards: Box<[Shard]>,
}

impl Recorder {
    /// `bounds` in seconds, ascending; `percentiles` keeps an HDR histogram too.
    pub fn new(bounds: &[f64], percentiles: bool, shards: usize) -> Self {
        let bounds_nanos: Box<[u64]> = bounds.iter().map(|s| (s * 1e9).round() as u64).collect();
        let shards = (0..shards.max(1))
            .map(|_| {
                Shard(Mutex::new(Cell {
                    count: 0,
                    nanos: 0,
                    saved_nanos: 0,
                    buckets: vec![0; bounds_nanos.len()].into(),
                    hdr: percentiles.then(hdr::empty),
                }))
            })
            .collect();
        Self {
            bounds_nanos,
            shards,
        }
    }

    pub fn record(&self, latency: Duration) {
        self.record_saving(latency, Duration::ZERO);
    }

    /// Records one latency and adds `saved` to the second sum.
    pub fn record_saving(&self, latency: Duration, saved: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_nanos.iter().position(|&b| nanos <= b);
        let shard = SHARD.with(|s| *s) % self.shards.len();
        let mut cell = self.shards[shard].0.lock();
        cell.count += 1;
        cell.nanos = cell.nanos.saturating_add(nanos);
        cell.saved_nanos = cell
            .saved_nanos
            .saturating_add(u64::try_from(saved.as_nanos()).unwrap_or(u64::MAX));
        if let Some(i) = bucket {
            cell.buckets[i] += 1;
        }
        if let Some(h) = cell.hdr.as_mut() {
            h.saturating_record((nanos / 1_000).clamp(LOWEST_MICROS, HIGHEST_MICROS));
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            cumulative: vec![0; self.bounds_nanos.len()],
            ..Totals::default()
        };
        for shard in self.shards.iter() {
            let cell = shard.0.lock();
            t.count += cell.count;
            t.nanos = t.nanos.saturating_add(cell.nanos);
            t.saved_nanos = t.saved_nanos.saturating_add(cell.saved_nanos);
            for (sum, n) in t.cumulative.iter_mut().zip(cell.buckets.iter()) {
                *sum += n;
            }
        }
        let mut running = 0;
        for c in &mut t.cumulative {
            running += *c;
            *c = running;
        }
        t
    }

    /// Adds every shard's HDR histogram into `all` (from `hdr::empty`); nothing for a
    /// recorder without percentiles.
    pub fn merge_into(&self, all: &mut Histogram<u64>) {
        for shard in self.shards.iter() {
            if let Some(h) = shard.0.lock().hdr.as_ref() {
                // Same bounds on both sides, so adding cannot fail.
                let _ = all.add(h);
            }
        }
    }

    pub fn bounds_seconds(&self) -> impl Iterator<Item = f64> + '_ {
        self.bounds_nanos.iter().map(|&n| n as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads record; counts, exact sums, cumulative buckets and HDR agree.
    #[test]
    fn shards_add_up() {
        let r = std::sync::Arc::new(Recorder::new(&[0.0001, 0.001], true, 4));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let r = std::sync::Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        r.record_saving(
                            Duration::from_micros(50 + (t * 1000 + i) % 1000),
                            Duration::from_nanos(1),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = r.totals();
        assert_eq!(t.count, 8000);
        assert_eq!(t.saved_nanos, 8000);
        let expected_nanos: u64 = (0..8u64)
            .flat_map(|t| (0..1000u64).map(move |i| (50 + (t * 1000 + i) % 1000) * 1000))
            .sum();
        assert_eq!(t.nanos, expected_nanos);
        // 50..=100 µs are <= 100 µs: 51 per thread; everything up to 1049 µs, minus
        // 1001..=1049, is <= 1 ms.
        assert_eq!(t.cumulative, vec![8 * 51, 8 * (1000 - 49)]);
        let mut all = hdr::empty();
        r.merge_into(&mut all);
        assert_eq!(all.len(), 8000);
    }

    /// Out-of-range values are clamped into the HDR histogram, not lost.
    #[test]
    fn extremes_are_clamped() {
        let r = Recorder::new(&[], true, 1);
        r.record(Duration::ZERO);
        r.record(Duration::from_secs(3600));
        let mut all = hdr::empty();
        r.merge_into(&mut all);
        assert_eq!(all.len(), 2);
    }

    /// A value exactly on a bound counts in that bucket (Prometheus' `le`).
    #[test]
    fn bounds_are_inclusive() {
        let r = Recorder::new(&[0.001], false, 1);
        r.record(Duration::from_millis(1));
        r.record(Duration::from_nanos(1_000_001));
        assert_eq!(r.totals().cumulative, vec![1]);
        assert_eq!(r.totals().count, 2);
        let mut all = hdr::empty();
        r.merge_into(&mut all);
        assert_eq!(all.len(), 0, "no percentiles kept");
    }
}
