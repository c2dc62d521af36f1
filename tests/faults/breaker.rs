//! The origin circuit breaker against a frozen PostgreSQL (SIGSTOP: connections stay
//! open, nothing answers), with and without stale entries to fall back on; and the
//! health probe of an HTTP origin.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::client::{Reply, ask, ask_ok, client};
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, log_section, memory_tier, postgres_origin,
};
use crate::{CONTEXT, MIB, exclusive, ms, poll, shared, supabase};

/// What the breaker test configures.
const TIMEOUT_MS: u64 = 500;
const WAIT_MS: u64 = 200;
const OPEN_MS: u64 = 1_500;

fn config(pg: &TestPostgres) -> String {
    let origin = postgres_origin(&pg.url(), 4, TIMEOUT_MS)
        + &format!("breaker_failures = 5\nbreaker_open_ms = {OPEN_MS}\n\n");
    [
        log_section("info"),
        format!(
            "[cache]\nttl_secs = 1\nstale_if_error_secs = 3600\nstale_if_error_wait_ms = {WAIT_MS}\n\n"
        ),
        memory_tier(10_000, 64 * MIB, 1),
        origin,
    ]
    .concat()
}

async fn breaker_state(daemon: &Daemon) -> String {
    let status: Value = client()
        .get(daemon.url("/codette/cache/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    status["origin_breaker"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Asks every message once, four at a time.
async fn round(daemon: &Daemon, messages: &[String]) -> Vec<Reply> {
    let mut replies = Vec::new();
    for chunk in messages.chunks(4) {
        replies.extend(join_all(chunk.iter().map(|m| ask(daemon, m))).await);
    }
    replies
}

fn p99(replies: &[Reply]) -> Duration {
    let mut times: Vec<Duration> = replies.iter().map(|r| r.elapsed).collect();
    times.sort();
    times[(times.len() * 99).div_ceil(100).saturating_sub(1)]
}

/// A frozen origin: stale answers within `stale_if_error_wait_ms` while the breaker is
/// closed, at once once it opens; 503 at once without a stale entry; after SIGCONT the
/// first probe closes it and answers are fresh again. Run alone: its bounds are a few
/// milliseconds, measured at the client.
#[test]
fn frozen_origin_opens_the_breaker_and_stale_is_served_at_once() {
    exclusive(async {
        let mut pg = TestPostgres::start();
        let daemon = Daemon::start(&config(&pg));
        let stale: Vec<String> = (0..20).map(|i| format!("reverb breaker {i}")).collect();
        for m in &stale {
            ask_ok(&daemon, m).await;
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;

        pg.pause();
        // Closed: each request waits at most stale_if_error_wait_ms, then gets stale.
        let mut before = Vec::new();
        let opened = poll(Duration::from_secs(10), async || {
            before.extend(round(&daemon, &stale[..8]).await);
            (breaker_state(&daemon).await == "open").then_some(())
        })
        .await;
        assert!(opened.is_some(), "the breaker never opened");
        let slowest_before = before.iter().map(|r| r.elapsed).max().unwrap_or_default();
        assert!(
            before
                .iter()
                .all(|r| r.status == 200 && r.source() == "stale")
        );

        // Open: stale at once, 503 at once. Enough requests that the p99 is not simply
        // the slowest one (a single scheduling hiccup of a busy machine).
        let open_stale = round(&daemon, &vec![stale.clone(); 10].concat()).await;
        assert!(
            open_stale
                .iter()
                .all(|r| r.status == 200 && r.source() == "stale")
        );
        let fresh: Vec<String> = (0..100).map(|i| format!("never asked {i}")).collect();
        let refused = round(&daemon, &fresh).await;
        for r in &refused {
            assert_eq!(
                (r.status, r.error_code()),
                (503, "origin_unavailable"),
                "{r:?}"
            );
        }
        let retry_after = client()
            .get(daemon.url(&format!("{CONTEXT}?message=retry+after")))
            .send()
            .await
            .expect("request");
        assert_eq!(retry_after.status().as_u16(), 503);
        let secs: u64 = retry_after.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&secs), "Retry-After {secs}");

        pg.resume();
        let resumed = Instant::now();
        let back = poll(Duration::from_secs(5), async || {
            let r = ask(&daemon, "after the thaw").await;
            (r.status == 200 && r.source() == "origin").then_some(())
        })
        .await;
        let back_after = resumed.elapsed();
        assert!(back.is_some(), "no fresh answer after SIGCONT");
        assert_eq!(breaker_state(&daemon).await, "closed");
        let refreshed = ask(&daemon, &stale[0]).await;
        assert_eq!((refreshed.status, refreshed.source()), (200, "origin"));

        println!(
            "breaker: before opening {} stale answers, slowest {:.1} ms; open: stale p99 {:.2} ms, \
             503 p99 {:.2} ms; fresh again {:.0} ms after SIGCONT",
            before.len(),
            ms(slowest_before),
            ms(p99(&open_stale)),
            ms(p99(&refused)),
            ms(back_after)
        );
        assert!(
            slowest_before <= Duration::from_millis(WAIT_MS + 20),
            "waited {slowest_before:?} with a stale entry at hand"
        );
        assert!(p99(&open_stale) < Duration::from_millis(5));
        assert!(p99(&refused) < Duration::from_millis(5));
        let metrics = client()
            .get(daemon.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let f = r#"function="get_codette_context""#;
        assert!(metrics.contains(&format!("codette_cache_origin_breaker_state{{{f}}} 0")));
        assert!(metrics.contains(&format!(
            r#"codette_cache_origin_breaker_transitions_total{{{f},to="closed"}} 1"#
        )));
    });
}

/// With `health_path`, the half-open probe asks the gateway's health route first: while
/// it still fails, no real call is made and the breaker opens again; once it answers,
/// the call goes through and the breaker closes.
#[test]
fn health_path_probes_before_a_real_call() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            log_section("info"),
            memory_tier(10_000, 64 * MIB, 300),
            supabase(&rest, 1_000, 4 * MIB),
            "breaker_failures = 2\nbreaker_open_ms = 300\nhealth_path = \"/rest/v1/\"\n\n".into(),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        rest.set_fail_status(Some(503));
        for i in 0..2 {
            let r = ask(&daemon, &format!("gateway down {i}")).await;
            assert_eq!((r.status, r.error_code()), (502, "origin_error"), "{r:?}");
        }
        assert_eq!(breaker_state(&daemon).await, "open");
        let calls = rest.calls();
        tokio::time::sleep(Duration::from_millis(350)).await;
        let probe = ask(&daemon, "probe while down").await;
        assert_eq!(
            (probe.status, probe.error_code()),
            (503, "origin_unavailable")
        );
        assert_eq!(
            rest.calls(),
            calls,
            "a real call went out while the health route failed"
        );
        assert_eq!(breaker_state(&daemon).await, "open");

        rest.set_fail_status(None);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let back = ask(&daemon, "probe when up").await;
        assert_eq!((back.status, back.source()), (200, "origin"), "{back:?}");
        assert_eq!(rest.calls(), calls + 1);
        assert_eq!(breaker_state(&daemon).await, "closed");
    });
}
