//! Lifecycle: SIGHUP reload, SIGTERM drain, check-config and start-up without Redis.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Answer, ask, ask_ok, asking_while, connect_refused, stats, wait_log};
use crate::common::{
    ADMIN_TOKEN, API_KEY, Daemon, Postgrest, TestPostgres, admin_section, cache_section, free_port,
    log_section, memory_tier, redis_tier, sample_origin,
};
use crate::{CONTEXT, MIB, REVERB, STATUS, config, memory, poll, run, supabase};

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
        ("[cache]\nrefresh_ahead = 1.5\n", "cache.refresh_ahead"),
        ("[cache]\nrefresh_ahead = -0.1\n", "cache.refresh_ahead"),
        (
            "[invalidation.postgres]\nurl = \"nowhere\"\n",
            "CODETTE_CACHE_INVALIDATION__POSTGRES__URL",
        ),
        (
            "[invalidation.postgres]\nurl = \"postgres://127.0.0.1/db\"\nchannel = \"a;b\"\n",
            "invalidation.postgres.channel",
        ),
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
