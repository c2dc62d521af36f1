//! The hot set: the requests asked most often lately, kept across restarts.
//!
//! Counting is approximate and bounded: a count-min sketch (conservative update) counts
//! every request by a hash of its message and filename, and only the `size` requests
//! with the highest estimates are kept, with their text, in a small top list. Counting
//! never waits: when another thread holds the lock the request is not counted (a
//! sample lost under contention changes an estimate, never an answer). After each
//! write every count is halved, so the set follows what is hot now.
//!
//! The file is the warm-list format (`mod.rs`), written atomically (a temporary file
//! beside it, synced, then renamed over it) with mode 0600: it holds users' messages.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

use count_min_sketch::CountMinSketch32;
use parking_lot::Mutex;

use crate::origins::ContextRequest;

/// The counts and the top list.
pub struct HotSet {
    inner: Mutex<Inner>,
    size: usize,
}

struct Inner {
    sketch: CountMinSketch32<u64>,
    /// The top list, by request hash: its estimate and the request.
    top: HashMap<u64, (u32, ContextRequest)>,
    /// The same, ordered by estimate (lowest first) to find what to drop.
    order: BTreeSet<(u32, u64)>,
}

impl HotSet {
    /// Keeps the `size` hottest requests. The sketch has 4 rows of 32 × `size`
    /// counters (512 KiB at the default 1,000), so collisions barely move the counts
    /// of requests hot enough to matter.
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        let sketch = CountMinSketch32::new(size.saturating_mul(16), 0.95, 1.0)
            .expect("constant parameters are valid");
        Self {
            inner: Mutex::new(Inner {
                sketch,
                top: HashMap::with_capacity(size),
                order: BTreeSet::new(),
            }),
            size,
        }
    }

    /// Counts one request.
    pub fn saw(&self, request: &ContextRequest) {
        let Some(mut inner) = self.inner.try_lock() else {
            return;
        };
        let id = hash(request);
        inner.sketch.increment(&id);
        let estimate = inner.sketch.estimate(&id);
        let Inner { top, order, .. } = &mut *inner;
        if let Some((old, _)) = top.get_mut(&id) {
            order.remove(&(*old, id));
            *old = estimate;
            order.insert((estimate, id));
            return;
        }
        if top.len() >= self.size {
            match order.first().copied() {
                Some((lowest, dropped)) if lowest < estimate => {
                    order.remove(&(lowest, dropped));
                    top.remove(&dropped);
                }
                _ => return,
            }
        }
        top.insert(id, (estimate, request.clone()));
        order.insert((estimate, id));
    }

    /// The hottest requests, hottest first.
    pub fn hottest(&self) -> Vec<ContextRequest> {
        let inner = self.inner.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|(_, id)| inner.top.get(id).map(|(_, r)| r.clone()))
            .collect()
    }

    /// Halves every count, so old popularity fades.
    pub fn age(&self) {
        let mut inner = self.inner.lock();
        inner.sketch.reset();
        let Inner { top, order, .. } = &mut *inner;
        order.clear();
        for (id, (estimate, _)) in top.iter_mut() {
            *estimate /= 2;
            order.insert((*estimate, *id));
        }
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
