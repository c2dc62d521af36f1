//! Builders for the daemon's TOML config: one small fn per section, plus ready-made
//! combinations. `[server] listen` is left out: `Daemon` sets it through the environment.

use super::postgres::TestPostgres;
use super::postgrest::Postgrest;
use super::redis::TestRedis;

/// The admin token the ready-made configs use.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A TOML basic string (JSON string escaping is valid TOML here).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

pub fn log_section(level: &str) -> String {
    format!("[log]\nlevel = {}\n\n", toml_str(level))
}

/// `[cache]` with exact-match keys (as the original) and no stale serving.
pub fn cache_section(ttl_secs: u64) -> String {
    format!(
        "[cache]\nttl_secs = {ttl_secs}\nnormalize_queries = false\n\
         stale_if_error_secs = 0\nstale_while_revalidate_secs = 0\n\n"
    )
}

pub fn memory_tier(max_entries: u64, max_bytes: u64, ttl_secs: u64) -> String {
    format!(
        "[[tiers]]\ntype = \"memory\"\nmax_entries = {max_entries}\n\
         max_bytes = {max_bytes}\nttl_secs = {ttl_secs}\n\n"
    )
}

pub fn redis_tier(url: &str, timeout_ms: u64, ttl_secs: u64) -> String {
    format!(
        "[[tiers]]\ntype = \"redis\"\nurl = {}\ntimeout_ms = {timeout_ms}\nttl_secs = {ttl_secs}\n\n",
        toml_str(url)
    )
}

pub fn redis_cluster_tier(nodes: &[String], timeout_ms: u64, ttl_secs: u64) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| toml_str(n)).collect();
    format!(
        "[[tiers]]\ntype = \"redis_cluster\"\nnodes = [{}]\ntimeout_ms = {timeout_ms}\n\
         ttl_secs = {ttl_secs}\n\n",
        nodes.join(", ")
    )
}

pub fn sample_origin() -> String {
    "[origin]\ntype = \"sample\"\n\n".to_string()
}

pub fn supabase_origin(url: &str, api_key: &str, timeout_ms: u64) -> String {
    format!(
        "[origin]\ntype = \"supabase\"\nurl = {}\napi_key = {}\n\
         function = \"get_codette_context\"\ntimeout_ms = {timeout_ms}\n\n",
        toml_str(url),
        toml_str(api_key)
    )
}

pub fn postgres_origin(url: &str, pool_size: u32, timeout_ms: u64) -> String {
    format!(
        "[origin]\ntype = \"postgres\"\nurl = {}\nfunction = \"get_codette_context\"\n\
         pool_size = {pool_size}\ntimeout_ms = {timeout_ms}\n\n",
        toml_str(url)
    )
}

pub fn admin_section(token: &str) -> String {
    format!("[admin]\ntoken = {}\n\n", toml_str(token))
}

fn default_memory_tier() -> String {
    memory_tier(10_000, 64 * 1024 * 1024, 300)
}

/// Memory tier in front of the built-in sample origin.
pub fn config_memory_only_sample() -> String {
    [
        log_section("info"),
        cache_section(300),
        default_memory_tier(),
        sample_origin(),
        admin_section(ADMIN_TOKEN),
    ]
    .concat()
}

/// Memory tier in front of the gateway.
pub fn config_memory_postgrest(rest: &Postgrest, api_key: &str) -> String {
    [
        log_section("info"),
        cache_section(300),
        default_memory_tier(),
        supabase_origin(&rest.url(), api_key, 2_000),
        admin_section(ADMIN_TOKEN),
    ]
    .concat()
}

/// Memory, then Redis, in front of the gateway.
pub fn config_memory_redis_postgrest(redis: &TestRedis, rest: &Postgrest, api_key: &str) -> String {
    [
        log_section("info"),
        cache_section(300),
        default_memory_tier(),
        redis_tier(&redis.url(), 250, 300),
        supabase_origin(&rest.url(), api_key, 2_000),
        admin_section(ADMIN_TOKEN),
    ]
    .concat()
}

/// Memory, then Redis, in front of PostgreSQL directly.
pub fn config_memory_redis_postgres(redis: &TestRedis, pg: &TestPostgres) -> String {
    [
        log_section("info"),
        cache_section(300),
        default_memory_tier(),
        redis_tier(&redis.url(), 250, 300),
        postgres_origin(&pg.url(), 4, 2_000),
        admin_section(ADMIN_TOKEN),
    ]
    .concat()
}
