//! Faults against the real servers: Redis killed, frozen, password-protected or TLS-only;
//! an origin that is slow, failing, malformed, huge or gone; PostgreSQL restarted; the
//! daemon signalled (SIGTERM, SIGHUP) under load; and a bounded soak. Every figure a test
//! asserts on is measured from the client side and printed (see them with --nocapture).
//!
//! The machine is small (2 cores, shared): timing margins are generous but each one is
//! well below what the failure it guards against would take. The soak runs alone (it
//! takes the write side of `MACHINE`); the other tests may run side by side.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use codette_cache::key::Key;
use common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, cache_section, log_section, memory_tier,
    postgres_origin, redis_tier, sample_origin, toml_str,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const CONTEXT: &str = "/codette/context";

// ---------------------------------------------------------------------------------------
// Running tests
// ---------------------------------------------------------------------------------------

/// Read: an ordinary test. Write: the soak, which needs the machine to itself.
static MACHINE: RwLock<()> = RwLock::new(());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a test body beside the other ordinary tests. The body runs on the test's own
/// thread (block_on), so its blocking calls (stopping servers) never stall client tasks.
fn shared<F: Future>(body: F) -> F::Output {
    let _machine = MACHINE.read().unwrap_or_else(PoisonError::into_inner);
    runtime().block_on(body)
}

/// Runs a test body with no other test of this file running.
fn exclusive<F: Future>(body: F) -> F::Output {
    let _machine = MACHINE.write().unwrap_or_else(PoisonError::into_inner);
    runtime().block_on(body)
}

/// Polls `probe` every 10 ms until it gives a value; the value and when it came.
async fn poll<T>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<(T, Instant)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some((value, Instant::now()));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

fn cache(ttl_secs: u64, stale_if_error_secs: u64, stale_while_revalidate_secs: u64) -> String {
    format!(
        "[cache]\nttl_secs = {ttl_secs}\nnormalize_queries = false\n\
         stale_if_error_secs = {stale_if_error_secs}\n\
         stale_while_revalidate_secs = {stale_while_revalidate_secs}\n\n"
    )
}

fn supabase(rest: &Postgrest, timeout_ms: u64, max_response_bytes: u64) -> String {
    format!(
        "[origin]\ntype = \"supabase\"\nurl = {}\napi_key = {}\n\
         function = \"get_codette_context\"\ntimeout_ms = {timeout_ms}\n\
         max_response_bytes = {max_response_bytes}\n\n",
        toml_str(&rest.url()),
        toml_str(API_KEY)
    )
}

fn grace_section(secs: u64) -> String {
    format!("[server]\nshutdown_grace_secs = {secs}\n\n")
}

/// Memory (its own TTL) then Redis (timeout 50 ms) in front of the sample origin.
fn memory_redis_sample(redis_url: &str, memory_ttl_secs: u64) -> String {
    [
        log_section("info"),
        cache_section(300),
        memory_tier(10_000, 64 * MIB, memory_ttl_secs),
        redis_tier(redis_url, 50, 300),
        sample_origin(),
    ]
    .concat()
}

/// Memory only, in front of the gateway.
fn memory_supabase(rest: &Postgrest, cache_part: &str, memory_ttl: u64, timeout_ms: u64) -> String {
    [
        log_section("info"),
        cache_part.to_owned(),
        memory_tier(10_000, 64 * MIB, memory_ttl),
        supabase(rest, timeout_ms, 4 * MIB),
    ]
    .concat()
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// One context answer as the client saw it.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Value,
    elapsed: Duration,
}

impl Reply {
    fn source(&self) -> &str {
        self.body["cache"]["source"].as_str().unwrap_or("")
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// `POST /codette/context {"message": ...}` to the daemon at `url` (its context URL).
async fn ask_url(client: &reqwest::Client, url: &str, message: &str) -> Result<Reply, String> {
    let started = Instant::now();
    let resp = client
        .post(url)
        .json(&json!({ "message": message }))
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

async fn ask(daemon: &Daemon, message: &str) -> Reply {
    ask_url(daemon.client(), &daemon.url(CONTEXT), message)
        .await
        .unwrap_or_else(|e| panic!("{message:?}: {e}\n{}", daemon.logs()))
}

/// Asks and insists on a 200; returns the reply.
async fn ask_ok(daemon: &Daemon, message: &str) -> Reply {
    let reply = ask(daemon, message).await;
    assert_eq!(
        reply.status,
        200,
        "{message:?}: {reply:?}\n{}",
        daemon.logs()
    );
    reply
}

/// `n` concurrent asks of the same message; replies in completion order with their end.
async fn burst(daemon: &Daemon, message: &str, n: usize) -> Vec<(Reply, Instant)> {
    let url = daemon.url(CONTEXT);
    let client = client();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, message) = (client.clone(), url.clone(), message.to_owned());
            tokio::spawn(async move {
                let reply = ask_url(&client, &url, &message).await;
                (reply, Instant::now())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        let (reply, at) = task.await.expect("burst task");
        out.push((reply.unwrap_or_else(|e| panic!("burst: {e}")), at));
    }
    out
}

/// One request of a load task.
struct Record {
    started: Instant,
    elapsed: Duration,
    /// The `cache.source` of a 200, or what went wrong.
    outcome: Result<String, String>,
}

/// Client tasks looping on context requests until `finish`.
struct Load {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
}

impl Load {
    /// `tasks` loops; request `i` of task `t` asks `message(t, i)`.
    fn start(
        url: String,
        tasks: usize,
        message: impl Fn(usize, u64) -> String + Send + Sync + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let message = Arc::new(message);
        let client = client();
        let tasks = (0..tasks)
            .map(|t| {
                let (stop, completed, message) = (stop.clone(), completed.clone(), message.clone());
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut records = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = match ask_url(&client, &url, &message(t, i)).await {
                            Ok(r) if r.status == 200 => Ok(r.source().to_owned()),
                            Ok(r) => Err(format!("{} {}", r.status, r.body)),
                            Err(e) => Err(e),
                        };
                        records.push(Record {
                            started,
                            elapsed: started.elapsed(),
                            outcome,
                        });
                        completed.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    records
                })
            })
            .collect();
        Load {
            stop,
            completed,
            tasks,
        }
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have completed (at most `limit`).
    async fn wait_for(&self, n: u64, limit: Duration) {
        let target = self.completed() + n;
        poll(limit, async || (self.completed() >= target).then_some(())).await;
    }

    async fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load task"));
        }
        all
    }
}

