//! The seed's tester, done right: read the status, time a guaranteed miss and then a
//! cached call for each query, and write the report in the seed's layout (Part 4), with
//! the daemon's own metrics and advice. Misses are forced by invalidating each key
//! through the admin route, or, without a token, by a per-run unique suffix; the report
//! says which.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::stats::{mean, sample_std_dev, verdict};

/// The original tester's five queries.
pub const DEFAULT_QUERIES: [&str; 5] = [
    "how to use reverb in mixing",
    "compression techniques for vocals",
    "EQ strategies for drums",
    "mixing orchestral instruments",
    "audio production workflow",
];

const HEAVY: &str =
    "═══════════════════════════════════════════════════════════════════════════════";
const LIGHT: &str = "─────────────────────────────────────────────────────────────────────────────";

/// One query's two timings.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub query: String,
    pub first_call_ms: f64,
    pub first_call_source: String,
    pub cached_call_ms: f64,
    pub cached_call_source: String,
    pub speedup: f64,
}

/// Everything the report shows, also printed as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated: String,
    pub url: String,
    pub miss_forced_by: String,
    pub status: Value,
    pub queries: Vec<QueryResult>,
    pub average_first_call_ms: f64,
    pub average_cached_call_ms: f64,
    pub average_speedup: f64,
    pub std_dev_first_call_ms: f64,
    pub std_dev_cached_ms: f64,
    pub verdict: String,
    pub metrics: Value,
    pub recommendations: Vec<String>,
}

/// Runs the flow against a daemon.
///
/// # Errors
/// When the daemon is unreachable or answers a request with an error.
pub async fn run(
    url: &str,
    queries: &[String],
    admin_token: Option<&str>,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let base = url.trim_end_matches('/');
    let status = get_json(&client, &format!("{base}/codette/cache/status")).await?;

    let run_id = chrono::Utc::now().timestamp_millis();
    let mut forced_by = "invalidation through POST /codette/cache/invalidate".to_owned();
    let mut suffix = None;
    if let Some(token) = admin_token {
        for q in queries {
            let r = client
                .post(format!("{base}/codette/cache/invalidate"))
                .bearer_auth(token)
                .json(&json!({"message": q, "filename": null}))
                .send()
                .await
                .with_context(|| format!("cannot reach the daemon at {base}"))?;
            if !r.status().is_success() {
                forced_by = format!(
                    "a per-run unique suffix (invalidation refused: {})",
                    r.status()
                );
                suffix = Some(format!(" [bench {run_id}]"));
                break;
            }
        }
    } else {
        forced_by = "a per-run unique suffix (no admin token given)".into();
        suffix = Some(format!(" [bench {run_id}]"));
    }

    let mut results = Vec::new();
    for q in queries {
        let message = match &suffix {
            Some(s) => format!("{q}{s}"),
            None => q.clone(),
        };
        let (first_ms, first_source) = timed_context(&client, base, &message).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (cached_ms, cached_source) = timed_context(&client, base, &message).await?;
        results.push(QueryResult {
            query: q.clone(),
            first_call_ms: first_ms,
            first_call_source: first_source,
            cached_call_ms: cached_ms,
            cached_call_source: cached_source,
            speedup: ratio(first_ms, cached_ms),
        });
    }

    let firsts: Vec<f64> = results.iter().map(|r| r.first_call_ms).collect();
    let cached: Vec<f64> = results.iter().map(|r| r.cached_call_ms).collect();
    let metrics = get_json(&client, &format!("{base}/codette/cache/metrics")).await?;
    let dashboard = get_json(&client, &format!("{base}/codette/analytics/dashboard")).await?;
    let recommendations = dashboard["analytics"]["optimization_recommendations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let average_speedup = ratio(mean(&firsts), mean(&cached));
    Ok(Report {
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        url: base.to_owned(),
        miss_forced_by: forced_by,
        status,
        average_first_call_ms: mean(&firsts),
        average_cached_call_ms: mean(&cached),
        average_speedup,
        std_dev_first_call_ms: sample_std_dev(&firsts),
        std_dev_cached_ms: sample_std_dev(&cached),
        verdict: verdict(average_speedup).to_owned(),
        queries: results,
        metrics,
        recommendations,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url}"))?;
    let status = r.status();
    let body: Value = r
        .json()
        .await
        .with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body["error"]["message"]);
    }
    Ok(body)
}

/// One timed context call: (milliseconds, cache.source).
async fn timed_context(
    client: &reqwest::Client,
    base: &str,
    message: &str,
) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let body = get_json(
        client,
        &format!(
            "{base}/codette/context?message={}",
            super::load::url_encode(message)
        ),
    )
    .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let source = body["cache"]["source"].as_str().unwrap_or("?").to_owned();
    Ok((ms, source))
}

