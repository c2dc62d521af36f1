//! The live dashboard's routes: `GET /dashboard` (the page), `/dashboard/assets/…`
//! (embedded, versioned, cached for a year), `/dashboard/history` (the last 15 minutes
//! of frames) and `/dashboard/events` (a frame a second as Server-Sent Events, resumed
//! after `Last-Event-ID` or `?after=`; at most `[dashboard] max_streams` at once). Every
//! answer carries a strict Content-Security-Policy: the page runs only its own scripts
//! and talks only to this daemon.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::rejection::ApiError;
use super::{Shared, json_reply, with_state};
use crate::dashboard::{Frame, Live, Slot, assets};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often a stream with nothing to send checks whether the daemon is draining.
const DRAIN_CHECK: Duration = Duration::from_secs(1);

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // `[dashboard] enabled = false`: every route here is a 404.
    let with_live = with_state(state.clone())
        .and_then(|s: Shared| async move { s.live.clone().ok_or_else(warp::reject::not_found) });
    let page = warp::path!("dashboard")
        .and(warp::get())
        .and(with_live.clone())
        .map(|_| {
            let mut response = Response::new(assets::PAGE.as_str().into());
            set(
                &mut response,
                header::CONTENT_TYPE,
                "text/html; charset=utf-8",
            );
            set(&mut response, header::CACHE_CONTROL, "no-store");
            secure(response)
        });
    let asset = warp::path!("dashboard" / "assets" / String / String)
        .and(warp::get())
        .and(with_live.clone())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|version: String, name: String, _, seen: Option<String>| asset(&version, &name, seen));
    let history = warp::path!("dashboard" / "history")
        .and(warp::get())
        .and(with_live.clone())
        .map(|live: Arc<Live>| {
            let frames = live.history();
            let frames: Vec<&Frame> = frames.iter().map(|f| &**f).collect();
            let mut response = json_reply(&serde_json::json!(frames), StatusCode::OK);
            set(&mut response, header::CACHE_CONTROL, "no-store");
            secure(response)
        });
    let events = warp::path!("dashboard" / "events")
        .and(warp::get())
        .and(with_live)
        .and(with_state(state))
        .and(warp::sse::last_event_id::<u64>())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(|live: Arc<Live>, state: Shared, last: Option<u64>, query: String| {
            let after = last.or_else(|| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix("after="))
                    .and_then(|v| v.parse().ok())
            });
            let Some(slot) = live.open_stream() else {
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_streams",
                    "every dashboard event stream is taken ([dashboard] max_streams); close a dashboard or retry later",
                )
                .reply();
                set(&mut response, header::RETRY_AFTER, "5");
                return secure(response);
            };
            let stream = frames(&live, slot, state, after);
            let reply = warp::sse::reply(warp::sse::keep_alive().stream(stream));
            secure(reply.into_response())
        });
    page.or(asset).or(history).or(events)
}

/// One embedded asset, or a 304 when the client has it, or a JSON 404.
fn asset(version: &str, name: &str, seen: Option<String>) -> warp::reply::Response {
    let Some(asset) = assets::find(version, name) else {
        return secure(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such dashboard asset (the page links the current ones)",
            )
            .reply(),
        );
    };
    let etag = format!("\"{}\"", asset.hash);
    let mut response = if seen.is_some_and(|s| s.split(',').any(|t| t.trim() == etag)) {
        let mut r = Response::new(warp::hyper::body::Bytes::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(warp::hyper::body::Bytes::from_static(asset.bytes).into());
        set(&mut r, header::CONTENT_TYPE, asset.content_type);
        r
    };
    set(
        &mut response,
        header::CACHE_CONTROL,
        "public, max-age=31536000, immutable",
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    secure(response)
}

/// Frames after `after` still kept, then live ones; ends when the daemon drains (the
/// browser's EventSource reconnects, to this daemon's successor, with the last id). An
/// `after` ahead of this clock is ignored.
fn frames(
    live: &Live,
    slot: Slot,
    state: Shared,
    after: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    // Frame ids are Unix milliseconds: one ahead of this clock (a predecessor's clock
    // ahead of ours, or made up) would hold back every frame, so it is not honoured.
    let now = crate::dashboard::unix_ms();
    let after = after.filter(|&id| id <= now);
    let (missed, receiver) = live.follow(after);
    let start = (
        VecDeque::from(missed),
        receiver,
        after.unwrap_or(0),
        slot,
        true,
    );
    futures_util::stream::unfold(start, move |(mut missed, mut rx, mut last, slot, first)| {
        let state = state.clone();
        async move {
            let frame: Arc<Frame> = loop {
                if let Some(f) = missed.pop_front() {
                    break f;
                }
                if state.draining.load(Ordering::Relaxed) {
                    return None;
                }
                match tokio::time::timeout(DRAIN_CHECK, rx.recv()).await {
                    Ok(Ok(f)) if f.id > last => break f,
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => {}
                    Ok(Err(RecvError::Closed)) => return None,
                }
            };
            last = frame.id;
            let mut event = Event::default().id(frame.id.to_string());
            if first {
                event = event.retry(Duration::from_secs(1));
            }
            let event = event
                .json_data(&*frame)
                .unwrap_or_else(|_| Event::default().comment("frame not encoded"));
            Some((Ok(event), (missed, rx, last, slot, false)))
        }
    })
}

fn set(response: &mut warp::reply::Response, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// The headers every dashboard answer carries.
fn secure(mut response: warp::reply::Response) -> warp::reply::Response {
    set(&mut response, header::CONTENT_SECURITY_POLICY, CSP);
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    response
}
