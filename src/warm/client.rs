//! `codette-cache warm --from FILE [--url ...] [--concurrency 4]`: sends a list through
//! a running daemon's `POST /codette/context`, with a progress bar on a terminal, and
//! prints how many answers were already cached, fetched, failed. Exits 1 when any
//! failed, so a deploy script can tell.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::{Warmed, parse};

/// Flags of `codette-cache warm`.
#[derive(Debug, clap::Args)]
pub struct WarmArgs {
    /// The list: one request a line, `{"message": ..., "filename": ...}` or a plain message.
    #[arg(long)]
    from: PathBuf,
    /// The daemon to warm.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// Runs the tool.
///
/// # Errors
/// An unreadable list, a line that is not a request (with its number), a bad flag.
pub async fn run(args: WarmArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("cannot read --from {}", args.from.display()))?;
    // Sizes are the daemon's to judge; the format is checked here, before sending.
    let mut requests = Vec::new();
    for parsed in parse(&text, usize::MAX) {
        requests.push(parsed.with_context(|| args.from.display().to_string())?);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/codette/context", args.url.trim_end_matches('/'));
    let bar = ProgressBar::new(requests.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let total = requests.len();
    let mut answers = futures_util::stream::iter(requests)
        .map(|r| {
            let body = json!({"message": r.message, "filename": r.filename});
            let post = client.post(&url).json(&body).send();
            async move {
                let response = post.await.map_err(|e| e.to_string())?;
                let status = response.status();
                let value: Value = response.json().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(value["cache"]["hit"] == true)
                } else {
                    Err(format!("{status}: {}", value["error"]["message"]))
                }
            }
        })
        .buffer_unordered(args.concurrency);
    let mut warmed = Warmed::default();
    let mut first_error = None;
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(true) => warmed.cached += 1,
            Ok(false) => warmed.fetched += 1,
            Err(e) => {
                warmed.failed += 1;
                first_error.get_or_insert(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(e) = &first_error {
        eprintln!("codette-cache warm: first failure: {e}");
    }
    println!(
        "{total} requests: {} already cached, {} fetched, {} failed",
        warmed.cached, warmed.fetched, warmed.failed
    );
    Ok(if warmed.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
