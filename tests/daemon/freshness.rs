//! Freshness without misses: with `refresh_ahead`, a hit on an entry past that fraction
//! of its TTL starts one background refresh, so hot keys never wait on the origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::ask;
use crate::common::{API_KEY, Daemon, Postgrest, TestPostgres};
use crate::{memory, run, supabase};

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
