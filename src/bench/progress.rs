//! Load progress once a second: an indicatif bar when stderr is a terminal, plain lines
//! otherwise (a log or CI shows the run is alive). Workers count into one shared
//! counter in batches, so reporting costs the measured path nothing measurable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Requests a worker counts locally before adding them to the shared counter.
const BATCH: u64 = 64;

/// A worker's handle on the shared request count.
pub struct Counter {
    shared: Arc<AtomicU64>,
    pending: u64,
}

impl Counter {
    pub fn one(&mut self) {
        self.pending += 1;
        if self.pending == BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.shared.fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The reporter of one run.
pub struct Progress {
    shared: Arc<AtomicU64>,
    reporter: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts reporting on the current runtime until `finish`.
    pub fn start(duration: Duration, terminal: bool) -> Self {
        let shared = Arc::new(AtomicU64::new(0));
        let done = Arc::clone(&shared);
        let reporter = tokio::spawn(async move {
            let bar = terminal.then(|| bar(duration));
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let elapsed = started.elapsed().min(duration);
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                match &bar {
                    Some(bar) => {
                        bar.set_position(elapsed.as_secs());
                        bar.set_message(format!("{n} requests, {rate:.0} req/s"));
                    }
                    None => eprintln!(
                        "load: {}s of {}s, {n} requests, {rate:.0} req/s",
                        elapsed.as_secs(),
                        duration.as_secs()
                    ),
                }
            }
        });
        Self { shared, reporter }
    }

    pub fn counter(&self) -> Counter {
        Counter {
            shared: Arc::clone(&self.shared),
            pending: 0,
        }
    }

    /// Stops reporting (the bar, if any, is cleared with its task).
    pub fn finish(self) {
        self.reporter.abort();
    }
}

fn bar(duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {msg}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts reach the shared total in batches and in full when a counter drops.
    #[tokio::test]
    async fn counts_are_flushed() {
        let progress = Progress::start(Duration::from_secs(1), false);
        let mut counter = progress.counter();
        for _ in 0..BATCH + 3 {
            counter.one();
        }
        assert_eq!(progress.shared.load(Ordering::Relaxed), BATCH);
        drop(counter);
        assert_eq!(progress.shared.load(Ordering::Relaxed), BATCH + 3);
        progress.finish();
    }
}
