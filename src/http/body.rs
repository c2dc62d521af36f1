//! JSON request bodies, bounded: a declared Content-Length over the limit is refused
//! before reading (413), a chunked body is cut off at the limit, and a body that stops
//! arriving is abandoned after the header-read timeout instead of holding the request.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::{ApiError, Shared, with_state};

/// Extracts a JSON body of type `T`, within `server.max_body_bytes`.
pub fn json<T: DeserializeOwned + Send + 'static>(
    state: Shared,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    bytes(state).and_then(|bytes: BytesMut| async move {
        serde_json::from_slice(&bytes).map_err(|e| {
            warp::reject::custom(ApiError::bad_request(
                "invalid_body",
                format!("the request body is not valid: {e}"),
            ))
        })
    })
}

/// Extracts the body as it came, within `server.max_body_bytes`.
pub fn bytes(state: Shared) -> impl Filter<Extract = (BytesMut,), Error = Rejection> + Clone {
    with_state(state)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(|state: Shared, declared: Option<u64>, stream| async move {
            let server = state.config.load().server.clone();
            let limit = server.max_body_bytes;
            if declared.is_some_and(|n| n > limit) {
                return Err(warp::reject::custom(too_large(limit)));
            }
            let read = read_limited(stream, limit);
            tokio::time::timeout(Duration::from_millis(server.header_read_timeout_ms), read)
                .await
                .map_err(|_| warp::reject::custom(timed_out()))?
        })
}

async fn read_limited<S, B>(stream: S, limit: u64) -> Result<BytesMut, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(incomplete()))?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(too_large(limit)));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(body)
}

/// A hyper body read whole, within `server.max_body_bytes` and the header-read timeout
/// (the proxy's cached calls, which need the arguments to make the key).
///
/// # Errors
/// 413 over the limit, 408 when it stops arriving, 400 when it breaks off.
pub async fn read_all<B>(state: &Shared, body: B) -> Result<bytes::Bytes, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let server = state.config.load().server.clone();
    let limit = server.max_body_bytes;
    let read = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let wait = Duration::from_millis(server.header_read_timeout_ms);
    match tokio::time::timeout(wait, read.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(_)) => Err(incomplete()),
        Err(_) => Err(timed_out()),
    }
}

/// Whether the declared body is over `server.max_body_bytes`.
pub fn declared_over_limit(state: &Shared, headers: &warp::http::HeaderMap) -> bool {
    headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > state.config.load().server.max_body_bytes)
}

fn timed_out() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body did not arrive in time",
    )
}

fn incomplete() -> ApiError {
    ApiError::bad_request(
        "incomplete_body",
        "the request body ended before its declared length",
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "the request body is over {limit} bytes (server.max_body_bytes)"
    ))
}
