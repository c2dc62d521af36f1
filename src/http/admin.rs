//! Admin routes: `POST /codette/cache/clear`, `POST /codette/cache/invalidate` (one
//! context by `{"message", "filename"}`, or `{"keys": [...]}`, or `{"tags": [...]}`;
//! see `tags.rs`) and `POST /codette/cache/warm` (a list, see `warm/mod.rs`). All need
//! `Authorization: Bearer <token>` compared in constant time; with no token configured
//! they are disabled (403), so a default install cannot be wiped by anyone who can
//! reach it.

use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use bytes::BytesMut;
use serde::Deserialize;

use super::context::validate;
use super::{ApiError, Shared, body, json_reply, timestamp, with_state};
use crate::chain::{Purged, Reach};
use crate::invalidation::Purge;
use crate::key::Key;
use crate::metrics::InvalidationSource;
use crate::tags::{MAX_ITEMS, Tag};
use crate::tiers::{TierError, TierKind};

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // POST /codette/cache/clear
    let clear = warp::path!("codette" / "cache" / "clear")
        .and(warp::post())
        .and(authorised(state.clone()))
        .and_then(clear);

    // POST /codette/cache/invalidate {"message", "filename"} | {"keys"} | {"tags"}
    let invalidate = warp::path!("codette" / "cache" / "invalidate")
        .and(warp::post())
        .and(authorised(state.clone()))
        .and(body::json::<InvalidateBody>(state.clone()))
        .and_then(invalidate);

    // POST /codette/cache/warm: JSON lines or plain messages, one request a line.
    let warm = warp::path!("codette" / "cache" / "warm")
        .and(warp::post())
        .and(authorised(state.clone()))
        .and(body::bytes(state))
        .and_then(warm);

    clear.or(invalidate).or(warm)
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
            if token.matches(given) {
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

/// The invalidate body: exactly one of `message` (with an optional `filename`), `keys`
/// or `tags`. Other fields are ignored, as on `/codette/context`.
#[derive(Debug, Deserialize)]
struct InvalidateBody {
    message: Option<String>,
    filename: Option<String>,
    keys: Option<Vec<Key>>,
    tags: Option<Vec<Tag>>,
}

async fn clear(state: Shared) -> Result<warp::reply::Response, Rejection> {
    let purged = state.chain.purge(&Purge::Clear, Reach::Everywhere).await;
    tracing::info!(
        removed = purged.removed,
        failed = purged.failed.len(),
        "cache cleared"
    );
    announce(&state, Purge::Clear).await;
    let removed = done(purged, "cleared")?;
    Ok(json_reply(
        &json!({"status": "cleared", "removed": removed, "timestamp": timestamp()}),
        StatusCode::OK,
    ))
}

async fn invalidate(
    state: Shared,
    body: InvalidateBody,
) -> Result<warp::reply::Response, Rejection> {
    let (purge, named) = match body {
        InvalidateBody {
            message: Some(message),
            filename,
            keys: None,
            tags: None,
        } => {
            let filename = filename.filter(|f| !f.is_empty());
            validate(&state, &message, filename.as_deref()).map_err(warp::reject::custom)?;
            let key = state.chain.key_for(&message, filename.as_deref());
            let named = ("key", json!(key.as_str()));
            (Purge::Keys { keys: vec![key] }, named)
        }
        InvalidateBody {
            message: None,
            filename: None,
            keys: Some(keys),
            tags: None,
        } => {
            within_limit(keys.len(), "keys")?;
            let named = ("keys", json!(keys));
            (Purge::Keys { keys }, named)
        }
        InvalidateBody {
            message: None,
            filename: None,
            keys: None,
            tags: Some(tags),
        } => {
            within_limit(tags.len(), "tags")?;
            let named = ("tags", json!(tags));
            (Purge::Tags { tags }, named)
        }
        _ => {
            return Err(warp::reject::custom(ApiError::bad_request(
                "invalid_body",
                "send one of {\"message\", \"filename\"}, {\"keys\": [...]} or {\"tags\": [...]}",
            )));
        }
    };
    let purged = state.chain.purge(&purge, Reach::Everywhere).await;
    announce(&state, purge).await;
    let removed = done(purged, "invalidated")?;
    let mut reply = json!({"status": "invalidated", "removed": removed, "timestamp": timestamp()});
    reply[named.0] = named.1;
    Ok(json_reply(&reply, StatusCode::OK))
}

/// Warms every line of the body (all checked first: one bad line refuses the list,
/// naming its line), `[warm] concurrency` at a time; answers with the counts.
async fn warm(state: Shared, body: BytesMut) -> Result<warp::reply::Response, Rejection> {
    let config = state.config.load_full();
    let text = std::str::from_utf8(&body).map_err(|_| {
        warp::reject::custom(ApiError::bad_request(
            "invalid_body",
            "the warm list must be UTF-8 text: one request a line",
        ))
    })?;
    let requests = crate::warm::parse(text, config.server.max_message_bytes)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| warp::reject::custom(ApiError::bad_request("invalid_line", e.to_string())))?;
    if requests.is_empty() {
        return Err(warp::reject::custom(ApiError::bad_request(
            "invalid_body",
            "the warm list is empty: send one request a line, {\"message\", \"filename\"} or a plain message",
        )));
    }
    let n = requests.len();
    let warmed = crate::warm::warm(
        &state.chain,
        &state.metrics,
        requests,
        config.warm.concurrency,
        "by admin call",
    )
    .await;
    Ok(json_reply(
        &json!({
            "status": "warmed",
            "requests": n,
            "cached": warmed.cached,
            "fetched": warmed.fetched,
            "failed": warmed.failed,
            "timestamp": timestamp(),
        }),
        StatusCode::OK,
    ))
}

/// 1 to [`MAX_ITEMS`] keys or tags, so one call cannot hold the tiers for long.
fn within_limit(n: usize, what: &str) -> Result<(), Rejection> {
    if (1..=MAX_ITEMS).contains(&n) {
        Ok(())
    } else {
        Err(warp::reject::custom(ApiError::bad_request(
            "invalid_body",
            format!("send 1 to {MAX_ITEMS} {what}; split longer lists into several calls"),
        )))
    }
}

/// Counts an admin invalidation and tells the other instances (before answering, so
/// that when the caller has its answer the others are already being told).
async fn announce(state: &Shared, purge: Purge) {
    state
        .metrics
        .invalidation(InvalidationSource::Admin, purge.as_str(), None);
    if let Some(broadcast) = &state.broadcast {
        broadcast.publish(purge).await;
    }
}

/// How many entries went, or a 503 naming the tiers that could not do it.
fn done(purged: Purged, what: &str) -> Result<u64, Rejection> {
    if purged.failed.is_empty() {
        Ok(purged.removed)
    } else {
        Err(warp::reject::custom(partial(what, &purged.failed)))
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
