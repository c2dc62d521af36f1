//! Origin faults: slow, failing or huge answers, stale-while-revalidate, failed single flights.

use std::time::{Duration, Instant};

use crate::client::{ask, ask_ok, burst};
use crate::common::{API_KEY, Daemon, Postgrest, TestPostgres, log_section, memory_tier};
use crate::daemon_side::{num, rss_bytes, stats};
use crate::{MIB, cache, memory_supabase, ms, poll, shared, supabase};

// ---------------------------------------------------------------------------------------
// 3. Origin faults
// ---------------------------------------------------------------------------------------

/// An origin slower than its 300 ms timeout is a 504 within timeout + 100 ms.
#[test]
fn slow_origin_is_504_within_its_timeout() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(300, 0, 0), 300, 300));
        rest.set_delay(Duration::from_secs(2));
        let mut times = Vec::new();
        for i in 0..3 {
            let reply = ask(&daemon, &format!("reverb from a slow origin {i}")).await;
            assert_eq!(reply.status, 504, "{reply:?}");
            assert_eq!(reply.error_code(), "origin_timeout", "{reply:?}");
            assert!(reply.error_message().contains("300ms"), "{reply:?}");
            times.push(reply.elapsed);
        }
        println!(
            "slow origin: 504 after {:?} ms",
            times.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
        );
        for t in times {
            assert!(
                t >= Duration::from_millis(290),
                "504 before the timeout: {t:?}"
            );
            assert!(t < Duration::from_millis(400), "504 after {t:?}");
        }
    });
}

/// Stale-if-error: after expiry an origin 5xx, malformed answer or refused connection serves the last value as "stale", counted in stats.
#[test]
fn failing_origin_serves_stale_within_stale_if_error() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(1, 60, 0), 1, 2_000));
        let messages = [
            "reverb then a 5xx",
            "reverb then garbage",
            "reverb then nothing",
        ];
        let mut fresh = Vec::new();
        for m in messages {
            let reply = ask_ok(&daemon, m).await;
            assert_eq!(reply.source(), "origin");
            fresh.push(reply.body["context"].clone());
        }

        // Memory hits until the 1 s TTL runs out; then the origin is tried and fails.
        let after_expiry = async |message: &str| {
            poll(Duration::from_secs(4), async || {
                let reply = ask(&daemon, message).await;
                (reply.source() != "memory").then_some(reply)
            })
            .await
            .expect("the entry never expired")
            .0
        };
        let mut ages = Vec::new();
        let mut rest = Some(rest);
        for (i, message) in messages.iter().enumerate() {
            let calls = match (i, &rest) {
                (0, Some(rest)) => {
                    rest.set_fail_status(Some(500));
                    rest.calls()
                }
                (1, Some(rest)) => {
                    rest.set_fail_status(None);
                    rest.set_malformed(true);
                    rest.calls()
                }
                _ => {
                    // Refused: the gateway is gone.
                    drop(rest.take());
                    0
                }
            };
            let reply = after_expiry(message).await;
            assert_eq!(reply.status, 200, "{message}: {reply:?}");
            assert_eq!(reply.source(), "stale", "{message}: {reply:?}");
            assert_eq!(reply.body["context"], fresh[i], "{message}");
            if let Some(rest) = &rest {
                assert_eq!(rest.calls(), calls + 1, "{message}: origin not tried");
            }
            let age = reply.body["cache"]["age_seconds"].as_f64().unwrap_or(0.0);
            assert!(age >= 1.0, "{reply:?}");
            ages.push(age);
        }
        let stale_seen = messages.len() as u64;

        let s = stats(&daemon).await;
        println!(
            "stale-if-error: {stale_seen} stale answers, ages {ages:?} s; counters {}",
            s["metrics"]["counters"]
        );
        assert_eq!(num(&s, "/metrics/counters/stale_served"), stale_seen);
        assert_eq!(num(&s, "/metrics/counters/errors"), 0);
        assert_eq!(num(&s, "/metrics/counters/origin_calls/error"), stale_seen);
    });
}

