//! The daemon's requirements, end to end against REAL servers: a redis-server, a
//! PostgreSQL loaded with `tests/sql/schema.sql`, and the PostgREST-shaped gateway in
//! front of it (tests/common). Each test starts the built `codette-cache` binary with its
//! own config, makes plain HTTP requests and asserts on what a client, Redis or the
//! gateway can see. No mocks.

mod common;

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    ADMIN_TOKEN, API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section,
    config_memory_postgrest, free_port, log_section, memory_tier, postgres_origin, redis_tier,
    sample_origin, supabase_origin,
};
use md5::{Digest, Md5};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const CONTEXT: &str = "/codette/context";
const STATS: &str = "/codette/cache/stats";
const STATUS: &str = "/codette/cache/status";
const CLEAR: &str = "/codette/cache/clear";
const INVALIDATE: &str = "/codette/cache/invalidate";

/// The original server's test vectors (shared/reference/original-system.md).
const REVERB: &str = "how to use reverb in mixing";
const REVERB_KEY: &str = "context:367ac8be2a4e9fccd1f5aa007d810371";
const ANALYSIS: &str = "audio analysis";
const ANALYSIS_FILE: &str = "effect_chain.ts";
const ANALYSIS_KEY: &str = "context:7d3cdfad59cc1144595ae297f6a5c951";

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Runs a test body on its own runtime (the daemon's reqwest client lives in it).
fn run<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

/// Calls `probe` every 20 ms until it gives a value, or `None` after `limit`.
async fn poll<T>(limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// `[[tiers]]` memory with the usual bounds and this TTL.
fn memory(ttl_secs: u64) -> String {
    memory_tier(10_000, 64 * MIB, ttl_secs)
}

fn supabase(rest: &Postgrest) -> String {
    supabase_origin(&rest.url(), API_KEY, 2_000)
}

/// The given tiers and origin, info logs, TTL 300, no stale serving, the test token.
fn config(tiers: &[String], origin: &str) -> String {
    let mut parts = vec![log_section("info"), cache_section(300)];
    parts.extend(tiers.iter().cloned());
    parts.push(origin.to_owned());
    parts.push(admin_section(ADMIN_TOKEN));
    parts.concat()
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// One context answer as the client saw it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    text: String,
    body: Value,
}

impl Answer {
    async fn from(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, body }
    }

    fn source(&self) -> &str {
        self.body["cache"]["source"].as_str().unwrap_or("")
    }

    fn hit(&self) -> Option<bool> {
        self.body["cache"]["hit"].as_bool()
    }

    fn key(&self) -> &str {
        self.body["cache"]["key"].as_str().unwrap_or("")
    }

    fn context(&self) -> &Value {
        &self.body["context"]
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// `POST /codette/context` with this JSON body.
async fn ask_body(d: &Daemon, body: &Value) -> Answer {
    let resp = d.client().post(d.url(CONTEXT)).json(body).send().await;
    let resp = resp.unwrap_or_else(|e| panic!("POST {body}: {e}\n{}", d.logs()));
    Answer::from(resp).await
}

/// `POST /codette/context {"message": ...}`.
async fn ask(d: &Daemon, message: &str) -> Answer {
    ask_body(d, &json!({ "message": message })).await
}

/// Like `ask`, insisting on a 200.
async fn ask_ok(d: &Daemon, message: &str) -> Answer {
    let answer = ask(d, message).await;
    assert_eq!(answer.status, 200, "{message:?}: {answer:?}\n{}", d.logs());
    answer
}

/// `GET /codette/context?message=...[&filename=...]`.
async fn ask_get(d: &Daemon, message: &str, filename: Option<&str>) -> Answer {
    let mut query = vec![("message", message)];
    query.extend(filename.map(|f| ("filename", f)));
    let resp = d.client().get(d.url(CONTEXT)).query(&query).send().await;
    Answer::from(resp.expect("GET context")).await
}

/// The key the original server used: `context:` + md5(message + ":" + (filename or "none")).
fn original_key(message: &str, filename: Option<&str>) -> String {
    let digest = Md5::digest(format!("{message}:{}", filename.unwrap_or("none")));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("context:{hex}")
}

/// The function's answer straight from PostgreSQL, as text (what the gateway returns).
fn origin_text(pg: &TestPostgres, message: &str, filename: Option<&str>) -> String {
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let filename = filename.map_or("NULL".to_owned(), literal);
    pg.execute(&format!(
        "SELECT public.get_codette_context({}, {filename})::text",
        literal(message)
    ))
}

async fn stats(d: &Daemon) -> Value {
    let (status, v) = d.get_json(STATS).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// `cache_backends.redis_cache` of `/codette/cache/status`.
async fn redis_state(d: &Daemon) -> String {
    let (_, v) = d.get_json(STATUS).await;
    v["cache_backends"]["redis_cache"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits up to `limit` for the redis tier to report `want`.
async fn wait_redis_state(d: &Daemon, want: &str, limit: Duration) -> bool {
    poll(limit, async || (redis_state(d).await == want).then_some(()))
        .await
        .is_some()
}

/// Waits up to 2 s for `key` to hold a value in Redis (our writes land after the reply).
async fn redis_value(redis: &TestRedis, key: &str) -> String {
    poll(Duration::from_secs(2), async || {
        Some(redis.cmd(&["GET", key])).filter(|v| !v.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("{key} never reached Redis"))
}

fn redis_keys(redis: &TestRedis, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cmd(&["KEYS", pattern])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// Waits up to `limit` for the daemon's log to mention `needle` at least `times` times.
async fn wait_log(d: &Daemon, needle: &str, times: usize, limit: Duration) -> bool {
    poll(limit, async || {
        (d.logs().matches(needle).count() >= times).then_some(())
    })
    .await
    .is_some()
}

/// Asks `message` over and over while `during` runs (and a little after); the statuses.
async fn asking_while<T>(
    d: &Daemon,
    message: &str,
    during: impl Future<Output = T>,
) -> (T, Vec<u16>) {
    let done = AtomicBool::new(false);
    let asking = async {
        let mut statuses = Vec::new();
        while !done.load(Ordering::SeqCst) || statuses.len() < 3 {
            statuses.push(ask(d, message).await.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    };
    let during = async {
        let out = during.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    tokio::join!(during, asking)
}

fn connect_refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

/// Asserts the exact response shape: `{"context", "cache": {hit, source, key, age_seconds}, "timestamp"}`.
fn assert_shape(a: &Answer) {
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&a.body),
        ["cache", "context", "timestamp"],
        "{}",
        a.text
    );
    assert_eq!(
        keys(&a.body["cache"]),
        ["age_seconds", "hit", "key", "source"],
        "{}",
        a.text
    );
    let age = a.body["cache"]["age_seconds"]
        .as_f64()
        .expect("age_seconds");
    assert!((0.0..5.0).contains(&age), "{}", a.text);
    let ts = a.body["timestamp"].as_str().expect("timestamp");
    assert!(
        ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "timestamp {ts:?}"
    );
}

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

// ---------------------------------------------------------------------------------------
// 6. Redis outage
// ---------------------------------------------------------------------------------------

/// Redis stopped mid-test: requests keep answering 200 from memory/origin; after it restarts the tier reconnects within 2 s and new values land in it, with no daemon restart.
#[test]
fn redis_outage_is_survived_and_reconnected_without_restart() {
    run(async {
        let mut redis = TestRedis::start();
        let mut d = Daemon::start(&config(
            &[memory(300), redis_tier(&redis.url(), 250, 300)],
            &sample_origin(),
        ));
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

// ---------------------------------------------------------------------------------------
// 8. What is not cached
// ---------------------------------------------------------------------------------------

/// Empty answers (`null`, `{}`) are answered but not stored; origin errors (5xx, malformed) are a 502 and the next request calls the origin again.
#[test]
fn empty_answers_and_origin_errors_are_not_cached() {
    run(async {
        let pg = TestPostgres::start();
        pg.execute(
            "ALTER FUNCTION public.get_codette_context(text, text) RENAME TO real_context; \
             CREATE FUNCTION public.get_codette_context(input_prompt text, \
                 optionally_filename text DEFAULT NULL) RETURNS jsonb LANGUAGE sql STABLE AS $$ \
               SELECT CASE input_prompt \
                 WHEN 'nothing at all' THEN NULL \
                 WHEN 'an empty object' THEN '{}'::jsonb \
                 ELSE public.real_context(input_prompt, optionally_filename) END $$",
        );
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));

        for (message, empty) in [
            ("nothing at all", Value::Null),
            ("an empty object", json!({})),
        ] {
            // Back to back, so a request right after an answer cannot reuse it either.
            let calls = rest.calls();
            for _ in 0..5 {
                let a = ask_ok(&d, message).await;
                assert_eq!((a.source(), a.context()), ("origin", &empty), "{a:?}");
            }
            assert_eq!(rest.calls(), calls + 5, "{message:?} was reused");
        }
        assert_eq!(u(&stats(&d).await["entries"]), 0);

        // Each failing request is a 502 of its own call; once fixed, the origin answers.
        for (what, message) in [
            ("5xx", REVERB),
            ("malformed", "compression techniques for vocals"),
        ] {
            let calls = rest.calls();
            rest.set_fail_status((what == "5xx").then_some(500));
            rest.set_malformed(what == "malformed");
            for _ in 0..5 {
                let failed = ask(&d, message).await;
                assert_eq!(
                    (failed.status, failed.error_code()),
                    (502, "origin_error"),
                    "{what}: {failed:?}"
                );
            }
            assert_eq!(rest.calls(), calls + 5, "{what}: an error was reused");
            rest.set_fail_status(None);
            rest.set_malformed(false);
            assert_eq!(ask_ok(&d, message).await.source(), "origin", "{what}");
            assert_eq!(ask_ok(&d, message).await.source(), "memory", "{what}");
            assert_eq!(rest.calls(), calls + 6, "{what}");
        }
    });
}

/// Two daemons sharing one Redis, one calling the original function and one another
/// function, never serve each other's answers: the other function's keys live under
/// `context:<function>:`, the original's keys stay the original's.
#[test]
fn other_rpc_functions_have_their_own_key_namespace() {
    run(async {
        let pg = TestPostgres::start();
        pg.execute(
            "CREATE FUNCTION public.get_codette_summary(input_prompt text, \
                 optionally_filename text DEFAULT NULL) RETURNS jsonb LANGUAGE sql STABLE AS $$ \
               SELECT jsonb_build_object('summary', input_prompt) $$",
        );
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let tiers = [memory(300), redis_tier(&redis.url(), 250, 300)];
        let original = Daemon::start(&config(&tiers, &supabase(&rest)));
        let other_origin = supabase(&rest).replace("get_codette_context", "get_codette_summary");
        let other = Daemon::start(&config(&tiers, &other_origin));
        for d in [&original, &other] {
            assert!(wait_redis_state(d, "connected", Duration::from_secs(2)).await);
        }

        let a = ask_ok(&original, REVERB).await;
        assert_eq!((a.source(), a.key()), ("origin", REVERB_KEY));
        redis_value(&redis, REVERB_KEY).await;
        let b = ask_ok(&other, REVERB).await;
        let other_key = REVERB_KEY.replace("context:", "context:get_codette_summary:");
        assert_eq!(
            (b.source(), b.key()),
            ("origin", other_key.as_str()),
            "{b:?}"
        );
        assert_eq!(b.context(), &json!({ "summary": REVERB }));
        let stored = redis_value(&redis, &other_key).await;
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            *b.context()
        );
        assert_ne!(a.context(), b.context());
        assert_eq!(rest.calls(), 2, "one call per function");
    });
}

// ---------------------------------------------------------------------------------------
// 9. The postgres origin
// ---------------------------------------------------------------------------------------

/// Memory + the postgres origin: misses return the SQL function's JSON, hits come from memory; /readyz is 503 with a reason while PostgreSQL is stopped and 200 again after.
#[test]
fn postgres_origin_serves_and_readyz_follows_the_database() {
    run(async {
        let mut pg = TestPostgres::start();
        let d = Daemon::start(&config(
            &[memory(300)],
            &postgres_origin(&pg.url(), 4, 2_000),
        ));

        let miss = ask_ok(&d, REVERB).await;
        assert_eq!((miss.source(), miss.key()), ("origin", REVERB_KEY));
        let truth = origin_text(&pg, REVERB, None);
        assert!(
            miss.text.starts_with(&format!("{{\"context\":{truth},")),
            "{}",
            miss.text
        );
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
        let with_file =
            ask_body(&d, &json!({"message": ANALYSIS, "filename": ANALYSIS_FILE})).await;
        assert_eq!((with_file.status, with_file.key()), (200, ANALYSIS_KEY));
        assert_eq!(with_file.context()["file"]["filename"], ANALYSIS_FILE);
        assert_eq!(d.get_json("/readyz").await.0, 200);

        pg.stop();
        let (status, v) = d.get_json("/readyz").await;
        assert_eq!((status, &v["status"]), (503, &json!("not_ready")), "{v}");
        let reasons = v["reasons"].as_array().expect("reasons");
        assert!(
            reasons
                .iter()
                .any(|r| r.as_str().unwrap_or("").starts_with("origin (postgres)")),
            "{v}"
        );
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
        // Connection failures are retried until the timeout: a stopped database is 504.
        let down = ask(&d, "mastering chain").await;
        assert_eq!(
            (down.status, down.error_code()),
            (504, "origin_timeout"),
            "{down:?}"
        );
        assert_eq!(d.get_json("/healthz").await.0, 200);

        pg.start_again();
        let ready = poll(Duration::from_secs(5), async || {
            (d.get_json("/readyz").await.0 == 200).then_some(())
        });
        assert!(
            ready.await.is_some(),
            "/readyz not 200 after PostgreSQL came back"
        );
        assert_eq!(ask_ok(&d, "mastering chain").await.source(), "origin");
    });
}

// ---------------------------------------------------------------------------------------
// 10. Bad input
// ---------------------------------------------------------------------------------------

/// Every bad request gets `{"error": {"code", "message"}}` with the right status (400/404/405/413), and the daemon serves normally afterwards.
#[test]
fn bad_requests_get_json_errors_and_the_daemon_keeps_serving() {
    run(async {
        let d = Daemon::start(&config(&[memory(300)], &sample_origin()));
        let c = d.client();
        let url = d.url(CONTEXT);
        let json_post = |body: String| {
            c.post(&url)
                .header("content-type", "application/json")
                .body(body)
        };
        let cases = [
            (
                "malformed JSON",
                json_post(r#"{"message": "reverb""#.into()),
                400,
                "invalid_body",
            ),
            (
                "missing message",
                c.post(&url).json(&json!({"filename": "a.ts"})),
                400,
                "invalid_body",
            ),
            (
                "non-string message",
                c.post(&url).json(&json!({"message": 42})),
                400,
                "invalid_body",
            ),
            (
                "message over 8 KiB",
                c.post(&url)
                    .json(&json!({"message": "a".repeat(8 * 1024 + 1)})),
                413,
                "payload_too_large",
            ),
            (
                "body over 64 KiB",
                c.post(&url)
                    .json(&json!({"message": "reverb", "pad": "x".repeat(70_000)})),
                413,
                "payload_too_large",
            ),
            (
                "unknown route",
                c.get(d.url("/codette/nothing-here")),
                404,
                "not_found",
            ),
            (
                "wrong method",
                c.put(&url).json(&json!({"message": "reverb"})),
                405,
                "method_not_allowed",
            ),
            (
                "POST to a GET route",
                c.post(d.url(STATS)),
                405,
                "method_not_allowed",
            ),
            (
                "empty message",
                c.post(&url).json(&json!({"message": ""})),
                400,
                "empty_message",
            ),
            (
                "blank message",
                c.post(&url).json(&json!({"message": " \t\n"})),
                400,
                "empty_message",
            ),
            (
                "NUL in message",
                c.post(&url).json(&json!({"message": "rev\u{0}erb"})),
                400,
                "nul_character",
            ),
            (
                "NUL in a GET message",
                c.get(&url).query(&[("message", "a\u{0}b")]),
                400,
                "nul_character",
            ),
            ("GET without message", c.get(&url), 400, "invalid_query"),
        ];
        for (what, request, status, code) in cases {
            let resp = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let content_type = resp.headers().get("content-type").cloned();
            let connection = resp.headers().get("connection").cloned();
            let a = Answer::from(resp).await;
            if status == 413 {
                // The body may be left unread: the client must not reuse the connection.
                assert_eq!(
                    connection.as_ref().and_then(|v| v.to_str().ok()),
                    Some("close"),
                    "{what}"
                );
            }
            assert_eq!(
                (a.status, a.error_code()),
                (status, code),
                "{what}: {}",
                a.text
            );
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{what}"
            );
            let message = a.body["error"]["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{what}: no message: {}", a.text);
        }
        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        assert_eq!(ask_get(&d, REVERB, None).await.source(), "memory");
        assert_eq!(d.get_json("/healthz").await.0, 200);
        assert_eq!(
            u(&stats(&d).await["metrics"]["total_requests"]),
            2,
            "bad requests counted"
        );
        assert!(!d.logs().contains("panicked"), "{}", d.logs());
    });
}

// ---------------------------------------------------------------------------------------
// 11. Admin routes
// ---------------------------------------------------------------------------------------

/// With no admin token configured, clear and invalidate are 403 (even with a bearer) and the cache is untouched.
#[test]
fn admin_routes_are_forbidden_without_a_configured_token() {
    run(async {
        let text = [
            log_section("info"),
            cache_section(300),
            memory(300),
            sample_origin(),
            admin_section(""),
        ]
        .concat();
        let d = Daemon::start(&text);
        ask_ok(&d, REVERB).await;
        let body = json!({ "message": REVERB });
        for bearer in [None, Some("anything"), Some("")] {
            let (status, v) = d.post_json(CLEAR, &json!({}), bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (403, &json!("admin_disabled")),
                "{v}"
            );
            let (status, v) = d.post_json(INVALIDATE, &body, bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (403, &json!("admin_disabled")),
                "{v}"
            );
        }
        assert_eq!(u(&stats(&d).await["entries"]), 1);
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
    });
}

/// Clear and invalidate answer 401 without the right bearer token; with it, clear empties memory and the `context:*` keys of Redis (other keys survive), invalidate removes one key from both tiers.
#[test]
fn clear_and_invalidate_need_the_token_and_reach_both_tiers() {
    run(async {
        let redis = TestRedis::start();
        let d = Daemon::start(&config(
            &[memory(300), redis_tier(&redis.url(), 250, 300)],
            &sample_origin(),
        ));
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);
        let messages = ["reverb on vocals", "drum bus compression", "stereo imaging"];
        let keys: Vec<String> = messages.iter().map(|m| original_key(m, None)).collect();
        for (m, k) in messages.iter().zip(&keys) {
            assert_eq!(ask_ok(&d, m).await.source(), "origin");
            redis_value(&redis, k).await;
        }
        assert_eq!(redis.cmd(&["SET", "session:keep", "not ours"]), "OK");

        for bearer in [None, Some("wrong-token"), Some("")] {
            let (status, v) = d.post_json(CLEAR, &json!({}), bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (401, &json!("unauthorized")),
                "{v}"
            );
        }
        let basic = d
            .client()
            .post(d.url(CLEAR))
            .basic_auth("admin", Some(ADMIN_TOKEN));
        assert_eq!(basic.send().await.unwrap().status().as_u16(), 401);
        assert_eq!(
            redis_keys(&redis, "context:*").len(),
            3,
            "cleared without the token"
        );
        assert_eq!(u(&stats(&d).await["entries"]), 3);

        let (status, v) = d.post_json(CLEAR, &json!({}), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "cleared", "{v}");
        assert_eq!(v["removed"], 6, "3 in memory + 3 in Redis: {v}");
        assert!(v["timestamp"].is_string(), "{v}");
        assert_eq!(redis_keys(&redis, "context:*"), Vec::<String>::new());
        assert_eq!(redis.cmd(&["GET", "session:keep"]), "not ours");
        assert_eq!(u(&stats(&d).await["entries"]), 0);
        assert_eq!(ask_ok(&d, messages[0]).await.source(), "origin");
        assert_eq!(ask_ok(&d, messages[1]).await.source(), "origin");
        redis_value(&redis, &keys[0]).await;
        redis_value(&redis, &keys[1]).await;

        let body = json!({ "message": messages[0] });
        for bearer in [None, Some("wrong-token")] {
            let (status, v) = d.post_json(INVALIDATE, &body, bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (401, &json!("unauthorized")),
                "{v}"
            );
        }
        assert_eq!(redis_keys(&redis, "context:*").len(), 2);
        let (status, v) = d.post_json(INVALIDATE, &body, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["status"], &v["key"]),
            (&json!("invalidated"), &json!(keys[0])),
            "{v}"
        );
        assert_eq!(redis.cmd(&["GET", &keys[0]]), "", "still in Redis");
        assert_eq!(redis_keys(&redis, "context:*"), vec![keys[1].clone()]);
        assert_eq!(
            ask_ok(&d, messages[0]).await.source(),
            "origin",
            "still in memory"
        );
        assert_eq!(
            ask_ok(&d, messages[1]).await.source(),
            "memory",
            "the other key went too"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 12. SIGHUP
// ---------------------------------------------------------------------------------------

/// Replaces the config file in one step (the daemon never reads half a file).
fn write_config(d: &Daemon, text: &str) {
    let path = d.config_path();
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, &path).expect("rename config");
}

/// SIGHUP applies a new TTL and log level from the file with requests succeeding throughout; a broken file is rejected (logged, metric 0) and the running config keeps serving.
#[test]
fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let with = |level: &str, ttl: u64| {
            [
                log_section(level),
                cache_section(ttl),
                memory_tier(1_000, 64 * MIB, ttl),
                supabase(&rest),
                admin_section(ADMIN_TOKEN),
            ]
            .concat()
        };
        let mut d = Daemon::start(&with("info", 300));
        let steady = "eq strategies for drums";
        assert_eq!(ask_ok(&d, steady).await.source(), "origin");

        // At info, a failed request is not logged at debug.
        rest.set_fail_status(Some(500));
        assert_eq!(ask(&d, "fails at info").await.status, 502);
        rest.set_fail_status(None);
        assert!(!d.logs().contains("context request failed"));

        write_config(&d, &with("debug", 1));
        let (reloaded, statuses) = asking_while(&d, steady, async {
            d.signal("HUP");
            wait_log(&d, "config reloaded", 1, Duration::from_secs(3)).await
        })
        .await;
        assert!(reloaded, "no reload logged:\n{}", d.logs());
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        assert_eq!(stats(&d).await["ttl_seconds"], 1);

        // The new level: the failure is logged at debug now.
        rest.set_fail_status(Some(500));
        assert_eq!(ask(&d, "fails at debug").await.status, 502);
        rest.set_fail_status(None);
        assert!(wait_log(&d, "context request failed", 1, Duration::from_secs(2)).await);

        // The new TTL: an entry stored now expires after 1 s.
        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        let stored = Instant::now();
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
        let expired = poll(Duration::from_secs(3), async || {
            (ask_ok(&d, REVERB).await.source() == "origin").then(|| stored.elapsed())
        })
        .await
        .expect("the reloaded 1 s TTL did not apply");
        assert!(expired >= Duration::from_millis(900), "{expired:?}");

        // A broken file: rejected, the 1 s TTL and debug level stay.
        write_config(&d, "[cache\nttl_secs = = 5\n");
        let (rejected, statuses) = asking_while(&d, steady, async {
            d.signal("HUP");
            wait_log(&d, "config reload rejected", 1, Duration::from_secs(3)).await
        })
        .await;
        assert!(rejected, "no rejection logged:\n{}", d.logs());
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        let (_, metrics) = d.get_text("/metrics").await;
        assert!(
            metrics
                .lines()
                .any(|l| l == "codette_cache_config_last_reload_successful 0"),
            "{metrics}"
        );
        assert_eq!(stats(&d).await["ttl_seconds"], 1);
        let fresh = "audio production workflow";
        assert_eq!(ask_ok(&d, fresh).await.source(), "origin");
        assert_eq!(ask_ok(&d, fresh).await.source(), "memory");
        assert!(d.wait_exit(Duration::ZERO).is_none(), "the daemon exited");
    });
}

// ---------------------------------------------------------------------------------------
// 13. SIGTERM
// ---------------------------------------------------------------------------------------

/// SIGTERM during a 1 s origin call: new connections are refused at once, the in-flight request completes 200, and the process exits 0 within the grace period.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let grace = Duration::from_secs(5);
        let text = [
            format!("[server]\nshutdown_grace_secs = {}\n\n", grace.as_secs()),
            config(&[memory(300)], &supabase(&rest)),
        ]
        .concat();
        let mut d = Daemon::start(&text);
        let port = d.port();
        rest.set_delay(Duration::from_secs(1));

        let (client, url) = (d.client().clone(), d.url(CONTEXT));
        let in_flight = tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({ "message": REVERB }))
                .send()
                .await;
            (
                Answer::from(resp.expect("in-flight request")).await,
                Instant::now(),
            )
        });
        let arrived = poll(Duration::from_secs(5), async || {
            (rest.calls() == 1).then_some(())
        })
        .await;
        assert!(arrived.is_some(), "the request never reached the origin");
        let termed = Instant::now();
        d.signal("TERM");

        let refused = poll(Duration::from_secs(1), async || {
            connect_refused(port).then(Instant::now)
        })
        .await
        .expect("still accepting connections 1 s after SIGTERM");
        let (answer, answered) = in_flight.await.expect("request task");
        assert_eq!(
            (answer.status, answer.source()),
            (200, "origin"),
            "{answer:?}"
        );
        assert!(
            refused < answered,
            "connections were refused only after the drain"
        );

        let status = d
            .wait_exit(grace)
            .expect("not exited within the grace period");
        assert!(status.success(), "exit status {status}\n{}", d.logs());
        assert!(termed.elapsed() < grace);
        assert!(connect_refused(port));
        assert!(d.logs().contains("drained"), "{}", d.logs());
    });
}

// ---------------------------------------------------------------------------------------
// 14. check-config and start-up without Redis
// ---------------------------------------------------------------------------------------

/// `codette-cache check-config --config FILE` with a clean environment.
fn check_config(text: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codette-cache"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let ours = ["CODETTE_CACHE_", "REDIS_", "VITE_SUPABASE_", "SUPABASE_"];
        if ours.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("check-config")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run check-config")
}

/// check-config prints the effective config as TOML with every secret redacted (exit 0), and an invalid file exits non-zero naming the key.
#[test]
fn check_config_redacts_secrets_and_names_bad_keys() {
    let secrets = ["redis-pass-123", "anon-key-456", "admin-token-789"];
    let valid = r#"
[[tiers]]
type = "memory"
max_entries = 100
max_bytes = 1048576

[[tiers]]
type = "redis"
url = "redis://app:redis-pass-123@127.0.0.1:6379/0"

[origin]
type = "supabase"
url = "https://example.supabase.co"
api_key = "anon-key-456"

[admin]
token = "admin-token-789"
"#;
    let out = check_config(valid);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for secret in secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked:\n{stdout}"
        );
    }
    let shown: toml::Value = toml::from_str(&stdout).expect("check-config prints TOML");
    assert_eq!(
        shown["tiers"][1]["url"].as_str(),
        Some("redis://app:<redacted>@127.0.0.1:6379/0")
    );
    assert_eq!(shown["origin"]["api_key"].as_str(), Some("<redacted>"));
    assert_eq!(shown["admin"]["token"].as_str(), Some("<redacted>"));
    assert_eq!(
        shown["origin"]["url"].as_str(),
        Some("https://example.supabase.co")
    );
    assert_eq!(shown["tiers"][0]["max_entries"].as_integer(), Some(100));

    for (text, names) in [
        ("[cache]\nttl_secs = \"soon\"\n", "ttl_secs"),
        ("[cache]\nttl_seconds = 5\n", "ttl_seconds"),
        ("[cache]\nttl_secs = 0\n", "cache.ttl_secs"),
        (
            "[server]\nmax_message_bytes = 100000\n",
            "server.max_message_bytes",
        ),
    ] {
        let out = check_config(text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} accepted");
        assert!(
            stderr.contains(names),
            "{text:?}: the error does not name {names}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{text:?} printed a config");
    }
}

