//! `GET|HEAD|POST /rest/v1/rpc/{function}`: a cached function's call, for a caller
//! whose token verifies, is served through its chain under the key `proxy::request`
//! derives; anything else goes to the upstream as it came (`passthrough.rs`). Answers
//! carry `Age` and `Cache-Status` (RFC 9211). An answer that may not be stored is
//! never handed to a request that joined its single flight: that request asks for
//! itself (its caller may see something else, e.g. its own `Set-Cookie`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};

use super::{ApiError, Reply, Shared, passthrough, warp_body};
use crate::chain::storable::{self, Verdict};
use crate::chain::{Answer, Failure, Shape, Source};
use crate::envelope::Envelope;
use crate::metrics::{Outcome, ProxyResult};
use crate::origins::{Asked, RpcCall};
use crate::proxy::request::{self, Call, Plan};
use crate::proxy::{Proxy, Resolved};

/// The path prefix of RPC calls.
pub const RPC: &str = "/rest/v1/rpc/";

/// The `function` label of calls not in the allowlist, and of non-RPC paths.
const OTHER: &str = "other";

/// Answers one request under the Supabase prefixes.
pub async fn handle<B>(
    started: Instant,
    state: Shared,
    proxy: Arc<Proxy>,
    request: Request<B>,
) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.uri().path().starts_with(passthrough::REALTIME) {
        let reply = passthrough::realtime();
        return finish(&state, OTHER, ProxyResult::Error, started, reply, None);
    }
    let function = request.uri().path().strip_prefix(RPC).unwrap_or("");
    let Some(route) = proxy.route(function) else {
        let reply = passthrough::forward(&proxy, request).await;
        return finish(
            &state,
            OTHER,
            ProxyResult::Passthrough,
            started,
            reply,
            None,
        );
    };
    let name = function.to_owned();
    let chain = Arc::clone(&route.chain);
    let method = request.method().clone();
    let scope = match route.resolved() {
        // A body too large to key is forwarded as it streams.
        Resolved::Cached(scope)
            if matches!(method, Method::GET | Method::HEAD | Method::POST)
                && !super::body::declared_over_limit(&state, request.headers()) =>
        {
            scope
        }
        _ => {
            return bypassed(
                &state,
                &name,
                started,
                passthrough::forward(&proxy, request).await,
            );
        }
    };
    let (parts, body) = request.into_parts();
    let body = if method == Method::POST {
        match super::body::read_all(&state, body).await {
            Ok(body) => body,
            Err(e) => {
                let reply = e.reply().map(warp_body);
                return finish(&state, &name, ProxyResult::Error, started, reply, None);
            }
        }
    } else {
        Bytes::new()
    };
    let query = parts.uri.query();
    let path_and_query = parts.uri.path_and_query().map_or(RPC, |p| p.as_str());
    let forward = || {
        let body = reqwest::Body::from(body.clone());
        passthrough::send(&proxy, &method, path_and_query, &parts.headers, body)
    };
    let Some(identity) = proxy.identify(&parts.headers).await else {
        return bypassed(&state, &name, started, forward().await);
    };
    let limit = state.config.load().server.max_message_bytes;
    let call = Call {
        function: &name,
        method: &method,
        query,
        headers: &parts.headers,
        body: &body,
    };
    let original = proxy.original.as_ref();
    let (served, shape) = match request::plan(&call, scope, &identity, original.map(|_| limit)) {
        Plan::Original(context) => {
            if let Some(hot) = &state.hot {
                hot.saw(&context);
            }
            let main = original.unwrap_or(&chain);
            (main.lookup(context).await, main.shape())
        }
        Plan::Cached(key) => {
            let asked = Asked::Rpc(Arc::new(RpcCall {
                function: name.clone(),
                post: method == Method::POST,
                query: query.map(ToOwned::to_owned),
                headers: forwarded(&parts.headers),
                body: body.clone(),
            }));
            (chain.serve(key, asked).await, chain.shape())
        }
        Plan::Bypass(why) => {
            tracing::debug!(function = %name, why, "proxy: forwarded without the cache");
            return bypassed(&state, &name, started, forward().await);
        }
    };
    match served {
        Ok(answer) => {
            let kept = !matches!(
                storable::judge(&answer.body, shape),
                Verdict::Keep | Verdict::Invalid | Verdict::Empty
            );
            if answer.coalesced && !kept {
                return bypassed(&state, &name, started, forward().await);
            }
            let result = if answer.source.is_hit() {
                ProxyResult::Hit
            } else {
                ProxyResult::Miss
            };
            state.metrics.request(outcome(&answer), started.elapsed());
            let reply = render(&answer, shape, kept);
            finish(&state, &name, result, started, reply, None)
        }
        Err(Failure { key, error }) => {
            tracing::debug!(key = key.as_str(), %error, "proxied call failed");
            state.metrics.request(Outcome::Error, started.elapsed());
            let reply = ApiError::origin(&error).reply().map(warp_body);
            finish(&state, &name, ProxyResult::Error, started, reply, None)
        }
    }
}

