//! Caching: miss then hit per tier, back-fill, single flight, TTL and the memory bound.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{
    ask, ask_body, ask_get, ask_ok, assert_shape, origin_text, original_key, redis_value, stats, u,
    wait_redis_state,
};
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, cache_section, config_memory_postgrest,
    log_section, memory_tier, redis_tier, sample_origin,
};
use crate::{
    ANALYSIS, ANALYSIS_FILE, ANALYSIS_KEY, MIB, REVERB, REVERB_KEY, STATUS, config, memory, poll,
    run, supabase,
};

// ---------------------------------------------------------------------------------------
// 1. Miss then hit, per tier; the original's keys and response shape
// ---------------------------------------------------------------------------------------

/// Memory tier: the first request is an origin miss with the origin's JSON verbatim under the original's key, the second a memory hit; POST extra fields and GET both work.
#[test]
fn memory_tier_miss_then_hit_with_original_keys_and_shape() {
    run(async {
        assert_eq!(
            original_key(REVERB, None),
            REVERB_KEY,
            "the test's own oracle"
        );
        assert_eq!(original_key(ANALYSIS, Some(ANALYSIS_FILE)), ANALYSIS_KEY);
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));

        // The chat backend forwards its whole body; the extra fields are ignored.
        let body = json!({
            "message": REVERB,
            "session_id": "3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f",
            "perspective": "mix_engineer",
            "daw_context": {"bpm": 120, "tracks": ["vox", "drums"], "selected": null},
        });
        let first = ask_body(&d, &body).await;
        assert_eq!(first.status, 200, "{first:?}");
        assert_shape(&first);
        assert_eq!(
            (first.source(), first.hit(), first.key()),
            ("origin", Some(false), REVERB_KEY)
        );
        let truth = origin_text(&pg, REVERB, None);
        assert!(
            first.text.starts_with(&format!("{{\"context\":{truth},")),
            "context is not the origin's JSON verbatim:\n{}\nvs\n{truth}",
            first.text
        );
        assert!(!first.context()["snippets"].as_array().unwrap().is_empty());
        assert_eq!(rest.calls(), 1);
        let sent: Value = serde_json::from_str(&rest.last_request().unwrap().body).unwrap();
        assert_eq!(
            sent,
            json!({"input_prompt": REVERB, "optionally_filename": null})
        );

        let second = ask_get(&d, REVERB, None).await;
        assert_eq!(second.status, 200, "{second:?}");
        assert_shape(&second);
        assert_eq!(
            (second.source(), second.hit(), second.key()),
            ("memory", Some(true), REVERB_KEY)
        );
        assert_eq!(second.context(), first.context());
        assert_eq!(rest.calls(), 1, "a hit must not call the origin");

        // The filename takes part in the key and reaches the RPC.
        let body = json!({"message": ANALYSIS, "filename": ANALYSIS_FILE});
        let miss = ask_body(&d, &body).await;
        assert_eq!(
            (miss.status, miss.source(), miss.key()),
            (200, "origin", ANALYSIS_KEY)
        );
        let truth = origin_text(&pg, ANALYSIS, Some(ANALYSIS_FILE));
        assert!(
            miss.text.starts_with(&format!("{{\"context\":{truth},")),
            "{}",
            miss.text
        );
        assert_eq!(miss.context()["file"]["filename"], ANALYSIS_FILE);
        let hit = ask_get(&d, ANALYSIS, Some(ANALYSIS_FILE)).await;
        assert_eq!(
            (hit.status, hit.source(), hit.key()),
            (200, "memory", ANALYSIS_KEY)
        );
        assert_eq!(hit.context(), miss.context());
        assert_eq!(rest.calls(), 2);
    });
}

/// Redis as the only tier: the first request is an origin miss written to Redis, the second a redis hit with the same context and no origin call.
#[test]
fn redis_only_tier_miss_then_hit() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let d = Daemon::start(&config(
            &[redis_tier(&redis.url(), 250, 300)],
            &supabase(&rest),
        ));
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);

        let miss = ask_ok(&d, REVERB).await;
        assert_eq!(
            (miss.source(), miss.hit(), miss.key()),
            ("origin", Some(false), REVERB_KEY)
        );
        redis_value(&redis, REVERB_KEY).await;

        let hit = ask_ok(&d, REVERB).await;
        assert_shape(&hit);
        assert_eq!(
            (hit.source(), hit.hit(), hit.key()),
            ("redis", Some(true), REVERB_KEY)
        );
        assert_eq!(hit.context(), miss.context());
        assert_eq!(rest.calls(), 1);
        let (_, status) = d.get_json(STATUS).await;
        assert_eq!(status["current_mode"], "redis-only", "{status}");
    });
}

// ---------------------------------------------------------------------------------------
// 2. Back-fill
// ---------------------------------------------------------------------------------------

