//! The Redis tier: an outage survived without restart, and the original's key layout.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{
    ask_body, ask_ok, origin_text, original_key, redis_state, redis_value, wait_redis_state,
};
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, redis_tier, sample_origin,
};
use crate::{
    ANALYSIS, ANALYSIS_FILE, ANALYSIS_KEY, REVERB, REVERB_KEY, config, memory, run, supabase,
};

// ---------------------------------------------------------------------------------------
// 6. Redis outage
// ---------------------------------------------------------------------------------------

/// Redis stopped mid-test: requests keep answering 200 from memory/origin; after it restarts the tier reconnects within 2 s and new values land in it, with no daemon restart.
#[test]
fn redis_outage_is_survived_and_reconnected_without_restart() {
    run(async {
        let mut redis = TestRedis::start();
        // The tier's failover alone: with the broadcast on, the lost subscription would
        // empty the memory tier (tests/daemon/coherence.rs).
        let mut d = Daemon::start(
            &(config(
                &[memory(300), redis_tier(&redis.url(), 250, 300)],
                &sample_origin(),
            ) + "[invalidation]\nbroadcast = false\n"),
        );
        let pid = d.pid();
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);
        assert_eq!(
            ask_ok(&d, "reverb before the outage").await.source(),
            "origin"
        );
        redis_value(&redis, &original_key("reverb before the outage", None)).await;

        redis.stop();
        for i in 0..5 {
            let a = ask_ok(&d, &format!("compression during the outage {i}")).await;
            assert_eq!(a.source(), "origin");
        }
        assert_eq!(
            ask_ok(&d, "reverb before the outage").await.source(),
            "memory"
        );
        assert!(
            wait_redis_state(&d, "unavailable", Duration::from_secs(2)).await,
            "status still says {:?} with Redis stopped",
            redis_state(&d).await
        );
        assert_eq!(ask_ok(&d, "eq while it is down").await.source(), "origin");

        redis.start_again();
        let back = Instant::now();
        assert!(
            wait_redis_state(&d, "connected", Duration::from_secs(2)).await,
            "not reconnected 2 s after Redis came back:\n{}",
            d.logs()
        );
        println!("reconnected {:?} after Redis came back", back.elapsed());
        let after = "delay throws after the outage";
        let answer = ask_ok(&d, after).await;
        let stored = redis_value(&redis, &original_key(after, None)).await;
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            *answer.context()
        );
        assert_eq!(d.pid(), pid);
        assert!(d.wait_exit(Duration::ZERO).is_none(), "the daemon exited");
    });
}

// ---------------------------------------------------------------------------------------
// 7. Redis compatibility with the original server
// ---------------------------------------------------------------------------------------

/// A value the original server wrote (`SET context:<md5> <json> EX 300`) is a redis hit served byte for byte; our writes are plain JSON text with a 300 s TTL.
#[test]
fn redis_layout_is_compatible_with_the_original() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let d = Daemon::start(&config(
            &[memory(300), redis_tier(&redis.url(), 250, 300)],
            &supabase(&rest),
        ));
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);

        // Python's json.dumps spacing, as the original stored it.
        let legacy = r#"{"snippets": [{"filename": "legacy.md", "snippet": "Written by the Python server."}], "file": null, "chat_history": []}"#;
        assert_eq!(redis.cmd(&["SET", REVERB_KEY, legacy, "EX", "300"]), "OK");
        let hit = ask_ok(&d, REVERB).await;
        assert_eq!(
            (hit.source(), hit.hit(), hit.key()),
            ("redis", Some(true), REVERB_KEY)
        );
        assert!(
            hit.text.starts_with(&format!("{{\"context\":{legacy},")),
            "not served byte for byte: {}",
            hit.text
        );
        assert_eq!(rest.calls(), 0);

        // Our own write, read the way the original reads it.
        let miss = ask_body(&d, &json!({"message": ANALYSIS, "filename": ANALYSIS_FILE})).await;
        assert_eq!((miss.status, miss.source()), (200, "origin"));
        let stored = redis_value(&redis, ANALYSIS_KEY).await;
        assert_eq!(stored, origin_text(&pg, ANALYSIS, Some(ANALYSIS_FILE)));
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            *miss.context()
        );
        assert_eq!(redis.cmd(&["TYPE", ANALYSIS_KEY]), "string");
        let ttl: u64 = redis.cmd(&["TTL", ANALYSIS_KEY]).parse().expect("TTL");
        assert!((295..=300).contains(&ttl), "TTL {ttl}");
    });
}

/// Reads that arrive together go to Redis as one pipeline (`tiers/redis_batch.rs`), and
/// each still gets its own key's answer: 40 concurrent requests for 40 seeded values
/// are 40 hits, each byte for byte its own value; a key holding a list (WRONGTYPE for
/// that key alone) is a miss the origin answers, and the other reads of its batch are
/// unaffected.
#[test]
fn batched_redis_reads_answer_each_key_alone() {
    run(async {
        let redis = TestRedis::start();
        let d = Daemon::start(
            &(config(&[redis_tier(&redis.url(), 1_000, 300)], &sample_origin())
                + "[invalidation]\nbroadcast = false\n"),
        );
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);
        let value = |i: usize| {
            format!(
                r#"{{"snippets": [{{"filename": "seeded_{i}.md", "snippet": "value number {i}"}}], "file": null, "chat_history": []}}"#
            )
        };
        for i in 0..40 {
            let key = original_key(&format!("batched read {i}"), None);
            assert_eq!(redis.cmd(&["SET", &key, &value(i), "EX", "300"]), "OK");
        }
        for round in 0..3 {
            // A fresh list each round: the origin's answer may replace the last one.
            let list = format!("batched read of list {round}");
            let wrong = original_key(&list, None);
            assert_eq!(redis.cmd(&["RPUSH", &wrong, "not", "a", "string"]), "3");
            let mut asks: Vec<_> = (0..40).map(|i| format!("batched read {i}")).collect();
            asks.insert(17, list.clone());
            let answers = futures_util::future::join_all(asks.iter().map(|m| ask_ok(&d, m))).await;
            for (message, answer) in asks.iter().zip(&answers) {
                if *message == list {
                    assert_eq!(answer.source(), "origin", "{}", answer.text);
                    continue;
                }
                let i: usize = message.rsplit(' ').next().unwrap().parse().unwrap();
                assert_eq!(answer.source(), "redis", "{message}: {}", answer.text);
                assert!(
                    answer
                        .text
                        .starts_with(&format!("{{\"context\":{},", value(i))),
                    "{message} got another answer: {}",
                    answer.text
                );
            }
        }
        assert_eq!(
            redis_state(&d).await,
            "connected",
            "a key's error opened the circuit"
        );
    });
}