/// Answers by source, and the failures.
fn tally(records: &[Record]) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut sources = BTreeMap::new();
    let mut failures = Vec::new();
    for r in records {
        match &r.outcome {
            Ok(source) => *sources.entry(source.clone()).or_insert(0) += 1,
            Err(e) => failures.push(e.clone()),
        }
    }
    (sources, failures)
}

// ---------------------------------------------------------------------------------------
// Daemon side
// ---------------------------------------------------------------------------------------

/// The value of one Prometheus series (`name{labels}` exactly as exposed).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

async fn metrics_text(daemon: &Daemon) -> String {
    let (status, text) = daemon.get_text("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

async fn stats(daemon: &Daemon) -> Value {
    let (status, v) = daemon.get_json("/codette/cache/stats").await;
    assert_eq!(status, 200, "{v}");
    v
}

fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {v}"))
}

/// The redis tier as `/codette/cache/status` and `codette_cache_tier_up` report it.
async fn redis_state(daemon: &Daemon) -> (String, Option<f64>) {
    let (_, status) = daemon.get_json("/codette/cache/status").await;
    let up = metric(
        &metrics_text(daemon).await,
        "codette_cache_tier_up{tier=\"redis\"}",
    );
    let state = status["cache_backends"]["redis_cache"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    (state, up)
}

/// Waits until both report the redis tier as `want` ("connected" / "unavailable").
async fn wait_redis(daemon: &Daemon, want: &str, limit: Duration) -> Option<Instant> {
    let up = if want == "connected" { 1.0 } else { 0.0 };
    poll(limit, async || {
        let (state, gauge) = redis_state(daemon).await;
        (state == want && gauge == Some(up)).then_some(())
    })
    .await
    .map(|(_, at)| at)
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn key(message: &str) -> String {
    Key::derive(message, None, false).as_str().to_owned()
}

/// Waits up to 2 s for the answer to `message` to be stored in Redis (our writes to
/// remote tiers land after the reply).
async fn reaches_redis(redis: &TestRedis, message: &str) -> bool {
    poll(Duration::from_secs(2), async || {
        (redis.cmd(&["EXISTS", &key(message)]) == "1").then_some(())
    })
    .await
    .is_some()
}

/// A context stored straight into Redis, marked so a hit on it is recognisable.
fn seeded_context(i: usize) -> String {
    json!({"snippets": [], "file": null, "chat_history": [], "seeded": i}).to_string()
}

/// Stores `seeded_context(i)` under the key of `message(i)` for i in 0..n.
fn seed_redis(redis: &TestRedis, n: usize, message: impl Fn(usize) -> String) {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|i| (key(&message(i)), seeded_context(i)))
        .collect();
    let mut args = vec!["MSET"];
    for (k, v) in &pairs {
        args.push(k);
        args.push(v);
    }
    assert_eq!(redis.cmd(&args), "OK");
}

/// Asks seeded messages one after another (each a memory miss) until one is a Redis hit;
/// returns when, and how many were asked.
async fn first_redis_hit(
    daemon: &Daemon,
    n: usize,
    message: impl Fn(usize) -> String,
    limit: Duration,
) -> Option<(usize, Instant)> {
    let mut i = 0;
    poll(limit, async || {
        if i >= n {
            return None;
        }
        let reply = ask_ok(daemon, &message(i)).await;
        i += 1;
        (reply.source() == "redis").then(|| {
            assert_eq!(reply.body["context"]["seeded"], json!(i - 1), "{reply:?}");
            i
        })
    })
    .await
}

/// The daemon's `--config` file, from its command line.
fn config_path(daemon: &Daemon) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.pid())).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args
        .iter()
        .position(|a| *a == b"--config")
        .expect("--config");
    PathBuf::from(String::from_utf8_lossy(args[at + 1]).into_owned())
}

/// Replaces the config file in one step (the daemon never reads half a file).
fn write_config(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

// ---------------------------------------------------------------------------------------
// Raw HTTP for the drain tests (keep-alive connections the test controls)
// ---------------------------------------------------------------------------------------

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Reads one response with a Content-Length; its status.
fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("read response head");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).expect("read response body");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

/// A connection that made one keep-alive request, read its answer and now sits idle.
fn idle_keep_alive(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(addr(port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut stream), 200);
    stream
}

