//! The figures after events other than plain traffic: Redis stopped and restarted
//! (status, `tier_up`, advice), coalesced waiters, and errors counted apart from hits
//! and misses.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::common::{
    self, API_KEY, Postgrest, TestPostgres, admin_section, cache_section, log_section,
    supabase_origin,
};
use crate::readings::{
    Dashboards, advice, ask, ask_text, dashboards, f, prometheus_text, rules, series, u,
};
use crate::stack::Stack;
use crate::{DASHBOARD, MESSAGES, STATS, STATUS};

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
