//! `codette-cache bench`: the performance tester. Without a mode it reproduces the
//! original tester's report (`report`); `bench load` drives a daemon with a load
//! (`load`, `compare`); `bench ceiling` runs the bare HTTP server the speed bar is
//! measured against (`ceiling`, `scripts/bench-ceiling.sh`); `--plot` draws the runs'
//! latency curves (`plot`). A tool, so `anyhow` here.

mod ceiling;
mod compare;
mod load;
mod plot;
mod progress;
mod report;
mod stats;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

pub use load::{KeyDistribution, LoadPlan, LoadResult};

/// `codette-cache bench [--url URL] [--out PATH] [--json] [--queries FILE]`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// The daemon to test.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Where the report is written.
    #[arg(long, default_value = "cache_performance_report.txt")]
    out: PathBuf,
    /// Print the report's data as JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A file with one query per line (default: the original's five).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Admin token, to force first calls to miss by invalidating their keys.
    #[arg(long, env = "CODETTE_CACHE_ADMIN__TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Drive the daemon with a load and report throughput and latency per outcome.
    Load(LoadArgs),
    /// Serve a fixed 2 KB answer with no cache logic: the HTTP ceiling.
    #[command(hide = true)]
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Connections (one worker each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long: 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = stats::parse_duration)]
    duration: Duration,
    /// Distinct messages.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// zipf:<exponent> or uniform.
    #[arg(long, default_value = "zipf:1.0")]
    distribution: KeyDistribution,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Request every key once before measuring.
    #[arg(long)]
    warm: bool,
    /// Run against a memory-only daemon and a memory + Redis daemon started here.
    #[arg(long)]
    compare: bool,
    /// Redis for --compare.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis_url: String,
    /// The sample origin's delay in the --compare daemons (about the real RPC).
    #[arg(long, default_value_t = 300)]
    origin_latency_ms: u64,
    /// Prefix of every message (keys are `<prefix>query <n>`).
    #[arg(long, default_value = "bench ")]
    prefix: String,
    /// Also write the latency percentile curves (one per run) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// Runs the tester.
///
/// # Errors
/// When the daemon is unreachable, answers with errors, or the arguments are unusable.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.mode {
        None => report_mode(&args).await,
        Some(Mode::Ceiling { listen }) => {
            ceiling::serve(listen).await;
            Ok(ExitCode::SUCCESS)
        }
        Some(Mode::Load(ref load)) => load_mode(&args, load).await,
    }
}

async fn report_mode(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let queries: Vec<String> = match &args.queries {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --queries {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => report::DEFAULT_QUERIES
            .iter()
            .map(|q| (*q).to_owned())
            .collect(),
    };
    if queries.is_empty() {
        bail!("no queries to run");
    }
    let token = args.admin_token.as_deref().filter(|t| !t.is_empty());
    let report = report::run(&args.url, &queries, token).await?;
    let text = report.render();
    std::fs::write(&args.out, &text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
        eprintln!("report saved to {}", args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn load_mode(args: &BenchArgs, load: &LoadArgs) -> anyhow::Result<ExitCode> {
    if load.concurrency == 0 || load.keys == 0 {
        bail!("--concurrency and --keys must be at least 1");
    }
    if load.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a number of requests per second > 0");
    }
    if let Some(path) = &load.plot {
        plot::check_target(path)?;
    }
    let plan = LoadPlan {
        url: args.url.clone(),
        path: "/codette/context".into(),
        concurrency: load.concurrency,
        duration: load.duration,
        keys: load.keys,
        distribution: load.distribution,
        rate: load.rate,
        progress_bar: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        prefix: load.prefix.clone(),
    };
    if load.compare {
        let (text, results) =
            compare::run(&plan, &load.redis_url, load.origin_latency_ms, load.warm).await?;
        print!("{text}");
        if let Some(path) = &load.plot {
            let runs: Vec<_> = results.iter().map(|(n, r)| (*n, &r.latencies)).collect();
            write_plot(path, &runs, "memory-only vs memory + Redis", &plan)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if load.warm {
        warm(&plan).await?;
    }
    let result = load::run(&plan).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{} against {}", settings(&plan), plan.url);
        print!("{}", load::table(&[("result", &result)]));
    }
    if result.requests > 0 && result.errors.values().sum::<u64>() == result.requests {
        bail!("every request failed: {:?}", result.errors);
    }
    if let Some(path) = &load.plot {
        let runs = [(plan.url.as_str(), &result.latencies)];
        write_plot(path, &runs, &plan.url, &plan)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `32 connections, 30s, 1000 keys, Zipf(1.0) (closed loop)`
fn settings(plan: &LoadPlan) -> String {
    format!(
        "{} connections, {:?}, {} keys, {:?}{}",
        plan.concurrency,
        plan.duration,
        plan.keys,
        plan.distribution,
        plan.rate.map_or(" (closed loop)".into(), |r| format!(
            " (open loop, {r} req/s)"
        ))
    )
}

/// Draws the curves, writes them to `path` and says so on stderr.
fn write_plot(
    path: &Path,
    runs: &[(&str, &hdrhistogram::Histogram<u64>)],
    what: &str,
    plan: &LoadPlan,
) -> anyhow::Result<()> {
    let title = format!(
        "Latency by percentile, {what} ({} connections, {:?}, {} keys)",
        plan.concurrency, plan.duration, plan.keys
    );
    let svg = plot::percentile_svg(runs, &title)?;
    plot::write_file(path, &svg)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Requests every key once (16 at a time) so the measured run starts warm.
async fn warm(plan: &LoadPlan) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = plan.url.trim_end_matches('/');
    let keys: Vec<u64> = (1..=plan.keys).collect();
    for chunk in keys.chunks(16) {
        let calls = chunk.iter().map(|&k| {
            let url = format!(
                "{base}{}?message={}",
                plan.path,
                load::url_encode(&load::message(&plan.prefix, k))
            );
            let client = client.clone();
            async move { client.get(url).send().await.map(|r| r.status()) }
        });
        for status in futures_util::future::join_all(calls).await {
            let status = status.with_context(|| format!("cannot reach the daemon at {base}"))?;
            if !status.is_success() {
                bail!("warming answered {status}");
            }
        }
    }
    Ok(())
}
