//! Secrets and keys: no secret reaches a client or the log, and clients cannot choose
//! raw Redis keys.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::SHORT_TIMEOUT_MS;
use crate::admin::admin;
use crate::common::{
    self, Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section, free_port,
    log_section, memory_tier, redis_tier, sample_origin, supabase_origin,
};
use crate::raw_http::{
    Raw, Response, assert_context, assert_error, assert_still_serving, call, get, is_context_key,
    key_of, percent_encode, post, request,
};

// ---------------------------------------------------------------------------------------
// Secrets and keys
// ---------------------------------------------------------------------------------------

/// A redis-server that requires a password (TestRedis has none).
struct PasswordRedis {
    port: u16,
    password: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PasswordRedis {
    fn start(password: &str) -> PasswordRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--requirepass", password])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = PasswordRedis {
            port,
            password: password.to_owned(),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--no-auth-warning", "-a", &self.password])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/codette/cache/status` until the redis tier reports connected and the
/// invalidation subscription is up.
fn wait_redis_connected(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(port, "/codette/cache/status").json();
        // The invalidation subscription too: when it comes up it empties the memory
        // tier (it may have missed messages), which would turn a hit into a miss.
        if v["cache_backends"]["redis_cache"] == "connected"
            && v["invalidation"]["subscribed"] == true
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis tier never connected and subscribed: {v}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls redis `KEYS *` until `want` holds; returns the last answer.
fn wait_keys(keys: impl Fn() -> Vec<String>, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = keys();
        if want(&now) || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's `--config` file, read from its command line.
fn config_path_of(daemon: &Daemon) -> std::path::PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.pid())).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--config")
        .expect("--config in the daemon's command line");
    args[at + 1].clone().into()
}

/// Admin token, Supabase key and Redis password appear in no response, log line or check-config.
#[test]
fn secrets_never_leak() {
    const ADMIN: &str = "adm1n-S3CRET-b7e4c1";
    const API_KEY: &str = "supa-S3CRET-key-9f02d6";
    const REDIS_PW: &str = "redis-S3CRET-pw-3a8e51";
    let redis = PasswordRedis::start(REDIS_PW);
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let config = [
        format!("[server]\nheader_read_timeout_ms = {SHORT_TIMEOUT_MS}\n\n"),
        log_section("debug"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(
            &format!("redis://:{REDIS_PW}@127.0.0.1:{}/0", redis.port),
            500,
            300,
        ),
        supabase_origin(&rest.url(), API_KEY, 2_000),
        admin_section(ADMIN),
    ]
    .concat();
    let mut daemon = Daemon::start(&config);
    let port = daemon.port();
    // Connected proves the password was used; answers from the gateway prove the key was.
    wait_redis_connected(port);

    let mut seen = String::new();
    let mut record = |r: Response| {
        seen.push_str(&r.raw());
        seen.push('\n');
        r
    };
    // The product, a miss then a hit, GET and POST, through the gateway.
    let first = record(get(port, "/codette/context?message=reverb"));
    assert_eq!(assert_context(&first)["cache"]["source"], "origin");
    assert_eq!(
        assert_context(&record(get(port, "/codette/context?message=reverb")))["cache"]["hit"],
        true
    );
    assert_context(&record(post(
        port,
        "/codette/context",
        br#"{"message": "compression", "filename": "mix.ts"}"#,
    )));
    assert!(rest.calls() >= 2, "the gateway was not called");
    let stored = wait_keys(
        || {
            redis
                .cli(&["KEYS", "*"])
                .lines()
                .map(str::to_owned)
                .collect()
        },
        |k| k.contains(&key_of("reverb", None)),
    );
    assert!(
        stored.contains(&key_of("reverb", None)),
        "not written to the password-protected redis: {stored:?}"
    );

    // Every kind of bad input.
    for body in [
        &b"{\"message\": "[..],
        br#"{"message": 42}"#,
        br#"{}"#,
        br#"{"message": "a\u0000"}"#,
        br#"{"message": "  "}"#,
        b"{\"message\": \"\xff\"}",
    ] {
        record(post(port, "/codette/context", body));
    }
    let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(9_000));
    record(post(port, "/codette/context", long.as_bytes()));
    for path in [
        "/codette/context",
        "/codette/context?message=",
        "/nowhere",
        "/codette/cache/clear",
    ] {
        record(get(port, path));
    }
    record(call(
        port,
        &request("DELETE", "/codette/context", &[], None),
    ));
    {
        let mut conn = Raw::connect(port);
        conn.send(
            b"POST /codette/context HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n{",
        );
        record(conn.expect_response());
    }
    {
        let mut conn = Raw::connect(port);
        conn.send(b"POST /codette/context HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{");
        record(conn.expect_response());
    }
    // Admin: missing, wrong, and the right token.
    for bearer in [None, Some("wrong-token"), Some(&ADMIN[..ADMIN.len() - 1])] {
        record(admin(port, "/codette/cache/clear", bearer, b""));
    }
    assert_eq!(
        record(admin(
            port,
            "/codette/cache/invalidate",
            Some(ADMIN),
            br#"{"message": "compression", "filename": "mix.ts"}"#
        ))
        .status,
        200
    );
    // Origin failures: an error status, then a refused key never configured.
    rest.set_fail_status(Some(500));
    let failed = record(get(port, "/codette/context?message=origin%20failure"));
    assert_error(&failed, 502, "origin_error");
    rest.set_fail_status(Some(401));
    assert_error(
        &record(get(port, "/codette/context?message=refused")),
        502,
        "origin_error",
    );
    rest.set_fail_status(None);
    // Observability.
    for path in [
        "/metrics",
        "/codette/cache/stats",
        "/codette/cache/metrics",
        "/codette/analytics/dashboard",
        "/codette/cache/status",
        "/readyz",
        "/healthz",
    ] {
        let response = record(get(port, path));
        assert_eq!(response.status, 200, "{path}: {}", response.raw());
    }
    assert_eq!(
        record(admin(port, "/codette/cache/clear", Some(ADMIN), b"")).status,
        200
    );

    // check-config on the very file the daemon runs with, with a clean environment.
    let out = Command::new(env!("CARGO_BIN_EXE_codette-cache"))
        .arg("check-config")
        .arg("--config")
        .arg(config_path_of(&daemon))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run check-config");
    assert!(out.status.success(), "check-config failed: {out:?}");
    let check = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        check.matches("<redacted>").count() >= 3,
        "check-config did not show the secrets redacted:\n{check}"
    );

