//! The daemon as a Supabase proxy, in front of the PostgREST-shaped gateway on real
//! PostgreSQL, asked over plain HTTP as supabase-js would: the set-up the proxy tests
//! through the daemon share (`daemon_caching`, `daemon_passthrough`, `through_daemon`).

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

use crate::common::postgrest::{JWT_SECRET, anon_key};
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
    setup_with_env(introspect, &[])
}

/// [`setup`] with extra environment variables for the daemon.
pub fn setup_with_env(introspect: bool, env: &[(&str, &str)]) -> Setup {
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
    let daemon = Daemon::start_with_env(&config, env);
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

    pub fn via_daemon(&self, function: &str, args: &Value, token: &str) -> Response {
        self.rpc(&self.daemon.url(""), function, args, token)
    }

    pub fn direct(&self, function: &str, args: &Value, token: &str) -> Response {
        self.rpc(&self.rest.url(), function, args, token)
    }
}

pub fn cache_status(r: &Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
