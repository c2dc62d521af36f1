//! `GET|HEAD|POST /rest/v1/rpc/{function}`: a cached function's call, for a caller
//! whose token verifies, is served through its chain under the key `proxy::request`
//! derives; anything else goes to the upstream as it came (`passthrough.rs`). Answers
//! carry `Age` and `Cache-Status` (RFC 9211). An answer that may not be stored is
//! never handed to a request that joined its single flight: that request asks for
//! itself (its caller may see something else, e.g. its own `Set-Cookie`).
//!
//! The forwarding futures (reqwest's, several KB) are boxed where they are awaited:
//! the service boxes this whole future per request, and a hit should not copy them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warp::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};

use super::{ApiError, Reply, Shared, numbered, passthrough, warp_body};
use crate::chain::storable::{self, Verdict};
use crate::chain::{Answer, Failure, Shape};
use crate::envelope;
use crate::metrics::{ProxyChildren, ProxyResult};
use crate::origins::upstream::drop_connection_named;
use crate::origins::{Asked, RpcCall};
use crate::proxy::plan_memo;
use crate::proxy::request::{Call, Plan};
use crate::proxy::{Proxy, Resolved, Route};

/// The path prefix of RPC calls.
pub const RPC: &str = "/rest/v1/rpc/";

/// RFC 9211's header.
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

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
        return finish(
            &proxy.other,
            ProxyResult::Error,
            started.elapsed(),
            reply,
            None,
        );
    }
    let function = request.uri().path().strip_prefix(RPC).unwrap_or("");
    let Some((name, route)) = proxy.route_entry(function) else {
        let reply = Box::pin(passthrough::forward(&proxy, request)).await;
        return finish(
            &proxy.other,
            ProxyResult::Passthrough,
            started.elapsed(),
            reply,
            None,
        );
    };
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
            let reply = Box::pin(passthrough::forward(&proxy, request)).await;
            return bypassed(route, started, reply);
        }
    };
    let (mut parts, body) = request.into_parts();
    drop_connection_named(&mut parts.headers);
    let body = if method == Method::POST {
        match super::body::read_all(&state, body).await {
            Ok(body) => body,
            Err(e) => {
                let reply = e.reply().map(warp_body);
                return finish(
                    &route.metrics,
                    ProxyResult::Error,
                    started.elapsed(),
                    reply,
                    None,
                );
            }
        }
    } else {
        Bytes::new()
    };
    let path_and_query = parts.uri.path_and_query().map_or(RPC, |p| p.as_str());
    let forward = async |headers: &HeaderMap| {
        let body = reqwest::Body::from(body.clone());
        Box::pin(passthrough::send(
            &proxy,
            &method,
            path_and_query,
            headers,
            body,
        ))
        .await
    };
    let Some(identity) = proxy.identify(&parts.headers).await else {
        return bypassed(route, started, forward(&parts.headers).await);
    };
    let call = Call {
        function: name,
        method: &method,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let original = proxy.original.as_ref();
    let limit = original.map(|_| state.config.load().server.max_message_bytes);
    let (served, chain) = match plan_memo::plan(&call, scope, &identity, limit) {
        Plan::Original(plain) => {
            if let Some(hot) = &state.hot {
                hot.saw(&plain.request);
            }
            let main = original.unwrap_or(&route.chain);
            let asked = || Asked::Context(Arc::clone(&plain.request));
            (main.serve(plain.key_in(main), asked).await, main)
        }
        Plan::Cached(key) => {
            // Made only when the chain needs it (a miss, a refresh): a hit sends nothing on.
            let asked = || {
                Asked::Rpc(Arc::new(RpcCall {
                    function: Arc::clone(&route.name),
                    post: method == Method::POST,
                    target: parts.uri.path_and_query().cloned(),
                    headers: parts.headers.clone(),
                    body: body.clone(),
                }))
            };
            (route.chain.serve(key, asked).await, &route.chain)
        }
        Plan::Bypass(why) => {
            tracing::debug!(function = name, why, "proxy: forwarded without the cache");
            return bypassed(route, started, forward(&parts.headers).await);
        }
    };
    let shape = chain.shape();
    match served {
        Ok(answer) => {
            let hit = answer.source.is_hit();
            // Whether a miss's answer was stored (hits were, by definition).
            let kept = hit
                || !matches!(
                    storable::judge(&answer.body, shape),
                    Verdict::Keep | Verdict::Invalid | Verdict::Empty
                );
            if answer.coalesced && !kept {
                return bypassed(route, started, forward(&parts.headers).await);
            }
            let result = if hit {
                ProxyResult::Hit
            } else {
                ProxyResult::Miss
            };
            // One clock read for both records.
            let took = started.elapsed();
            chain.record_request(Some(answer.source), took);
            let reply = render(&answer, shape, kept);
            finish(&route.metrics, result, took, reply, None)
        }
        Err(Failure { key, error }) => {
            tracing::debug!(key = key.as_str(), %error, "proxied call failed");
            let took = started.elapsed();
            chain.record_request(None, took);
            let reply = ApiError::origin(&error).reply().map(warp_body);
            finish(&route.metrics, ProxyResult::Error, took, reply, None)
        }
    }
}

