//! The four JSON dashboards of the original, field for field (seed Parts 1 and 3), with
//! TRUE figures and new fields beside the old ones: `GET /codette/cache/stats`,
//! `GET /codette/cache/metrics`, `GET /codette/analytics/dashboard`,
//! `GET /codette/cache/status`.

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{Shared, json_reply, timestamp, with_state};
use crate::advice;
use crate::figures::round2;
use crate::metrics::InvalidationSource;
use crate::metrics::Percentiles;
use crate::stats::Snapshot;
use crate::tiers::{Health, TierKind};

const MIB: f64 = 1024.0 * 1024.0;

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let page = |path: &'static str, render: fn(&Shared, &Snapshot) -> Value| {
        let state = state.clone();
        warp::path("codette")
            .and(warp::path(path.split('/').next().unwrap_or_default()))
            .and(warp::path(path.split('/').nth(1).unwrap_or_default()))
            .and(warp::path::end())
            .and(warp::get())
            .and(with_state(state))
            .map(move |state: Shared| {
                let snapshot = snapshot(&state);
                json_reply(&render(&state, &snapshot), StatusCode::OK)
            })
    };
    // GET /codette/cache/stats, /codette/cache/metrics, /codette/analytics/dashboard,
    // /codette/cache/status
    page("cache/stats", stats)
        .or(page("cache/metrics", metrics))
        .or(page("analytics/dashboard", dashboard))
        .or(page("cache/status", status))
}

fn snapshot(state: &Shared) -> Snapshot {
    Snapshot::take(
        &state.chain,
        &state.metrics,
        state.config.load().cache.ttl_secs,
        state.started,
    )
}

fn percent(x: f64) -> String {
    format!("{x:.1}%")
}

fn multiplier(x: f64) -> String {
    format!("{x:.2}x")
}

fn mib(bytes: Option<u64>) -> f64 {
    round2(bytes.unwrap_or(0) as f64 / MIB)
}

fn latency(p: &Percentiles) -> Value {
    json!({
        "count": p.count,
        "p50_ms": round2(p.p50_ms),
        "p90_ms": round2(p.p90_ms),
        "p99_ms": round2(p.p99_ms),
        "p999_ms": round2(p.p999_ms),
        "max_ms": round2(p.max_ms),
    })
}

/// Per-outcome percentiles from the HDR histograms (new beside the original fields).
fn latencies(s: &Snapshot) -> Value {
    let mut tiers = serde_json::Map::new();
    for (kind, p) in &s.per_tier_latency {
        tiers.insert(kind.as_str().into(), latency(p));
    }
    json!({
        "hit": latency(&s.hit),
        "miss": latency(&s.miss),
        "stale": latency(&s.stale_latency),
        "error": latency(&s.error_latency),
        "hit_by_tier": tiers,
        "origin_call": latency(&s.origin_latency),
        "tier_operations": tier_operations(s),
    })
}

/// `{"memory": {"get": {...}, "put": {...}, ...}, "redis": {...}}` for configured tiers.
fn tier_operations(s: &Snapshot) -> Value {
    let tiers: serde_json::Map<String, Value> = s
        .tiers
        .iter()
        .map(|t| {
            let ops: serde_json::Map<String, Value> = t
                .ops
                .iter()
                .map(|(op, p)| (op.as_str().to_owned(), latency(p)))
                .collect();
            (t.kind.as_str().to_owned(), Value::Object(ops))
        })
        .collect();
    Value::Object(tiers)
}

fn counters(s: &Snapshot) -> Value {
    let hits_by_tier: serde_json::Map<String, Value> = s
        .tiers
        .iter()
        .map(|t| (t.kind.as_str().to_owned(), json!(t.hits)))
        .collect();
    let evictions: serde_json::Map<String, Value> = s
        .evictions
        .iter()
        .map(|(cause, n)| (cause.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "hits_by_tier": hits_by_tier,
        "stale_served": s.stale,
        "errors": s.errors,
        "origin_calls": {"ok": s.origin_ok, "error": s.origin_errors, "timeout": s.origin_timeouts},
        "coalesced_waits": s.coalesced,
        "evictions": evictions,
        "redis_reconnects": s.redis_reconnects,
    })
}

