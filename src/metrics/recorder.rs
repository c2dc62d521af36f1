//! Latency recording that many threads do at once without sharing a cache line: each
//! recorder is split into shards, a thread always records into "its" shard (assigned
//! round-robin the first time it records), and each shard keeps everything one record
//! touches behind one uncontended lock: the count, the exact sum in nanoseconds, the
//! Prometheus bucket counts and, where the dashboards need percentiles, an HDR
//! histogram. Readers (a scrape, a dashboard) lock and add up the shards; they are the
//! slow side. Prometheus' own histogram updates shared atomics on every observation,
//! which on a memory hit cost more than the look-up.
//!
//! A recorder can keep several lanes (one per value of a label, such as `function`):
//! each lane has its own count, sums and buckets, while the HDR histogram (140 KB a
//! shard) is shared, since the dashboards' percentiles do not split by lane.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::hdr::{self, HIGHEST_MICROS, LOWEST_MICROS};

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

/// One lane's figures in one shard.
struct Lane {
    count: u64,
    nanos: u64,
    /// A second sum recorded alongside (time saved, for hits).
    saved_nanos: u64,
    /// Observations per bucket (not cumulative); past the last bound only `count` grows.
    buckets: Box<[u64]>,
}

/// What one shard holds.
struct Cell {
    lanes: Box<[Lane]>,
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
        Self::with_lanes(bounds, percentiles, shards, 1)
    }

    /// A recorder of `lanes` lanes (at least one), numbered from 0.
    pub fn with_lanes(bounds: &[f64], percentiles: bool, shards: usize, lanes: usize) -> Self {
        let bounds_nanos: Box<[u64]> = bounds.iter().map(|s| (s * 1e9).round() as u64).collect();
        let shards = (0..shards.max(1))
            .map(|_| {
                let lanes = (0..lanes.max(1))
                    .map(|_| Lane {
                        count: 0,
                        nanos: 0,
                        saved_nanos: 0,
                        buckets: vec![0; bounds_nanos.len()].into(),
                    })
                    .collect();
                Shard(Mutex::new(Cell {
                    lanes,
                    hdr: percentiles.then(hdr::empty),
                }))
            })
            .collect();
        Self {
            bounds_nanos,
            shards,
        }
    }

    /// Records one latency in lane 0.
    pub fn record(&self, latency: Duration) {
        self.record_in(0, latency, Duration::ZERO);
    }

    /// Records one latency in `lane` (lane 0 if there is no such lane) and adds `saved`
    /// to its second sum.
    pub fn record_in(&self, lane: usize, latency: Duration, saved: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_nanos.iter().position(|&b| nanos <= b);
        let shard = SHARD.with(|s| *s) % self.shards.len();
        let mut cell = self.shards[shard].0.lock();
        let cell = &mut *cell;
        let lanes = cell.lanes.len();
        let lane = &mut cell.lanes[if lane < lanes { lane } else { 0 }];
        lane.count += 1;
        lane.nanos = lane.nanos.saturating_add(nanos);
        lane.saved_nanos = lane
            .saved_nanos
            .saturating_add(u64::try_from(saved.as_nanos()).unwrap_or(u64::MAX));
        if let Some(i) = bucket {
            lane.buckets[i] += 1;
        }
        if let Some(h) = cell.hdr.as_mut() {
            h.saturating_record((nanos / 1_000).clamp(LOWEST_MICROS, HIGHEST_MICROS));
        }
    }

    /// Every lane's figures added up.
    pub fn totals(&self) -> Totals {
        self.totals_where(|_| true)
    }

    /// One lane's figures.
    pub fn lane_totals(&self, lane: usize) -> Totals {
        self.totals_where(|i| i == lane)
    }

    fn totals_where(&self, take: impl Fn(usize) -> bool) -> Totals {
        let mut t = Totals {
            cumulative: vec![0; self.bounds_nanos.len()],
            ..Totals::default()
        };
        for shard in self.shards.iter() {
            let cell = shard.0.lock();
            for (_, lane) in cell.lanes.iter().enumerate().filter(|(i, _)| take(*i)) {
                t.count += lane.count;
                t.nanos = t.nanos.saturating_add(lane.nanos);
                t.saved_nanos = t.saved_nanos.saturating_add(lane.saved_nanos);
                for (sum, n) in t.cumulative.iter_mut().zip(lane.buckets.iter()) {
                    *sum += n;
                }
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
                        r.record_in(
                            0,
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

    /// Lanes keep their own counts and buckets; the HDR histogram and the totals hold
    /// them all; a lane past the last one records into lane 0.
    #[test]
    fn lanes_are_apart() {
        let r = Recorder::with_lanes(&[0.001], true, 2, 2);
        r.record_in(0, Duration::from_micros(10), Duration::ZERO);
        r.record_in(1, Duration::from_millis(5), Duration::from_nanos(7));
        r.record_in(1, Duration::from_micros(20), Duration::ZERO);
        r.record_in(9, Duration::from_micros(30), Duration::ZERO);
        assert_eq!(r.lane_totals(0).count, 2);
        assert_eq!(r.lane_totals(0).cumulative, vec![2]);
        let one = r.lane_totals(1);
        assert_eq!((one.count, one.saved_nanos), (2, 7));
        assert_eq!(one.cumulative, vec![1]);
        assert_eq!(one.nanos, 5_020_000);
        assert_eq!(r.totals().count, 4);
        let mut all = hdr::empty();
        r.merge_into(&mut all);
        assert_eq!(all.len(), 4);
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
