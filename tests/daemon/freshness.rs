//! Freshness without misses: with `refresh_ahead`, a hit on an entry past that fraction
//! of its TTL starts one background refresh, so hot keys never wait on the origin.
//! Adaptive TTLs follow how often answers change; negative entries hold empty answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{ask, wait_redis_state};
use crate::common::{API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, redis_tier};
use crate::{memory, poll, run, supabase};

/// 50 hot keys, a 2 s TTL, a 300 ms origin and 20 s of steady traffic: after warm-up
/// every answer is a memory hit, and the origin sees about one call per key per TTL
/// (refreshes, counted by reason), not a miss per key per TTL.
#[test]
fn refresh_ahead_keeps_hot_keys_hits() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        // 0.6, not 0.8: a refresh then has 0.8 s, not 0.1 s, to land on a busy 2-core CI.
        let cache = "[cache]\nttl_secs = 2\nrefresh_ahead = 0.6\n\n";
        let d = Daemon::start(&format!("{cache}{}{}", memory(2), supabase(&rest)));
        rest.set_delay(Duration::from_millis(300));
        // Distinct keys, one non-empty answer (punctuation does not change the search).
        let keys: Vec<String> = (0..50)
            .map(|i| format!("how to use reverb in mixing{}", ".".repeat(i)))
            .collect();
        // Warm-up: every key at once (one by one, the first would expire meanwhile).
        let warm = futures_util::future::join_all(keys.iter().map(|k| ask(&d, k))).await;
        assert!(
            warm.iter()
                .all(|a| a.status == 200 && a.source() == "origin")
        );
        let warm_calls = rest.calls();

        let (misses, served) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let started = Instant::now();
        let clients = (0..8).map(|c| {
            let (d, keys, misses, served) = (&d, &keys, Arc::clone(&misses), Arc::clone(&served));
            async move {
                let mut i = c;
                while started.elapsed() < Duration::from_secs(20) {
                    let answer = ask(d, &keys[i % keys.len()]).await;
                    assert_eq!(answer.status, 200, "{answer:?}");
                    if answer.source() != "memory" {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 8;
                    // About 1,000 requests/s in all: each key every 50 ms.
                    tokio::time::sleep(Duration::from_millis(8)).await;
                }
            }
        });
        futures_util::future::join_all(clients).await;
        let calls = rest.calls() - warm_calls;
        let metrics = d.get_text("/metrics").await.1;
        println!(
            "refresh-ahead: {} requests in 20 s, {} not from memory, {calls} origin calls for 50 keys",
            served.load(Ordering::Relaxed),
            misses.load(Ordering::Relaxed)
        );
        assert_eq!(
            misses.load(Ordering::Relaxed),
            0,
            "a request waited on the origin"
        );
        // Between one call per key per TTL and one per key per 0.6 TTL (plus the first).
        assert!((450..=50 * 19).contains(&calls), "{calls} origin calls");
        let ahead = metrics
            .lines()
            .find(|l| l.starts_with(r#"codette_cache_refreshes_total{reason="ahead"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no refresh counter:\n{metrics}"));
        assert_eq!(ahead, calls, "every origin call was a refresh-ahead");
    });
}

/// Milliseconds `key` has left in Redis, once our write has landed.
async fn pttl(redis: &TestRedis, key: &str, above: i64) -> i64 {
    poll(Duration::from_secs(2), async || {
        let left: i64 = redis.cmd(&["PTTL", key]).trim().parse().ok()?;
        (left > 0 && left != above).then_some(left)
    })
    .await
    .unwrap_or_else(|| panic!("{key} never (re)written in Redis"))
}

