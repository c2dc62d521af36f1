//! Hostile input: bad requests always get a clear error, never a panic, a hang or lost
//! data. Most cases talk raw bytes to a running daemon over TCP (std::net), because
//! well-behaved clients cannot send what is tested here; the property tests drive the
//! warp filter in-process with `warp::test`. After every daemon case the process must be
//! alive, its log free of panics, and a fresh client served normally.

mod admin;
mod bodies;
#[path = "../common/mod.rs"]
mod common;
mod conformance;
mod headers;
mod properties;
mod raw_http;
mod secrets;
mod shared_tier;

use common::{cache_section, log_section, memory_tier, sample_origin};

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// Memory tier + sample origin, no admin token, these `[server]` lines.
fn config(server: &str) -> String {
    [
        format!("[server]\n{server}\n\n"),
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        sample_origin(),
    ]
    .concat()
}

/// The header-read timeout used where the tests wait on it.
const SHORT_TIMEOUT_MS: u64 = 500;

fn short_timeout_config() -> String {
    config(&format!("header_read_timeout_ms = {SHORT_TIMEOUT_MS}"))
}
