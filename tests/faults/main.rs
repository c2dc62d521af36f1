//! Faults against the real servers: Redis killed, frozen, password-protected or TLS-only;
//! an origin that is slow, failing, malformed, huge or gone; PostgreSQL restarted; the
//! daemon signalled (SIGTERM, SIGHUP) under load; and a bounded soak. Every figure a test
//! asserts on is measured from the client side and printed (see them with --nocapture).
//!
//! The machine is small (2 cores, shared): timing margins are generous but each one is
//! well below what the failure it guards against would take. The soak runs alone (it
//! takes the write side of `MACHINE`); the other tests may run side by side.

mod breaker;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod daemon_side;
mod origin;
mod postgres;
mod raw_http;
mod redis_faults;
mod signals;
mod soak;

use std::future::Future;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use common::{
    API_KEY, Postgrest, cache_section, log_section, memory_tier, redis_tier, sample_origin,
    toml_str,
};

const MIB: u64 = 1024 * 1024;
const CONTEXT: &str = "/codette/context";

// ---------------------------------------------------------------------------------------
// Running tests
// ---------------------------------------------------------------------------------------

/// Read: an ordinary test. Write: the soak, which needs the machine to itself.
static MACHINE: RwLock<()> = RwLock::new(());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a test body beside the other ordinary tests. The body runs on the test's own
/// thread (block_on), so its blocking calls (stopping servers) never stall client tasks.
fn shared<F: Future>(body: F) -> F::Output {
    let _machine = MACHINE.read().unwrap_or_else(PoisonError::into_inner);
    runtime().block_on(body)
}

/// Runs a test body with no other test of this file running.
fn exclusive<F: Future>(body: F) -> F::Output {
    let _machine = MACHINE.write().unwrap_or_else(PoisonError::into_inner);
    runtime().block_on(body)
}

/// Polls `probe` every 10 ms until it gives a value; the value and when it came.
async fn poll<T>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<(T, Instant)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some((value, Instant::now()));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

fn cache(ttl_secs: u64, stale_if_error_secs: u64, stale_while_revalidate_secs: u64) -> String {
    format!(
        "[cache]\nttl_secs = {ttl_secs}\nnormalize_queries = false\n\
         stale_if_error_secs = {stale_if_error_secs}\n\
         stale_while_revalidate_secs = {stale_while_revalidate_secs}\n\n"
    )
}

fn supabase(rest: &Postgrest, timeout_ms: u64, max_response_bytes: u64) -> String {
    format!(
        "[origin]\ntype = \"supabase\"\nurl = {}\napi_key = {}\n\
         function = \"get_codette_context\"\ntimeout_ms = {timeout_ms}\n\
         max_response_bytes = {max_response_bytes}\n\n",
        toml_str(&rest.url()),
        toml_str(API_KEY)
    )
}

fn grace_section(secs: u64) -> String {
    format!("[server]\nshutdown_grace_secs = {secs}\n\n")
}

/// Memory (its own TTL) then Redis (timeout 50 ms) in front of the sample origin.
fn memory_redis_sample(redis_url: &str, memory_ttl_secs: u64) -> String {
    memory_redis_sample_within(redis_url, memory_ttl_secs, 50)
}

/// [`memory_redis_sample`] with the Redis tier's timeout `redis_timeout_ms`.
fn memory_redis_sample_within(
    redis_url: &str,
    memory_ttl_secs: u64,
    redis_timeout_ms: u64,
) -> String {
    [
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * MIB, memory_ttl_secs),
        redis_tier(redis_url, redis_timeout_ms, 300),
        sample_origin(),
    ]
    .concat()
}

/// Memory only, in front of the gateway.
fn memory_supabase(rest: &Postgrest, cache_part: &str, memory_ttl: u64, timeout_ms: u64) -> String {
    [
        log_section("info"),
        cache_part.to_owned(),
        memory_tier(10_000, 64 * MIB, memory_ttl),
        supabase(rest, timeout_ms, 4 * MIB),
    ]
    .concat()
}