/// A value only in Redis (written by another daemon sharing it) is a redis hit on the first request and a memory hit on the second.
#[test]
fn redis_hit_back_fills_memory() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let both = config(
            &[memory(300), redis_tier(&redis.url(), 250, 300)],
            &supabase(&rest),
        );
        let writer = Daemon::start(&both);
        assert!(wait_redis_state(&writer, "connected", Duration::from_secs(2)).await);
        let original = ask_ok(&writer, REVERB).await;
        assert_eq!(original.source(), "origin");
        redis_value(&redis, REVERB_KEY).await;

        let reader = Daemon::start(&both);
        assert!(wait_redis_state(&reader, "connected", Duration::from_secs(2)).await);
        let first = ask_ok(&reader, REVERB).await;
        assert_eq!(
            (first.source(), first.hit()),
            ("redis", Some(true)),
            "{first:?}"
        );
        let second = ask_ok(&reader, REVERB).await;
        assert_eq!(
            (second.source(), second.hit()),
            ("memory", Some(true)),
            "{second:?}"
        );
        assert_eq!(first.context(), original.context());
        assert_eq!(second.context(), original.context());
        assert_eq!(rest.calls(), 1, "only the writer's miss reached the origin");
    });
}

// ---------------------------------------------------------------------------------------
// 3. Single flight
// ---------------------------------------------------------------------------------------

/// 100 concurrent cold requests for one key make exactly one origin call (200 ms slow) and all get the same context.
#[test]
fn hundred_concurrent_cold_requests_make_one_origin_call() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));
        rest.set_delay(Duration::from_millis(200));
        let message = "mixing orchestral instruments";

        let answers = futures_util::future::join_all((0..100).map(|_| ask(&d, message))).await;
        assert_eq!(rest.calls(), 1, "the gateway saw more than one call");
        let expected = answers[0].context().clone();
        assert!(
            expected["snippets"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        );
        let mut origin = 0;
        for a in &answers {
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(a.context(), &expected);
            match a.source() {
                "origin" => origin += 1,
                "memory" => {}
                other => panic!("unexpected source {other:?}"),
            }
        }
        // Everyone answered "origin" either made the call or waited on it.
        let s = stats(&d).await;
        assert_eq!(
            u(&s["metrics"]["counters"]["coalesced_waits"]),
            origin - 1,
            "{s}"
        );
        assert!(origin >= 2, "the requests did not overlap: {origin}");
        assert_eq!(ask_ok(&d, message).await.source(), "memory");
        assert_eq!(rest.calls(), 1);
    });
}

// ---------------------------------------------------------------------------------------
// 4. TTL
// ---------------------------------------------------------------------------------------

/// With ttl_secs = 1 (no stale windows) an entry is a hit until it is 1 s old, then the next request goes to the origin again.
#[test]
fn entries_expire_after_ttl() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let text = [
            log_section("info"),
            cache_section(1),
            memory_tier(1_000, 64 * MIB, 1),
            supabase(&rest),
        ]
        .concat();
        let d = Daemon::start(&text);

        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        let stored = Instant::now();
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
        let mut hits = 0;
        let refetched = poll(Duration::from_secs(3), async || {
            match ask_ok(&d, REVERB).await.source() {
                "origin" => Some(stored.elapsed()),
                "memory" => {
                    hits += 1;
                    None
                }
                other => panic!("unexpected source {other:?}"),
            }
        })
        .await
        .expect("still a hit 3 s after a 1 s TTL");
        assert!(
            refetched >= Duration::from_millis(900),
            "expired after {refetched:?}"
        );
        assert!(hits > 0);
        assert_eq!(rest.calls(), 2);
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory", "stored again");
    });
}

// ---------------------------------------------------------------------------------------
// 5. Memory bound
// ---------------------------------------------------------------------------------------

/// A memory tier bounded to 20 entries holds at most 20 after 200 distinct keys, and reports evictions.
#[test]
fn memory_tier_respects_max_entries() {
    run(async {
        let d = Daemon::start(&config(
            &[memory_tier(20, 64 * 1024, 300)],
            &sample_origin(),
        ));
        let d = &d;
        for batch in 0..8 {
            let asks = (0..25).map(|i| async move {
                let message = format!("reverb question number {}", batch * 25 + i);
                ask_ok(d, &message).await
            });
            futures_util::future::join_all(asks).await;
        }
        let s = stats(d).await;
        let entries = u(&s["entries"]);
        assert!(
            (1..=20).contains(&entries),
            "entries {entries} with max_entries 20: {s}"
        );
        let s = stats(d).await;
        assert!(u(&s["metrics"]["counters"]["evictions"]["size"]) > 0, "{s}");
        assert_eq!(u(&s["metrics"]["misses"]), 200);
    });
}
