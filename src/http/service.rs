//! The hyper service in front of the routes. `GET /codette/context`, the request every
//! cache hit is, goes straight to its handler; every other request goes through warp's
//! filter tree. Why: a warp service is cloned for each request (the whole filter tree:
//! an `Arc<State>` count bumped and dropped per route, contended between cores), and the
//! tree is walked route by route; on a memory hit that was most of the difference to the
//! bare HTTP ceiling that was not kernel time.

use std::convert::Infallible;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use warp::Filter;
use warp::http::{Method, Request};
use warp::reply::Response;

use super::{Shared, context};

/// The path served without warp.
const CONTEXT_PATH: &str = "/codette/context";

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
    B: hyper::body::Body + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        if request.method() == Method::GET && request.uri().path() == CONTEXT_PATH {
            let started = Instant::now();
            return match context::parse_query(request.uri().query()) {
                Ok((message, filename)) => {
                    context::answer(started, self.state.clone(), message, filename).boxed()
                }
                Err(e) => futures_util::future::ready(Ok(e.reply())).boxed(),
            };
        }
        let mut routes = warp::service(self.routes.clone());
        tower_service::Service::call(&mut routes, request).boxed()
    }
}
