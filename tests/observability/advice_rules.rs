//! Advice bands with crafted traffic: each advice rule provoked and read back from the
//! dashboard.

use std::time::Duration;

use futures_util::future::join_all;

use crate::common::{
    self, API_KEY, Postgrest, TestPostgres, admin_section, cache_section, log_section, memory_tier,
    supabase_origin,
};
use crate::readings::{
    advice, ask, ask_text, drive, f, prometheus_text, recommendations, rules, series, u, wait_for,
};
use crate::stack::Stack;
use crate::{DASHBOARD, MESSAGES, STATS};

/// `[advice]` with a lower `min_requests`, so a verdict needs little traffic.
fn advice_min_requests(n: u64) -> String {
    format!("[advice]\nmin_requests = {n}\n\n")
}

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
