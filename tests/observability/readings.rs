//! Requests and readings: context requests that drive traffic, and reading the four
//! JSON dashboards, `/metrics` series and the advice list.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Daemon;
use crate::{DASHBOARD, METRICS, STATS, STATUS};

/// `GET /codette/context?message=...`: status and raw body.
pub(crate) async fn ask_text(d: &Daemon, message: &str) -> (u16, String) {
    let resp = d
        .client()
        .get(d.url("/codette/context"))
        .query(&[("message", message)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /codette/context {message:?}: {e}\n{}", d.logs()));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("read body"))
}

/// A context request that must succeed; returns the response JSON.
pub(crate) async fn ask(d: &Daemon, message: &str) -> Value {
    let (status, text) = ask_text(d, message).await;
    assert_eq!(status, 200, "{message:?}: {text}\n{}", d.logs());
    serde_json::from_str(&text).expect("context response is JSON")
}

/// Drives `count` requests cycling over `messages`, one after another.
pub(crate) async fn drive(d: &Daemon, messages: &[&str], count: usize) {
    for i in 0..count {
        ask(d, messages[i % messages.len()]).await;
    }
}

/// The four dashboards, read one after the other (no traffic in between).
pub(crate) struct Dashboards {
    pub(crate) stats: Value,
    pub(crate) metrics: Value,
    pub(crate) dashboard: Value,
    pub(crate) status: Value,
}

pub(crate) async fn dashboards(d: &Daemon) -> Dashboards {
    let mut read = Vec::new();
    for path in [STATS, METRICS, DASHBOARD, STATUS] {
        let (code, body) = d.get_json(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        read.push(body);
    }
    let [stats, metrics, dashboard, status] = <[Value; 4]>::try_from(read).expect("four");
    Dashboards {
        stats,
        metrics,
        dashboard,
        status,
    }
}

pub(crate) async fn prometheus_text(d: &Daemon) -> String {
    let (code, text) = d.get_text("/metrics").await;
    assert_eq!(code, 200, "GET /metrics: {text}");
    text
}

/// The value of one series, e.g. `codette_cache_tier_up{tier="redis"}`, if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of one series that must be present.
pub(crate) fn series(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// The advice rules the dashboard lists, in order.
pub(crate) fn rules(dashboard: &Value) -> Vec<String> {
    dashboard["analytics"]["advice"]
        .as_array()
        .expect("advice is an array")
        .iter()
        .map(|a| a["rule"].as_str().expect("rule is a string").to_owned())
        .collect()
}

/// The advice object of one rule.
pub(crate) fn advice<'a>(dashboard: &'a Value, rule: &str) -> &'a Value {
    dashboard["analytics"]["advice"]
        .as_array()
        .expect("advice is an array")
        .iter()
        .find(|a| a["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule:?} advice in {dashboard:#}"))
}

pub(crate) fn recommendations(dashboard: &Value) -> Vec<String> {
    dashboard["analytics"]["optimization_recommendations"]
        .as_array()
        .expect("optimization_recommendations is an array")
        .iter()
        .map(|r| r.as_str().expect("a recommendation is a string").to_owned())
        .collect()
}

pub(crate) fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a non-negative integer"))
}

/// Polls `probe` every 20 ms until it gives a value; panics after `within`.
pub(crate) async fn wait_for<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