/// Without stale-if-error (0, or past its window) an origin 5xx, malformed answer or refused connection is a 502 with a clear JSON message.
#[test]
fn failing_origin_without_stale_is_502() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let none = Daemon::start(&memory_supabase(&rest, &cache(1, 0, 0), 1, 2_000));
        let short = Daemon::start(&memory_supabase(&rest, &cache(1, 1, 0), 1, 2_000));
        let message = "reverb, then the origin breaks";
        ask_ok(&none, message).await;
        ask_ok(&short, message).await;
        let fetched = Instant::now();
        rest.set_fail_status(Some(500));

        let (reply, _) = poll(Duration::from_secs(4), async || {
            let reply = ask(&none, message).await;
            (reply.source() != "memory").then_some(reply)
        })
        .await
        .expect("the entry never expired");
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error", "{reply:?}");
        assert!(reply.error_message().contains("500"), "{reply:?}");
        assert!(
            reply.error_message().contains("injected failure"),
            "{reply:?}"
        );
        let status_msg = reply.error_message().to_owned();

        // stale_if_error = 1: stale for a second past the TTL, then 502.
        // What the short-grace daemon answered, in order, without repeats.
        let mut seen: Vec<String> = Vec::new();
        let (reply, at) = poll(Duration::from_secs(5), async || {
            let reply = ask(&short, message).await;
            let what = match reply.status {
                200 => reply.source().to_owned(),
                status => status.to_string(),
            };
            if seen.last() != Some(&what) {
                seen.push(what);
            }
            (reply.status != 200).then_some(reply)
        })
        .await
        .expect("stale answers never ended");
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error");
        // (Memory hits first unless the TTL already ran out while `none` was polled.)
        let order = seen.strip_prefix(&["memory".to_owned()]).unwrap_or(&seen);
        assert_eq!(order, ["stale", "502"], "stale_if_error = 1 s");
        let grace_end = at - fetched;
        assert!(
            grace_end >= Duration::from_secs(2),
            "502 already after {grace_end:?}"
        );

        rest.set_fail_status(None);
        rest.set_malformed(true);
        let reply = ask(&none, "reverb from a garbled origin").await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert!(reply.error_message().contains("unusable"), "{reply:?}");
        let malformed_msg = reply.error_message().to_owned();

        drop(rest);
        let reply = ask(&none, "reverb from a vanished origin").await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error");
        assert!(
            reply.error_message().contains("cannot reach the origin"),
            "{reply:?}"
        );
        assert!(
            reply.error_message().contains("Connection refused"),
            "no cause: {reply:?}"
        );
        println!(
            "502 messages: status: {status_msg:?}; malformed: {malformed_msg:?}; refused: {:?}; \
             stale_if_error=1 gave 502 {:.0} ms after the fetch",
            reply.error_message(),
            ms(grace_end)
        );
        let s = stats(&short).await;
        assert!(num(&s, "/metrics/counters/stale_served") >= 1, "{s}");
    });
}

/// An origin answer bigger than max_response_bytes (32 MiB vs 1 MiB) is a 502, and the daemon's memory does not take it in.
#[test]
fn huge_origin_answer_is_502_not_oom() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            log_section("info"),
            cache(300, 0, 0),
            memory_tier(10_000, 64 * MIB, 300),
            supabase(&rest, 5_000, MIB),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        ask_ok(&daemon, "reverb warm-up").await;
        let before = rss_bytes(daemon.pid());
        rest.set_huge_body(Some(32 * MIB as usize));
        for i in 0..3 {
            let reply = ask(&daemon, &format!("reverb, hugely {i}")).await;
            assert_eq!(reply.status, 502, "{reply:?}");
            assert_eq!(reply.error_code(), "origin_error");
            assert!(
                reply.error_message().contains("exceeds 1048576 bytes"),
                "{reply:?}"
            );
        }
        let after = rss_bytes(daemon.pid());
        rest.set_huge_body(None);
        ask_ok(&daemon, "reverb, normally again").await;
        println!(
            "huge answer: RSS {:.1} MiB before, {:.1} MiB after three 32 MiB answers",
            before as f64 / MIB as f64,
            after as f64 / MIB as f64
        );
        assert!(
            after < before + 8 * MIB,
            "RSS grew from {before} to {after}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 4. Stale-while-revalidate
// ---------------------------------------------------------------------------------------

/// Stale-while-revalidate: 10 concurrent requests after expiry get the stale answer at once and cause exactly one origin call; then memory serves the fresh one.
#[test]
fn stale_while_revalidate_refreshes_once() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(1, 0, 30), 1, 5_000));
        let message = "reverb, revalidated";
        let first = ask_ok(&daemon, message).await;
        let fetched = Instant::now();
        assert_eq!(first.source(), "origin");
        let calls = rest.calls();
        // A slow refresh, so "at once" means something.
        rest.set_delay(Duration::from_millis(800));
        tokio::time::sleep_until((fetched + Duration::from_millis(1100)).into()).await;

        let replies = burst(&daemon, message, 10).await;
        let slowest = replies
            .iter()
            .map(|(r, _)| r.elapsed)
            .max()
            .unwrap_or_default();
        for (reply, _) in &replies {
            assert_eq!(reply.status, 200, "{reply:?}");
            assert_eq!(reply.source(), "stale", "{reply:?}");
            assert_eq!(reply.body["context"], first.body["context"]);
        }
        let (fresh, at) = poll(Duration::from_secs(4), async || {
            let reply = ask_ok(&daemon, message).await;
            (reply.source() == "memory").then_some(reply)
        })
        .await
        .expect("the refreshed answer never reached memory");
        let age = fresh.body["cache"]["age_seconds"].as_f64().unwrap_or(9.0);
        // Settle: nothing else may call the origin for this key.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refreshes = rest.calls() - calls;
        println!(
            "stale-while-revalidate: 10 stale answers, slowest {:.1} ms; fresh from memory \
             {:.0} ms after the burst (age {age} s); origin calls for the refresh: {refreshes}",
            ms(slowest),
            ms(at - replies[0].1)
        );
        assert!(
            slowest < Duration::from_millis(300),
            "a stale answer took {slowest:?}"
        );
        assert_eq!(refreshes, 1, "background refreshes");
        assert!(age < 1.0, "{fresh:?}");
        assert_eq!(fresh.body["context"], first.body["context"]);
    });
}

