//! Observability against real servers: known traffic through a running daemon in front
//! of a real Redis, PostgreSQL and the PostgREST-shaped gateway, then every figure of the
//! four JSON dashboards and of `/metrics` checked, counts exactly and latencies by their
//! relations; each advice rule provoked with crafted traffic; the Redis status flip;
//! coalesced waiters; errors counted apart; and `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codette_cache::tiers::memory::ENTRY_OVERHEAD_BYTES;
use common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section,
    config_memory_postgrest, config_memory_redis_postgrest, log_section, memory_tier,
    supabase_origin,
};
use futures_util::future::join_all;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// The seed's JSON shapes (Parts 1 and 3): the compatibility contract
// ---------------------------------------------------------------------------------------

const SEED_STATS: &str = r#"{
  "cache_enabled": true,
  "entries": 12,
  "ttl_seconds": 300,
  "metrics": {
    "hits": 42, "misses": 8, "total_requests": 50, "hit_rate_percent": 84.0,
    "average_hit_latency_ms": 45.2, "average_miss_latency_ms": 285.6,
    "performance_gain_multiplier": 6.31, "uptime_seconds": 3600.0
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

const SEED_METRICS: &str = r#"{
  "performance_dashboard": {
    "cache_hit_rate": "84.0%",
    "total_requests": 50,
    "successful_hits": 42,
    "cache_misses": 8,
    "average_latency_comparison": {
      "cached_response_ms": 45.2, "uncached_response_ms": 285.6,
      "speedup_multiplier": "6.31x", "time_saved_per_hit_ms": 240.4
    },
    "cumulative_time_saved": {"total_ms": 10096.8, "total_seconds": 10.1},
    "cache_efficiency": {
      "memory_entries": 12, "ttl_seconds": 300, "uptime_seconds": 3600,
      "estimated_memory_mb": 0.048
    }
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

const SEED_DASHBOARD: &str = r#"{
  "analytics": {
    "cache_performance": {
      "overall_hit_rate": "84.0%",
      "total_requests_processed": 50,
      "successful_cache_hits": 42,
      "cache_misses": 8,
      "average_response_times": {
        "with_cache_ms": 45.2, "without_cache_ms": 285.6, "speedup_multiplier": "6.31x"
      },
      "total_time_saved": {
        "milliseconds": 10096.8, "seconds": 10.1,
        "estimated_cost_savings": "Multiple RPC calls avoided"
      }
    },
    "cache_infrastructure": {
      "memory_cache_enabled": true, "redis_cache_enabled": true, "redis_connected": true,
      "memory_entries": 12, "estimated_memory_usage_mb": 0.048, "ttl_seconds": 300,
      "uptime_seconds": 3600
    },
    "optimization_recommendations": [
      "✅ Cache performing optimally with high hit rate",
      "Maintaining 6.31x performance improvement",
      "Consider Redis if scaling to multiple backend instances"
    ]
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

const SEED_STATUS: &str = r#"{
  "cache_backends": {"memory_cache": "active", "redis_cache": "connected"},
  "current_mode": "dual",
  "fallback_chain": [
    "Redis (if enabled and connected)", "In-memory cache", "Fresh Supabase RPC call"
  ],
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

const STATS: &str = "/codette/cache/stats";
const METRICS: &str = "/codette/cache/metrics";
const DASHBOARD: &str = "/codette/analytics/dashboard";
const STATUS: &str = "/codette/cache/status";

/// The 8 distinct messages of the known traffic: the tester's five and three more.
const MESSAGES: [&str; 8] = [
    "how to use reverb in mixing",
    "compression techniques for vocals",
    "EQ strategies for drums",
    "mixing orchestral instruments",
    "audio production workflow",
    "sidechain compression",
    "stereo imaging",
    "gain staging",
];

/// Origin delay of the known traffic: every miss must take at least this long.
const ORIGIN_DELAY: Duration = Duration::from_millis(50);
/// Length of `context:<md5>`, the key the memory tier stores.
const KEY_LEN: usize = 40;

// ---------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------

/// Real PostgreSQL, the gateway in front of it, optionally Redis, and the daemon.
/// Fields drop in order: the daemon goes first.
struct Stack {
    daemon: Daemon,
    rest: Postgrest,
    redis: Option<TestRedis>,
    _pg: TestPostgres,
}

impl Stack {
    /// Memory, then Redis, in front of the gateway; `extra` is appended to the config.
    async fn dual(extra: &str) -> Stack {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let config = config_memory_redis_postgrest(&redis, &rest, API_KEY) + extra;
        let daemon = Daemon::start(&config);
        let stack = Stack {
            daemon,
            rest,
            redis: Some(redis),
            _pg: pg,
        };
        stack.wait_redis("connected", Duration::from_secs(5)).await;
        stack
    }

    /// Memory in front of the gateway; `extra` is appended to the config.
    fn memory(extra: &str) -> Stack {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = config_memory_postgrest(&rest, API_KEY) + extra;
        Stack::with_config(pg, rest, &config)
    }

    fn with_config(pg: TestPostgres, rest: Postgrest, config: &str) -> Stack {
        Stack {
            daemon: Daemon::start(config),
            rest,
            redis: None,
            _pg: pg,
        }
    }

    fn redis(&mut self) -> &mut TestRedis {
        self.redis.as_mut().expect("this stack has Redis")
    }

    /// Polls `/codette/cache/status` until `redis_cache` reads `want`; returns how long it took.
    async fn wait_redis(&self, want: &str, within: Duration) -> Duration {
        let started = Instant::now();
        wait_for(within, &format!("redis_cache {want:?}"), async || {
            let (_, status) = self.daemon.get_json(STATUS).await;
            (status["cache_backends"]["redis_cache"] == want).then_some(())
        })
        .await;
        started.elapsed()
    }
}

/// `[advice]` with a lower `min_requests`, so a verdict needs little traffic.
fn advice_min_requests(n: u64) -> String {
    format!("[advice]\nmin_requests = {n}\n\n")
}

// ---------------------------------------------------------------------------------------
// Requests and readings
// ---------------------------------------------------------------------------------------

/// `GET /codette/context?message=...`: status and raw body.
async fn ask_text(d: &Daemon, message: &str) -> (u16, String) {
    let resp = d
        .client()
        .get(d.url("/codette/context"))
        .query(&[("message", message)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /codette/context {message:?}: {e}\n{}", d.logs()));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("read body"))
}

/// A context request that must succeed; returns the response JSON.
async fn ask(d: &Daemon, message: &str) -> Value {
    let (status, text) = ask_text(d, message).await;
    assert_eq!(status, 200, "{message:?}: {text}\n{}", d.logs());
    serde_json::from_str(&text).expect("context response is JSON")
}

/// The length of the context bytes as the daemon stored them (`{"context":<bytes>,"cache":...}`).
fn stored_body_len(response: &str) -> usize {
    let rest = response
        .strip_prefix(r#"{"context":"#)
        .expect("response starts with the context");
    rest.rfind(r#","cache":{"#)
        .expect("response has a cache object")
}

/// Drives `count` requests cycling over `messages`, one after another.
async fn drive(d: &Daemon, messages: &[&str], count: usize) {
    for i in 0..count {
        ask(d, messages[i % messages.len()]).await;
    }
}

/// The four dashboards, read one after the other (no traffic in between).
struct Dashboards {
    stats: Value,
    metrics: Value,
    dashboard: Value,
    status: Value,
}

async fn dashboards(d: &Daemon) -> Dashboards {
    let mut read = Vec::new();
    for path in [STATS, METRICS, DASHBOARD, STATUS] {
        let (code, body) = d.get_json(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        read.push(body);
    }
    let [stats, metrics, dashboard, status] = <[Value; 4]>::try_from(read).expect("four");
    Dashboards {
        stats,
        metrics,
        dashboard,
        status,
    }
}

async fn prometheus_text(d: &Daemon) -> String {
    let (code, text) = d.get_text("/metrics").await;
    assert_eq!(code, 200, "GET /metrics: {text}");
    text
}

/// The value of one series, e.g. `codette_cache_tier_up{tier="redis"}`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of one series that must be present.
fn series(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// The advice rules the dashboard lists, in order.
fn rules(dashboard: &Value) -> Vec<String> {
    dashboard["analytics"]["advice"]
        .as_array()
        .expect("advice is an array")
        .iter()
        .map(|a| a["rule"].as_str().expect("rule is a string").to_owned())
        .collect()
}

/// The advice object of one rule.
fn advice<'a>(dashboard: &'a Value, rule: &str) -> &'a Value {
    dashboard["analytics"]["advice"]
        .as_array()
        .expect("advice is an array")
        .iter()
        .find(|a| a["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule:?} advice in {dashboard:#}"))
}

fn recommendations(dashboard: &Value) -> Vec<String> {
    dashboard["analytics"]["optimization_recommendations"]
        .as_array()
        .expect("optimization_recommendations is an array")
        .iter()
        .map(|r| r.as_str().expect("a recommendation is a string").to_owned())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a non-negative integer"))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn assert_close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance + 1e-9,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

/// Polls `probe` every 20 ms until it gives a value; panics after `within`.
async fn wait_for<T>(within: Duration, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Shape checks
// ---------------------------------------------------------------------------------------

/// Every key of the seed example is present in `actual` with the same JSON type (seed
/// integers must stay integers, seed decimals stay decimals); new keys are allowed.
fn assert_seed_shape(seed: &str, actual: &Value) {
    let seed: Value = serde_json::from_str(seed).expect("seed example is JSON");
    shape(&seed, actual, "$");
}

fn shape(seed: &Value, actual: &Value, path: &str) {
    match seed {
        Value::Object(fields) => {
            let object = actual
                .as_object()
                .unwrap_or_else(|| panic!("{path}: {actual} is not an object"));
            for (key, want) in fields {
                let got = object
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} is missing from {actual:#}"));
                shape(want, got, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            let got = actual
                .as_array()
                .unwrap_or_else(|| panic!("{path}: {actual} is not an array"));
            if let Some(first) = items.first() {
                for (i, item) in got.iter().enumerate() {
                    shape(first, item, &format!("{path}[{i}]"));
                }
            }
        }
        Value::String(_) => assert!(actual.is_string(), "{path}: {actual} is not a string"),
        Value::Bool(_) => assert!(actual.is_boolean(), "{path}: {actual} is not a bool"),
        Value::Number(n) if n.is_u64() => {
            assert!(actual.is_u64(), "{path}: {actual} is not an integer");
        }
        Value::Number(_) => assert!(actual.is_f64(), "{path}: {actual} is not a decimal"),
        Value::Null => {}
    }
}

/// Every decimal anywhere in `v` has at most 2 decimals.
fn assert_rounded(v: &Value, path: &str) {
    match v {
        Value::Object(fields) => {
            for (key, item) in fields {
                assert_rounded(item, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_rounded(item, &format!("{path}[{i}]"));
            }
        }
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().expect("f64");
            let cents = x * 100.0;
            assert!(
                (cents - cents.round()).abs() <= 1e-6 * cents.abs().max(1.0),
                "{path} = {x} has more than 2 decimals"
            );
        }
        _ => {}
    }
}

/// `timestamp` is RFC 3339 in UTC (`Z`) and close to now.
fn assert_timestamp(v: &Value) {
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    let parsed = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("timestamp {ts:?} is not RFC 3339: {e}"));
    assert!(ts.ends_with('Z'), "timestamp {ts:?} is not UTC");
    let skew = chrono::Utc::now()
        .signed_duration_since(parsed)
        .num_seconds();
    assert!(skew.abs() < 60, "timestamp {ts:?} is {skew} s from now");
}

/// One advice object: rule, severity, message and the figure that triggered it.
fn assert_advice_shape(a: &Value) {
    assert!(a["rule"].is_string(), "{a}");
    let severity = a["severity"].as_str().expect("severity is a string");
    assert!(
        ["info", "warning", "critical"].contains(&severity),
        "severity {severity:?}"
    );
    assert!(!a["message"].as_str().expect("message").is_empty(), "{a}");
    assert!(a["figure"]["name"].is_string(), "{a}");
    assert!(a["figure"]["value"].is_number(), "{a}");
}

/// `promtool check metrics` on `text`: (exit ok, everything it printed).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

// ---------------------------------------------------------------------------------------
// Known traffic: 8 distinct messages, then 42 repeats cycling over them
// ---------------------------------------------------------------------------------------

/// Starts memory + Redis + gateway (origin delay 50 ms) and drives the known traffic;
/// returns the stack and the bytes of each stored context body.
async fn known_traffic() -> (Stack, Vec<usize>) {
    let stack = Stack::dual("").await;
    stack.rest.set_delay(ORIGIN_DELAY);
    let d = &stack.daemon;
    let mut bodies = Vec::new();
    for message in MESSAGES {
        let (code, text) = ask_text(d, message).await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["cache"]["source"], "origin", "{v}");
        bodies.push(stored_body_len(&text));
    }
    for i in 0..42 {
        let v = ask(d, MESSAGES[i % MESSAGES.len()]).await;
        assert_eq!(v["cache"]["source"], "memory", "repeat {i}: {v}");
    }
    assert_eq!(
        stack.rest.calls(),
        8,
        "one origin call per distinct message"
    );
    // The Redis back-fill runs after each miss's response: wait for all 8 puts.
    wait_for(Duration::from_secs(2), "8 Redis puts", async || {
        let text = prometheus_text(d).await;
        let puts = r#"codette_cache_tier_operation_duration_seconds_count{op="put",tier="redis"}"#;
        (sample(&text, puts) == Some(8.0)).then_some(())
    })
    .await;
    (stack, bodies)
}

/// 8 misses + 42 hits give exact counts and true latencies in /codette/cache/stats,
/// /codette/cache/metrics, /codette/analytics/dashboard and /codette/cache/status, in the
/// seed's shapes.
#[tokio::test]
async fn known_traffic_figures_in_the_four_dashboards() {
    let (stack, bodies) = known_traffic().await;
    let d = &stack.daemon;
    let Dashboards {
        stats,
        metrics,
        dashboard,
        status,
    } = dashboards(d).await;
    let text = prometheus_text(d).await;

    for (seed, v) in [
        (SEED_STATS, &stats),
        (SEED_METRICS, &metrics),
        (SEED_DASHBOARD, &dashboard),
        (SEED_STATUS, &status),
    ] {
        assert_seed_shape(seed, v);
        assert_rounded(v, "$");
        assert_timestamp(v);
    }

    // /codette/cache/stats
    let m = &stats["metrics"];
    assert_eq!(stats["cache_enabled"], true);
    assert_eq!(u(&stats["entries"]), 8);
    assert_eq!(u(&stats["ttl_seconds"]), 300);
    assert_eq!(u(&m["hits"]), 42);
    assert_eq!(u(&m["misses"]), 8);
    assert_eq!(u(&m["total_requests"]), 50);
    assert_eq!(f(&m["hit_rate_percent"]), 84.0);
    let hit = f(&m["average_hit_latency_ms"]);
    let miss = f(&m["average_miss_latency_ms"]);
    assert!(
        hit < miss,
        "hits ({hit} ms) are faster than misses ({miss} ms)"
    );
    assert!(
        miss >= ORIGIN_DELAY.as_secs_f64() * 1000.0,
        "a miss includes the origin's {ORIGIN_DELAY:?}: {miss} ms"
    );
    // The means are those of /metrics (same recordings), to the reported precision.
    let prom_mean = |tier: &str, result: &str| {
        let labels =
            format!(r#"{{function="get_codette_context",result="{result}",tier="{tier}"}}"#);
        let sum = series(
            &text,
            &format!("codette_cache_request_duration_seconds_sum{labels}"),
        );
        let n = series(
            &text,
            &format!("codette_cache_request_duration_seconds_count{labels}"),
        );
        sum * 1000.0 / n
    };
    let (true_hit, true_miss) = (prom_mean("memory", "hit"), prom_mean("origin", "miss"));
    // A memory hit takes microseconds: positive, though its mean may round to 0.0 ms.
    assert!(true_hit > 0.0, "hits take time: {true_hit} ms");
    assert!(hit >= 0.0, "{hit}");
    assert_close("average_hit_latency_ms", hit, true_hit, 0.005);
    assert_close("average_miss_latency_ms", miss, true_miss, 0.005);
    let multiplier = f(&m["performance_gain_multiplier"]);
    assert_close(
        "performance_gain_multiplier",
        multiplier,
        round2(true_miss / true_hit),
        0.01,
    );
    assert!(multiplier > 1.0, "{multiplier}");
    let uptime = f(&m["uptime_seconds"]);
    assert!(uptime > 0.0, "uptime {uptime}");

    // The HDR percentiles beside them: exact counts, "hit" merged over every tier,
    // ordered quantiles, and misses that include the origin's delay.
    let lp = &m["latency_percentiles"];
    let tiers = &lp["hit_by_tier"];
    assert_eq!(u(&lp["hit"]["count"]), 42, "{lp}");
    assert_eq!(
        u(&tiers["memory"]["count"]) + u(&tiers["redis"]["count"]),
        42,
        "{lp}"
    );
    assert_eq!(u(&lp["miss"]["count"]), 8, "{lp}");
    assert_eq!(u(&lp["origin_call"]["count"]), 8, "{lp}");
    assert_eq!(u(&lp["error"]["count"]), 0, "{lp}");
    for outcome in ["hit", "miss", "origin_call"] {
        let q: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
            .iter()
            .map(|k| f(&lp[outcome][k]))
            .collect();
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{outcome}: {q:?}");
    }
    let delay_ms = ORIGIN_DELAY.as_secs_f64() * 1000.0;
    assert!(f(&lp["miss"]["p50_ms"]) >= delay_ms, "{lp}");
    assert!(f(&lp["hit"]["p99_ms"]) < f(&lp["miss"]["p50_ms"]), "{lp}");
    // HDR keeps 3 significant digits: the max is within 0.1 % of the slowest miss.
    assert!(f(&lp["miss"]["max_ms"]) * 1.001 + 0.01 >= miss, "{lp}");

    // /codette/cache/metrics
    let p = &metrics["performance_dashboard"];
    assert_eq!(p["cache_hit_rate"], "84.0%");
    assert_eq!(u(&p["total_requests"]), 50);
    assert_eq!(u(&p["successful_hits"]), 42);
    assert_eq!(u(&p["cache_misses"]), 8);
    let cmp = &p["average_latency_comparison"];
    assert_eq!(f(&cmp["cached_response_ms"]), hit);
    assert_eq!(f(&cmp["uncached_response_ms"]), miss);
    assert_eq!(cmp["speedup_multiplier"], format!("{multiplier:.2}x"));
    let saved_per_hit = f(&cmp["time_saved_per_hit_ms"]);
    assert_close("time_saved_per_hit_ms", saved_per_hit, miss - hit, 0.01);
    let saved = &p["cumulative_time_saved"];
    let total_ms = f(&saved["total_ms"]);
    assert_close(
        "cumulative_time_saved.total_ms",
        total_ms,
        42.0 * saved_per_hit,
        42.0 * 0.005 + 0.005,
    );
    assert_close(
        "cumulative_time_saved.total_ms vs /metrics",
        total_ms,
        series(&text, "codette_cache_time_saved_seconds_total") * 1000.0,
        0.01,
    );
    assert_eq!(f(&saved["total_seconds"]), round2(total_ms / 1000.0));
    let eff = &p["cache_efficiency"];
    assert_eq!(u(&eff["memory_entries"]), 8);
    assert_eq!(u(&eff["ttl_seconds"]), 300);
    assert!(u(&eff["uptime_seconds"]) as f64 <= uptime.ceil() + 1.0);
    // Memory: a measurement of what is held (keys, bodies and the per-entry overhead),
    // the same figure as /metrics, in MiB rounded to 2 decimals.
    let held = series(&text, "codette_cache_memory_bytes");
    let expected: usize = bodies
        .iter()
        .map(|b| KEY_LEN + b + ENTRY_OVERHEAD_BYTES)
        .sum();
    assert_eq!(
        held, expected as f64,
        "codette_cache_memory_bytes is the bytes of the 8 keys and bodies held plus overhead"
    );
    let mb = f(&eff["estimated_memory_mb"]);
    assert_eq!(mb, round2(held / (1024.0 * 1024.0)));

    // /codette/analytics/dashboard
    let a = &dashboard["analytics"];
    let perf = &a["cache_performance"];
    assert_eq!(perf["overall_hit_rate"], "84.0%");
    assert_eq!(u(&perf["total_requests_processed"]), 50);
    assert_eq!(u(&perf["successful_cache_hits"]), 42);
    assert_eq!(u(&perf["cache_misses"]), 8);
    let times = &perf["average_response_times"];
    assert_eq!(f(&times["with_cache_ms"]), hit);
    assert_eq!(f(&times["without_cache_ms"]), miss);
    assert_eq!(times["speedup_multiplier"], cmp["speedup_multiplier"]);
    let total = &perf["total_time_saved"];
    assert_eq!(f(&total["milliseconds"]), total_ms);
    assert_eq!(f(&total["seconds"]), f(&saved["total_seconds"]));
    assert!(total["estimated_cost_savings"].is_string());
    let infra = &a["cache_infrastructure"];
    assert_eq!(infra["memory_cache_enabled"], true);
    assert_eq!(infra["redis_cache_enabled"], true);
    assert_eq!(infra["redis_connected"], true);
    assert_eq!(u(&infra["memory_entries"]), 8);
    assert_eq!(f(&infra["estimated_memory_usage_mb"]), mb);
    assert_eq!(u(&infra["ttl_seconds"]), 300);
    let recs = recommendations(&dashboard);
    assert_eq!(recs[0], "✅ Cache performing optimally with high hit rate");
    assert_eq!(
        recs[1],
        format!("Maintaining {multiplier:.2}x performance improvement")
    );
    let list = a["advice"].as_array().expect("advice array");
    assert_eq!(list.len(), recs.len(), "one advice per recommendation");
    for (advice, rec) in list.iter().zip(&recs) {
        assert_advice_shape(advice);
        assert_eq!(advice["message"], rec.as_str());
    }
    assert_eq!(rules(&dashboard), ["hit_rate", "speedup"], "{dashboard:#}");
    assert_eq!(f(&advice(&dashboard, "hit_rate")["figure"]["value"]), 84.0);
    assert_eq!(
        f(&advice(&dashboard, "speedup")["figure"]["value"]),
        multiplier
    );

    // /codette/cache/status
    assert_eq!(status["cache_backends"]["memory_cache"], "active");
    assert_eq!(status["cache_backends"]["redis_cache"], "connected");
    assert_eq!(status["current_mode"], "dual");
    assert_eq!(
        status["fallback_chain"],
        serde_json::json!([
            "In-memory cache",
            "Redis (if enabled and connected)",
            "Fresh Supabase RPC call"
        ])
    );
}

/// The same known traffic in /metrics: exact request, origin, tier and gauge series, and
/// `promtool check metrics` finds nothing to complain about.
#[tokio::test]
async fn known_traffic_in_prometheus_and_promtool_lint() {
    let (stack, _) = known_traffic().await;
    let text = prometheus_text(&stack.daemon).await;
    let s = |name: &str| series(&text, name);

    assert_eq!(
        s(
            r#"codette_cache_requests_total{function="get_codette_context",result="hit",tier="memory"}"#
        ),
        42.0
    );
    assert_eq!(
        s(
            r#"codette_cache_requests_total{function="get_codette_context",result="miss",tier="origin"}"#
        ),
        8.0
    );
    for zero in [
        r#"codette_cache_requests_total{function="get_codette_context",result="hit",tier="redis"}"#,
        r#"codette_cache_requests_total{function="get_codette_context",result="error",tier="none"}"#,
        r#"codette_cache_requests_total{function="get_codette_context",result="stale",tier="memory"}"#,
        r#"codette_cache_origin_requests_total{function="get_codette_context",result="error"}"#,
        r#"codette_cache_origin_requests_total{function="get_codette_context",result="timeout"}"#,
        "codette_cache_coalesced_waiters_total",
    ] {
        assert_eq!(s(zero), 0.0, "{zero}");
    }
    assert_eq!(
        s(r#"codette_cache_origin_requests_total{function="get_codette_context",result="ok"}"#),
        8.0
    );
    assert_eq!(
        s(
            r#"codette_cache_request_duration_seconds_count{function="get_codette_context",result="hit",tier="memory"}"#
        ),
        42.0
    );
    assert_eq!(
        s(
            r#"codette_cache_request_duration_seconds_count{function="get_codette_context",result="miss",tier="origin"}"#
        ),
        8.0
    );
    assert_eq!(
        s(
            r#"codette_cache_request_duration_seconds_bucket{function="get_codette_context",result="miss",tier="origin",le="+Inf"}"#
        ),
        8.0
    );
    // No miss can beat the origin's delay: none in the buckets below 50 ms.
    assert_eq!(
        s(
            r#"codette_cache_request_duration_seconds_bucket{function="get_codette_context",result="miss",tier="origin",le="0.025"}"#
        ),
        0.0
    );
    assert_eq!(
        s(r#"codette_cache_origin_request_duration_seconds_count{function="get_codette_context"}"#),
        8.0
    );
    assert!(
        s(r#"codette_cache_origin_request_duration_seconds_sum{function="get_codette_context"}"#)
            >= 8.0 * 0.05
    );
    assert_eq!(s(r#"codette_cache_entries{tier="memory"}"#), 8.0);
    assert!(s("codette_cache_memory_bytes") > 0.0);
    assert_eq!(s(r#"codette_cache_tier_up{tier="memory"}"#), 1.0);
    assert_eq!(s(r#"codette_cache_tier_up{tier="redis"}"#), 1.0);
    assert_eq!(
        s(&format!(
            r#"codette_cache_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let start = s("codette_cache_start_time_seconds");
    assert!(start <= now && start > now - 120.0, "start time {start}");
    assert_eq!(s("codette_cache_config_last_reload_successful"), 1.0);
    // Tier operations: every request read memory; the 8 misses read Redis and filled both.
    let op = |tier: &str, op: &str| {
        s(&format!(
            r#"codette_cache_tier_operation_duration_seconds_count{{op="{op}",tier="{tier}"}}"#
        ))
    };
    assert_eq!(op("memory", "get"), 50.0);
    assert_eq!(op("redis", "get"), 8.0);
    assert_eq!(op("memory", "put"), 8.0);
    assert_eq!(op("redis", "put"), 8.0);
    for tier in ["memory", "redis"] {
        for o in ["get", "put"] {
            let errors = format!(r#"codette_cache_tier_errors_total{{op="{o}",tier="{tier}"}}"#);
            assert_eq!(s(&errors), 0.0, "{errors}");
        }
    }
    assert_eq!(stack.redis.as_ref().expect("redis").cmd(&["DBSIZE"]), "8");

    let (ok, printed) = promtool_check(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics:\n{printed}"
    );
    // The lint can fail: a counter without `_total` is a complaint.
    let (_, complaint) =
        promtool_check("# HELP bad_count A counter.\n# TYPE bad_count counter\nbad_count 1\n");
    assert!(
        !complaint.trim().is_empty(),
        "promtool stayed silent on a bad counter"
    );
}

// ---------------------------------------------------------------------------------------
// Advice bands with crafted traffic
// ---------------------------------------------------------------------------------------

/// 20 distinct messages (0 % hits) put the seed's "Cache efficiency low" line first.
#[tokio::test]
async fn advice_low_hit_rate() {
    let stack = Stack::dual("").await;
    let distinct: Vec<String> = (0..20).map(|i| format!("distinct question {i}")).collect();
    let refs: Vec<&str> = distinct.iter().map(String::as_str).collect();
    drive(&stack.daemon, &refs, 20).await;
    let (_, dash) = stack.daemon.get_json(DASHBOARD).await;
    let recs = recommendations(&dash);
    assert!(recs[0].contains("Cache efficiency low"), "{recs:?}");
    let band = advice(&dash, "hit_rate");
    assert_eq!(band["severity"], "warning");
    assert_eq!(f(&band["figure"]["value"]), 0.0);
    assert!(!rules(&dash).contains(&"speedup".to_owned()), "{dash:#}");
}

/// 3 distinct messages then 7 repeats (70 % hits) give the "monitor" band and no speedup line.
#[tokio::test]
async fn advice_moderate_hit_rate() {
    let stack = Stack::dual(&advice_min_requests(10)).await;
    drive(&stack.daemon, &MESSAGES[..3], 10).await;
    let (_, dash) = stack.daemon.get_json(DASHBOARD).await;
    let recs = recommendations(&dash);
    assert!(
        recs[0].contains("monitor for optimization opportunities"),
        "{recs:?}"
    );
    assert_eq!(f(&advice(&dash, "hit_rate")["figure"]["value"]), 70.0);
    assert_eq!(rules(&dash), ["hit_rate"], "{dash:#}");
}

/// 1 miss then 20 hits (95.24 % hits) add the over-caching note after the optimal lines.
#[tokio::test]
async fn advice_over_caching() {
    let stack = Stack::dual("").await;
    drive(&stack.daemon, &MESSAGES[..1], 21).await;
    let (_, dash) = stack.daemon.get_json(DASHBOARD).await;
    assert_eq!(
        rules(&dash),
        ["hit_rate", "speedup", "over_caching"],
        "{dash:#}"
    );
    let over = advice(&dash, "over_caching");
    assert_eq!(f(&over["figure"]["value"]), 95.24);
    assert!(over["message"].as_str().unwrap().contains("over-caching"));
}

/// Under 20 requests there is no verdict: `not_enough_traffic` is the only advice.
#[tokio::test]
async fn advice_not_enough_traffic() {
    let stack = Stack::dual("").await;
    drive(&stack.daemon, &MESSAGES[..2], 19).await;
    let (_, dash) = stack.daemon.get_json(DASHBOARD).await;
    assert_eq!(rules(&dash), ["not_enough_traffic"], "{dash:#}");
    let only = advice(&dash, "not_enough_traffic");
    assert_eq!(f(&only["figure"]["value"]), 19.0);
    assert_eq!(only["severity"], "info");
}

/// An origin slower than 400 ms (450 ms delay) gets the `miss_latency` warning.
#[tokio::test]
async fn advice_miss_latency() {
    let stack = Stack::dual(&advice_min_requests(2)).await;
    stack.rest.set_delay(Duration::from_millis(450));
    let d = &stack.daemon;
    join_all([ask(d, MESSAGES[0]), ask(d, MESSAGES[1])]).await;
    let (_, stats) = d.get_json(STATS).await;
    let miss = f(&stats["metrics"]["average_miss_latency_ms"]);
    assert!(miss >= 450.0, "{miss}");
    let (_, dash) = d.get_json(DASHBOARD).await;
    let slow = advice(&dash, "miss_latency");
    assert_eq!(slow["severity"], "warning");
    assert_eq!(slow["figure"]["name"], "average_miss_latency_ms");
    assert_eq!(f(&slow["figure"]["value"]), miss);
    assert!(!rules(&dash).contains(&"hit_latency".to_owned()));
}

/// Case and whitespace variants of one query, with normalisation off, get `query_variants`.
#[tokio::test]
async fn advice_query_variants() {
    let stack = Stack::dual("").await;
    let d = &stack.daemon;
    for message in [
        "how to use reverb in mixing",
        "How to use reverb in mixing",
        "HOW TO USE REVERB IN MIXING",
        "  how to use   reverb in mixing ",
    ] {
        let v = ask(d, message).await;
        assert_eq!(v["cache"]["source"], "origin", "each variant misses: {v}");
    }
    let (_, dash) = d.get_json(DASHBOARD).await;
    let variants = advice(&dash, "query_variants");
    assert_eq!(variants["severity"], "warning");
    assert_eq!(
        f(&variants["figure"]["value"]),
        75.0,
        "3 of 4 missed queries"
    );
    assert!(
        variants["message"]
            .as_str()
            .unwrap()
            .contains("normalize_queries = true")
    );
}

/// Origin calls failing (5 ok, then 5 answered 500) give the critical `origin_errors` advice.
#[tokio::test]
async fn advice_origin_errors() {
    let stack = Stack::dual("").await;
    let d = &stack.daemon;
    drive(d, &MESSAGES[..5], 5).await;
    stack.rest.set_fail_status(Some(500));
    for message in &MESSAGES[5..] {
        assert_eq!(ask_text(d, message).await.0, 502);
    }
    assert_eq!(ask_text(d, "one more failing question").await.0, 502);
    assert_eq!(ask_text(d, "and another failing one").await.0, 502);
    let (_, dash) = d.get_json(DASHBOARD).await;
    let origin = advice(&dash, "origin_errors");
    assert_eq!(origin["severity"], "critical");
    assert_eq!(origin["figure"]["name"], "origin_error_percent");
    assert_eq!(f(&origin["figure"]["value"]), 50.0);
}

/// A 64 KiB memory tier filled with ~20 KB answers evicts for size: `memory_evicting`.
#[tokio::test]
async fn advice_memory_evicting() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let config = [
        log_section("info"),
        cache_section(300),
        memory_tier(1_000, 65_536, 300),
        supabase_origin(&rest.url(), API_KEY, 2_000),
        admin_section(common::ADMIN_TOKEN),
    ]
    .concat();
    rest.set_huge_body(Some(20_000));
    let stack = Stack::with_config(pg, rest, &config);
    let d = &stack.daemon;
    let questions: Vec<String> = (0..8).map(|i| format!("large answer {i}")).collect();
    for q in &questions {
        ask(d, q).await;
    }
    // The memory put follows each miss's response by microseconds: poll, do not race it.
    wait_for(Duration::from_secs(1), "5 size evictions", async || {
        let (_, stats) = d.get_json(STATS).await;
        (stats["metrics"]["counters"]["evictions"]["size"] == 5).then_some(())
    })
    .await;
    let (_, dash) = d.get_json(DASHBOARD).await;
    let evicting = advice(&dash, "memory_evicting");
    assert_eq!(evicting["severity"], "warning");
    let evicted = f(&evicting["figure"]["value"]);
    assert_eq!(evicted, 5.0, "8 answers of 20 KB, room for 3");
    let text = prometheus_text(d).await;
    assert_eq!(
        series(
            &text,
            r#"codette_cache_evictions_total{cause="size",tier="memory"}"#
        ),
        evicted
    );
    let held = series(&text, "codette_cache_memory_bytes");
    assert!(held <= 65_536.0, "the byte bound holds: {held}");
    let (_, stats) = d.get_json(STATS).await;
    assert_eq!(
        u(&stats["metrics"]["counters"]["evictions"]["size"]) as f64,
        evicted
    );
    assert_eq!(u(&stats["entries"]), 3);
}

// ---------------------------------------------------------------------------------------
// Redis status flip, coalesced waiters, errors
// ---------------------------------------------------------------------------------------

/// Stopping Redis flips status to unavailable/memory-only, tier_up to 0 and adds
/// `redis_disconnected` within 1 s; restarting it flips back within 2 s and counts a reconnect.
#[tokio::test]
async fn redis_stop_and_restart_flip_the_status() {
    // The status flip alone: with the broadcast on, the lost subscription would also
    // empty the memory tier (tests/daemon/coherence.rs).
    let mut stack = Stack::dual("\n[invalidation]\nbroadcast = false\n").await;
    ask(&stack.daemon, MESSAGES[0]).await;
    stack.redis().stop();
    let took = stack
        .wait_redis("unavailable", Duration::from_secs(1))
        .await;
    eprintln!("redis down seen after {took:?}");
    let d = &stack.daemon;
    let (_, status) = d.get_json(STATUS).await;
    assert_eq!(status["current_mode"], "memory-only");
    assert_eq!(status["cache_backends"]["memory_cache"], "active");
    let text = prometheus_text(d).await;
    assert_eq!(series(&text, r#"codette_cache_tier_up{tier="redis"}"#), 0.0);
    let (_, dash) = d.get_json(DASHBOARD).await;
    assert_eq!(
        dash["analytics"]["cache_infrastructure"]["redis_connected"],
        false
    );
    let down = advice(&dash, "redis_disconnected");
    assert_eq!(down["severity"], "critical");
    // Requests are still served without Redis.
    assert_eq!(ask(d, MESSAGES[0]).await["cache"]["source"], "memory");
    assert_eq!(ask(d, MESSAGES[1]).await["cache"]["source"], "origin");

    stack.redis().start_again();
    let took = stack.wait_redis("connected", Duration::from_secs(2)).await;
    eprintln!("redis back seen after {took:?}");
    let d = &stack.daemon;
    let (_, status) = d.get_json(STATUS).await;
    assert_eq!(status["current_mode"], "dual");
    let text = prometheus_text(d).await;
    assert_eq!(series(&text, r#"codette_cache_tier_up{tier="redis"}"#), 1.0);
    assert!(
        series(
            &text,
            r#"codette_cache_tier_reconnects_total{tier="redis"}"#
        ) >= 1.0
    );
    let (_, stats) = d.get_json(STATS).await;
    assert!(u(&stats["metrics"]["counters"]["redis_reconnects"]) >= 1);
    let (_, dash) = d.get_json(DASHBOARD).await;
    assert!(
        !rules(&dash).contains(&"redis_disconnected".to_owned()),
        "{dash:#}"
    );
}

/// 20 concurrent cold requests for one key share one origin call: 19 coalesced waiters.
#[tokio::test]
async fn coalesced_waiters_are_counted() {
    let stack = Stack::memory("");
    stack.rest.set_delay(Duration::from_millis(200));
    let d = &stack.daemon;
    // Open 20 keep-alive connections first, so the 20 requests arrive together.
    join_all((0..20).map(|_| d.get_text("/healthz"))).await;
    let answers = join_all((0..20).map(|_| ask(d, MESSAGES[0]))).await;
    assert!(answers.iter().all(|a| a["cache"]["source"] == "origin"));
    assert_eq!(stack.rest.calls(), 1, "one origin call for 20 requests");
    let text = prometheus_text(d).await;
    assert_eq!(series(&text, "codette_cache_coalesced_waiters_total"), 19.0);
    assert_eq!(
        series(
            &text,
            r#"codette_cache_origin_requests_total{function="get_codette_context",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            r#"codette_cache_requests_total{function="get_codette_context",result="miss",tier="origin"}"#
        ),
        20.0
    );
    let (_, stats) = d.get_json(STATS).await;
    let m = &stats["metrics"];
    assert_eq!(u(&m["counters"]["coalesced_waits"]), 19);
    assert_eq!(u(&m["misses"]), 20);
    assert_eq!(u(&m["hits"]), 0);
}

/// With no cache tier and a failing origin, 502s are counted as errors, apart from
/// hits, misses and total_requests.
#[tokio::test]
async fn errors_are_counted_apart() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    // `tiers = []` before any table: no cache at all (the embedded defaults have two).
    let config = [
        "tiers = []\n\n".to_owned(),
        log_section("info"),
        cache_section(300),
        supabase_origin(&rest.url(), API_KEY, 2_000),
        admin_section(common::ADMIN_TOKEN),
    ]
    .concat();
    rest.set_fail_status(Some(500));
    let stack = Stack::with_config(pg, rest, &config);
    let d = &stack.daemon;
    for i in 0..6 {
        let (code, text) = ask_text(d, MESSAGES[i % 3]).await;
        assert_eq!(code, 502, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json error");
        assert_eq!(v["error"]["code"], "origin_error", "{v}");
    }
    let text = prometheus_text(d).await;
    assert_eq!(
        series(
            &text,
            r#"codette_cache_requests_total{function="get_codette_context",result="error",tier="none"}"#
        ),
        6.0
    );
    assert_eq!(
        series(
            &text,
            r#"codette_cache_request_duration_seconds_count{function="get_codette_context",result="error",tier="none"}"#
        ),
        6.0
    );
    assert_eq!(
        series(
            &text,
            r#"codette_cache_requests_total{function="get_codette_context",result="miss",tier="origin"}"#
        ),
        0.0
    );
    assert_eq!(
        series(
            &text,
            r#"codette_cache_origin_requests_total{function="get_codette_context",result="error"}"#
        ),
        6.0
    );
    let Dashboards {
        stats,
        metrics,
        dashboard,
        status,
    } = dashboards(d).await;
    let m = &stats["metrics"];
    assert_eq!(stats["cache_enabled"], false);
    assert_eq!(
        (u(&m["hits"]), u(&m["misses"]), u(&m["total_requests"])),
        (0, 0, 0)
    );
    assert_eq!(f(&m["hit_rate_percent"]), 0.0);
    assert_eq!(u(&m["counters"]["errors"]), 6);
    assert_eq!(u(&m["counters"]["origin_calls"]["error"]), 6);
    assert_eq!(u(&metrics["performance_dashboard"]["total_requests"]), 0);
    assert_eq!(
        u(&dashboard["analytics"]["cache_performance"]["total_requests_processed"]),
        0
    );
    assert_eq!(status["current_mode"], "origin-only");
    assert_eq!(
        status["fallback_chain"],
        serde_json::json!(["Fresh Supabase RPC call"])
    );

    // Once the origin answers, the next request is a miss and the errors stay apart.
    stack.rest.set_fail_status(None);
    ask(d, MESSAGES[0]).await;
    let (_, stats) = d.get_json(STATS).await;
    let m = &stats["metrics"];
    assert_eq!((u(&m["misses"]), u(&m["total_requests"])), (1, 1));
    assert_eq!(u(&m["counters"]["errors"]), 6);
}
