//! Origins: what is not cached, the postgres origin, and readiness following the origin.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{
    ask, ask_body, ask_ok, origin_text, redis_value, stats, u, wait_not_ready, wait_ready,
    wait_redis_state,
};
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, config_memory_postgrest, postgres_origin,
    redis_tier,
};
use crate::{
    ANALYSIS, ANALYSIS_FILE, ANALYSIS_KEY, REVERB, REVERB_KEY, config, memory, run, supabase,
};

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
        let v = wait_not_ready(&d, Duration::from_secs(3))
            .await
            .expect("/readyz still 200 with PostgreSQL stopped");
        assert_eq!(v["status"], "not_ready", "{v}");
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
        assert!(
            wait_ready(&d, Duration::from_secs(5)).await,
            "/readyz not 200 after PostgreSQL came back"
        );
        assert_eq!(ask_ok(&d, "mastering chain").await.source(), "origin");
    });
}

// ---------------------------------------------------------------------------------------
// 15. Health and readiness
// ---------------------------------------------------------------------------------------

/// /healthz is always 200; /readyz is 200 with a working gateway and 503 with reasons while it fails, its database is down, or it is gone (within a second: one origin check answers /readyz for a second).
#[test]
fn readyz_follows_the_supabase_origin() {
    run(async {
        let mut pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));
        let not_ready = async |why: &str| {
            let v = wait_not_ready(&d, Duration::from_secs(3))
                .await
                .unwrap_or_else(|| panic!("{why}: /readyz still 200"));
            assert_eq!(v["status"], "not_ready", "{why}: {v}");
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
        // Probes are not passed on one for one: one origin check answers for a second.
        let checks = || {
            rest.requests()
                .iter()
                .filter(|r| matches!(r.path.as_str(), "/rest/v1" | "/rest/v1/"))
                .count()
        };
        let before = checks();
        let probes = (0..50).map(|_| d.get_json("/readyz"));
        for (status, v) in futures_util::future::join_all(probes).await {
            assert_eq!(status, 200, "{v}");
        }
        let made = checks() - before;
        assert!(made <= 2, "{made} origin checks for 50 probes");

        rest.set_fail_status(Some(503));
        not_ready("gateway failing").await;
        rest.set_fail_status(None);
        assert!(
            wait_ready(&d, Duration::from_secs(3)).await,
            "not ready again"
        );

        pg.stop();
        not_ready("database behind the gateway stopped").await;
        drop(rest);
        not_ready("gateway gone").await;
    });
}