/// A cached function's call forwarded without the cache.
fn bypassed(state: &Shared, function: &str, started: Instant, reply: Reply) -> Reply {
    finish(
        state,
        function,
        ProxyResult::Bypass,
        started,
        reply,
        Some("fwd=bypass"),
    )
}

/// The request headers sent upstream for a cached call: end to end, and without
/// `Accept-Encoding` (a stored body must be one every client can read).
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = crate::origins::upstream::end_to_end(headers);
    out.remove(header::ACCEPT_ENCODING);
    out
}

fn outcome(answer: &Answer) -> Outcome {
    match answer.source {
        Source::Tier(kind) => Outcome::Hit(kind),
        Source::Origin => Outcome::Miss,
        Source::Stale(kind) => Outcome::Stale(kind),
    }
}

/// The upstream's answer as it was (from the envelope, or the original function's
/// JSON), with `Age` and `Cache-Status`.
fn render(answer: &Answer, shape: Shape, kept: bool) -> Reply {
    let (status, headers, body) = match shape {
        Shape::Rpc(_) => match Envelope::decode(&answer.body) {
            Ok(e) => (e.status, e.headers, e.body),
            Err(_) => {
                // Judged on its way in; a tier cannot hand back other bytes.
                let e = ApiError::new(
                    warp::http::StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "the stored answer is unreadable",
                );
                return e.reply().map(warp_body);
            }
        },
        _ => (
            200,
            vec![(
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            answer.body.clone(),
        ),
    };
    let mut status_text = String::from("codette-cache; ");
    match (answer.source.is_hit(), answer.ttl) {
        (true, Some(ttl)) => {
            let left = ttl.as_secs() as i64 - answer.age.as_secs() as i64;
            let _ = write!(status_text, "hit; ttl={left}");
        }
        (true, None) => status_text.push_str("hit"),
        (false, _) => {
            status_text.push_str("fwd=uri-miss");
            if kept {
                status_text.push_str("; stored");
            }
        }
    }
    if answer.coalesced {
        status_text.push_str("; collapsed");
    }
    let mut response = Response::new(warp_body(body.into()));
    *response.status_mut() =
        warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::BAD_GATEWAY);
    let out = response.headers_mut();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.append(name, value);
        }
    }
    out.insert(header::AGE, HeaderValue::from(answer.age.as_secs()));
    if let Ok(value) = HeaderValue::from_str(&status_text) {
        out.insert(HeaderName::from_static("cache-status"), value);
    }
    response
}

/// Records the request and adds `Cache-Status` for what did not use the cache.
fn finish(
    state: &Shared,
    function: &str,
    result: ProxyResult,
    started: Instant,
    mut reply: Reply,
    status: Option<&str>,
) -> Reply {
    if let Some(status) = status {
        if let Ok(value) = HeaderValue::from_str(&format!("codette-cache; {status}")) {
            reply
                .headers_mut()
                .append(HeaderName::from_static("cache-status"), value);
        }
    }
    state
        .metrics
        .proxy_request(function, result, started.elapsed());
    reply
}