    let logs = daemon.logs();
    assert!(logs.contains("DEBUG"), "debug logging is not on:\n{logs}");
    for secret in [ADMIN, API_KEY, REDIS_PW] {
        assert!(!seen.contains(secret), "{secret} in a response:\n{seen}");
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
        assert!(
            !check.contains(secret),
            "{secret} in check-config:\n{check}"
        );
    }
    assert_still_serving(&mut daemon);
}

/// Key-like messages map to md5 keys; invalidating one removes exactly that key and no other.
#[test]
fn clients_cannot_choose_raw_redis_keys() {
    let redis = TestRedis::start();
    let config = [
        format!("[server]\nheader_read_timeout_ms = {SHORT_TIMEOUT_MS}\n\n"),
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(&redis.url(), 500, 300),
        sample_origin(),
        admin_section(common::ADMIN_TOKEN),
    ]
    .concat();
    let mut daemon = Daemon::start(&config);
    let port = daemon.port();
    wait_redis_connected(port);

    let hostile = [
        "context:abc",
        "*",
        "context:*",
        "KEYS *",
        "\r\nFLUSHALL\r\n",
        "*3\r\n$3\r\nDEL\r\n",
        "../../etc/passwd",
        "context:367ac8be2a4e9fccd1f5aa007d810371",
    ];
    let mut expected = Vec::new();
    for (i, m) in hostile.iter().enumerate() {
        let filename = (i % 2 == 1).then_some("*");
        let key = key_of(m, filename);
        let query = match filename {
            Some(f) => format!(
                "/codette/context?message={}&filename={}",
                percent_encode(m),
                percent_encode(f)
            ),
            None => format!("/codette/context?message={}", percent_encode(m)),
        };
        let by_get = assert_context(&get(port, &query));
        assert_eq!(by_get["cache"]["key"], key, "{m:?}");
        let body = serde_json::to_vec(&json!({"message": m, "filename": filename})).unwrap();
        let by_post = assert_context(&post(port, "/codette/context", &body));
        assert_eq!(by_post["cache"]["key"], key, "{m:?}");
        expected.push(key);
    }
    expected.sort();
    // The fence's own keys (`codette-cache:…`) name hashes or context keys, never
    // client text; the values are the md5 keys alone.
    let redis_keys = || {
        let mut keys: Vec<String> = Vec::new();
        for k in redis.cmd(&["KEYS", "*"]).lines().filter(|k| !k.is_empty()) {
            match k.strip_prefix("codette-cache:") {
                Some(fence) => {
                    let hex = |h: &str| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit());
                    let ok = fence == "v:all"
                        || fence.strip_prefix("t:").is_some_and(hex)
                        || fence.strip_prefix("v:t:").is_some_and(hex)
                        || fence.strip_prefix("v:k:").is_some_and(is_context_key);
                    assert!(ok, "unexpected fence key {k:?}");
                }
                None => keys.push(k.to_owned()),
            }
        }
        keys.sort();
        keys
    };
    let keys = wait_keys(redis_keys, |k| k == expected.as_slice());
    assert_eq!(keys, expected, "redis holds other keys than the md5 ones");
    assert!(keys.iter().all(|k| is_context_key(k)), "{keys:?}");

    // Invalidate "*": exactly md5("*:*") goes, nothing else.
    let response = admin(
        port,
        "/codette/cache/invalidate",
        Some(common::ADMIN_TOKEN),
        br#"{"message": "*", "filename": "*"}"#,
    );
    assert_eq!(response.status, 200, "{}", response.raw());
    let gone = key_of("*", Some("*"));
    assert_eq!(response.json()["key"], gone);
    let left = redis_keys();
    let mut want: Vec<String> = expected.iter().filter(|k| **k != gone).cloned().collect();
    want.sort();
    assert_eq!(left, want, "invalidate removed more (or less) than one key");
    let again = assert_context(&get(port, "/codette/context?message=context%3Aabc"));
    assert_eq!(
        again["cache"]["hit"], true,
        "other entries were lost: {again}"
    );
    assert_still_serving(&mut daemon);
}
