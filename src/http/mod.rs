//! The routes. Filters say the shape (`METHOD /path`), handlers live one file per route
//! group, state enters through `with_state`, and one rejection handler writes every
//! error as `{"error": {"code", "message"}}`. `service.rs` puts the hot route,
//! `GET /codette/context`, in front of warp's filter tree.

mod admin;
mod body;
mod clock;
mod context;
mod dashboards;
mod health;
mod live;
mod numbered;
mod passthrough;
mod proxy;
mod query_memo;
mod rejection;
mod service;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, StreamBody};
use warp::Filter;

use crate::chain::Chain;
use crate::config::Config;
use crate::dashboard::Live;
use crate::invalidation::{Broadcast, Listener};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::warm::HotSet;
pub use health::Readiness;
pub use rejection::ApiError;
pub use service::Service;

/// What every handler can read.
pub struct State {
    pub chain: Arc<Chain>,
    pub metrics: Arc<Metrics>,
    /// The configuration in force; replaced whole on reload.
    pub config: ArcSwap<Config>,
    pub started: Instant,
    /// Set when draining: `/readyz` turns 503 so balancers stop sending.
    pub draining: AtomicBool,
    /// Set while the start-up warming runs and `[warm] ready_after` holds `/readyz`.
    pub warming: AtomicBool,
    /// This process's random id, in its broadcast messages and in status.
    pub instance_id: String,
    /// The invalidation broadcast, when enabled.
    pub broadcast: Option<Arc<Broadcast>>,
    /// The LISTEN on database changes, when configured.
    pub listener: Option<Arc<Listener>>,
    /// Request counts for `[warm] hot_set_path`, when set.
    pub hot: Option<Arc<HotSet>>,
    /// The live dashboard's frames, unless `[dashboard] enabled = false`.
    pub live: Option<Arc<Live>>,
    /// The Supabase proxy, when it has an upstream.
    pub proxy: Option<Arc<Proxy>>,
    /// `/readyz`'s last origin health check.
    pub readiness: Readiness,
}

pub type Shared = Arc<State>;

fn with_state(state: Shared) -> impl Filter<Extract = (Shared,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// The service a connection is served by: [`routes`] behind the fast path of
/// `GET /codette/context`.
pub fn service(
    state: Shared,
) -> Service<
    impl warp::Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone + Send + Sync + 'static,
> {
    Service::new(Arc::clone(&state), routes(state))
}

/// Every warp route, with the rejection handler attached.
pub fn routes(
    state: Shared,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone + Send + Sync + 'static
{
    context::routes(state.clone())
        .or(admin::routes(state.clone()))
        .or(dashboards::routes(state.clone()))
        .or(live::routes(state.clone()))
        .or(health::routes(state))
        .recover(rejection::handle)
}

/// Names the body type of a response (warp does not export its own).
pub trait BodyOf {
    type Body;
}

impl<B> BodyOf for warp::http::Response<B> {
    type Body = B;
}

/// warp's response body.
pub type WarpBody = <warp::reply::Response as BodyOf>::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: warp's, or one streamed from the Supabase upstream.
pub type Body = Either<WarpBody, http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>;

/// What a connection is answered with.
pub type Reply = warp::http::Response<Body>;

/// A warp body as a [`Body`].
pub fn warp_body(body: WarpBody) -> Body {
    Either::Left(body)
}

/// A streamed body as a [`Body`].
pub fn streamed<S>(stream: S) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use futures_util::TryStreamExt;
    let frames = StreamBody::new(
        stream
            .map_ok(hyper::body::Frame::data)
            .map_err(BoxError::from),
    );
    Either::Right(frames.boxed_unsync())
}

/// Now, as RFC 3339 UTC with microseconds (the original's timestamp precision).
pub fn timestamp() -> String {
    clock::now()
}

/// A JSON reply with a status.
pub fn json_reply(
    value: &serde_json::Value,
    status: warp::http::StatusCode,
) -> warp::reply::Response {
    let mut response =
        warp::http::Response::new(warp::hyper::body::Bytes::from(value.to_string()).into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}
