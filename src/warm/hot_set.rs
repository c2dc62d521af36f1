//! The hot set: the requests asked most often lately, kept across restarts.
//!
//! Counting is approximate, bounded and never waits: a count-min sketch of atomic
//! counters (4 per key in one cache line, 512 KiB at the default 1,000) counts every request
//! by a hash of its message and filename, and only the `size` requests with the highest
//! estimates are kept, with their text, in a small top list behind a lock. A request
//! touches the lock only when its estimate is above the list's lowest and either among
//! its first 4 counts (which wait for the lock) or a multiple of 8 (which skips the lock
//! when another thread holds it). The `count-min-sketch` crate was tried first: it needs `&mut` (so a
//! lock on every request), which cost 8 % of memory-hit throughput
//! (`scripts/bench-hot-set.sh`). After each write every count is halved, so the set
//! follows what is hot now.
//!
//! The file is the warm-list format (`mod.rs`), written atomically (a temporary file
//! beside it, synced, then renamed over it) with mode 0600: it holds users' messages.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::origins::ContextRequest;

/// 16 counters in one cache line: a key's 4 counters (one in each quarter) share a
/// line, so counting costs one cache miss, not four.
#[repr(align(64))]
#[derive(Default)]
struct Block([AtomicU32; 16]);

/// The counts and the top list.
pub struct HotSet {
    blocks: Box<[Block]>,
    mask: usize,
    /// The lowest estimate in a full top list (0 while it has room).
    threshold: AtomicU32,
    top: Mutex<Top>,
    size: usize,
}

#[derive(Default)]
struct Top {
    /// By request hash: its estimate when last seen here, and the request.
    entries: HashMap<u64, (u32, ContextRequest)>,
    /// The same, ordered by estimate (lowest first) to find what to drop.
    order: BTreeSet<(u32, u64)>,
}

impl HotSet {
    /// Keeps the `size` hottest requests.
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        let blocks = (size * 8).max(4096).next_power_of_two();
        Self {
            blocks: (0..blocks).map(|_| Block::default()).collect(),
            mask: blocks - 1,
            threshold: AtomicU32::new(0),
            top: Mutex::new(Top::default()),
            size,
        }
    }

    /// The 4 counters of `id`: a block from the low bits, one counter in each quarter of
    /// it from the high bits.
    fn cells(&self, id: u64) -> impl Iterator<Item = &AtomicU32> {
        let block = &self.blocks[id as usize & self.mask].0;
        (0..4).map(move |row| &block[row * 4 + ((id >> (48 + 2 * row)) & 3) as usize])
    }

    fn estimate(&self, id: u64) -> u32 {
        self.cells(id)
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Counts up to this wait for the top list's lock: a new key always gets its chance.
    const EARLY_COUNTS: u32 = 4;

    /// Counts one request.
    pub fn saw(&self, request: &ContextRequest) {
        let id = hash(request);
        let estimate = self
            .cells(id)
            .map(|c| c.fetch_add(1, Ordering::Relaxed).saturating_add(1))
            .min()
            .unwrap_or(0);
        let early = estimate <= Self::EARLY_COUNTS;
        if estimate <= self.threshold.load(Ordering::Relaxed) || (estimate % 8 != 0 && !early) {
            return;
        }
        // A key's first counts wait for the lock, so one busy moment cannot keep it out
        // of the list until its 8th count; later counts skip a busy lock.
        let mut top = if early {
            self.top.lock()
        } else {
            let Some(top) = self.top.try_lock() else {
                return;
            };
            top
        };
        let Top { entries, order } = &mut *top;
        if let Some((old, _)) = entries.get_mut(&id) {
            order.remove(&(*old, id));
            *old = estimate;
            order.insert((estimate, id));
        } else {
            if entries.len() >= self.size {
                let Some(lowest) = order.pop_first() else {
                    return;
                };
                entries.remove(&lowest.1);
            }
            entries.insert(id, (estimate, request.clone()));
            order.insert((estimate, id));
        }
        if entries.len() >= self.size {
            let lowest = order.first().map_or(0, |(e, _)| *e);
            self.threshold.store(lowest, Ordering::Relaxed);
        }
    }

    /// The hottest requests, hottest first, by their current estimates.
    pub fn hottest(&self) -> Vec<ContextRequest> {
        let top = self.top.lock();
        let mut ranked: Vec<(u32, &ContextRequest)> = top
            .entries
            .iter()
            .map(|(id, (_, request))| (self.estimate(*id), request))
            .collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
        ranked.into_iter().map(|(_, r)| r.clone()).collect()
    }

    /// Halves every count, so old popularity fades.
    pub fn age(&self) {
        for c in self.blocks.iter().flat_map(|b| b.0.iter()) {
            // Not atomic with concurrent increments: one lost count is no matter here.
            c.store(c.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
        }
        let mut top = self.top.lock();
        let Top { entries, order } = &mut *top;
        order.clear();
        for (id, (estimate, _)) in entries.iter_mut() {
            *estimate = self.estimate(*id);
            order.insert((*estimate, *id));
        }
        let full = entries.len() >= self.size;
        let lowest = order.first().map_or(0, |(e, _)| *e);
        self.threshold
            .store(if full { lowest } else { 0 }, Ordering::Relaxed);
    }
}

/// A request's identity for counting (not a cache key: normalisation plays no part).
fn hash(request: &ContextRequest) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.message.hash(&mut h);
    request.filename.hash(&mut h);
    h.finish()
}

