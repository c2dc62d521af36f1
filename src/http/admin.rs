//! Admin routes: `POST /codette/cache/clear` and `POST /codette/cache/invalidate`.
//! Both need `Authorization: Bearer <token>` compared in constant time; with no token
//! configured they are disabled (403), so a default install cannot be wiped by anyone
//! who can reach it.

use serde_json::json;
use subtle::ConstantTimeEq;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::context::{ContextBody, validate};
use super::{ApiError, Shared, body, json_reply, timestamp, with_state};
use crate::invalidation::Op;
use crate::metrics::InvalidationSource;
use crate::tiers::{TierError, TierKind};

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // POST /codette/cache/clear
    let clear = warp::path!("codette" / "cache" / "clear")
        .and(warp::post())
        .and(authorised(state.clone()))
        .and_then(clear);

    // POST /codette/cache/invalidate {"message": ..., "filename": ...}
    let invalidate = warp::path!("codette" / "cache" / "invalidate")
        .and(warp::post())
        .and(authorised(state.clone()))
        .and(body::json::<ContextBody>(state))
        .and_then(invalidate);

    clear.or(invalidate)
}

/// Passes the state on when the bearer token matches.
fn authorised(state: Shared) -> impl Filter<Extract = (Shared,), Error = Rejection> + Clone {
    with_state(state)
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|state: Shared, header: Option<String>| async move {
            let token = state.config.load().admin.token.clone();
            if token.is_empty() {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "admin_disabled",
                    "admin routes disabled: set CODETTE_CACHE_ADMIN__TOKEN or [admin] token_file",
                )));
            }
            // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
            let given = header
                .as_deref()
                .and_then(|h| h.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, token)| token);
            if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
                Ok(state)
            } else {
                Err(warp::reject::custom(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send Authorization: Bearer <admin token>",
                )))
            }
        })
}

async fn clear(state: Shared) -> Result<warp::reply::Response, Rejection> {
    let (removed, failed) = state.chain.clear().await;
    tracing::info!(removed, failed = failed.len(), "cache cleared");
    announce(&state, Op::Clear).await;
    if !failed.is_empty() {
        return Err(warp::reject::custom(partial("cleared", &failed)));
    }
    Ok(json_reply(
        &json!({"status": "cleared", "removed": removed, "timestamp": timestamp()}),
        StatusCode::OK,
    ))
}

async fn invalidate(state: Shared, body: ContextBody) -> Result<warp::reply::Response, Rejection> {
    let filename = body.filename.as_deref().filter(|f| !f.is_empty());
    validate(&state, &body.message, filename).map_err(warp::reject::custom)?;
    let key = state.chain.key_for(&body.message, filename);
    let failed = state.chain.invalidate(&key).await;
    announce(
        &state,
        Op::Keys {
            keys: vec![key.as_str().to_owned()],
        },
    )
    .await;
    if !failed.is_empty() {
        return Err(warp::reject::custom(partial("invalidated", &failed)));
    }
    Ok(json_reply(
        &json!({"status": "invalidated", "key": key.as_str(), "timestamp": timestamp()}),
        StatusCode::OK,
    ))
}

/// Counts an admin invalidation and tells the other instances (before answering, so
/// that when the caller has its answer the others are already being told).
async fn announce(state: &Shared, op: Op) {
    state
        .metrics
        .invalidation(InvalidationSource::Admin, op.as_str(), None);
    if let Some(broadcast) = &state.broadcast {
        broadcast.publish(op).await;
    }
}

/// Some tiers did the work and some could not: say which, and that a retry is safe.
fn partial(done: &str, failed: &[(TierKind, TierError)]) -> ApiError {
    let which: Vec<String> = failed
        .iter()
        .map(|(kind, e)| format!("{}: {e}", kind.as_str()))
        .collect();
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "tier_unavailable",
        format!(
            "other tiers {done}, but not: {}; retry when it is back",
            which.join("; ")
        ),
    )
}
