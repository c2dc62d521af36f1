//! What the daemon caches for the proxied functions, for whom and under which key: the
//! original function's keys, per-user answers, unverifiable tokens, errors and
//! `Prefer: tx=rollback`, VOLATILE functions, a clear, and collapsed concurrent misses.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::ADMIN_TOKEN;
use crate::common::postgrest::{anon_key, sign_jwt_with, unix_now, user_token};
use crate::common::process::wait_until;
use crate::daemon::{cache_status, setup};

/// The original function through the proxy: the answer is byte for byte the gateway's,
/// the second call (as a GET) is a hit, and the entry is the original's `context:<md5>`,
/// shared with `/codette/context`.
#[test]
fn the_original_function_shares_the_original_keys() {
    let s = setup(false);
    let args = json!({"input_prompt": "how to use reverb in mixing"});
    let direct = s.direct("get_codette_context", &args, &anon_key());
    assert_eq!(direct.status(), 200);
    let expected = direct.bytes().unwrap();

    let first = s.via_daemon("get_codette_context", &args, &anon_key());
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "codette-cache; fwd=uri-miss; stored");
    assert_eq!(first.bytes().unwrap(), expected);

    let get = s
        .http
        .get(s.daemon.url(
            "/rest/v1/rpc/get_codette_context?input_prompt=how%20to%20use%20reverb%20in%20mixing",
        ))
        .header("apikey", anon_key())
        .send()
        .unwrap();
    assert_eq!(get.status(), 200);
    assert!(
        cache_status(&get).starts_with("codette-cache; hit; ttl="),
        "{}",
        cache_status(&get)
    );
    assert!(get.headers().contains_key("age"));
    assert_eq!(get.bytes().unwrap(), expected);

    let key = "context:367ac8be2a4e9fccd1f5aa007d810371";
    // The shared tiers are written after the answer is sent (chain/call.rs), so the
    // key may land a moment after the first reply.
    assert!(
        wait_until(Duration::from_secs(5), || s
            .redis
            .cmd(&["EXISTS", key])
            .trim()
            == "1"),
        "the original key in Redis"
    );
    let context: Value = s
        .http
        .get(
            s.daemon
                .url("/codette/context?message=how%20to%20use%20reverb%20in%20mixing"),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(context["cache"]["hit"], true);
    assert_eq!(context["cache"]["key"], key);
    assert_eq!(
        s.rest.calls_to("get_codette_context"),
        2,
        "one direct, one miss"
    );
}