/// Adaptive TTL on memory and Redis, against the PostgREST-shaped origin: an unchanged
/// refresh doubles the entry's TTL in both tiers, a changed one halves it; the counts
/// reach `/metrics` and the analytics dashboard.
#[test]
fn adaptive_ttl_follows_changes() {
    run(async {
        let (pg, redis) = (TestPostgres::start(), TestRedis::start());
        let rest = Postgrest::start(&pg, API_KEY);
        let cache = "[cache]\nttl_secs = 2\nstale_if_error_secs = 60\n\n\
                     [cache.adaptive_ttl]\nenabled = true\nmin_secs = 1\nmax_secs = 8\n\n";
        // A generous Redis timeout: a busy CI must not skip a write this test reads.
        let tiers = [memory(2), redis_tier(&redis.url(), 2_000, 2)].concat();
        let d = Daemon::start(&format!("{cache}{tiers}{}", supabase(&rest)));
        // The first answer's Redis write needs the link up (a write without its watch
        // is skipped); on a busy CI the connection can come after the first request.
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(10)).await);
        let message = "how to use reverb in mixing";
        let first = ask(&d, message).await;
        assert_eq!(first.source(), "origin", "{first:?}");
        let key = first.key().to_owned();
        let left = pttl(&redis, &key, 0).await;
        assert!(left <= 2_000, "{left}");

        // Expired (in Redis too, written a moment after memory), unchanged: 4 s now, in
        // memory (a hit 3 s later) and in Redis.
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        assert_eq!(ask(&d, message).await.source(), "origin");
        let left = pttl(&redis, &key, left).await;
        assert!((2_000..=4_000).contains(&left), "{left}");
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        assert_eq!(ask(&d, message).await.source(), "memory");

        // Changed: back to 2 s.
        pg.execute(
            "UPDATE public.codette SET \"ContentSnippet\" = \"ContentSnippet\" || ' Revised.' \
             WHERE \"FileName\" = 'reverb_guide.md'",
        );
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let changed = ask(&d, message).await;
        assert_eq!(changed.source(), "origin");
        assert!(changed.body.to_string().contains("Revised."));
        let left = pttl(&redis, &key, left).await;
        assert!(left <= 2_000, "{left}");

        let metrics = d.get_text("/metrics").await.1;
        for line in [
            "codette_cache_answer_changes_total 1",
            "codette_cache_answer_comparisons_total 2",
            "codette_cache_ttl_seconds_count 3",
        ] {
            assert!(metrics.contains(line), "{line} missing:\n{metrics}");
        }
        let (_, dash) = d.get_json("/codette/analytics/dashboard").await;
        let t = &dash["analytics"]["cache_infrastructure"]["ttl_distribution"];
        assert_eq!(t["adaptive"], true, "{t}");
        assert_eq!(
            (
                t["answers_compared"].as_u64(),
                t["answers_changed"].as_u64()
            ),
            (Some(2), Some(1))
        );
        assert_eq!(
            (t["min_seconds"].as_u64(), t["max_seconds"].as_u64()),
            (Some(2), Some(4))
        );
    });
}

/// Negative entries: with `negative_ttl_secs`, an empty answer is stored that long,
/// marked `"negative": true` and counted; other answers are unmarked.
#[test]
fn negative_entries_are_stored_briefly_and_marked() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let cache = "[cache]\nttl_secs = 300\nnegative_ttl_secs = 1\n\n";
        let d = Daemon::start(&format!("{cache}{}{}", memory(300), supabase(&rest)));
        let nothing = "zyxwv qutsr nothing matches this";
        let first = ask(&d, nothing).await;
        assert_eq!(
            (first.source(), &first.body["cache"]["negative"]),
            ("origin", &serde_json::json!(true)),
            "{first:?}"
        );
        let calls = rest.calls();
        let again = ask(&d, nothing).await;
        assert_eq!(again.source(), "memory", "{again:?}");
        assert_eq!(again.body["cache"]["negative"], true);
        assert_eq!(rest.calls(), calls);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(ask(&d, nothing).await.source(), "origin");
        assert_eq!(rest.calls(), calls + 1);

        let found = ask(&d, "how to use reverb in mixing").await;
        assert!(found.body["cache"].get("negative").is_none(), "{found:?}");
        let metrics = d.get_text("/metrics").await.1;
        for line in [
            r#"codette_cache_negative_answers_total{event="stored"} 2"#,
            r#"codette_cache_negative_answers_total{event="served"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} missing:\n{metrics}");
        }
    });
}