// ---------------------------------------------------------------------------------------
// 5. Single flight failures
// ---------------------------------------------------------------------------------------

/// One burst of 10 concurrent asks of `message`: all get `status`, with one origin call.
async fn failing_burst(
    daemon: &Daemon,
    rest: &Postgrest,
    message: &str,
    status: u16,
) -> (Duration, Duration) {
    let calls = rest.calls();
    let coalesced = num(&stats(daemon).await, "/metrics/counters/coalesced_waits");
    let started = Instant::now();
    let replies = burst(daemon, message, 10).await;
    let first = &replies[0].0;
    for (reply, _) in &replies {
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.body, first.body, "waiters got different errors");
    }
    assert_eq!(rest.calls(), calls + 1, "origin calls for one burst");
    let waited = num(&stats(daemon).await, "/metrics/counters/coalesced_waits") - coalesced;
    assert_eq!(waited, 9, "coalesced waiters");
    let ends: Vec<Instant> = replies.iter().map(|(_, at)| *at).collect();
    let last = ends.iter().max().copied().unwrap_or(started);
    let spread = last - ends.iter().min().copied().unwrap_or(started);
    (last - started, spread)
}

/// A failing (502) or timed-out (504) single flight gives all 10 waiters the same error at once; the next request calls the origin again and succeeds once it is fixed.
#[test]
fn failed_single_flight_fails_every_waiter_and_leaves_no_stuck_key() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(300, 0, 0), 300, 1_000));

        // The leader's call fails: 503 after 600 ms.
        rest.set_fail_status(Some(503));
        rest.set_delay(Duration::from_millis(600));
        let message = "reverb, all together, failing";
        let (failed_after, failed_spread) = failing_burst(&daemon, &rest, message, 502).await;
        rest.set_delay(Duration::ZERO);
        let calls = rest.calls();
        assert_eq!(ask(&daemon, message).await.status, 502);
        assert_eq!(rest.calls(), calls + 1, "the key was not tried again");
        rest.set_fail_status(None);
        assert_eq!(ask_ok(&daemon, message).await.source(), "origin");
        assert_eq!(rest.calls(), calls + 2);

        // The leader's call times out: 1 s limit, 5 s delay.
        rest.set_delay(Duration::from_secs(5));
        let message = "reverb, all together, waiting";
        let (timeout_after, timeout_spread) = failing_burst(&daemon, &rest, message, 504).await;
        rest.set_delay(Duration::ZERO);
        let calls = rest.calls();
        assert_eq!(ask_ok(&daemon, message).await.source(), "origin");
        assert_eq!(rest.calls(), calls + 1, "the key was not tried again");

        println!(
            "single flight: 10 x 502 by {:.0} ms (spread {:.1} ms); 10 x 504 by {:.0} ms \
             (spread {:.1} ms); one origin call each; retried after both",
            ms(failed_after),
            ms(failed_spread),
            ms(timeout_after),
            ms(timeout_spread)
        );
        assert!(
            failed_after < Duration::from_millis(1_000),
            "502s after {failed_after:?}"
        );
        assert!(
            timeout_after < Duration::from_millis(1_200),
            "504s after {timeout_after:?}"
        );
        assert!(
            failed_spread < Duration::from_millis(200),
            "{failed_spread:?}"
        );
        assert!(
            timeout_spread < Duration::from_millis(200),
            "{timeout_spread:?}"
        );
    });
}
