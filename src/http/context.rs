//! `GET /codette/context` and `POST /codette/context`: the product. The response is
//! assembled from the cached bytes as they are (no re-serialising the context), and
//! its latency, received to response ready, is recorded once. The GET, the request a
//! cache hit is, comes straight from the service (`service.rs`), not through warp's
//! filter tree; the POST and its bounded JSON body go through warp.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use super::query_memo::{self, Parsed};
use super::{ApiError, Shared, body, clock, with_state};
use crate::chain::Answer;
use crate::form::{self, decode};
use crate::origins::{Asked, ContextRequest, RequestError};

/// The chat request body; fields other than these two (`session_id`, `perspective`,
/// `daw_context`, ...) are accepted and ignored, so the backend can forward it as is.
#[derive(Debug, Deserialize)]
pub struct ContextBody {
    pub message: String,
    #[serde(default)]
    pub filename: Option<String>,
}

pub fn routes(state: Shared) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // POST /codette/context {"message": ..., "filename": ...}
    warp::any()
        .map(Instant::now)
        .and(warp::path!("codette" / "context"))
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(body::json::<ContextBody>(state))
        .and_then(|t, s, b: ContextBody| answer(t, s, b.message, b.filename))
}

/// `message` and `filename` of a `GET /codette/context` query string, decoded as a form
/// (`+` and `%20` are spaces); other parameters are ignored.
///
/// # Errors
/// `invalid_query` without a `message`, or with `message` or `filename` twice;
/// `invalid_utf8` when either decodes to bytes that are not UTF-8 (as a POST body with
/// them is refused: replacing them would give different texts one key).
pub fn parse_query(query: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    let (mut message, mut filename) = (None, None);
    for (name, value) in form::raw_pairs(query.unwrap_or("")) {
        let slot = match decode(name).as_deref() {
            Some("message") => &mut message,
            Some("filename") => &mut filename,
            _ => continue,
        };
        let value = decode(value).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_utf8",
                "message and filename must be UTF-8 once percent-decoded",
            )
        })?;
        if slot.replace(value.into_owned()).is_some() {
            return Err(ApiError::invalid_query());
        }
    }
    Ok((message.ok_or_else(ApiError::invalid_query)?, filename))
}

/// Checks the request against the limits: the answer is a client error, never a panic.
pub fn validate(state: &Shared, message: &str, filename: Option<&str>) -> Result<(), ApiError> {
    let limit = state.config.load().server.max_message_bytes;
    ContextRequest::check(message, filename, limit).map_err(|e| {
        let text = e.to_string();
        match e {
            RequestError::Empty => ApiError::bad_request("empty_message", text),
            RequestError::Nul => ApiError::bad_request("nul_character", text),
            RequestError::TooLong { .. } | RequestError::FilenameTooLong => {
                ApiError::too_large(text)
            }
        }
    })
}

/// The request and key of a `GET`'s query string, checked against the limits: from this
/// thread's memo when the query came before (`query_memo.rs`).
///
/// # Errors
/// As [`parse_query`] and [`validate`].
pub fn parsed_query(state: &Shared, query: Option<&str>) -> Result<Parsed, ApiError> {
    let chain = &state.chain;
    let parsed = query_memo::parsed(
        query.unwrap_or(""),
        chain.namespace(),
        chain.normalizes(),
        || parse_query(query).map(|(message, filename)| prepare(state, message, filename)),
    )?;
    // On every request, remembered or not: a reload may have lowered the limit since.
    checked(state, parsed)
}

/// A request with its key (an empty filename is none), not yet checked.
fn prepare(state: &Shared, message: String, filename: Option<String>) -> Parsed {
    let filename = filename.filter(|f| !f.is_empty());
    let key = state.chain.key_for(&message, filename.as_deref());
    Parsed {
        request: Arc::new(ContextRequest { message, filename }),
        key,
    }
}

/// `parsed` if it is within the limits ([`validate`]).
fn checked(state: &Shared, parsed: Parsed) -> Result<Parsed, ApiError> {
    let request = &parsed.request;
    validate(state, &request.message, request.filename.as_deref())?;
    Ok(parsed)
}

/// Answers a POST's `message` and `filename`.
pub async fn answer(
    started: Instant,
    state: Shared,
    message: String,
    filename: Option<String>,
) -> Result<warp::reply::Response, Infallible> {
    match checked(&state, prepare(&state, message, filename)) {
        Ok(parsed) => serve(started, state, parsed).await,
        Err(e) => Ok(e.reply()),
    }
}

/// Answers a checked request through the chain, and records its latency.
pub async fn serve(
    started: Instant,
    state: Shared,
    Parsed { request, key }: Parsed,
) -> Result<warp::reply::Response, Infallible> {
    if let Some(hot) = &state.hot {
        hot.saw(&request);
    }
    match state.chain.serve(key, || Asked::Context(request)).await {
        Ok(answer) => {
            let response = render(&answer);
            state
                .chain
                .record_request(Some(answer.source), started.elapsed());
            Ok(response)
        }
        Err(failure) => {
            let response = ApiError::origin(&failure.error).reply();
            state.chain.record_request(None, started.elapsed());
            tracing::debug!(key = failure.key.as_str(), error = %failure.error, "context request failed");
            Ok(response)
        }
    }
}

