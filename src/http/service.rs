//! The hyper service in front of the routes. The Supabase prefixes go first, as they
//! came, to the proxy (`proxy.rs`, `passthrough.rs`), whose bodies stream. Three rules
//! hold for every other route, in one place: one trailing slash is ignored (`/healthz/`
//! is `/healthz`); HEAD is served wherever GET is (same status and headers, no body:
//! hyper drops the body of a HEAD answer); a known path asked with a method it does not
//! take is 405 with `Allow`. Then `GET /codette/context`, the request every cache hit
//! is, goes straight to its handler; every other request goes through warp's filter
//! tree. Why: a warp service is cloned for each request (the whole filter tree: an
//! `Arc<State>` count bumped and dropped per route, contended between cores), and the
//! tree is walked route by route; on a memory hit that was most of the difference to
//! the bare HTTP ceiling that was not kernel time.

use std::convert::Infallible;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use warp::Filter;
use warp::http::uri::PathAndQuery;
use warp::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use warp::reply::Response;

use super::{ApiError, Reply, Shared, context, passthrough, proxy, warp_body};

/// The path served without warp.
const CONTEXT_PATH: &str = "/codette/context";

/// The methods a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// GET and HEAD.
    Get,
    /// POST.
    Post,
    /// GET, HEAD and POST.
    GetPost,
}

impl Takes {
    fn allows(self, method: &Method) -> bool {
        let get = *method == Method::GET || *method == Method::HEAD;
        match self {
            Takes::Get => get,
            Takes::Post => *method == Method::POST,
            Takes::GetPost => get || *method == Method::POST,
        }
    }

    /// The `Allow` header of a 405.
    fn header(self) -> &'static str {
        match self {
            Takes::Get => "GET, HEAD",
            Takes::Post => "POST",
            Takes::GetPost => "GET, HEAD, POST",
        }
    }
}

/// The prefix of the dashboard's assets (`/dashboard/assets/<version>/<name>`).
const ASSETS: &str = "/dashboard/assets/";

/// Every route the daemon serves, with the methods it takes (the README's route table).
const ROUTES: &[(&str, Takes)] = &[
    (CONTEXT_PATH, Takes::GetPost),
    ("/codette/cache/stats", Takes::Get),
    ("/codette/cache/metrics", Takes::Get),
    ("/codette/analytics/dashboard", Takes::Get),
    ("/codette/cache/status", Takes::Get),
    ("/codette/cache/clear", Takes::Post),
    ("/codette/cache/invalidate", Takes::Post),
    ("/codette/cache/warm", Takes::Post),
    ("/healthz", Takes::Get),
    ("/readyz", Takes::Get),
    ("/metrics", Takes::Get),
    ("/dashboard", Takes::Get),
    ("/dashboard/history", Takes::Get),
    ("/dashboard/events", Takes::Get),
];

/// One connection's service: the state for the fast route, warp's `routes` for the rest.
#[derive(Clone)]
pub struct Service<F> {
    state: Shared,
    routes: F,
}

impl<F> Service<F> {
    pub fn new(state: Shared, routes: F) -> Self {
        Self { state, routes }
    }
}

/// Generic over the body so tests can drive it in-process; the fast route ignores the
/// body of a GET, warp reads the others' within its limits.
impl<F, R, B> hyper::service::Service<Request<B>> for Service<F>
where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
    R: warp::Reply,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Reply, Infallible>>;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        // The upstream's paths go as they came, trailing slash and all.
        if passthrough::is_proxied(path) {
            return match self.state.proxy.clone() {
                Some(p) => {
                    let state = self.state.clone();
                    proxy::handle(started, state, p, request).map(Ok).boxed()
                }
                None => ready(proxy_off()),
            };
        }
        if path.len() > 1 && path.ends_with('/') {
            *request.uri_mut() = without_trailing_slash(request.uri());
        }
        let path = request.uri().path();
        let takes = ROUTES.iter().find(|(p, _)| *p == path).map(|(_, t)| *t);
        // The dashboard's assets are read-only whatever their name.
        let takes = takes.or_else(|| path.starts_with(ASSETS).then_some(Takes::Get));
        if let Some(takes) = takes {
            if !takes.allows(request.method()) {
                return ready(not_allowed(takes));
            }
        }
        if request.method() == Method::HEAD {
            *request.method_mut() = Method::GET;
        }
        if request.method() == Method::GET && request.uri().path() == CONTEXT_PATH {
            return match context::parsed_query(&self.state, request.uri().query()) {
                Ok(parsed) => context::serve(started, self.state.clone(), parsed)
                    .map(|r| r.map(|r| r.map(warp_body)))
                    .boxed(),
                Err(e) => ready(e.reply()),
            };
        }
        let mut routes = warp::service(self.routes.clone());
        tower_service::Service::call(&mut routes, request)
            .map(|r| r.map(|r| r.map(warp_body)))
            .boxed()
    }
}

/// A response ready now.
fn ready(response: Response) -> BoxFuture<'static, Result<Reply, Infallible>> {
    futures_util::future::ready(Ok(response.map(warp_body))).boxed()
}

/// The Supabase prefixes while no upstream is configured.
fn proxy_off() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "proxy_off",
        "the Supabase proxy is off: set [proxy] upstream (CODETTE_CACHE_PROXY__UPSTREAM) or a supabase origin",
    )
    .reply()
}

/// The same URI with one trailing slash less.
fn without_trailing_slash(uri: &Uri) -> Uri {
    let path = uri.path().strip_suffix('/').unwrap_or(uri.path());
    let rewritten = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::from_maybe_shared(rewritten).ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// 405 with the `Allow` header RFC 9110 requires.
fn not_allowed(takes: Takes) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route takes {}", takes.header()),
    )
    .reply();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(takes.header()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One trailing slash is dropped, the query kept.
    #[test]
    fn trailing_slash_is_dropped() {
        let uri: Uri = "/codette/context/?message=a%2Fb".parse().unwrap();
        assert_eq!(
            without_trailing_slash(&uri).to_string(),
            "/codette/context?message=a%2Fb"
        );
        let uri: Uri = "/healthz/".parse().unwrap();
        assert_eq!(without_trailing_slash(&uri).to_string(), "/healthz");
    }

    /// GET routes take HEAD; 405s name what the route takes.
    #[test]
    fn methods_per_route() {
        assert!(Takes::Get.allows(&Method::HEAD));
        assert!(!Takes::Get.allows(&Method::POST));
        assert!(!Takes::Post.allows(&Method::GET));
        assert!(Takes::GetPost.allows(&Method::POST));
        let response = not_allowed(Takes::Post);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }
}