fn stats(state: &Shared, s: &Snapshot) -> Value {
    let memory = s.memory_size();
    json!({
        "cache_enabled": !state.chain.tiers().is_empty(),
        "entries": memory.entries.unwrap_or(0),
        "ttl_seconds": s.ttl_secs,
        "metrics": {
            "hits": s.hits,
            "misses": s.misses,
            "total_requests": s.total_requests(),
            "hit_rate_percent": round2(s.hit_rate_percent()),
            "average_hit_latency_ms": round2(s.avg_hit_ms),
            "average_miss_latency_ms": round2(s.avg_miss_ms),
            "performance_gain_multiplier": round2(s.speedup()),
            "uptime_seconds": round2(s.uptime.as_secs_f64()),
            "latency_percentiles": latencies(s),
            "counters": counters(s),
        },
        "timestamp": timestamp(),
    })
}

fn metrics(_: &Shared, s: &Snapshot) -> Value {
    let memory = s.memory_size();
    json!({
        "performance_dashboard": {
            "cache_hit_rate": percent(s.hit_rate_percent()),
            "total_requests": s.total_requests(),
            "successful_hits": s.hits,
            "cache_misses": s.misses,
            "average_latency_comparison": {
                "cached_response_ms": round2(s.avg_hit_ms),
                "uncached_response_ms": round2(s.avg_miss_ms),
                "speedup_multiplier": multiplier(s.speedup()),
                "time_saved_per_hit_ms": round2(s.time_saved_per_hit_ms()),
            },
            "cumulative_time_saved": {
                "total_ms": round2(s.cumulative_time_saved_ms()),
                "total_seconds": round2(s.cumulative_time_saved_ms() / 1000.0),
            },
            "cache_efficiency": {
                "memory_entries": memory.entries.unwrap_or(0),
                "ttl_seconds": s.ttl_secs,
                "uptime_seconds": s.uptime.as_secs(),
                "estimated_memory_mb": mib(memory.bytes),
                "memory_max_mb": mib(memory.max_bytes),
            },
            "latency_percentiles": latencies(s),
            "counters": counters(s),
        },
        "timestamp": timestamp(),
    })
}

fn dashboard(state: &Shared, s: &Snapshot) -> Value {
    let memory = s.memory_size();
    let redis = s.shared_tier();
    let advice = advice::evaluate(s, &state.config.load().advice);
    let recommendations: Vec<&str> = advice.iter().map(|a| a.message.as_str()).collect();
    json!({
        "analytics": {
            "cache_performance": {
                "overall_hit_rate": percent(s.hit_rate_percent()),
                "total_requests_processed": s.total_requests(),
                "successful_cache_hits": s.hits,
                "cache_misses": s.misses,
                "average_response_times": {
                    "with_cache_ms": round2(s.avg_hit_ms),
                    "without_cache_ms": round2(s.avg_miss_ms),
                    "speedup_multiplier": multiplier(s.speedup()),
                },
                "total_time_saved": {
                    "milliseconds": round2(s.cumulative_time_saved_ms()),
                    "seconds": round2(s.cumulative_time_saved_ms() / 1000.0),
                    "estimated_cost_savings": format!("{} origin calls avoided", s.hits),
                },
                "latency_percentiles": latencies(s),
            },
            "cache_infrastructure": {
                "memory_cache_enabled": s.tier(TierKind::Memory).is_some(),
                "redis_cache_enabled": redis.is_some(),
                "redis_connected": redis.is_some_and(|t| t.health == Health::Connected),
                "memory_entries": memory.entries.unwrap_or(0),
                "estimated_memory_usage_mb": mib(memory.bytes),
                "ttl_seconds": s.ttl_secs,
                "ttl_distribution": ttl_distribution(state),
                "uptime_seconds": s.uptime.as_secs(),
                "origin": s.origin_kind,
            },
            "optimization_recommendations": recommendations,
            "advice": advice,
        },
        "timestamp": timestamp(),
    })
}

