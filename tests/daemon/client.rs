//! Client side: asking the daemon, the original's keys, and what stats, Redis and logs show.

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::common::{Daemon, TestPostgres, TestRedis};
use crate::{CONTEXT, STATS, STATUS, poll};

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// One context answer as the client saw it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) async fn from(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, body }
    }

    pub(crate) fn source(&self) -> &str {
        self.body["cache"]["source"].as_str().unwrap_or("")
    }

    pub(crate) fn hit(&self) -> Option<bool> {
        self.body["cache"]["hit"].as_bool()
    }

    pub(crate) fn key(&self) -> &str {
        self.body["cache"]["key"].as_str().unwrap_or("")
    }

    pub(crate) fn context(&self) -> &Value {
        &self.body["context"]
    }

    pub(crate) fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// `POST /codette/context` with this JSON body.
pub(crate) async fn ask_body(d: &Daemon, body: &Value) -> Answer {
    let resp = d.client().post(d.url(CONTEXT)).json(body).send().await;
    let resp = resp.unwrap_or_else(|e| panic!("POST {body}: {e}\n{}", d.logs()));
    Answer::from(resp).await
}

/// `POST /codette/context {"message": ...}`.
pub(crate) async fn ask(d: &Daemon, message: &str) -> Answer {
    ask_body(d, &json!({ "message": message })).await
}

/// Like `ask`, insisting on a 200.
pub(crate) async fn ask_ok(d: &Daemon, message: &str) -> Answer {
    let answer = ask(d, message).await;
    assert_eq!(answer.status, 200, "{message:?}: {answer:?}\n{}", d.logs());
    answer
}

/// `GET /codette/context?message=...[&filename=...]`.
pub(crate) async fn ask_get(d: &Daemon, message: &str, filename: Option<&str>) -> Answer {
    let mut query = vec![("message", message)];
    query.extend(filename.map(|f| ("filename", f)));
    let resp = d.client().get(d.url(CONTEXT)).query(&query).send().await;
    Answer::from(resp.expect("GET context")).await
}

/// The key the original server used: `context:` + md5(message + ":" + (filename or "none")).
pub(crate) fn original_key(message: &str, filename: Option<&str>) -> String {
    let digest = Md5::digest(format!("{message}:{}", filename.unwrap_or("none")));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("context:{hex}")
}

/// The function's answer straight from PostgreSQL, as text (what the gateway returns).
pub(crate) fn origin_text(pg: &TestPostgres, message: &str, filename: Option<&str>) -> String {
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let filename = filename.map_or("NULL".to_owned(), literal);
    pg.execute(&format!(
        "SELECT public.get_codette_context({}, {filename})::text",
        literal(message)
    ))
}

pub(crate) async fn stats(d: &Daemon) -> Value {
    let (status, v) = d.get_json(STATS).await;
    assert_eq!(status, 200, "{v}");
    v
}

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// `cache_backends.redis_cache` of `/codette/cache/status`.
pub(crate) async fn redis_state(d: &Daemon) -> String {
    let (_, v) = d.get_json(STATUS).await;
    v["cache_backends"]["redis_cache"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits up to `limit` for `/readyz` to answer 200.
pub(crate) async fn wait_ready(d: &Daemon, limit: Duration) -> bool {
    poll(limit, async || {
        (d.get_json("/readyz").await.0 == 200).then_some(())
    })
    .await
    .is_some()
}

/// Waits up to `limit` for `/readyz` to answer 503 (it keeps an origin check for a
/// second), and gives its body.
pub(crate) async fn wait_not_ready(d: &Daemon, limit: Duration) -> Option<Value> {
    poll(limit, async || {
        let (status, body) = d.get_json("/readyz").await;
        (status == 503).then_some(body)
    })
    .await
}

/// Waits up to `limit` for the redis tier to report `want`.
/// "connected" also waits for a live invalidation subscription when the broadcast is on:
/// until then the memory tier is not read, and it is emptied when the subscription
/// comes up.
pub(crate) async fn wait_redis_state(d: &Daemon, want: &str, limit: Duration) -> bool {
    poll(limit, async || {
        let (_, v) = d.get_json(STATUS).await;
        let heard = &v["invalidation"];
        let hearing =
            want != "connected" || heard["broadcast"] != true || heard["subscribed"] == true;
        (v["cache_backends"]["redis_cache"] == want && hearing).then_some(())
    })
    .await
    .is_some()
}

/// Waits up to 2 s for `key` to hold a value in Redis (our writes land after the reply).
pub(crate) async fn redis_value(redis: &TestRedis, key: &str) -> String {
    poll(Duration::from_secs(2), async || {
        Some(redis.cmd(&["GET", key])).filter(|v| !v.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("{key} never reached Redis"))
}

pub(crate) fn redis_keys(redis: &TestRedis, pattern: &str) -> Vec<String> {
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
pub(crate) async fn wait_log(d: &Daemon, needle: &str, times: usize, limit: Duration) -> bool {
    poll(limit, async || {
        (d.logs().matches(needle).count() >= times).then_some(())
    })
    .await
    .is_some()
}

/// Asks `message` over and over while `during` runs (and a little after); the statuses.
pub(crate) async fn asking_while<T>(
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

pub(crate) fn connect_refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

/// Asserts the exact response shape: `{"context", "cache": {hit, source, key, age_seconds}, "timestamp"}`.
pub(crate) fn assert_shape(a: &Answer) {
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