/// Sends one context request on its own connection (Connection: close) from a thread;
/// the thread gives the status line and body, or the error, and when it ended.
fn slow_request(
    port: u16,
    message: &str,
) -> std::thread::JoinHandle<(Result<String, String>, Instant)> {
    let body = json!({ "message": message }).to_string();
    std::thread::spawn(move || {
        let exchange = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect(addr(port))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            let request = format!(
                "POST {CONTEXT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes())?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        let result = exchange().map_err(|e| e.to_string());
        (result, Instant::now())
    })
}

/// Waits until connecting to `port` is refused (the listener is closed).
fn wait_refused(port: u16, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(Instant::now()),
            _ => {}
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// 1. Redis stopped under load
// ---------------------------------------------------------------------------------------

/// Redis killed under 8 looping clients: no request fails, the tier shows down within 1 s and serves again within 2 s of its return.
#[test]
fn redis_stopped_under_load_fails_no_request_and_comes_back() {
    shared(async {
        let mut redis = TestRedis::start();
        // Memory entries live 1 s, so the load keeps reading through to Redis.
        let daemon = Daemon::start(&memory_redis_sample(&redis.url(), 1));
        wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never connected");

        let load = Load::start(daemon.url(CONTEXT), 8, |t, i| {
            format!("reverb under redis loss {}", (t as u64 * 7 + i) % 40)
        });
        // A wave of expiries answered by Redis.
        let serving = poll(Duration::from_secs(6), async || {
            let hits = num(
                &stats(&daemon).await,
                "/metrics/counters/hits_by_tier/redis",
            );
            (hits >= 20).then_some(())
        })
        .await;
        assert!(serving.is_some(), "the load never hit Redis");

        redis.stop();
        let stopped = Instant::now();
        let down = wait_redis(&daemon, "unavailable", Duration::from_secs(5))
            .await
            .expect("redis tier never reported down");
        let down_after = down - stopped;
        load.wait_for(300, Duration::from_secs(2)).await;

        redis.start_again();
        let returned = Instant::now();
        let up = wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never came back");
        let up_after = up.saturating_duration_since(returned);
        // The restarted Redis is empty: seed answers and find one served from it.
        let seeded = |i| format!("seeded after the restart {i}");
        seed_redis(&redis, 200, seeded);
        let (asked, hit) = first_redis_hit(&daemon, 200, seeded, Duration::from_secs(4))
            .await
            .expect("no Redis hit after Redis returned");
        let hit_after = hit - returned;

        let records = load.finish().await;
        let (sources, failures) = tally(&records);
        println!(
            "redis stop: {} requests {sources:?}; tier down after {:.0} ms; \
             status connected {:.0} ms and first redis hit {:.0} ms ({asked} asked) after restart",
            records.len(),
            ms(down_after),
            ms(up_after),
            ms(hit_after)
        );
        assert!(
            failures.is_empty(),
            "{} of {} requests failed, e.g. {:?}",
            failures.len(),
            records.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(
            sources.get("redis").copied().unwrap_or(0) > 0,
            "{sources:?}"
        );
        assert!(
            down_after < Duration::from_secs(1),
            "down after {down_after:?}"
        );
        assert!(
            up_after < Duration::from_secs(2),
            "connected after {up_after:?}"
        );
        assert!(
            hit_after < Duration::from_secs(2),
            "redis hit after {hit_after:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 2. Redis frozen
// ---------------------------------------------------------------------------------------

/// Redis frozen (SIGSTOP): misses take < 300 ms, the open circuit skips Redis, status routes stay fast, resume reconnects within 1 s.
#[test]
fn paused_redis_costs_one_timeout_then_is_skipped() {
    shared(async {
        let redis = TestRedis::start();
        let daemon = Daemon::start(&memory_redis_sample(&redis.url(), 300));
        wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never connected");
        ask_ok(&daemon, "reverb before the pause").await;

        redis.pause();
        let mut latencies = Vec::new();
        for i in 0..40 {
            let reply = ask_ok(&daemon, &format!("reverb while redis is frozen {i}")).await;
            assert_eq!(reply.source(), "origin", "{reply:?}");
            latencies.push(reply.elapsed);
        }
        let first = latencies[0];
        let slowest = latencies.iter().max().copied().unwrap_or_default();
        let mut after: Vec<Duration> = latencies[1..].to_vec();
        after.sort();
        let p50 = after[after.len() / 2];

        let mut route_times = Vec::new();
        for path in [
            "/metrics",
            "/codette/cache/status",
            "/codette/cache/stats",
            "/codette/cache/metrics",
            "/codette/analytics/dashboard",
            "/healthz",
            "/readyz",
        ] {
            for _ in 0..3 {
                let started = Instant::now();
                let (status, _) = daemon.get_text(path).await;
                route_times.push((path, started.elapsed()));
                assert_eq!(status, 200, "{path}");
            }
        }
        let (state, gauge) = redis_state(&daemon).await;
        route_times.sort_by_key(|(_, d)| *d);
        let route_p50 = route_times[route_times.len() / 2].1;
        let (slow_path, route_max) = route_times[route_times.len() - 1];

        redis.resume();
        let resumed = Instant::now();
        let up = wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never reconnected after resume");
        let up_after = up - resumed;
        let seeded = |i| format!("seeded after the resume {i}");
        seed_redis(&redis, 20, seeded);
        first_redis_hit(&daemon, 20, seeded, Duration::from_secs(2))
            .await
            .expect("no Redis hit after resume");

        println!(
            "redis paused: first miss {:.1} ms, slowest {:.1} ms, later misses p50 {:.2} ms; \
             status routes p50 {:.2} ms, max {:.1} ms ({slow_path}); connected {:.0} ms after resume",
            ms(first),
            ms(slowest),
            ms(p50),
            ms(route_p50),
            ms(route_max),
            ms(up_after)
        );
        assert!(
            slowest < Duration::from_millis(300),
            "a miss took {slowest:?}"
        );
        assert!(
            p50 < Duration::from_millis(25),
            "misses with the circuit open: p50 {p50:?}"
        );
        assert_eq!((state.as_str(), gauge), ("unavailable", Some(0.0)));
        assert!(
            route_p50 < Duration::from_millis(50),
            "status routes p50 {route_p50:?}"
        );
        assert!(
            route_max < Duration::from_millis(300),
            "{slow_path} took {route_max:?}"
        );
        assert!(
            up_after < Duration::from_secs(1),
            "connected after {up_after:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 3. Origin faults
// ---------------------------------------------------------------------------------------

/// An origin slower than its 300 ms timeout is a 504 within timeout + 100 ms.
#[test]
fn slow_origin_is_504_within_its_timeout() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(300, 0, 0), 300, 300));
        rest.set_delay(Duration::from_secs(2));
        let mut times = Vec::new();
        for i in 0..3 {
            let reply = ask(&daemon, &format!("reverb from a slow origin {i}")).await;
            assert_eq!(reply.status, 504, "{reply:?}");
            assert_eq!(reply.error_code(), "origin_timeout", "{reply:?}");
            assert!(reply.error_message().contains("300ms"), "{reply:?}");
            times.push(reply.elapsed);
        }
        println!(
            "slow origin: 504 after {:?} ms",
            times.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
        );
        for t in times {
            assert!(
                t >= Duration::from_millis(290),
                "504 before the timeout: {t:?}"
            );
            assert!(t < Duration::from_millis(400), "504 after {t:?}");
        }
    });
}

/// Stale-if-error: after expiry an origin 5xx, malformed answer or refused connection serves the last value as "stale", counted in stats.
#[test]
fn failing_origin_serves_stale_within_stale_if_error() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(1, 60, 0), 1, 2_000));
        let messages = [
            "reverb then a 5xx",
            "reverb then garbage",
            "reverb then nothing",
        ];
        let mut fresh = Vec::new();
        for m in messages {
            let reply = ask_ok(&daemon, m).await;
            assert_eq!(reply.source(), "origin");
            fresh.push(reply.body["context"].clone());
        }

        // Memory hits until the 1 s TTL runs out; then the origin is tried and fails.
        let after_expiry = async |message: &str| {
            poll(Duration::from_secs(4), async || {
                let reply = ask(&daemon, message).await;
                (reply.source() != "memory").then_some(reply)
            })
            .await
            .expect("the entry never expired")
            .0
        };
        let mut ages = Vec::new();
        let mut rest = Some(rest);
        for (i, message) in messages.iter().enumerate() {
            let calls = match (i, &rest) {
                (0, Some(rest)) => {
                    rest.set_fail_status(Some(500));
                    rest.calls()
                }
                (1, Some(rest)) => {
                    rest.set_fail_status(None);
                    rest.set_malformed(true);
                    rest.calls()
                }
                _ => {
                    // Refused: the gateway is gone.
                    drop(rest.take());
                    0
                }
            };
            let reply = after_expiry(message).await;
            assert_eq!(reply.status, 200, "{message}: {reply:?}");
            assert_eq!(reply.source(), "stale", "{message}: {reply:?}");
            assert_eq!(reply.body["context"], fresh[i], "{message}");
            if let Some(rest) = &rest {
                assert_eq!(rest.calls(), calls + 1, "{message}: origin not tried");
            }
            let age = reply.body["cache"]["age_seconds"].as_f64().unwrap_or(0.0);
            assert!(age >= 1.0, "{reply:?}");
            ages.push(age);
        }
        let stale_seen = messages.len() as u64;

        let s = stats(&daemon).await;
        println!(
            "stale-if-error: {stale_seen} stale answers, ages {ages:?} s; counters {}",
            s["metrics"]["counters"]
        );
        assert_eq!(num(&s, "/metrics/counters/stale_served"), stale_seen);
        assert_eq!(num(&s, "/metrics/counters/errors"), 0);
        assert_eq!(num(&s, "/metrics/counters/origin_calls/error"), stale_seen);
    });
}

/// Without stale-if-error (0, or past its window) an origin 5xx, malformed answer or refused connection is a 502 with a clear JSON message.
#[test]
fn failing_origin_without_stale_is_502() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let none = Daemon::start(&memory_supabase(&rest, &cache(1, 0, 0), 1, 2_000));
        let short = Daemon::start(&memory_supabase(&rest, &cache(1, 1, 0), 1, 2_000));
        let message = "reverb, then the origin breaks";
        ask_ok(&none, message).await;
        ask_ok(&short, message).await;
        let fetched = Instant::now();
        rest.set_fail_status(Some(500));

        let (reply, _) = poll(Duration::from_secs(4), async || {
            let reply = ask(&none, message).await;
            (reply.source() != "memory").then_some(reply)
        })
        .await
        .expect("the entry never expired");
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error", "{reply:?}");
        assert!(reply.error_message().contains("500"), "{reply:?}");
        assert!(
            reply.error_message().contains("injected failure"),
            "{reply:?}"
        );
        let status_msg = reply.error_message().to_owned();

        // stale_if_error = 1: stale for a second past the TTL, then 502.
        // What the short-grace daemon answered, in order, without repeats.
        let mut seen: Vec<String> = Vec::new();
        let (reply, at) = poll(Duration::from_secs(5), async || {
            let reply = ask(&short, message).await;
            let what = match reply.status {
                200 => reply.source().to_owned(),
                status => status.to_string(),
            };
            if seen.last() != Some(&what) {
                seen.push(what);
            }
            (reply.status != 200).then_some(reply)
        })
        .await
        .expect("stale answers never ended");
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error");
        // (Memory hits first unless the TTL already ran out while `none` was polled.)
        let order = seen.strip_prefix(&["memory".to_owned()]).unwrap_or(&seen);
        assert_eq!(order, ["stale", "502"], "stale_if_error = 1 s");
        let grace_end = at - fetched;
        assert!(
            grace_end >= Duration::from_secs(2),
            "502 already after {grace_end:?}"
        );

        rest.set_fail_status(None);
        rest.set_malformed(true);
        let reply = ask(&none, "reverb from a garbled origin").await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert!(reply.error_message().contains("unusable"), "{reply:?}");
        let malformed_msg = reply.error_message().to_owned();

        drop(rest);
        let reply = ask(&none, "reverb from a vanished origin").await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.error_code(), "origin_error");
        assert!(
            reply.error_message().contains("cannot reach the origin"),
            "{reply:?}"
        );
        assert!(
            reply.error_message().contains("Connection refused"),
            "no cause: {reply:?}"
        );
        println!(
            "502 messages: status: {status_msg:?}; malformed: {malformed_msg:?}; refused: {:?}; \
             stale_if_error=1 gave 502 {:.0} ms after the fetch",
            reply.error_message(),
            ms(grace_end)
        );
        let s = stats(&short).await;
        assert!(num(&s, "/metrics/counters/stale_served") >= 1, "{s}");
    });
}

