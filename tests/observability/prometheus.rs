//! The known traffic in `/metrics`: exact request, origin, tier and gauge series, and
//! `promtool check metrics` (run here) finds nothing to complain about.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::known_traffic::known_traffic;
use crate::readings::{prometheus_text, series};

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
