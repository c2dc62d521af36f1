//! What another writer leaves in the shared Redis, and keys the original layout confuses:
//! a value is served only if the daemon would have stored it, and two different requests
//! never share an answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::process::wait_until;
use crate::common::{
    Daemon, TestRedis, cache_section, log_section, memory_tier, redis_tier, sample_origin,
};
use crate::raw_http::{assert_context, get, key_of, percent_encode};

/// Memory then Redis (1 s timeout: the large-value case reads megabytes) before the sample origin.
fn memory_redis(redis: &TestRedis) -> String {
    [
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * 1024 * 1024, 300),
        redis_tier(&redis.url(), 1_000, 300),
        sample_origin(),
    ]
    .concat()
}

/// `SET key value` with any bytes, over the Redis protocol (redis-cli takes only text).
fn set_raw(redis: &TestRedis, key: &str, value: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect to redis");
    let mut command = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes();
    command.extend_from_slice(value);
    command.extend_from_slice(b"\r\n");
    stream.write_all(&command).expect("write to redis");
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).expect("read from redis");
    assert_eq!(&reply, b"+OK\r\n");
}

fn metric(daemon: &Daemon, reason: &str) -> u64 {
    let text = get(daemon.port(), "/metrics").text();
    let series =
        format!(r#"codette_cache_tier_rejected_values_total{{reason="{reason}",tier="redis"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

fn ask(daemon: &Daemon, message: &str) -> serde_json::Value {
    assert_context(&get(
        daemon.port(),
        &format!("/codette/context?message={}", percent_encode(message)),
    ))
}

/// Invalid UTF-8, `null`, `{}`, `42`, `[1,2,3]`, a misshapen object and a value over
/// `max_response_bytes` in Redis are misses (the origin answers), counted by reason,
/// and never copied into the memory tier.
#[test]
fn unusable_redis_values_are_misses() {
    let redis = TestRedis::start();
    let daemon = Daemon::start(&memory_redis(&redis));
    // The memory tier is read once the invalidation subscription is live.
    let live = wait_until(Duration::from_secs(5), || {
        let status = get(daemon.port(), "/codette/cache/status").text();
        serde_json::from_str::<serde_json::Value>(&status)
            .is_ok_and(|s| s["invalidation"]["subscribed"] == true)
    });
    assert!(live, "the daemon never subscribed");
    let huge = format!(
        r#"{{"snippets":[],"file":null,"chat_history":[],"pad":"{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let cases: [(&str, &[u8], &str); 8] = [
        (
            "invalid utf8 value",
            b"{\"snippets\":[],\"file\":null,\"chat_history\":[],\"x\":\"\xff\xfe\"}",
            "invalid",
        ),
        ("not json value", b"<html>", "invalid"),
        ("null value", b"null", "not_storable"),
        ("empty object value", b"{}", "not_storable"),
        ("number value", b"42", "not_storable"),
        ("array value", b"[1,2,3]", "not_storable"),
        (
            "misshapen value",
            br#"{"snippets":{},"file":null,"chat_history":[]}"#,
            "not_storable",
        ),
        ("huge value", huge.as_bytes(), "too_large"),
    ];
    for (message, value, reason) in cases {
        let before = metric(&daemon, reason);
        set_raw(&redis, &key_of(message, None), value);
        let first = ask(&daemon, message);
        assert_eq!(first["cache"]["source"], "origin", "{message}: {first}");
        assert!(
            first["context"]["snippets"].is_array(),
            "{message}: {first}"
        );
        assert_eq!(
            metric(&daemon, reason),
            before + 1,
            "{message}: {reason} not counted"
        );
        // The origin's answer replaced it everywhere; the memory tier never saw the bad one.
        let second = ask(&daemon, message);
        assert_eq!(second["cache"]["source"], "memory", "{message}");
        assert_eq!(second["context"], first["context"], "{message}");
        // The shared tier is written after the answer is sent (chain/call.rs).
        let stored = || redis.cmd(&["GET", &key_of(message, None)]);
        let replaced = wait_until(Duration::from_secs(5), || {
            serde_json::from_str::<serde_json::Value>(&stored())
                .ok()
                .as_ref()
                == Some(&first["context"])
        });
        assert!(replaced, "{message}: Redis holds {}", stored());
    }
    // A well-formed value another writer stored is still a hit, byte for byte.
    let legacy = r#"{"snippets": [{"filename": "legacy.md", "snippet": "x"}], "file": null, "chat_history": []}"#;
    set_raw(&redis, &key_of("legacy value", None), legacy.as_bytes());
    let hit = get(daemon.port(), "/codette/context?message=legacy+value").text();
    assert!(
        hit.starts_with(&format!("{{\"context\":{legacy},")),
        "{hit}"
    );
}

/// `message=reverb:x&filename=mixing_guide.md` and `message=reverb&filename=x:mixing_guide.md`
/// hash the same text in the original layout, and so do `filename=none` and no
/// filename: each gets its own key and its own answer.
#[test]
fn pairs_the_original_layout_confuses_never_share_an_answer() {
    let daemon = Daemon::start(
        &[
            log_section("info"),
            cache_section(300),
            memory_tier(10_000, 64 * 1024 * 1024, 300),
            sample_origin(),
        ]
        .concat(),
    );
    let query = |m: &str, f: Option<&str>| match f {
        Some(f) => format!(
            "/codette/context?message={}&filename={}",
            percent_encode(m),
            percent_encode(f)
        ),
        None => format!("/codette/context?message={}", percent_encode(m)),
    };
    let pairs: [[(&str, Option<&str>); 2]; 3] = [
        [
            ("reverb:x", Some("mixing_guide.md")),
            ("reverb", Some("x:mixing_guide.md")),
        ],
        [("reverb", Some("none")), ("reverb", None)],
        [("a:b", None), ("a", Some("b:none"))],
    ];
    for [(m1, f1), (m2, f2)] in pairs {
        let first = assert_context(&get(daemon.port(), &query(m1, f1)));
        let second = assert_context(&get(daemon.port(), &query(m2, f2)));
        assert_ne!(
            first["cache"]["key"], second["cache"]["key"],
            "{m1:?} {f1:?}"
        );
        assert_eq!(
            second["cache"]["source"], "origin",
            "{m2:?} {f2:?} was served {m1:?}'s answer"
        );
        assert_eq!(first["cache"]["key"], key_of(m1, f1));
        assert_eq!(second["cache"]["key"], key_of(m2, f2));
    }
    // Unambiguous pairs keep the original's keys (shared with the Python server).
    let original = assert_context(&get(
        daemon.port(),
        &query("audio analysis", Some("effect_chain.ts")),
    ));
    assert_eq!(
        original["cache"]["key"],
        "context:7d3cdfad59cc1144595ae297f6a5c951"
    );
}

/// With Redis the only tier every request judges what it read: a value another writer
/// changes in place (same length, no longer JSON) under a key just served is refused,
/// and a good value put back is served again. (Verdicts are kept per thread for the
/// bytes they were given to, `chain/verdict_memo.rs`; this is what that must not break.)
#[test]
fn a_value_changed_under_a_served_key_is_judged_again() {
    let redis = TestRedis::start();
    let config = [
        log_section("info"),
        cache_section(300),
        redis_tier(&redis.url(), 1_000, 300),
        sample_origin(),
    ]
    .concat();
    let daemon = Daemon::start(&config);
    let connected = wait_until(Duration::from_secs(5), || {
        get(daemon.port(), "/codette/cache/status")
            .text()
            .contains("\"connected\"")
    });
    assert!(connected, "the daemon never reached Redis");
    let message = "changed under the key";
    let key = key_of(message, None);
    let good =
        r#"{"snippets": [{"filename": "a.md", "snippet": "x"}], "file": null, "chat_history": []}"#;
    let bad = format!("{}]", &good[..good.len() - 1]);
    assert_eq!(bad.len(), good.len());
    let good_json: serde_json::Value = serde_json::from_str(good).expect("JSON");

    set_raw(&redis, &key, good.as_bytes());
    for _ in 0..3 {
        let hit = ask(&daemon, message);
        assert_eq!(hit["cache"]["source"], "redis", "{hit}");
        assert_eq!(hit["context"], good_json);
    }
    let before = metric(&daemon, "invalid");
    set_raw(&redis, &key, bad.as_bytes());
    let refused = ask(&daemon, message);
    assert_eq!(refused["cache"]["source"], "origin", "{refused}");
    assert_ne!(refused["context"], good_json);
    assert_eq!(metric(&daemon, "invalid"), before + 1);

    // The origin's answer reaches Redis after the reply: put the good value back after it.
    let stored = wait_until(Duration::from_secs(2), || redis.cmd(&["GET", &key]) != bad);
    assert!(stored, "the origin's answer never reached Redis");
    set_raw(&redis, &key, good.as_bytes());
    let back = ask(&daemon, message);
    assert_eq!(back["cache"]["source"], "redis", "{back}");
    assert_eq!(back["context"], good_json);
}
