//! The live dashboard in a real browser: Debian's chromium driven through chromedriver
//! (WebDriver, with fantoccini), against a daemon with a real Redis under bounded
//! traffic. The page must show the same figures as `/codette/cache/metrics` and
//! `/metrics` within one tick, log no console error or CSP violation, pass axe-core's
//! WCAG A/AA rules, fit a 375 px screen, turn the Redis tile down within 2 s of Redis
//! dying (and up again), and keep streaming across a daemon restart.
//!
//! Needs `chromium`, `chromium-driver` (apt) and `tests/browser/node_modules/axe-core`
//! (`npm ci --prefix tests/browser`); `.ci/run` installs all three. Set
//! `CODETTE_CACHE_DASHBOARD_SCREENSHOT=docs/dashboard.png` to save a screenshot.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use common::{Daemon, TestRedis, free_port, memory_tier, redis_tier, sample_origin};

/// chromedriver on a free port, killed on drop.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromedriver (Debian packages chromium and chromium-driver; .ci/run installs them)");
        Self { child, port }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's `se/log`: the browser console, CSP violations included.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type": "browser"}"#.into()))
    }
}

async fn connect(driver: &Chromedriver) -> Client {
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1900"],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Console lines at SEVERE level (errors, CSP violations) since the last call.
async fn severe_logs(client: &Client) -> Vec<String> {
    let logs = client.issue_cmd(BrowserLog).await.expect("browser log");
    logs.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["level"] == "SEVERE")
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn text(client: &Client, id: &str) -> String {
    let v = client
        .execute(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            vec![json!(id)],
        )
        .await
        .expect("read the page");
    v.as_str().unwrap_or_default().to_owned()
}

async fn attr(client: &Client, id: &str, name: &str) -> String {
    let v = client
        .execute(
            "const e = document.getElementById(arguments[0]); return e ? e.dataset[arguments[1]] || '' : '';",
            vec![json!(id), json!(name)],
        )
        .await
        .expect("read the page");
    v.as_str().unwrap_or_default().to_owned()
}

async fn last_frame(client: &Client) -> u64 {
    let v = client
        .execute("return document.body.dataset.lastFrame || '0';", vec![])
        .await
        .expect("read the page");
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A page figure ("1,234") as a number.
async fn figure(client: &Client, id: &str) -> u64 {
    let t = text(client, id).await;
    t.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("#{id} shows {t:?}"))
}

async fn until(limit: Duration, mut ok: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `(requests, hits, misses)` from `/codette/cache/metrics` and from `/metrics`.
async fn api_totals(d: &Daemon) -> ((u64, u64, u64), (u64, u64, u64)) {
    let (_, m) = d.get_json("/codette/cache/metrics").await;
    let p = &m["performance_dashboard"];
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    let seed = (
        n(&p["total_requests"]),
        n(&p["successful_hits"]),
        n(&p["cache_misses"]),
    );
    let text = d.get_text("/metrics").await.1;
    let sum = |result: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("codette_cache_requests_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|x| x as u64)
            .sum()
    };
    let (hits, misses) = (sum("hit"), sum("miss"));
    (seed, (hits + misses, hits, misses))
}

/// About 40 requests a second: repeated questions (memory hits) and every fourth a new
/// one (a miss, which asks Redis too, so its state shows at once).
fn traffic(d: &Daemon, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (client, base) = (d.client().clone(), d.url("/codette/context"));
    tokio::spawn(async move {
        let mut i = 0u64;
        while running.load(Ordering::Relaxed) {
            let message = if i % 4 == 0 {
                format!("new question {i}")
            } else {
                format!("how to use reverb {}", i % 10)
            };
            let _ = client
                .get(&base)
                .query(&[("message", message)])
                .send()
                .await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
}

fn config(redis: &TestRedis) -> String {
    format!(
        "{}{}{}",
        memory_tier(10_000, 64 << 20, 300),
        redis_tier(&redis.url(), 100, 300),
        sample_origin()
    )
}

#[test]
fn the_dashboard_in_chromium() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let axe = std::fs::read_to_string("tests/browser/node_modules/axe-core/axe.min.js")
            .expect("axe-core: run `npm ci --prefix tests/browser` (.ci/run does)");
        let mut redis = TestRedis::start();
        let mut d = Daemon::start(&config(&redis));
        let driver = Chromedriver::start();
        let client = connect(&driver).await;
        let running = Arc::new(AtomicBool::new(true));
        let load = traffic(&d, Arc::clone(&running));

        client.goto(&d.url("/dashboard")).await.expect("open the page");
        let live = until(Duration::from_secs(10), async || {
            attr(&client, "connection", "state").await == "live" && last_frame(&client).await > 0
        });
        assert!(live.await, "no live frame:\n{:?}", severe_logs(&client).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Ok(path) = std::env::var("CODETTE_CACHE_DASHBOARD_SCREENSHOT") {
            // Under load, with a minute of history drawn.
            tokio::time::sleep(Duration::from_secs(60)).await;
            std::fs::write(&path, client.screenshot().await.unwrap()).unwrap();
        }

        // Under traffic, the page trails the routes by at most one tick (plus slack).
        let page = figure(&client, "total-requests").await;
        let ((seed, _, _), (prom, _, _)) = api_totals(&d).await;
        for api in [seed, prom] {
            // ~40 requests a second: one tick is 40; twice that for a slow read.
            assert!(api >= page && api - page <= 80, "page {page}, routes {api}");
        }
        // At rest, the same figures exactly, one tick later.
        running.store(false, Ordering::Relaxed);
        load.await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (seed, prom) = api_totals(&d).await;
        assert_eq!(seed, prom, "/codette/cache/metrics and /metrics disagree");
        let caught_up = until(Duration::from_secs(3), async || {
            let shown = (
                figure(&client, "total-requests").await,
                figure(&client, "total-hits").await,
                figure(&client, "total-misses").await,
            );
            shown == seed
        });
        assert!(caught_up.await, "the page never showed {seed:?}");
        let hit_rate = text(&client, "hit-rate").await;
        assert_eq!(hit_rate, format!("{:.2} %", 100.0 * seed.1 as f64 / seed.0 as f64));
        assert!(!text(&client, "advice").await.contains("Loading"), "no advice shown");

        // No console errors, no CSP violations.
        let severe = severe_logs(&client).await;
        assert!(severe.is_empty(), "console errors: {severe:#?}");

        // axe-core, injected: no WCAG 2.0/2.1 A or AA violation.
        client.execute(&format!("{axe}\nreturn true;"), vec![]).await.expect("inject axe-core");
        let violations = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                    .then(r => done(r.violations.map(v => `${v.id} (${v.impact}): ${v.help}, ${v.nodes.length} nodes`)),
                          e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        assert_eq!(violations, json!([]), "accessibility violations");

        // 375 px wide: nothing wider than the screen.
        client.set_window_size(375, 900).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let widths = client
            .execute("return [document.documentElement.scrollWidth, document.documentElement.clientWidth];", vec![])
            .await
            .unwrap();
        assert!(widths[0].as_u64() <= widths[1].as_u64(), "wider than the screen at 375 px: {widths}");
        client.set_window_size(1280, 1900).await.unwrap();

        // Redis dies: its tile says so within 2 s; back when Redis is.
        let running = Arc::new(AtomicBool::new(true));
        let load = traffic(&d, Arc::clone(&running));
        assert_eq!(attr(&client, "tier-redis", "state").await, "up");
        redis.stop();
        let down = until(Duration::from_secs(2), async || attr(&client, "tier-redis", "state").await == "down");
        assert!(down.await, "the redis tile still says {:?}", text(&client, "tier-redis").await);
        assert!(text(&client, "tier-redis").await.contains("down"));
        redis.start_again();
        let up = until(Duration::from_secs(5), async || attr(&client, "tier-redis", "state").await == "up");
        assert!(up.await, "the redis tile never came back up");

        // The daemon restarts on the same port: the EventSource reconnects and goes on.
        let before = last_frame(&client).await;
        let port = d.port();
        running.store(false, Ordering::Relaxed);
        load.await.unwrap();
        d.signal("TERM");
        assert!(d.wait_exit(Duration::from_secs(15)).is_some(), "the daemon did not drain");
        let listen = format!("127.0.0.1:{port}");
        let d2 = Daemon::start_with_env(&config(&redis), &[("CODETTE_CACHE_SERVER__LISTEN", &listen)]);
        let resumed = until(Duration::from_secs(10), async || {
            last_frame(&client).await > before + 2000 && attr(&client, "connection", "state").await == "live"
        });
        assert!(resumed.await, "the stream did not resume after the restart:\n{}", d2.logs());
        let csp: Vec<String> = severe_logs(&client)
            .await
            .into_iter()
            .filter(|l| l.contains("Content Security Policy"))
            .collect();
        assert!(csp.is_empty(), "CSP violations: {csp:#?}");
        client.close().await.unwrap();
    });
}