/// A user-scoped function reading `auth.uid()`: each user gets their own answer, from
/// the cache the second time, never the other's.
#[test]
fn each_user_gets_their_own_answer() {
    let s = setup(false);
    let (a, b) = (user_token("user-a"), user_token("user-b"));
    let mut seen = Vec::new();
    for round in 0..2 {
        for token in [&a, &b] {
            let r = s.via_daemon("my_notes", &json!({}), token);
            assert_eq!(r.status(), 200);
            let status = cache_status(&r);
            if round == 0 {
                assert_eq!(status, "codette-cache; fwd=uri-miss; stored");
            } else {
                assert!(status.starts_with("codette-cache; hit"), "{status}");
            }
            seen.push(r.text().unwrap());
        }
    }
    let direct_a = s.direct("my_notes", &json!({}), &a).text().unwrap();
    let direct_b = s.direct("my_notes", &json!({}), &b).text().unwrap();
    assert_ne!(
        direct_a, direct_b,
        "the schema gives the users different notes"
    );
    assert_eq!(
        seen,
        [&direct_a, &direct_b, &direct_a, &direct_b].map(String::clone)
    );
    assert_eq!(
        s.rest.calls_to("my_notes"),
        4,
        "two misses, two direct calls"
    );
    // The request and origin families say which function it was.
    let metrics = s.http.get(s.daemon.url("/metrics")).send().unwrap();
    let metrics = metrics.text().unwrap();
    for line in [
        r#"codette_cache_requests_total{function="my_notes",result="miss",tier="origin"} 2"#,
        r#"codette_cache_requests_total{function="my_notes",result="hit",tier="memory"} 2"#,
        r#"codette_cache_requests_total{function="get_codette_context",result="miss",tier="origin"} 0"#,
        r#"codette_cache_origin_requests_total{function="my_notes",result="ok"} 2"#,
        r#"codette_cache_origin_request_duration_seconds_count{function="my_notes"} 2"#,
        r#"codette_cache_origin_request_duration_seconds_count{function="fail_always"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

/// A token that does not verify is forwarded as it came, and nothing is stored or served
/// from the cache for it.
#[test]
fn unverifiable_tokens_are_forwarded_and_never_cached() {
    let s = setup(false);
    let forged = sign_jwt_with(
        &json!({"role": "authenticated", "sub": "user-a", "exp": unix_now() + 3600}),
        "not-the-project-secret-but-32-characters-long",
    );
    let args = json!({"input_prompt": "how to use reverb in mixing"});
    // Cached for the verified anon caller first.
    assert_eq!(
        s.via_daemon("get_codette_context", &args, &anon_key())
            .status(),
        200
    );
    for _ in 0..2 {
        let r = s.via_daemon("get_codette_context", &args, &forged);
        assert_eq!(cache_status(&r), "codette-cache; fwd=bypass");
        assert_eq!(
            r.status(),
            401,
            "the gateway refuses it, and so the client learns"
        );
        let body: Value = r.json().unwrap();
        assert_eq!(body["code"], "PGRST301");
    }
    let r = s.via_daemon("my_notes", &json!({}), &forged);
    assert_eq!(r.status(), 401);
    assert_eq!(
        s.rest.calls_to("my_notes"),
        1,
        "forwarded, and refused there"
    );
}

/// Errors from upstream are relayed verbatim and never stored; `Prefer: tx=rollback`
/// is forwarded without the cache; the same call as GET and POST are keyed apart (a GET
/// parameter that is not an argument is a filter, in a POST body an error), each a hit
/// the second time.
#[test]
fn errors_prefer_and_get_post() {
    let s = setup(false);
    let direct = s.direct("fail_always", &json!({}), &anon_key());
    let (status, expected) = (direct.status(), direct.bytes().unwrap());
    assert!(status.is_client_error(), "{status}");
    for _ in 0..2 {
        let r = s.via_daemon("fail_always", &json!({}), &anon_key());
        assert_eq!(r.status(), status);
        assert_eq!(cache_status(&r), "codette-cache; fwd=uri-miss");
        assert_eq!(r.bytes().unwrap(), expected);
    }
    assert_eq!(s.rest.calls_to("fail_always"), 3, "never stored");

    let token = user_token("user-a");
    let rollback = s
        .http
        .post(s.daemon.url("/rest/v1/rpc/my_notes"))
        .header("apikey", anon_key())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("prefer", "tx=rollback")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(rollback.status(), 200);
    assert_eq!(cache_status(&rollback), "codette-cache; fwd=bypass");

    let post = s.via_daemon("my_notes", &json!({}), &token);
    assert_eq!(cache_status(&post), "codette-cache; fwd=uri-miss; stored");
    let post = s.via_daemon("my_notes", &json!({}), &token);
    assert!(cache_status(&post).starts_with("codette-cache; hit"));
    let get = || {
        s.http
            .get(s.daemon.url("/rest/v1/rpc/my_notes"))
            .header("apikey", anon_key())
            .header("authorization", format!("Bearer {token}"))
            .send()
            .unwrap()
    };
    assert_eq!(cache_status(&get()), "codette-cache; fwd=uri-miss; stored");
    let hit = get();
    assert!(
        cache_status(&hit).starts_with("codette-cache; hit"),
        "{}",
        cache_status(&hit)
    );
    assert_eq!(
        s.rest.calls_to("my_notes"),
        3,
        "the rollback and one miss each"
    );
}

/// With introspection, a VOLATILE function is never stored whatever the config says,
/// and `shared`/`auto` functions are cached once the database has answered.
#[test]
fn volatile_functions_are_never_stored() {
    let s = setup(true);
    let args = json!({"input_prompt": "compression techniques"});
    // Introspection runs in the background: cached functions are forwarded until then.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.via_daemon("get_codette_context", &args, &anon_key());
        if cache_status(&r).contains("hit") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "introspection never finished:\n{}",
            s.daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = s.rest.calls_to("random_pick");
    for _ in 0..3 {
        let r = s.via_daemon("random_pick", &json!({}), &anon_key());
        assert_eq!(r.status(), 200);
        assert_eq!(cache_status(&r), "codette-cache; fwd=bypass");
    }
    assert_eq!(s.rest.calls_to("random_pick"), before + 3);
    assert!(s.daemon.logs().contains("VOLATILE"), "a warning names it");
}

/// Proxied entries live in the shared tiers: a clear reaches them, in memory and Redis.
#[test]
fn a_clear_reaches_proxied_entries() {
    let s = setup(false);
    let token = user_token("user-a");
    assert_eq!(
        cache_status(&s.via_daemon("my_notes", &json!({}), &token)),
        "codette-cache; fwd=uri-miss; stored"
    );
    // The shared tier is written just after the answer.
    let scan = || {
        s.redis
            .cmd(&["--scan", "--pattern", "context:rpc:my_notes:*"])
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while scan().lines().count() != 1 {
        assert!(
            Instant::now() < deadline,
            "never stored in Redis: {}",
            scan()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cache_status(&s.via_daemon("my_notes", &json!({}), &token)).contains("hit"));
    let cleared = s
        .http
        .post(s.daemon.url("/codette/cache/clear"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(scan(), "", "gone from Redis");
    assert_eq!(
        cache_status(&s.via_daemon("my_notes", &json!({}), &token)),
        "codette-cache; fwd=uri-miss; stored"
    );
}

/// A call of the original function that is not its plain form (axios's `Accept`) is
/// kept under the proxy's own key, and a purge of its prompt's or its file's tag (what a
/// database change sends) still reaches it, in memory and in Redis.
#[test]
fn tag_purges_reach_proxied_calls_of_the_original() {
    let s = setup(false);
    let call = |args: &Value| {
        s.http
            .post(s.daemon.url("/rest/v1/rpc/get_codette_context"))
            .header("apikey", anon_key())
            .header("authorization", format!("Bearer {}", anon_key()))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/plain, */*")
            .body(args.to_string())
            .send()
            .unwrap()
    };
    let purge = |tag: &str| {
        let r = s
            .http
            .post(s.daemon.url("/codette/cache/invalidate"))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .json(&json!({ "tags": [tag] }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
    };
    let scan = || {
        s.redis
            .cmd(&["--scan", "--pattern", "context:rpc:get_codette_context:*"])
    };
    let by_prompt = json!({"input_prompt": "how to use reverb in mixing"});
    let by_file =
        json!({"input_prompt": "audio analysis", "optionally_filename": "effect_chain.ts"});
    for (args, tag) in [
        (&by_prompt, "user:how to use reverb in mixing"),
        (&by_file, "file:effect_chain.ts"),
    ] {
        assert_eq!(
            cache_status(&call(args)),
            "codette-cache; fwd=uri-miss; stored",
            "{tag}"
        );
        assert!(cache_status(&call(args)).contains("hit"), "{tag}");
        assert!(
            wait_until(Duration::from_secs(5), || !scan().is_empty()),
            "never stored in Redis"
        );
        purge(tag);
        assert_eq!(scan(), "", "{tag}: still in Redis");
        assert_eq!(
            cache_status(&call(args)),
            "codette-cache; fwd=uri-miss; stored",
            "{tag}: still in memory"
        );
        // Let the refill land in Redis before the next case scans it.
        assert!(wait_until(Duration::from_secs(5), || !scan().is_empty()));
        purge(tag);
    }
    // A call that does not say its prompt is not kept: no purge could find it.
    let unreadable = call(&json!({"input_prompt": 42}));
    assert_eq!(cache_status(&unreadable), "codette-cache; fwd=bypass");
}

/// Concurrent misses of one user's call share one upstream call (`collapsed`); another
/// user's identical call does not join it.
#[test]
fn concurrent_misses_collapse_per_scope() {
    let s = setup(false);
    s.rest.set_delay(Duration::from_millis(400));
    let before = s.rest.calls_to("my_notes");
    let statuses: Vec<(String, String)> = std::thread::scope(|scope| {
        let calls: Vec<_> = ["user-a", "user-a", "user-a", "user-a", "user-b"]
            .into_iter()
            .map(|user| {
                let s = &s;
                scope.spawn(move || {
                    let r = s.via_daemon("my_notes", &json!({}), &user_token(user));
                    (user.to_owned(), cache_status(&r))
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    s.rest.set_delay(Duration::ZERO);
    assert_eq!(s.rest.calls_to("my_notes") - before, 2, "{statuses:?}");
    // The first user-a call asked upstream; the others joined it (or, had one come
    // after it ended, found its entry).
    let joined = |st: &str| st.ends_with("; collapsed") || st.contains("; hit");
    let user_a: Vec<&str> = statuses
        .iter()
        .filter(|(u, _)| u == "user-a")
        .map(|(_, st)| st.as_str())
        .collect();
    assert_eq!(
        user_a.iter().filter(|st| joined(st)).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        user_a.iter().any(|st| st.ends_with("; collapsed")),
        "{statuses:?}"
    );
    let b = statuses.iter().find(|(u, _)| u == "user-b").unwrap();
    assert_eq!(b.1, "codette-cache; fwd=uri-miss; stored", "{statuses:?}");
}