/// A cached function's call forwarded without the cache.
fn bypassed(route: &Route, started: Instant, reply: Reply) -> Reply {
    finish(
        &route.metrics,
        ProxyResult::Bypass,
        started.elapsed(),
        reply,
        Some("codette-cache; fwd=bypass"),
    )
}

/// The upstream's answer as it was (from the envelope, or the original function's
/// JSON), with `Age` and `Cache-Status`.
fn render(answer: &Answer, shape: Shape, kept: bool) -> Reply {
    let mut response = match shape {
        Shape::Rpc(_) => {
            let mut headers = HeaderMap::new();
            match envelope::replay(&answer.body, &mut headers) {
                Ok((status, body)) => {
                    let mut response = Response::new(warp_body(body.into()));
                    *response.status_mut() =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                    *response.headers_mut() = headers;
                    response
                }
                Err(_) => {
                    // Judged on its way in; a tier cannot hand back other bytes.
                    let e = ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "the stored answer is unreadable",
                    );
                    return e.reply().map(warp_body);
                }
            }
        }
        _ => {
            let mut response = Response::new(warp_body(answer.body.clone().into()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            response
        }
    };
    let out = response.headers_mut();
    out.insert(header::AGE, numbered::age(answer.age.as_secs()));
    out.insert(CACHE_STATUS, cache_status(answer, kept));
    response
}

/// RFC 9211's `Cache-Status` of an answer through the cache.
fn cache_status(answer: &Answer, kept: bool) -> HeaderValue {
    let left = answer
        .ttl
        .map(|ttl| ttl.as_secs() as i64 - answer.age.as_secs() as i64);
    if let (true, false, Some(left)) = (answer.source.is_hit(), answer.coalesced, left) {
        if let Some(value) = numbered::hit_ttl(left) {
            return value;
        }
    }
    let mut text = String::with_capacity(48);
    text.push_str("codette-cache; ");
    match (answer.source.is_hit(), left) {
        (true, Some(left)) => {
            // itoa, not `write!`: the formatting machinery was 1.3 % of a proxied hit.
            text.push_str("hit; ttl=");
            text.push_str(itoa::Buffer::new().format(left));
        }
        (true, None) => text.push_str("hit"),
        (false, _) => {
            text.push_str("fwd=uri-miss");
            if kept {
                text.push_str("; stored");
            }
        }
    }
    if answer.coalesced {
        text.push_str("; collapsed");
    }
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("codette-cache"))
}

/// Records the request (it took `took`) and adds `Cache-Status` for what did not use
/// the cache.
fn finish(
    series: &ProxyChildren,
    result: ProxyResult,
    took: Duration,
    mut reply: Reply,
    status: Option<&'static str>,
) -> Reply {
    if let Some(status) = status {
        reply
            .headers_mut()
            .append(CACHE_STATUS, HeaderValue::from_static(status));
    }
    series.record(result, took);
    reply
}