impl Report {
    /// The seed's layout (Part 4), with the metrics and a summary after it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: &str| {
            out.push_str(s);
            out.push('\n');
        };
        line(HEAVY);
        line("CACHE PERFORMANCE ANALYSIS REPORT");
        line(&format!("Generated: {}", self.generated));
        line(HEAVY);
        line("");
        line("CACHE BACKEND STATUS");
        line(LIGHT);
        let s = &self.status;
        line(&format!(
            "  Current Mode: {}",
            s["current_mode"].as_str().unwrap_or("?")
        ));
        line(&format!(
            "  Memory Cache: {}",
            s["cache_backends"]["memory_cache"].as_str().unwrap_or("?")
        ));
        line(&format!(
            "  Redis Cache: {}",
            s["cache_backends"]["redis_cache"].as_str().unwrap_or("?")
        ));
        line("");
        line("QUERY PERFORMANCE TEST RESULTS");
        line(LIGHT);
        line(&format!(
            "  (first calls forced to miss by {})",
            self.miss_forced_by
        ));
        for q in &self.queries {
            line(&format!("  Query: {}", q.query));
            line(&format!(
                "    First call (uncached): {:.2}ms [{}]",
                q.first_call_ms, q.first_call_source
            ));
            line(&format!(
                "    Cached call: {:.2}ms [{}]",
                q.cached_call_ms, q.cached_call_source
            ));
            line(&format!("    Speedup: {:.2}x faster", q.speedup));
        }
        line("");
        line("AGGREGATE STATISTICS");
        line(LIGHT);
        line(&format!(
            "  Average first call: {:.2}ms",
            self.average_first_call_ms
        ));
        line(&format!(
            "  Average cached call: {:.2}ms",
            self.average_cached_call_ms
        ));
        line(&format!("  Average speedup: {:.2}x", self.average_speedup));
        line(&format!(
            "  Std dev (first call): {:.2}ms",
            self.std_dev_first_call_ms
        ));
        line(&format!(
            "  Std dev (cached): {:.2}ms",
            self.std_dev_cached_ms
        ));
        line("");
        line("CURRENT CACHE PERFORMANCE DASHBOARD");
        line(LIGHT);
        let d = &self.metrics["performance_dashboard"];
        line(&format!(
            "  Hit rate: {}",
            d["cache_hit_rate"].as_str().unwrap_or("?")
        ));
        line(&format!(
            "  Requests: {} ({} hits, {} misses)",
            d["total_requests"], d["successful_hits"], d["cache_misses"]
        ));
        let a = &d["average_latency_comparison"];
        line(&format!(
            "  Cached / uncached response: {} ms / {} ms ({})",
            a["cached_response_ms"],
            a["uncached_response_ms"],
            a["speedup_multiplier"].as_str().unwrap_or("?")
        ));
        line(&format!(
            "  Time saved: {} s in total, {} ms per hit",
            d["cumulative_time_saved"]["total_seconds"], a["time_saved_per_hit_ms"]
        ));
        let e = &d["cache_efficiency"];
        line(&format!(
            "  Memory entries: {} ({} MB), TTL {} s, uptime {} s",
            e["memory_entries"], e["estimated_memory_mb"], e["ttl_seconds"], e["uptime_seconds"]
        ));
        line("");
        line("OPTIMIZATION RECOMMENDATIONS");
        line(LIGHT);
        for r in &self.recommendations {
            line(&format!("  • {r}"));
        }
        line("");
        line("SUMMARY");
        line(LIGHT);
        line(&format!(
            "  {}: cached calls are {:.2}x faster than uncached ones ({} queries against {})",
            self.verdict,
            self.average_speedup,
            self.queries.len(),
            self.url
        ));
        line("");
        line(HEAVY);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            generated: "2025-12-02 14:35:22".into(),
            url: "http://127.0.0.1:8000".into(),
            miss_forced_by: "invalidation".into(),
            status: json!({"current_mode": "dual", "cache_backends": {"memory_cache": "active", "redis_cache": "connected"}}),
            queries: vec![QueryResult {
                query: "how to use reverb in mixing".into(),
                first_call_ms: 285.63,
                first_call_source: "origin".into(),
                cached_call_ms: 45.12,
                cached_call_source: "memory".into(),
                speedup: 285.63 / 45.12,
            }],
            average_first_call_ms: 278.45,
            average_cached_call_ms: 42.89,
            average_speedup: 6.49,
            std_dev_first_call_ms: 18.92,
            std_dev_cached_ms: 5.34,
            verdict: "Excellent".into(),
            metrics: json!({"performance_dashboard": {"cache_hit_rate": "84.0%"}}),
            recommendations: vec!["✅ Cache performing optimally with high hit rate".into()],
        }
    }

    /// The report keeps the seed's sections, lines and number formats.
    #[test]
    fn render_follows_the_seed_layout() {
        let text = sample().render();
        for expected in [
            "CACHE PERFORMANCE ANALYSIS REPORT\nGenerated: 2025-12-02 14:35:22\n",
            "CACHE BACKEND STATUS\n",
            "  Current Mode: dual\n  Memory Cache: active\n  Redis Cache: connected\n",
            "  Query: how to use reverb in mixing\n    First call (uncached): 285.63ms [origin]\n    Cached call: 45.12ms [memory]\n    Speedup: 6.33x faster\n",
            "  Average first call: 278.45ms\n  Average cached call: 42.89ms\n  Average speedup: 6.49x\n  Std dev (first call): 18.92ms\n  Std dev (cached): 5.34ms\n",
            "OPTIMIZATION RECOMMENDATIONS\n",
            "  • ✅ Cache performing optimally with high hit rate\n",
            "  Excellent: cached calls are 6.49x faster",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(text.starts_with(HEAVY) && text.trim_end().ends_with(HEAVY));
    }
}
