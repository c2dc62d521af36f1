//! `bench load --compare`: the same load against two daemons this tool starts itself,
//! one with a memory-only chain and one with memory + Redis (the seed's "compare
//! memory-only vs Redis performance"), printed side by side.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::load::{self, LoadPlan, LoadResult};

/// A daemon started for the comparison; killed on drop.
struct Spawned {
    child: Child,
    url: String,
    _dir: tempfile_dir::Dir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp directory removed on drop (std only, to keep `tempfile` a dev-dependency).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn spawn(name: &str, tiers: &str, origin_latency_ms: u64) -> anyhow::Result<Spawned> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!(
        "codette-bench-{}-{name}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{tiers}\n[origin]\ntype = \"sample\"\nlatency_ms = {origin_latency_ms}\n"
        ),
    )?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CODETTE_CACHE_LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start a daemon for the comparison")?;
    let spawned = Spawned {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: tempfile_dir::Dir(dir),
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}/healthz", spawned.url)).send().await {
            if r.status().is_success() {
                return Ok(spawned);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the {name} daemon did not become healthy")
}

async fn redis_reachable(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("--redis-url is not a Redis URL")?;
    let ping = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(()),
        _ => bail!("Redis at {url} is unreachable: start redis-server or pass --redis-url"),
    }
}

/// Runs the plan against both setups; returns the side-by-side text and the results.
///
/// # Errors
/// When Redis is unreachable or a daemon cannot be started.
pub async fn run(
    plan: &LoadPlan,
    redis_url: &str,
    origin_latency_ms: u64,
    warm: bool,
) -> anyhow::Result<(String, Vec<(&'static str, LoadResult)>)> {
    redis_reachable(redis_url).await?;
    let setups = [
        ("memory-only", "[[tiers]]\ntype = \"memory\"\n".to_owned()),
        (
            "memory+redis",
            format!(
                "[[tiers]]\ntype = \"memory\"\n[[tiers]]\ntype = \"redis\"\nurl = \"{redis_url}\"\n"
            ),
        ),
    ];
    let run_id = chrono::Utc::now().timestamp_millis();
    let mut results: Vec<(&'static str, LoadResult)> = Vec::new();
    for (name, tiers) in &setups {
        let daemon = spawn(name, tiers, origin_latency_ms).await?;
        let plan = LoadPlan {
            url: daemon.url.clone(),
            prefix: format!("bench {run_id} {name} "),
            ..plan.clone()
        };
        if warm {
            super::warm(&plan).await?;
        }
        eprintln!("running {name} ...");
        results.push((*name, load::run(&plan).await?));
    }
    let columns: Vec<(&str, &LoadResult)> = results.iter().map(|(n, r)| (*n, r)).collect();
    let text = format!(
        "Comparison: the same load ({} connections, {:?}, {} keys, {:?}{}) against two daemons started by this tool\n\
         with the sample origin answering after {origin_latency_ms} ms (the real RPC takes about 300 ms):\n\
         \x20 memory-only:  [[tiers]] memory (64 MiB)\n\
         \x20 memory+redis: [[tiers]] memory, then redis at {redis_url}\n\
         Each run uses its own keys, so both start cold{}.\n\n{}",
        plan.concurrency,
        plan.duration,
        plan.keys,
        plan.distribution,
        plan.rate
            .map_or(String::new(), |r| format!(", open loop at {r} req/s")),
        if warm {
            " and are warmed before measuring"
        } else {
            ""
        },
        load::table(&columns)
    );
    Ok((text, results))
}
