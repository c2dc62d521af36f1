//! The known traffic's figures in the four JSON dashboards (/codette/cache/stats,
//! /codette/cache/metrics, /codette/analytics/dashboard, /codette/cache/status): counts
//! exactly, latencies by their relations, in the seed's shapes.

use codette_cache::tiers::memory::ENTRY_OVERHEAD_BYTES;

use crate::known_traffic::{KEY_LEN, ORIGIN_DELAY, known_traffic};
use crate::readings::{
    Dashboards, advice, dashboards, f, prometheus_text, recommendations, rules, series, u,
};
use crate::seed_shapes::{
    SEED_DASHBOARD, SEED_METRICS, SEED_STATS, SEED_STATUS, assert_advice_shape, assert_rounded,
    assert_seed_shape, assert_timestamp,
};

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn assert_close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance + 1e-9,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
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