/// Start-up with Redis unreachable (nothing on its port) still serves: /healthz 200, context requests 200 from origin then memory, Redis reported unavailable.
#[test]
fn start_up_with_unreachable_redis_still_serves() {
    run(async {
        let nowhere = format!("redis://127.0.0.1:{}/0", free_port());
        let d = Daemon::start(&config(
            &[memory(300), redis_tier(&nowhere, 250, 300)],
            &sample_origin(),
        ));
        let (status, v) = d.get_json("/healthz").await;
        assert_eq!((status, &v["status"]), (200, &json!("ok")));
        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
        let (_, status) = d.get_json(STATUS).await;
        assert_eq!(
            status["cache_backends"]["redis_cache"], "unavailable",
            "{status}"
        );
        assert_eq!(status["current_mode"], "memory-only", "{status}");
    });
}

// ---------------------------------------------------------------------------------------
// 15. Health and readiness
// ---------------------------------------------------------------------------------------

/// /healthz is always 200; /readyz is 200 with a working gateway and 503 with reasons while it fails, its database is down, or it is gone.
#[test]
fn readyz_follows_the_supabase_origin() {
    run(async {
        let mut pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));
        let not_ready = async |why: &str| {
            let (status, v) = d.get_json("/readyz").await;
            assert_eq!(
                (status, &v["status"]),
                (503, &json!("not_ready")),
                "{why}: {v}"
            );
            let reasons = v["reasons"].as_array().expect("reasons");
            assert!(
                reasons
                    .iter()
                    .any(|r| r.as_str().unwrap_or("").starts_with("origin (supabase)")),
                "{why}: {v}"
            );
            assert_eq!(d.get_json("/healthz").await.0, 200, "{why}");
        };
        let (status, v) = d.get_json("/readyz").await;
        assert_eq!((status, &v["status"]), (200, &json!("ready")), "{v}");

        rest.set_fail_status(Some(503));
        not_ready("gateway failing").await;
        rest.set_fail_status(None);
        assert_eq!(d.get_json("/readyz").await.0, 200);

        pg.stop();
        not_ready("database behind the gateway stopped").await;
        drop(rest);
        not_ready("gateway gone").await;
    });
}
