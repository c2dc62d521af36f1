//! `GET /healthz` (the process answers), `GET /readyz` (the origin can answer and we are
//! not draining), `GET /metrics` (Prometheus text). None of them waits on Redis.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{Shared, json_reply, with_state};

/// Longest `/readyz` waits for the origin's health check.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one origin health check answers `/readyz`: however many balancers probe,
/// and however often, the origin sees at most one check a second, one at a time.
const READY_CHECK_KEPT: Duration = Duration::from_secs(1);

/// The last origin health check, shared by `/readyz` callers.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// Whether the origin can answer: from a check under a second old, or from a new
    /// one (concurrent callers wait for it rather than start their own).
    async fn origin(&self, state: &Shared) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < READY_CHECK_KEPT {
                return result.clone();
            }
        }
        let origin = state.chain.origin();
        let result = match tokio::time::timeout(READY_CHECK_TIMEOUT, origin.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("origin ({}): {e}", origin.kind())),
            Err(_) => Err(format!(
                "origin ({}): no answer within {READY_CHECK_TIMEOUT:?}",
                origin.kind()
            )),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // GET /healthz
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(&json!({"status": "ok"}), StatusCode::OK));

    // GET /readyz
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state.clone()))
        .then(readyz);

    // GET /metrics
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: Shared| {
            for tier in state.chain.tiers() {
                let size = tier.size();
                state
                    .metrics
                    .set_size(tier.kind(), size.entries, size.bytes);
            }
            warp::reply::with_header(
                state.metrics.encode(),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
        });

    healthz.or(readyz).or(metrics)
}

async fn readyz(state: Shared) -> warp::reply::Response {
    let mut reasons = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        reasons.push("shutting down".to_owned());
    }
    if state.warming.load(Ordering::Relaxed) {
        reasons.push("warming from [warm] file".to_owned());
    }
    if let Err(reason) = state.readiness.origin(&state).await {
        reasons.push(reason);
    }
    if reasons.is_empty() {
        json_reply(&json!({"status": "ready"}), StatusCode::OK)
    } else {
        json_reply(
            &json!({"status": "not_ready", "reasons": reasons}),
            StatusCode::SERVICE_UNAVAILABLE,
        )
    }
}
