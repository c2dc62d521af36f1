//! Requests the cache has no business with, forwarded to the Supabase project: tables
//! (`/rest/v1/*`), auth, storage, edge functions, and RPCs not in `[[proxy.functions]]`.
//! Bodies stream both ways (a large upload or download is never held in memory),
//! hop-by-hop headers are dropped, redirects and compressed bodies pass as they are
//! (no following, no decoding). The wait for the upstream's response headers is bounded
//! by `[proxy] timeout_ms`; the connection cap and header timeout of `[server]` apply
//! as to every request. Realtime's WebSocket is not tunnelled: 501 says where to go.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use warp::http::{Method, Request, Response, StatusCode};

use super::{ApiError, Reply, streamed};
use crate::origins::upstream::end_to_end;
use crate::proxy::Proxy;

/// The path prefixes forwarded.
pub const PREFIXES: &[&str] = &["/rest/v1/", "/auth/v1/", "/storage/v1/", "/functions/v1/"];

/// Realtime's prefix: answered 501.
pub const REALTIME: &str = "/realtime/v1/";

/// Whether `path` is one the proxy answers.
pub fn is_proxied(path: &str) -> bool {
    PREFIXES.iter().any(|p| path.starts_with(p))
        || path.starts_with(REALTIME)
        || PREFIXES.iter().any(|p| path == p.trim_end_matches('/'))
}

/// Realtime's answer: its WebSocket is not tunnelled.
pub fn realtime() -> Reply {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "realtime_not_proxied",
        "codette-cache does not tunnel Realtime's WebSocket: give the realtime client the Supabase project URL directly",
    )
    .reply()
    .map(super::warp_body)
}

/// Forwards a request with a streamed body.
pub async fn forward<B>(proxy: &Proxy, request: Request<B>) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let stream = body.into_data_stream();
    send(
        proxy,
        &parts.method,
        parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        &parts.headers,
        reqwest::Body::wrap_stream(stream),
    )
    .await
}

/// Sends one request upstream and streams its response back.
pub async fn send(
    proxy: &Proxy,
    method: &Method,
    path_and_query: &str,
    headers: &warp::http::HeaderMap,
    body: reqwest::Body,
) -> Reply {
    let url = format!("{}{path_and_query}", proxy.upstream());
    let sent = proxy
        .client()
        .request(method.clone(), url)
        .headers(end_to_end(headers))
        .body(body)
        .send();
    let response = match tokio::time::timeout(proxy.timeout(), sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let error = crate::origins::upstream::unreachable(e, proxy.timeout());
            tracing::debug!(%error, "pass-through failed");
            return ApiError::origin(&error).reply().map(super::warp_body);
        }
        Err(_) => {
            let error = crate::origins::OriginError::Timeout(proxy.timeout());
            return ApiError::origin(&error).reply().map(super::warp_body);
        }
    };
    let mut out = Response::builder().status(response.status().as_u16());
    if let Some(headers) = out.headers_mut() {
        *headers = end_to_end(response.headers());
    }
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    out.body(streamed(stream)).unwrap_or_else(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "the upstream's response could not be relayed",
        )
        .reply()
        .map(super::warp_body)
    })
}
