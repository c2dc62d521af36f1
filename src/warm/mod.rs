//! Warming: requests sent through the chain before the users who will ask them, so a
//! restart or a deploy does not start cold. One list format for the three ways in (the
//! `[warm] file` at start-up, `POST /codette/cache/warm`, `codette-cache warm`): one
//! request a line, either a JSON object `{"message": ..., "filename": ...}` (other
//! fields ignored) or a plain line, which is the message. Blank lines are skipped.
//! `client.rs` is the command-line tool, which goes through a running daemon's HTTP.

pub mod client;
mod hot_set;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::metrics::{Metrics, Refresh};
use crate::origins::ContextRequest;
pub use hot_set::{HotSet, persist};

/// `[warm]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmConfig {
    /// A list to warm from in the background at start-up.
    pub file: Option<PathBuf>,
    /// Requests in flight at once while warming, so the origin is not stampeded.
    pub concurrency: usize,
    /// Keep `/readyz` at 503 until the start-up warming is done.
    pub ready_after: bool,
    /// Where the hot set is kept across restarts (`hot_set.rs`); none: not counted.
    pub hot_set_path: Option<PathBuf>,
    /// How many of the hottest requests it keeps.
    pub hot_set_size: usize,
    /// How often it is written (and also on shutdown).
    pub hot_set_interval_secs: u64,
}

impl Default for WarmConfig {
    fn default() -> Self {
        Self {
            file: None,
            concurrency: 4,
            ready_after: false,
            hot_set_path: None,
            hot_set_size: 1_000,
            hot_set_interval_secs: 300,
        }
    }
}

impl WarmConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=256).contains(&self.concurrency) {
            problems.push("warm.concurrency must be 1 to 256".into());
        }
        if !(1..=100_000).contains(&self.hot_set_size) || self.hot_set_interval_secs == 0 {
            problems.push(
                "warm.hot_set_size must be 1 to 100000 and warm.hot_set_interval_secs > 0".into(),
            );
        }
        if let Some(path) = &self.hot_set_path {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if path.file_name().is_none() || !dir.unwrap_or(Path::new(".")).is_dir() {
                problems.push(format!(
                    "warm.hot_set_path: {} is not a file in an existing directory (systemd: StateDirectory=)",
                    path.display()
                ));
            }
        }
        problems
    }

    pub fn hot_set_interval(&self) -> Duration {
        Duration::from_secs(self.hot_set_interval_secs)
    }
}

/// Reads a list file for warming; a missing or unreadable file gives nothing, and bad
/// lines are skipped, each logged (`what` names the list in the log).
pub async fn read_list(path: &Path, max_message_bytes: usize, what: &str) -> Vec<ContextRequest> {
    let text = match tokio::fs::read(path).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                tracing::warn!(file = %path.display(), "{what} is not UTF-8 text; ignored");
                return Vec::new();
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %path.display(), "no {what} yet");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "{what} not read; ignored");
            return Vec::new();
        }
    };
    let mut requests = Vec::new();
    for parsed in parse(&text, max_message_bytes) {
        match parsed {
            Ok(request) => requests.push(request),
            Err(e) => tracing::warn!(file = %path.display(), "{what}: {e}; skipped"),
        }
    }
    requests
}

/// A line that is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// Reads a list: each non-blank line a request or the reason it is not one.
pub fn parse(text: &str, max_message_bytes: usize) -> Vec<Result<ContextRequest, LineError>> {
    #[derive(Deserialize)]
    struct Line {
        message: String,
        #[serde(default)]
        filename: Option<String>,
    }
    let mut requests = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let error = |reason: String| LineError {
            line: i + 1,
            reason,
        };
        let request = if line.trim_start().starts_with('{') {
            serde_json::from_str::<Line>(line)
                .map(|l| ContextRequest {
                    message: l.message,
                    filename: l.filename.filter(|f| !f.is_empty()),
                })
                .map_err(|e| error(format!("not a JSON request: {e}")))
        } else {
            Ok(ContextRequest {
                message: line.to_owned(),
                filename: None,
            })
        };
        requests.push(request.and_then(|r| {
            ContextRequest::check(&r.message, r.filename.as_deref(), max_message_bytes)
                .map(|()| r)
                .map_err(|e| error(e.to_string()))
        }));
    }
    requests
}

/// What a warming did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warmed {
    /// Already cached (fresh in some tier).
    pub cached: u64,
    /// Asked of the origin and stored.
    pub fetched: u64,
    /// The origin failed.
    pub failed: u64,
}

/// Sends `requests` through the chain, `concurrency` at a time, and logs what it did
/// (`source` says where the list came from).
pub async fn warm(
    chain: &Chain,
    metrics: &Metrics,
    requests: Vec<ContextRequest>,
    concurrency: usize,
    source: &str,
) -> Warmed {
    let (started, n) = (std::time::Instant::now(), requests.len());
    let mut answers = futures_util::stream::iter(requests)
        .map(|request| chain.lookup(Arc::new(request)))
        .buffer_unordered(concurrency.max(1));
    let mut warmed = Warmed::default();
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(a) if a.source.is_hit() => warmed.cached += 1,
            Ok(a) => {
                warmed.fetched += 1;
                if !a.coalesced {
                    metrics.refresh_started(Refresh::Warm);
                }
            }
            Err(_) => warmed.failed += 1,
        }
    }
    tracing::info!(
        requests = n,
        cached = warmed.cached,
        fetched = warmed.fetched,
        failed = warmed.failed,
        seconds = started.elapsed().as_secs_f64(),
        "warmed {source}"
    );
    warmed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON and plain lines are requests; blank lines are skipped; bad lines say where.
    #[test]
    fn lists_parse_line_by_line() {
        let text = "how to use reverb\r\n\n{\"message\": \"audio analysis\", \"filename\": \"effect_chain.ts\", \"x\": 1}\n{\"message\": 5}\n{\"filename\": \"a\"}\n   \n{\"message\": \"\"}\n";
        let parsed = parse(text, 100);
        assert_eq!(parsed.len(), 5);
        let ok = parsed[0].as_ref().unwrap();
        assert_eq!(
            (ok.message.as_str(), ok.filename.as_deref()),
            ("how to use reverb", None)
        );
        let ok = parsed[1].as_ref().unwrap();
        assert_eq!(ok.filename.as_deref(), Some("effect_chain.ts"));
        for (i, line) in [(2, 4), (3, 5), (4, 7)] {
            assert_eq!(
                parsed[i].as_ref().unwrap_err().line,
                line,
                "{:?}",
                parsed[i]
            );
        }
        let long = parse(&"x".repeat(101), 100);
        assert!(
            long[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("max_message_bytes")
        );
    }
}
