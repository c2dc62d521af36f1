//! The daemon as a Supabase proxy, in front of the PostgREST-shaped gateway on real
//! PostgreSQL, asked over plain HTTP as supabase-js would: what is cached, for whom,
//! under which key, and what passes through untouched.

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::common::postgrest::{JWT_SECRET, anon_key, sign_jwt_with, unix_now, user_token};
use crate::common::{
    ADMIN_TOKEN, API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section,
    log_section, memory_tier, redis_tier, supabase_origin, toml_str,
};

/// The proxy's sections: the gateway's JWT secret and the test schema's functions.
fn proxy_section(introspect_url: Option<&str>, functions: &[(&str, &str)]) -> String {
    let mut out = String::from("[proxy]\n");
    if let Some(url) = introspect_url {
        out.push_str(&format!("introspect_url = {}\n", toml_str(url)));
    }
    out.push_str(&format!(
        "\n[proxy.jwt]\nsecret = {}\n\n",
        toml_str(JWT_SECRET)
    ));
    for (name, scope) in functions {
        out.push_str(&format!(
            "[[proxy.functions]]\nname = {}\nttl_secs = 300\nscope = {}\n\n",
            toml_str(name),
            toml_str(scope)
        ));
    }
    out
}

const FUNCTIONS: &[(&str, &str)] = &[
    ("get_codette_context", "shared"),
    ("my_notes", "user"),
    ("fail_always", "shared"),
    ("random_pick", "shared"),
];

pub struct Setup {
    _pg: TestPostgres,
    pub rest: Postgrest,
    pub redis: TestRedis,
    pub daemon: Daemon,
    pub http: Client,
}

/// A PostgreSQL, the gateway, a Redis and a daemon (memory and Redis tiers, the
/// supabase origin and the proxy on the gateway), with `[proxy] introspect_url` or not.
pub fn setup(introspect: bool) -> Setup {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let redis = TestRedis::start();
    let url = pg.url();
    let config = [
        log_section("info,codette_cache=debug"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(&redis.url(), 250, 300),
        supabase_origin(&rest.url(), API_KEY, 2_000),
        admin_section(ADMIN_TOKEN),
        proxy_section(introspect.then_some(url.as_str()), FUNCTIONS),
    ]
    .concat();
    let daemon = Daemon::start(&config);
    // A subscription that comes up empties the memory tier (it may have missed
    // invalidations): wait for it, so it cannot empty it under a test's feet.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status: Value = reqwest::blocking::get(daemon.url("/codette/cache/status"))
            .and_then(Response::json)
            .unwrap_or_default();
        if status["invalidation"]["subscribed"] == true
            && status["cache_backends"]["redis_cache"] == "connected"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never subscribed:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Setup {
        _pg: pg,
        rest,
        redis,
        daemon,
        http: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

impl Setup {
    /// An RPC as supabase-js makes it: POST JSON with `apikey` and a bearer token.
    fn rpc(&self, base: &str, function: &str, args: &Value, token: &str) -> Response {
        self.http
            .post(format!("{base}/rest/v1/rpc/{function}"))
            .header("apikey", anon_key())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(args.to_string())
            .send()
            .unwrap()
    }

    fn via_daemon(&self, function: &str, args: &Value, token: &str) -> Response {
        self.rpc(&self.daemon.url(""), function, args, token)
    }

    fn direct(&self, function: &str, args: &Value, token: &str) -> Response {
        self.rpc(&self.rest.url(), function, args, token)
    }
}

fn cache_status(r: &Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

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
    assert!(
        s.redis.cmd(&["EXISTS", key]).trim() == "1",
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
/// is forwarded without the cache; the same call as GET and POST share one entry.
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
    let get = s
        .http
        .get(s.daemon.url("/rest/v1/rpc/my_notes"))
        .header("apikey", anon_key())
        .header("authorization", format!("Bearer {token}"))
        .send()
        .unwrap();
    assert!(
        cache_status(&get).starts_with("codette-cache; hit"),
        "{}",
        cache_status(&get)
    );
    assert_eq!(s.rest.calls_to("my_notes"), 2, "the rollback and one miss");
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

/// Tables, auth and unlisted functions pass through unchanged; realtime gets a 501 that
/// says where to go.
#[test]
fn other_paths_pass_through() {
    let s = setup(false);
    for path in ["/rest/v1/codette?select=*", "/auth/v1/health"] {
        let via = s
            .http
            .get(s.daemon.url(path))
            .header("apikey", anon_key())
            .send()
            .unwrap();
        let direct = s
            .http
            .get(format!("{}{path}", s.rest.url()))
            .header("apikey", anon_key())
            .send()
            .unwrap();
        assert_eq!(via.status(), direct.status(), "{path}");
        for h in ["content-type", "content-range"] {
            assert_eq!(via.headers().get(h), direct.headers().get(h), "{path} {h}");
        }
        assert!(via.headers().get("cache-status").is_none());
        assert_eq!(via.bytes().unwrap(), direct.bytes().unwrap(), "{path}");
    }
    let unlisted = s
        .http
        .post(s.daemon.url("/rest/v1/rpc/no_such_function"))
        .header("apikey", anon_key())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(unlisted.status(), 404);
    let realtime = s
        .http
        .get(s.daemon.url("/realtime/v1/websocket"))
        .send()
        .unwrap();
    assert_eq!(realtime.status(), 501);
    let body: Value = realtime.json().unwrap();
    assert_eq!(body["error"]["code"], "realtime_not_proxied");
    let metrics = s
        .http
        .get(s.daemon.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"codette_cache_proxy_requests_total{function="other",result="passthrough"} 3"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("proxy_requests"))
            .collect::<Vec<_>>()
            .join("\n")
    );
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

/// Pass-through bodies are not held to the daemon's own request limit
/// (`max_body_bytes`, 64 KiB): an 8 MiB upload and download cross it byte for byte.
#[test]
fn large_bodies_pass_through() {
    use sha2::Digest;
    let s = setup(false);
    let size = 8 * 1024 * 1024;
    let upload = crate::common::postgrest::pattern_bytes(size);
    let expected: String = sha2::Sha256::digest(upload.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = s
        .http
        .post(s.daemon.url("/storage/v1/object/songs/mix.wav"))
        .header("apikey", anon_key())
        .header("content-type", "application/octet-stream")
        .body(upload.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["size"], size);
    assert_eq!(answer["sha256"], expected);
    let download = s
        .http
        .get(s.daemon.url(&format!(
            "/storage/v1/object/public/songs/mix.wav?bytes={size}"
        )))
        .header("apikey", anon_key())
        .send()
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(
        download.bytes().unwrap() == upload.as_bytes(),
        "the same bytes back"
    );
}

/// A miss asks the upstream with the client's credentials but not its connection's
/// headers, and without `Accept-Encoding` (a stored body must suit every client).
#[test]
fn a_miss_sends_the_call_not_the_connection() {
    let s = setup(false);
    let token = user_token("user-a");
    let r = s
        .http
        .post(s.daemon.url("/rest/v1/rpc/my_notes"))
        .header("apikey", anon_key())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(cache_status(&r), "codette-cache; fwd=uri-miss; stored");
    let sent = s.rest.last_request().unwrap();
    assert_eq!(sent.path, "/rest/v1/rpc/my_notes");
    assert_eq!(sent.header("accept-encoding"), None);
    assert_eq!(sent.header("x-hop"), None);
    let host = s.rest.url().trim_start_matches("http://").to_owned();
    assert_eq!(sent.header("host"), Some(host.as_str()));
    assert_eq!(sent.bearer(), Some(token.as_str()));
}
