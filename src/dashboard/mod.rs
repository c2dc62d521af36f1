//! The live dashboard's data: a frame a second (`frame.rs`), the last 15 minutes of
//! them in a ring for `/dashboard/history`, and a broadcast for `/dashboard/events`
//! with a bounded number of streams. The page and its assets are `assets.rs`; the
//! routes are `http/live.rs`. One task makes the frames whether or not anyone watches:
//! it reads the metrics once a second, off the request path.

pub mod assets;
mod frame;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::chain::Chain;
use crate::metrics::Metrics;
pub use frame::Frame;
use frame::Sampler;

/// Frames kept: 15 minutes at one a second.
pub const HISTORY: usize = 900;

/// `[dashboard]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve `/dashboard` and its data routes; off, they are 404.
    pub enabled: bool,
    /// Event streams open at once; more get 503.
    pub max_streams: usize,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_streams: 16,
        }
    }
}

impl DashboardConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        if (1..=1024).contains(&self.max_streams) {
            Vec::new()
        } else {
            vec!["dashboard.max_streams must be 1 to 1024".into()]
        }
    }
}

/// The frames and their watchers.
pub struct Live {
    ring: Mutex<VecDeque<Arc<Frame>>>,
    sender: broadcast::Sender<Arc<Frame>>,
    streams: AtomicUsize,
    max_streams: usize,
}

/// An open event stream's place; given back when dropped.
pub struct Slot(Arc<Live>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Live {
    pub fn new(config: &DashboardConfig) -> Arc<Self> {
        Arc::new(Self {
            ring: Mutex::new(VecDeque::with_capacity(HISTORY)),
            sender: broadcast::channel(64).0,
            streams: AtomicUsize::new(0),
            max_streams: config.max_streams,
        })
    }

    /// Makes a frame every second until the runtime stops.
    pub fn spawn(self: &Arc<Self>, chain: Arc<Chain>, metrics: Arc<Metrics>) {
        let live = Arc::clone(self);
        tokio::spawn(async move {
            let mut sampler = Sampler::new(&metrics);
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                live.push(sampler.next(&chain, &metrics, unix_ms()));
            }
        });
    }

    fn push(&self, frame: Frame) {
        let frame = Arc::new(frame);
        {
            let mut ring = self.ring.lock();
            if ring.len() == HISTORY {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(&frame));
        }
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(frame);
    }

    /// The frames kept, oldest first.
    pub fn history(&self) -> Vec<Arc<Frame>> {
        self.ring.lock().iter().cloned().collect()
    }

    /// A place for one more stream, or `None` at `max_streams`.
    pub fn open_stream(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.streams.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(Arc::clone(self));
        (taken < self.max_streams).then_some(slot)
    }

    /// Frames after `last_id` still kept (what a reconnecting stream missed), and the
    /// live frames from now on. Subscribed before the ring is read: nothing falls
    /// between (a frame in both is sent once, see `http/live.rs`).
    pub fn follow(
        &self,
        last_id: Option<u64>,
    ) -> (Vec<Arc<Frame>>, broadcast::Receiver<Arc<Frame>>) {
        let receiver = self.sender.subscribe();
        let missed = match last_id {
            Some(last) => self
                .ring
                .lock()
                .iter()
                .filter(|f| f.id > last)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (missed, receiver)
    }
}

/// Now in Unix milliseconds: a frame's id.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
