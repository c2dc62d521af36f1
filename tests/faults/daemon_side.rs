//! Daemon side: metrics, stats, Redis state and contents, RSS and config files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use codette_cache::key::Key;
use serde_json::{Value, json};

use crate::client::ask_ok;
use crate::common::{Daemon, TestRedis};
use crate::poll;

// ---------------------------------------------------------------------------------------
// Daemon side
// ---------------------------------------------------------------------------------------

/// The value of one Prometheus series (`name{labels}` exactly as exposed).
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

pub(crate) async fn metrics_text(daemon: &Daemon) -> String {
    let (status, text) = daemon.get_text("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

pub(crate) async fn stats(daemon: &Daemon) -> Value {
    let (status, v) = daemon.get_json("/codette/cache/stats").await;
    assert_eq!(status, 200, "{v}");
    v
}

pub(crate) fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {v}"))
}

/// The redis tier as `/codette/cache/status` and `codette_cache_tier_up` report it.
pub(crate) async fn redis_state(daemon: &Daemon) -> (String, Option<f64>) {
    let (_, status) = daemon.get_json("/codette/cache/status").await;
    let up = metric(
        &metrics_text(daemon).await,
        "codette_cache_tier_up{tier=\"redis\"}",
    );
    let state = status["cache_backends"]["redis_cache"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    (state, up)
}

/// Waits until both report the redis tier as `want` ("connected" / "unavailable").
pub(crate) async fn wait_redis(daemon: &Daemon, want: &str, limit: Duration) -> Option<Instant> {
    let up = if want == "connected" { 1.0 } else { 0.0 };
    poll(limit, async || {
        let (state, gauge) = redis_state(daemon).await;
        (state == want && gauge == Some(up)).then_some(())
    })
    .await
    .map(|(_, at)| at)
}

/// Resident memory of a process, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn key(message: &str) -> String {
    Key::derive(message, None, false).as_str().to_owned()
}

/// Waits up to 2 s for the answer to `message` to be stored in Redis (our writes to
/// remote tiers land after the reply).
pub(crate) async fn reaches_redis(redis: &TestRedis, message: &str) -> bool {
    poll(Duration::from_secs(2), async || {
        (redis.cmd(&["EXISTS", &key(message)]) == "1").then_some(())
    })
    .await
    .is_some()
}

/// A context stored straight into Redis, marked so a hit on it is recognisable.
fn seeded_context(i: usize) -> String {
    json!({"snippets": [], "file": null, "chat_history": [], "seeded": i}).to_string()
}

/// Stores `seeded_context(i)` under the key of `message(i)` for i in 0..n.
pub(crate) fn seed_redis(redis: &TestRedis, n: usize, message: impl Fn(usize) -> String) {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|i| (key(&message(i)), seeded_context(i)))
        .collect();
    let mut args = vec!["MSET"];
    for (k, v) in &pairs {
        args.push(k);
        args.push(v);
    }
    assert_eq!(redis.cmd(&args), "OK");
}

/// Asks seeded messages one after another (each a memory miss) until one is a Redis hit;
/// returns when, and how many were asked.
pub(crate) async fn first_redis_hit(
    daemon: &Daemon,
    n: usize,
    message: impl Fn(usize) -> String,
    limit: Duration,
) -> Option<(usize, Instant)> {
    let mut i = 0;
    poll(limit, async || {
        if i >= n {
            return None;
        }
        let reply = ask_ok(daemon, &message(i)).await;
        i += 1;
        (reply.source() == "redis").then(|| {
            assert_eq!(reply.body["context"]["seeded"], json!(i - 1), "{reply:?}");
            i
        })
    })
    .await
}

/// The daemon's `--config` file, from its command line.
pub(crate) fn config_path(daemon: &Daemon) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.pid())).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args
        .iter()
        .position(|a| *a == b"--config")
        .expect("--config");
    PathBuf::from(String::from_utf8_lossy(args[at + 1]).into_owned())
}

/// Replaces the config file in one step (the daemon never reads half a file).
pub(crate) fn write_config(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}