/// Writes `requests` to `path` as a warm list, atomically and readable by the owner only.
///
/// # Errors
/// What the file system said; the previous file, if any, is left as it was.
pub fn write(path: &Path, requests: &[ContextRequest]) -> std::io::Result<()> {
    let mut text = Vec::with_capacity(requests.len() * 64);
    for r in requests {
        let line = serde_json::json!({"message": r.message, "filename": r.filename});
        serde_json::to_writer(&mut text, &line)?;
        text.push(b'\n');
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// Writes the hot set to `path` (off the runtime's threads), logging how it went.
pub async fn persist(hot: &HotSet, path: &Path) {
    let requests = hot.hottest();
    let target = path.to_owned();
    let n = requests.len();
    match tokio::task::spawn_blocking(move || write(&target, &requests)).await {
        Ok(Ok(())) => tracing::debug!(file = %path.display(), requests = n, "hot set written"),
        Ok(Err(e)) => tracing::warn!(file = %path.display(), error = %e, "hot set not written"),
        Err(e) => tracing::warn!(error = %e, "hot set writer failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: usize) -> ContextRequest {
        ContextRequest {
            message: format!("question {i}"),
            filename: (i % 2 == 0).then(|| format!("file{i}.md")),
        }
    }

    /// Of 1,000 requests with Zipf-like counts, the top list holds the hottest, in order.
    #[test]
    fn keeps_the_hottest() {
        let hot = HotSet::new(10);
        for i in 1..=1000 {
            for _ in 0..(2000 / i) {
                hot.saw(&request(i));
            }
        }
        let top = hot.hottest();
        assert_eq!(top.len(), 10);
        let expected: Vec<_> = (1..=10).map(request).collect();
        assert_eq!(top, expected);
    }

    /// After ageing, what is hot now overtakes what was hot before.
    #[test]
    fn ageing_lets_new_requests_in() {
        let hot = HotSet::new(2);
        for _ in 0..100 {
            hot.saw(&request(1));
            hot.saw(&request(2));
        }
        for _ in 0..6 {
            hot.age();
        }
        for _ in 0..10 {
            hot.saw(&request(3));
        }
        assert!(hot.hottest().contains(&request(3)), "{:?}", hot.hottest());
    }

    /// The file is a warm list that reads back to the same requests; a rewrite replaces it.
    #[test]
    fn writes_a_warm_list_atomically() {
        let dir = std::env::temp_dir().join(format!("hot-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hot.jsonl");
        let requests: Vec<_> = (1..=3).map(request).collect();
        write(&path, &requests).unwrap();
        write(&path, &requests[..2]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Vec<_> = super::super::parse(&text, 1000)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, requests[..2]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.join("hot.jsonl.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
