//! Every error a client can see: domain errors as [`ApiError`], warp's own rejections
//! mapped in [`handle`], all written as `{"error": {"code": "...", "message": "..."}}`.

use std::convert::Infallible;

use serde_json::json;
use warp::http::StatusCode;
use warp::reject::{
    InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader, PayloadTooLarge,
    UnsupportedMediaType,
};
use warp::{Rejection, Reply};

use super::json_reply;
use crate::origins::{OriginError, retry_after_secs};

/// An error answered to the client. Messages say what to do and never carry secrets.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`, when trying later can help.
    pub retry_after: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A query string without `message=` (or with it twice).
    pub fn invalid_query() -> Self {
        Self::bad_request(
            "invalid_query",
            "the query string needs message=<text> and may have filename=<name>",
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// An origin failure: 504 for a timeout, 503 while the breaker is open, 502 for
    /// anything else.
    pub fn origin(error: &OriginError) -> Self {
        if let OriginError::Unavailable { retry_after } = error {
            let mut e = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "origin_unavailable",
                error.to_string(),
            );
            e.retry_after = Some(retry_after_secs(*retry_after));
            e
        } else if error.is_timeout() {
            Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "origin_timeout",
                error.to_string(),
            )
        } else {
            Self::new(StatusCode::BAD_GATEWAY, "origin_error", error.to_string())
        }
    }

    pub fn reply(&self) -> warp::reply::Response {
        let mut response = json_reply(
            &json!({"error": {"code": self.code, "message": self.message}}),
            self.status,
        );
        // A body refused (413) or abandoned (408) may be left unread, and hyper then
        // closes the connection: say so, or a keep-alive client reuses it and fails.
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, secs.into());
        }
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            response.headers_mut().insert(
                warp::http::header::CONNECTION,
                warp::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        self.reply()
    }
}

/// Turns any rejection into a JSON error with the right status.
pub async fn handle(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.reply());
    } else if rejection.is_not_found() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; see the README for the routes",
        )
    } else if rejection.find::<InvalidQuery>().is_some() {
        ApiError::invalid_query()
    } else if let Some(e) = rejection.find::<InvalidHeader>() {
        ApiError::bad_request("invalid_header", e.to_string())
    } else if let Some(e) = rejection.find::<MissingHeader>() {
        ApiError::bad_request("missing_header", e.to_string())
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        ApiError::too_large("the request body is too large")
    } else if rejection.find::<LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length",
        )
    } else if rejection.find::<UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        // Last of the known ones: when one route took the method and then refused the
        // query or body, the other routes' "wrong method" must not hide that reason.
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    };
    Ok(error.reply())
}