/// An origin answer bigger than max_response_bytes (32 MiB vs 1 MiB) is a 502, and the daemon's memory does not take it in.
#[test]
fn huge_origin_answer_is_502_not_oom() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            log_section("info"),
            cache(300, 0, 0),
            memory_tier(10_000, 64 * MIB, 300),
            supabase(&rest, 5_000, MIB),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        ask_ok(&daemon, "reverb warm-up").await;
        let before = rss_bytes(daemon.pid());
        rest.set_huge_body(Some(32 * MIB as usize));
        for i in 0..3 {
            let reply = ask(&daemon, &format!("reverb, hugely {i}")).await;
            assert_eq!(reply.status, 502, "{reply:?}");
            assert_eq!(reply.error_code(), "origin_error");
            assert!(
                reply.error_message().contains("exceeds 1048576 bytes"),
                "{reply:?}"
            );
        }
        let after = rss_bytes(daemon.pid());
        rest.set_huge_body(None);
        ask_ok(&daemon, "reverb, normally again").await;
        println!(
            "huge answer: RSS {:.1} MiB before, {:.1} MiB after three 32 MiB answers",
            before as f64 / MIB as f64,
            after as f64 / MIB as f64
        );
        assert!(
            after < before + 8 * MIB,
            "RSS grew from {before} to {after}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 4. Stale-while-revalidate
// ---------------------------------------------------------------------------------------

/// Stale-while-revalidate: 10 concurrent requests after expiry get the stale answer at once and cause exactly one origin call; then memory serves the fresh one.
#[test]
fn stale_while_revalidate_refreshes_once() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(1, 0, 30), 1, 5_000));
        let message = "reverb, revalidated";
        let first = ask_ok(&daemon, message).await;
        let fetched = Instant::now();
        assert_eq!(first.source(), "origin");
        let calls = rest.calls();
        // A slow refresh, so "at once" means something.
        rest.set_delay(Duration::from_millis(800));
        tokio::time::sleep_until((fetched + Duration::from_millis(1100)).into()).await;

        let replies = burst(&daemon, message, 10).await;
        let slowest = replies
            .iter()
            .map(|(r, _)| r.elapsed)
            .max()
            .unwrap_or_default();
        for (reply, _) in &replies {
            assert_eq!(reply.status, 200, "{reply:?}");
            assert_eq!(reply.source(), "stale", "{reply:?}");
            assert_eq!(reply.body["context"], first.body["context"]);
        }
        let (fresh, at) = poll(Duration::from_secs(4), async || {
            let reply = ask_ok(&daemon, message).await;
            (reply.source() == "memory").then_some(reply)
        })
        .await
        .expect("the refreshed answer never reached memory");
        let age = fresh.body["cache"]["age_seconds"].as_f64().unwrap_or(9.0);
        // Settle: nothing else may call the origin for this key.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refreshes = rest.calls() - calls;
        println!(
            "stale-while-revalidate: 10 stale answers, slowest {:.1} ms; fresh from memory \
             {:.0} ms after the burst (age {age} s); origin calls for the refresh: {refreshes}",
            ms(slowest),
            ms(at - replies[0].1)
        );
        assert!(
            slowest < Duration::from_millis(300),
            "a stale answer took {slowest:?}"
        );
        assert_eq!(refreshes, 1, "background refreshes");
        assert!(age < 1.0, "{fresh:?}");
        assert_eq!(fresh.body["context"], first.body["context"]);
    });
}

