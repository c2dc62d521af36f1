//! The daemon's requirements, end to end against REAL servers: a redis-server, a
//! PostgreSQL loaded with `tests/sql/schema.sql`, and the PostgREST-shaped gateway in
//! front of it (tests/common). Each test starts the built `codette-cache` binary with its
//! own config, makes plain HTTP requests and asserts on what a client, Redis or the
//! gateway can see. No mocks.

mod admin;
mod bad_input;
mod caching;
mod changes;
mod client;
mod coherence;
#[path = "../common/mod.rs"]
mod common;
mod dashboard;
mod fencing;
mod freshness;
mod hot_set;
mod lifecycle;
mod origins;
mod postgres_tls;
mod redis_cluster;
mod redis_tier;
mod warming;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{
    ADMIN_TOKEN, API_KEY, Postgrest, admin_section, cache_section, log_section, memory_tier,
    supabase_origin,
};

const MIB: u64 = 1024 * 1024;
const CONTEXT: &str = "/codette/context";
const STATS: &str = "/codette/cache/stats";
const STATUS: &str = "/codette/cache/status";
const CLEAR: &str = "/codette/cache/clear";
const INVALIDATE: &str = "/codette/cache/invalidate";

/// The original server's test vectors (shared/reference/original-system.md).
const REVERB: &str = "how to use reverb in mixing";
const REVERB_KEY: &str = "context:367ac8be2a4e9fccd1f5aa007d810371";
const ANALYSIS: &str = "audio analysis";
const ANALYSIS_FILE: &str = "effect_chain.ts";
const ANALYSIS_KEY: &str = "context:7d3cdfad59cc1144595ae297f6a5c951";

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Runs a test body on its own runtime (the daemon's reqwest client lives in it).
fn run<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

/// Calls `probe` every 20 ms until it gives a value, or `None` after `limit`.
async fn poll<T>(limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// `[[tiers]]` memory with the usual bounds and this TTL.
fn memory(ttl_secs: u64) -> String {
    memory_tier(10_000, 64 * MIB, ttl_secs)
}

fn supabase(rest: &Postgrest) -> String {
    supabase_origin(&rest.url(), API_KEY, 2_000)
}

/// The given tiers and origin, info logs, TTL 300, no stale serving, the test token.
fn config(tiers: &[String], origin: &str) -> String {
    let mut parts = vec![log_section("info"), cache_section(300)];
    parts.extend(tiers.iter().cloned());
    parts.push(origin.to_owned());
    parts.push(admin_section(ADMIN_TOKEN));
    parts.concat()
}