/// `{"context": <bytes as stored>, "cache": {...}, "timestamp": "..."}`, written piece
/// by piece: the `fmt` machinery was a tenth of a memory hit.
fn render(answer: &Answer) -> warp::reply::Response {
    let mut response = Response::new(render_bytes(answer).into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The bytes of [`render`]'s body, in a buffer of exactly their length: a body whose
/// buffer has spare capacity costs hyper's `Bytes` one more allocation per answer.
fn render_bytes(answer: &Answer) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let (whole, fraction) = age_text(answer.age, &mut digits);
    // Key, source and timestamp are ASCII we produced: no escaping needed.
    let parts: [&[u8]; 13] = [
        b"{\"context\":",
        &answer.body,
        b",\"cache\":{\"hit\":",
        if answer.source.is_hit() {
            b"true"
        } else {
            b"false"
        },
        b",\"source\":\"",
        answer.source.as_str().as_bytes(),
        b"\",\"key\":\"",
        answer.key.as_str().as_bytes(),
        b"\",\"age_seconds\":",
        whole.as_bytes(),
        &fraction,
        // Only on negative entries: other answers stay byte for byte what they were.
        if answer.negative {
            b",\"negative\":true"
        } else {
            b""
        },
        b"},\"timestamp\":\"",
    ];
    const END: &[u8] = b"\"}";
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + clock::TEXT_LEN + END.len();
    let mut out = Vec::with_capacity(len);
    for part in parts {
        out.extend_from_slice(part);
    }
    clock::write_now(&mut out);
    out.extend_from_slice(END);
    out
}

/// Seconds rounded to 2 decimals, as every figure in the JSON (`12.50`): the whole
/// seconds, then `.` and two digits.
fn age_text(age: Duration, digits: &mut itoa::Buffer) -> (&str, [u8; 3]) {
    let centis = (age.as_nanos() + 5_000_000) / 10_000_000;
    let frac = (centis % 100) as u8;
    (
        digits.format(centis / 100),
        [b'.', b'0' + frac / 10, b'0' + frac % 10],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Source;

    /// The query decodes as serde_urlencoded did: `+` and `%20` are spaces, unknown
    /// parameters are ignored, a missing or repeated field is `invalid_query`.
    #[test]
    fn queries_parse() {
        let ok = |q: &str| parse_query(Some(q)).unwrap();
        assert_eq!(
            ok("message=how+to%20use%20reverb&x=1"),
            ("how to use reverb".into(), None)
        );
        assert_eq!(
            ok("filename=effect_chain.ts&message=audio%20analysis"),
            ("audio analysis".into(), Some("effect_chain.ts".into()))
        );
        assert_eq!(ok("message="), (String::new(), None));
        assert_eq!(ok("message=%E2%9C%85"), ("✅".into(), None));
        assert_eq!(ok("message=a&&x&message2=b"), ("a".into(), None));
        for invalid in ["message=x%ff", "message=x%fe", "message=a&filename=%C3"] {
            let e = parse_query(Some(invalid)).unwrap_err();
            assert_eq!(e.code, "invalid_utf8", "{invalid}");
        }
        assert_eq!(ok("message=x%EF%BF%BD").0, "x\u{fffd}");
        for bad in [
            None,
            Some(""),
            Some("filename=a"),
            Some("message=a&message=b"),
        ] {
            let e = parse_query(bad).unwrap_err();
            assert_eq!(e.reply().status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    /// The response buffer is exactly the body's length, for every source, a negative
    /// entry and the largest age.
    #[test]
    fn render_sizes_its_buffer_exactly() {
        let key =
            crate::key::Key::derive_in(&crate::key::Key::rpc_namespace("f"), "m", None, false);
        for (source, age, negative) in [
            (
                Source::Tier(crate::names::TierKind::RedisCluster),
                Duration::MAX,
                true,
            ),
            (
                Source::Tier(crate::names::TierKind::Memory),
                Duration::ZERO,
                false,
            ),
            (Source::Origin, Duration::from_millis(12_506), false),
        ] {
            let answer = Answer {
                body: bytes::Bytes::from_static(
                    br#"{"snippets":[],"file":null,"chat_history":[]}"#,
                ),
                source,
                age,
                ttl: None,
                coalesced: false,
                negative,
                key: key.clone(),
            };
            let out = render_bytes(&answer);
            let text = String::from_utf8_lossy(&out);
            assert!(out.ends_with(b"\"}"), "{text}");
            assert_eq!(out.capacity(), out.len(), "{text}");
            serde_json::from_slice::<serde_json::Value>(&out).expect("the body is JSON");
        }
    }

    /// Ages are written with two decimals, rounded, as `{:.2}` would.
    #[test]
    fn ages_have_two_decimals() {
        for (age, text) in [
            (Duration::ZERO, "0.00"),
            (Duration::from_millis(12_504), "12.50"),
            (Duration::from_millis(12_506), "12.51"),
            (Duration::from_micros(999_996), "1.00"),
            (Duration::from_secs(3_600), "3600.00"),
        ] {
            let mut digits = itoa::Buffer::new();
            let (whole, fraction) = age_text(age, &mut digits);
            assert_eq!(
                format!("{whole}{}", std::str::from_utf8(&fraction).unwrap()),
                text
            );
        }
    }
}
