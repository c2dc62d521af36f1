//! The `codette-cache` binary: parses flags, sets up logging, binds the listener and
//! hands over to `app::run`. `anyhow` and exit codes live only here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use codette_cache::config::Config;
use codette_cache::proxy::introspect;
use codette_cache::{app, bench, shutdown, warm};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// jemalloc, not glibc's malloc: bodies evicted from the memory tier leave glibc's heap
/// fragmented and resident, so RSS at a full bound wandered by a fifth; see Cargo.toml.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "codette-cache",
    version,
    about = "Read-through cache daemon for Codette context look-ups"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (default: the embedded reference config).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (what a bare `codette-cache` does).
    Serve,
    /// Print the effective configuration, secrets redacted; exit 1 if it is invalid.
    CheckConfig,
    /// The performance tester: the original's report, `load`, `load --compare`.
    Bench(Box<bench::BenchArgs>),
    /// Send a list of requests (JSON lines or plain messages) through a running daemon.
    Warm(warm::client::WarmArgs),
    /// Read the RPC functions from PostgreSQL and suggest how each may be cached.
    Introspect(introspect::IntrospectArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(cli.config.as_deref()),
        Command::Serve => report(serve(cli.config, cli.log_format)),
        Command::Bench(args) => tool("bench", bench::run(*args)),
        Command::Warm(args) => tool("warm", warm::client::run(args)),
        Command::Introspect(args) => tool("introspect", introspect::run(args)),
    }
}

/// Runs a tool's future; its error is printed with the tool's name.
fn tool(name: &str, run: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    match runtime().and_then(|rt| rt.block_on(run)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("codette-cache {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("codette-cache: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<&std::path::Path>) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("codette-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(path: Option<PathBuf>, format: LogFormat) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref()).context("configuration rejected")?;
    let set_log_level = init_logging(&config.log.level, format)?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let addr = config.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let intents = shutdown::signals().context("cannot install signal handlers")?;
        app::run(app::Options {
            config,
            config_path: path,
            listener,
            intents,
            set_log_level,
        })
        .await
        .context("daemon failed")
    })
}

/// Installs the subscriber; returns a function that swaps the level on reload.
fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<app::SetLogLevel> {
    let filter = EnvFilter::try_new(level).context("log.level")?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
    Ok(Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}