// ---------------------------------------------------------------------------------------
// 5. Single flight failures
// ---------------------------------------------------------------------------------------

/// One burst of 10 concurrent asks of `message`: all get `status`, with one origin call.
async fn failing_burst(
    daemon: &Daemon,
    rest: &Postgrest,
    message: &str,
    status: u16,
) -> (Duration, Duration) {
    let calls = rest.calls();
    let coalesced = num(&stats(daemon).await, "/metrics/counters/coalesced_waits");
    let started = Instant::now();
    let replies = burst(daemon, message, 10).await;
    let first = &replies[0].0;
    for (reply, _) in &replies {
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.body, first.body, "waiters got different errors");
    }
    assert_eq!(rest.calls(), calls + 1, "origin calls for one burst");
    let waited = num(&stats(daemon).await, "/metrics/counters/coalesced_waits") - coalesced;
    assert_eq!(waited, 9, "coalesced waiters");
    let ends: Vec<Instant> = replies.iter().map(|(_, at)| *at).collect();
    let last = ends.iter().max().copied().unwrap_or(started);
    let spread = last - ends.iter().min().copied().unwrap_or(started);
    (last - started, spread)
}

/// A failing (502) or timed-out (504) single flight gives all 10 waiters the same error at once; the next request calls the origin again and succeeds once it is fixed.
#[test]
fn failed_single_flight_fails_every_waiter_and_leaves_no_stuck_key() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let daemon = Daemon::start(&memory_supabase(&rest, &cache(300, 0, 0), 300, 1_000));

        // The leader's call fails: 503 after 600 ms.
        rest.set_fail_status(Some(503));
        rest.set_delay(Duration::from_millis(600));
        let message = "reverb, all together, failing";
        let (failed_after, failed_spread) = failing_burst(&daemon, &rest, message, 502).await;
        rest.set_delay(Duration::ZERO);
        let calls = rest.calls();
        assert_eq!(ask(&daemon, message).await.status, 502);
        assert_eq!(rest.calls(), calls + 1, "the key was not tried again");
        rest.set_fail_status(None);
        assert_eq!(ask_ok(&daemon, message).await.source(), "origin");
        assert_eq!(rest.calls(), calls + 2);

        // The leader's call times out: 1 s limit, 5 s delay.
        rest.set_delay(Duration::from_secs(5));
        let message = "reverb, all together, waiting";
        let (timeout_after, timeout_spread) = failing_burst(&daemon, &rest, message, 504).await;
        rest.set_delay(Duration::ZERO);
        let calls = rest.calls();
        assert_eq!(ask_ok(&daemon, message).await.source(), "origin");
        assert_eq!(rest.calls(), calls + 1, "the key was not tried again");

        println!(
            "single flight: 10 x 502 by {:.0} ms (spread {:.1} ms); 10 x 504 by {:.0} ms \
             (spread {:.1} ms); one origin call each; retried after both",
            ms(failed_after),
            ms(failed_spread),
            ms(timeout_after),
            ms(timeout_spread)
        );
        assert!(
            failed_after < Duration::from_millis(1_000),
            "502s after {failed_after:?}"
        );
        assert!(
            timeout_after < Duration::from_millis(1_200),
            "504s after {timeout_after:?}"
        );
        assert!(
            failed_spread < Duration::from_millis(200),
            "{failed_spread:?}"
        );
        assert!(
            timeout_spread < Duration::from_millis(200),
            "{timeout_spread:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 6. PostgreSQL restarted
// ---------------------------------------------------------------------------------------

/// PostgreSQL restarted under the postgres origin: no request outlives the origin timeout and requests succeed again right after.
#[test]
fn postgres_restart_replaces_pooled_connections() {
    shared(async {
        let mut pg = TestPostgres::start();
        let config = [
            log_section("info"),
            cache(300, 0, 0),
            memory_tier(100_000, 64 * MIB, 300),
            postgres_origin(&pg.url(), 4, 1_000),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        // Every request a miss: each one needs the database.
        let load = Load::start(daemon.url(CONTEXT), 4, |t, i| {
            format!("reverb over a restart {t} {i}")
        });
        load.wait_for(100, Duration::from_secs(5)).await;

        let stopping = Instant::now();
        pg.restart();
        let back = Instant::now();
        load.wait_for(200, Duration::from_secs(5)).await;
        let records = load.finish().await;

        let (sources, failures) = tally(&records);
        let slowest = records.iter().map(|r| r.elapsed).max().unwrap_or_default();
        let first_ok = records
            .iter()
            .filter(|r| r.started >= back && r.outcome.is_ok())
            .map(|r| r.started)
            .min()
            .expect("no success after the restart");
        let late_failures: Vec<&String> = records
            .iter()
            .filter(|r| r.started >= back + Duration::from_millis(500))
            .filter_map(|r| r.outcome.as_ref().err())
            .collect();
        let after_back = records.iter().filter(|r| r.started >= back).count();
        println!(
            "postgres restart: took {:.0} ms; {} requests {sources:?}, {} failed (during the \
             restart), slowest {:.0} ms; first success {:.0} ms after it was back, then {after_back} requests",
            ms(back - stopping),
            records.len(),
            failures.len(),
            ms(slowest),
            ms(first_ok - back)
        );
        if let Some(f) = failures.first() {
            println!("  e.g. {f}");
        }
        assert!(
            slowest < Duration::from_millis(1_500),
            "a request took {slowest:?}"
        );
        assert!(first_ok - back < Duration::from_secs(2));
        assert!(
            late_failures.is_empty(),
            "failures after recovery: {late_failures:?}"
        );
        assert!(
            after_back >= 200,
            "too few requests after the restart: {after_back}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 7. SIGTERM
// ---------------------------------------------------------------------------------------

/// SIGTERM with 8 slow requests in flight and 20 idle keep-alives: every request completes, new connections are refused, idle ones closed at once, exit 0 within the grace.
#[test]
fn sigterm_drains_in_flight_and_closes_idle_keep_alives() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            grace_section(10),
            memory_supabase(&rest, &cache(300, 0, 0), 300, 10_000),
        ]
        .concat();
        let mut daemon = Daemon::start(&config);
        let port = daemon.port();
        let mut idle: Vec<TcpStream> = (0..20).map(|_| idle_keep_alive(port)).collect();

        rest.set_delay(Duration::from_millis(2_000));
        let sent = Instant::now();
        const IN_FLIGHT: u64 = 8;
        let slow: Vec<_> = (0..IN_FLIGHT)
            .map(|i| slow_request(port, &format!("reverb while draining {i}")))
            .collect();
        poll(Duration::from_secs(5), async || {
            (rest.calls() == IN_FLIGHT).then_some(())
        })
        .await
        .expect("the slow requests never all reached the origin");

        daemon.signal("TERM");
        let signalled = Instant::now();
        let refused =
            wait_refused(port, Duration::from_secs(2)).expect("new connections still accepted");
        let refused_while_in_flight = !slow.iter().any(|s| s.is_finished());
        let mut closed = 0;
        for stream in &mut idle {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) => closed += 1,
                other => panic!("idle keep-alive not closed: {other:?}"),
            }
        }
        let idle_closed = Instant::now();
        let idle_closed_while_in_flight = !slow.iter().any(|s| s.is_finished());

        let mut answered = signalled;
        for request in slow {
            let (response, at) = request.join().expect("slow request thread");
            let response = response.expect("an in-flight request failed");
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.contains("\"source\":\"origin\""), "{response}");
            answered = answered.max(at);
        }
        let status = daemon.wait_exit(Duration::from_secs(12));
        let exited = Instant::now();
        println!(
            "sigterm: refused new connections {:.0} ms, closed {closed} idle keep-alives {:.0} ms, \
             answered the {IN_FLIGHT} in-flight requests by {:.0} ms after the signal (sent {:.0} ms before it); \
             exit {status:?} {:.0} ms after the signal",
            ms(refused - signalled),
            ms(idle_closed - signalled),
            ms(answered - signalled),
            ms(signalled - sent),
            ms(exited - signalled)
        );
        assert!(
            refused_while_in_flight,
            "refused only after the request ended"
        );
        assert!(refused - signalled < Duration::from_millis(500));
        assert_eq!(closed, 20);
        assert!(
            idle_closed_while_in_flight,
            "idle connections closed only at exit"
        );
        let status =
            status.unwrap_or_else(|| panic!("no exit within the grace:\n{}", daemon.logs()));
        assert!(status.success(), "{status}\n{}", daemon.logs());
        assert!(exited - signalled < Duration::from_secs(10));
        assert!(exited >= answered);
    });
}