/// TTLs given to origin answers (adaptive or not) and what the refreshes found.
fn ttl_distribution(state: &Shared) -> Value {
    let t = state.metrics.ttl_summary();
    let cache = &state.config.load().cache;
    json!({
        "adaptive": cache.adaptive_ttl.enabled,
        "answers_stored": t.stored,
        "min_seconds": t.min_secs,
        "p50_seconds": t.p50_secs,
        "p90_seconds": t.p90_secs,
        "max_seconds": t.max_secs,
        "answers_compared": t.compared,
        "answers_changed": t.changed,
        "negative_ttl_seconds": cache.negative_ttl_secs,
        "negative_stored": t.negative_stored,
        "negative_served": t.negative_served,
    })
}

fn status(state: &Shared, s: &Snapshot) -> Value {
    let backend = |kind: TierKind| s.tier(kind).map_or("disabled", |t| t.health.as_str());
    let mut chain: Vec<&str> = state
        .chain
        .tiers()
        .iter()
        .map(|t| match t.kind() {
            TierKind::Memory => "In-memory cache",
            TierKind::Redis => "Redis (if enabled and connected)",
            TierKind::RedisCluster => "Redis Cluster (if enabled and connected)",
        })
        .collect();
    chain.push(s.origin_step);
    let tiers: Vec<Value> = s
        .tiers
        .iter()
        .map(|t| {
            let rejected: serde_json::Map<String, Value> = t
                .rejected
                .iter()
                .map(|(why, n)| (why.as_str().to_owned(), json!(n)))
                .collect();
            let mut tier = json!({"tier": t.kind.as_str(), "status": t.health.as_str(), "rejected_values": rejected});
            if let Some(topology) = t.topology {
                tier["cluster"] = json!({
                    "state": topology.state,
                    "known_nodes": topology.known_nodes,
                    "masters": topology.masters,
                });
            }
            tier
        })
        .collect();
    let breaker = state.chain.breaker();
    json!({
        "cache_backends": {
            "memory_cache": backend(TierKind::Memory),
            "redis_cache": s.shared_tier().map_or("disabled", |t| t.health.as_str()),
        },
        "current_mode": s.mode(),
        "fallback_chain": chain,
        "tiers": tiers,
        "origin": s.origin_kind,
        "instance_id": state.instance_id,
        "invalidation": {
            "broadcast": state.broadcast.is_some(),
            "channel": state.broadcast.as_ref().map(|b| b.channel()),
            "subscribed": state.broadcast.as_ref().is_some_and(|b| b.subscription().is_live()),
            "received": state.metrics.invalidations(InvalidationSource::Broadcast),
            "lag": latency(&state.metrics.invalidation_lag()),
            "postgres": state.listener.as_ref().map(|l| json!({
                "channel": l.channel(),
                "subscribed": l.subscription().is_live(),
                "received": state.metrics.invalidations(InvalidationSource::Database),
            })),
        },
        "origin_breaker": {
            "state": breaker.state().as_str(),
            "consecutive_failures": breaker.consecutive_failures(),
            "refusals": state.metrics.breaker_refusals(state.chain.function()),
        },
        "proxy": state.proxy.as_ref().map(|p| proxy_view(p)),
        "timestamp": timestamp(),
    })
}

/// The proxy, function by function: its scope now, its breaker, its requests by result.
fn proxy_view(proxy: &crate::proxy::Proxy) -> Value {
    let counts = |series: &crate::metrics::ProxyChildren| -> serde_json::Map<String, Value> {
        series
            .counts()
            .iter()
            .map(|(result, n)| (result.as_str().to_owned(), json!(n)))
            .collect()
    };
    let functions: Vec<Value> = proxy
        .functions()
        .into_iter()
        .filter_map(|name| {
            let route = proxy.route(name)?;
            let scope = match route.resolved() {
                crate::proxy::Resolved::Cached(scope) => scope.as_str(),
                crate::proxy::Resolved::Pending => "pending",
                crate::proxy::Resolved::Never => "never (volatile)",
            };
            Some(json!({
                "function": name,
                "scope": scope,
                "breaker": route.chain.breaker().state().as_str(),
                "requests": counts(&route.metrics),
            }))
        })
        .collect();
    json!({
        "upstream": crate::secret::redact_url(proxy.upstream()),
        "functions": functions,
        "other": counts(&proxy.other),
    })
}