/// A second SIGTERM during a long drain (10 s origin delay, 30 s grace) exits at once.
#[test]
fn second_sigterm_exits_at_once() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            grace_section(30),
            memory_supabase(&rest, &cache(300, 0, 0), 300, 20_000),
        ]
        .concat();
        let mut daemon = Daemon::start(&config);
        let port = daemon.port();
        rest.set_delay(Duration::from_secs(10));
        let slow = slow_request(port, "reverb, slowly, during a long drain");
        poll(Duration::from_secs(5), async || {
            (rest.calls() == 1).then_some(())
        })
        .await
        .expect("the slow request never reached the origin");

        daemon.signal("TERM");
        wait_refused(port, Duration::from_secs(2)).expect("not draining");
        assert!(
            daemon.wait_exit(Duration::from_millis(300)).is_none(),
            "exited before the drain"
        );
        daemon.signal("TERM");
        let second = Instant::now();
        let status = daemon.wait_exit(Duration::from_secs(5));
        let took = second.elapsed();
        println!(
            "second sigterm: exit {status:?} {:.0} ms after it",
            ms(took)
        );
        let status = status.unwrap_or_else(|| panic!("still running:\n{}", daemon.logs()));
        assert!(status.success(), "{status}");
        assert!(
            took < Duration::from_secs(1),
            "exit {took:?} after the second SIGTERM"
        );
        let (result, _) = slow.join().expect("slow thread");
        assert!(
            result
                .as_ref()
                .map_or(true, |r| !r.starts_with("HTTP/1.1 200")),
            "the slow request was not cut short: {result:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 8. SIGHUP
// ---------------------------------------------------------------------------------------

fn hup_config(redis_url: &str, ttl_secs: u64) -> String {
    [
        log_section("info"),
        cache(ttl_secs, 0, 0),
        format!(
            "[[tiers]]\ntype = \"memory\"\nmax_entries = 10000\nmax_bytes = {}\n\n",
            64 * MIB
        ),
        format!(
            "[[tiers]]\ntype = \"redis\"\nurl = {}\ntimeout_ms = 50\n\n",
            toml_str(redis_url)
        ),
        sample_origin(),
    ]
    .concat()
}

/// SIGHUP under 8 looping clients: five reloads with new TTLs lose no request; a broken file sets config_last_reload_successful 0 and the old config keeps serving.
#[test]
fn sighup_under_load_loses_nothing_and_survives_a_broken_file() {
    shared(async {
        let redis = TestRedis::start();
        let daemon = Daemon::start(&hup_config(&redis.url(), 300));
        let path = config_path(&daemon);
        let load = Load::start(daemon.url(CONTEXT), 8, |t, i| {
            format!("reverb across reloads {}", (t as u64 * 13 + i) % 60)
        });
        load.wait_for(200, Duration::from_secs(5)).await;

        let mut reload_times = Vec::new();
        for ttl in 301..=305 {
            write_config(&path, &hup_config(&redis.url(), ttl));
            daemon.signal("HUP");
            let sent = Instant::now();
            let (_, at) = poll(Duration::from_secs(3), async || {
                (num(&stats(&daemon).await, "/ttl_seconds") == ttl).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("ttl {ttl} never applied:\n{}", daemon.logs()));
            reload_times.push(ms(at - sent).round());
            load.wait_for(100, Duration::from_secs(2)).await;
        }
        let text = metrics_text(&daemon).await;
        assert_eq!(
            metric(
                &text,
                "codette_cache_config_reloads_total{result=\"success\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            metric(&text, "codette_cache_config_last_reload_successful"),
            Some(1.0)
        );

        write_config(&path, "[cache\nttl_secs = \"not a number\n");
        daemon.signal("HUP");
        let rejected = poll(Duration::from_secs(3), async || {
            let text = metrics_text(&daemon).await;
            (metric(&text, "codette_cache_config_last_reload_successful") == Some(0.0))
                .then_some(text)
        })
        .await;
        let (text, _) =
            rejected.unwrap_or_else(|| panic!("broken config not reported:\n{}", daemon.logs()));
        assert_eq!(
            metric(
                &text,
                "codette_cache_config_reloads_total{result=\"failure\"}"
            ),
            Some(1.0)
        );
        load.wait_for(200, Duration::from_secs(3)).await;
        assert_eq!(
            num(&stats(&daemon).await, "/ttl_seconds"),
            305,
            "the old config was not kept"
        );
        let reply = ask_ok(&daemon, "reverb after a broken reload").await;
        assert_eq!(reply.source(), "origin");

        let records = load.finish().await;
        let (sources, failures) = tally(&records);
        println!(
            "sighup: {} requests {sources:?} across 5 reloads (applied after {reload_times:?} ms) \
             and one rejected file",
            records.len()
        );
        assert!(
            failures.is_empty(),
            "{} failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(
            daemon.logs().contains("config reload rejected"),
            "{}",
            daemon.logs()
        );
    });
}

// ---------------------------------------------------------------------------------------
// 9. Soak
// ---------------------------------------------------------------------------------------

/// Counts one soak client saw.
#[derive(Default, Debug, Clone, Copy)]
struct SoakCounts {
    memory: u64,
    redis: u64,
    origin: u64,
    other: u64,
    errors: u64,
}

impl SoakCounts {
    fn add(&mut self, o: SoakCounts) {
        self.memory += o.memory;
        self.redis += o.redis;
        self.origin += o.origin;
        self.other += o.other;
        self.errors += o.errors;
    }

    fn total(&self) -> u64 {
        self.memory + self.redis + self.origin + self.other + self.errors
    }
}

/// The `cache.source` of a context response, read from the end of the bytes.
fn source_of(body: &[u8]) -> Option<&str> {
    const MARK: &[u8] = b"\"source\":\"";
    let at = body.windows(MARK.len()).rposition(|w| w == MARK)? + MARK.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[at..at + len]).ok()
}

/// Soak: 256 clients, Zipf keys over 100,000 messages, memory bound 16 MiB, Redis on: no errors, bounded RSS, server hit counts equal the clients'.
#[test]
fn soak_zipf_load_is_bounded_and_counted_exactly() {
    exclusive(async {
        const CLIENTS: usize = 256;
        const MESSAGES: f64 = 100_000.0;
        const RUN: Duration = Duration::from_secs(15);
        const HEADROOM: u64 = 24 * MIB;
        let redis = TestRedis::start();
        let config = [
            log_section("warn"),
            cache(300, 0, 0),
            format!(
                "[[tiers]]\ntype = \"memory\"\nmax_entries = 1000000\nmax_bytes = {}\n\n",
                16 * MIB
            ),
            format!(
                "[[tiers]]\ntype = \"redis\"\nurl = {}\ntimeout_ms = 50\n\n",
                toml_str(&redis.url())
            ),
            sample_origin(),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never connected");
        let pid = daemon.pid();
        let baseline = rss_bytes(pid);

        let url = daemon.url(CONTEXT);
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(CLIENTS)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let started = Instant::now();
        let end = started + RUN;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let zipf = Zipf::new(MESSAGES, 1.0).expect("zipf");
                    let mut rng = SmallRng::seed_from_u64(t as u64);
                    let mut counts = SoakCounts::default();
                    let mut first_error = None;
                    while Instant::now() < end {
                        let k = zipf.sample(&mut rng) as u64;
                        let body = format!("{{\"message\":\"reverb soak question {k}\"}}");
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        let outcome = match sent {
                            Ok(resp) if resp.status() == 200 => {
                                resp.bytes().await.map_err(|e| e.to_string())
                            }
                            Ok(resp) => Err(format!("status {}", resp.status())),
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome.as_deref().map(source_of) {
                            Ok(Some("memory")) => counts.memory += 1,
                            Ok(Some("redis")) => counts.redis += 1,
                            Ok(Some("origin")) => counts.origin += 1,
                            Ok(_) => counts.other += 1,
                            Err(e) => {
                                counts.errors += 1;
                                first_error.get_or_insert_with(|| e.to_owned());
                            }
                        }
                    }
                    (counts, first_error)
                })
            })
            .collect();

        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            while Instant::now() < end {
                peak = peak.max(rss_bytes(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        let mut counts = SoakCounts::default();
        let mut first_error = None;
        for task in tasks {
            let (c, e) = task.await.expect("soak client");
            counts.add(c);
            first_error = first_error.or(e);
        }
        let elapsed = started.elapsed();
        let peak = sampler.await.expect("sampler").max(rss_bytes(pid));

        let s = stats(&daemon).await;
        let (_, m) = daemon.get_json("/codette/cache/metrics").await;
        let held_mb = m["performance_dashboard"]["cache_efficiency"]["estimated_memory_mb"]
            .as_f64()
            .unwrap_or(-1.0);
        let (state, _) = redis_state(&daemon).await;
        let mib = |b: u64| b as f64 / MIB as f64;
        println!(
            "soak: {CLIENTS} clients, {:.1} s, {} requests = {:.0} req/s; {counts:?}; \
             hit rate {:.1}%; memory tier holds {held_mb} MiB, {} entries; redis {state}, \
             {} tier errors counted",
            elapsed.as_secs_f64(),
            counts.total(),
            counts.total() as f64 / elapsed.as_secs_f64(),
            (counts.memory + counts.redis) as f64 * 100.0 / counts.total().max(1) as f64,
            s["entries"],
            metric(
                &metrics_text(&daemon).await,
                "codette_cache_tier_errors_total{op=\"get\",tier=\"redis\"}"
            )
            .unwrap_or(0.0)
        );
        println!(
            "soak RSS: baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB); limit baseline + 16 MiB \
             cache + {:.0} MiB headroom = {:.1} MiB",
            mib(baseline),
            mib(peak),
            mib(peak.saturating_sub(baseline)),
            mib(HEADROOM),
            mib(baseline + 16 * MIB + HEADROOM)
        );
        assert_eq!(counts.errors, 0, "first error: {first_error:?}");
        assert_eq!(counts.other, 0, "answers with another source");
        assert!(
            counts.total() > 10_000,
            "too little load to mean anything: {counts:?}"
        );
        assert_eq!(
            num(&s, "/metrics/hits"),
            counts.memory + counts.redis,
            "{s}"
        );
        assert_eq!(
            num(&s, "/metrics/counters/hits_by_tier/memory"),
            counts.memory,
            "{s}"
        );
        assert_eq!(
            num(&s, "/metrics/counters/hits_by_tier/redis"),
            counts.redis,
            "{s}"
        );
        assert_eq!(num(&s, "/metrics/misses"), counts.origin, "{s}");
        assert_eq!(num(&s, "/metrics/counters/errors"), 0, "{s}");
        assert!(held_mb <= 16.0, "memory tier holds {held_mb} MiB");
        assert!(
            peak <= baseline + 16 * MIB + HEADROOM,
            "RSS peak {peak} over the bound"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 10. Redis AUTH and TLS
// ---------------------------------------------------------------------------------------

/// Redis with requirepass: the right password gives Redis writes and hits; a wrong one leaves the tier "unavailable" and requests still succeed; an ACL user (`redis://user:password@`) limited to `context:*` works too.
#[test]
fn redis_password_right_and_wrong() {
    shared(async {
        let redis = TestRedis::start_with_password("s3cret-pass");
        let url = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}/0", redis.port());
        let good = Daemon::start(&memory_redis_sample(&url("s3cret-pass"), 300));
        let bad = Daemon::start(&memory_redis_sample(&url("wrong-pass"), 300));
        let bad_started = Instant::now();
        wait_redis(&good, "connected", Duration::from_secs(5))
            .await
            .expect("the right password never connected");

        let message = "reverb behind a password";
        assert_eq!(ask_ok(&good, message).await.source(), "origin");
        assert!(
            reaches_redis(&redis, message).await,
            "the answer never reached Redis"
        );
        let seeded = |i| format!("seeded behind a password {i}");
        seed_redis(&redis, 5, seeded);
        first_redis_hit(&good, 1, seeded, Duration::from_secs(1))
            .await
            .expect("no Redis hit with the right password");

        // A second of probes (every 100 ms while down) must not have connected.
        let connected = poll(Duration::from_secs(1), async || {
            (redis_state(&bad).await.0 != "unavailable").then_some(())
        })
        .await;
        assert!(connected.is_none(), "the wrong password connected");
        assert!(bad_started.elapsed() >= Duration::from_secs(1));
        let (_, dashboard) = bad.get_json("/codette/analytics/dashboard").await;
        assert_eq!(
            dashboard["analytics"]["cache_infrastructure"]["redis_connected"],
            false
        );
        let reply = ask_ok(&bad, message).await;
        assert_eq!(reply.source(), "origin");
        assert_eq!(
            redis_state(&bad).await,
            ("unavailable".to_owned(), Some(0.0))
        );

        // An ACL user limited to the context:* keys (AUTH user password).
        let acl = [
            "ACL",
            "SETUSER",
            "codette",
            "on",
            ">user-pass",
            "~context:*",
            "+@all",
        ];
        assert_eq!(redis.cmd(&acl), "OK");
        let user_url = format!("redis://codette:user-pass@127.0.0.1:{}/0", redis.port());
        let user = Daemon::start(&memory_redis_sample(&user_url, 300));
        wait_redis(&user, "connected", Duration::from_secs(5))
            .await
            .expect("the ACL user never connected");
        let as_user = "reverb as an acl user";
        assert_eq!(ask_ok(&user, as_user).await.source(), "origin");
        assert!(
            reaches_redis(&redis, as_user).await,
            "the ACL user's answer never reached Redis"
        );
        println!(
            "redis auth: hits with the right password and as an ACL user; wrong password: unavailable, requests served by the origin"
        );
    });
}

/// Redis over TLS (rediss://, CA given by SSL_CERT_FILE): what one daemon stores is a Redis hit for a fresh one; without the CA the tier stays unavailable.
#[test]
fn redis_over_tls() {
    shared(async {
        let redis = TestRedis::start_tls();
        let config = memory_redis_sample(&format!("rediss://127.0.0.1:{}/0", redis.port()), 300);
        let ca = redis.ca_file();
        let ca = ca.to_str().expect("utf-8 path");
        let env = [("SSL_CERT_FILE", ca)];
        // The system roots only: they do not hold the test CA.
        let untrusting = Daemon::start(&config);
        let first = Daemon::start_with_env(&config, &env);
        wait_redis(&first, "connected", Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("TLS redis never connected:\n{}", first.logs()));
        let message = "reverb over TLS";
        let stored = ask_ok(&first, message).await;
        assert_eq!(stored.source(), "origin");
        assert!(
            reaches_redis(&redis, message).await,
            "the answer never reached Redis"
        );
        drop(first);

        let fresh = Daemon::start_with_env(&config, &env);
        wait_redis(&fresh, "connected", Duration::from_secs(5))
            .await
            .expect("TLS redis never connected for the fresh daemon");
        let reply = ask_ok(&fresh, message).await;
        assert_eq!(reply.source(), "redis", "{reply:?}");
        assert_eq!(reply.body["context"], stored.body["context"]);

        // The certificate really is checked: without the CA nothing connects.
        assert_eq!(redis_state(&untrusting).await.0, "unavailable");
        let reply = ask_ok(&untrusting, message).await;
        assert_eq!(reply.source(), "origin");
        println!(
            "redis tls: stored over rediss:// and hit by a fresh daemon; an untrusting daemon stays unavailable"
        );
    });
}
