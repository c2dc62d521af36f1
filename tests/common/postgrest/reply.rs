//! PostgREST's answers: what `Accept` and the profile headers ask for, error bodies
//! (503 when the database is gone), single-object replies and `Content-Range`.

use serde_json::{Value, json};
use warp::http::{HeaderMap, Response};

/// What `Accept` asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Wanted {
    Json,
    Object,
}

const OBJECT_TYPE: &str = "application/vnd.pgrst.object+json";

pub(super) fn wanted(headers: &HeaderMap) -> Result<Wanted, Response<String>> {
    let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return Ok(Wanted::Json);
    };
    for media in accept.split(',') {
        let media = media.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "" | "*/*" | "application/*" | "application/json" => return Ok(Wanted::Json),
            OBJECT_TYPE => return Ok(Wanted::Object),
            _ => {}
        }
    }
    Err(error(
        406,
        "PGRST107",
        &format!("None of these media types are available: {accept}"),
    ))
}

/// `Accept-Profile` / `Content-Profile`: only `public` is exposed.
pub(super) fn check_profile(headers: &HeaderMap) -> Result<(), Response<String>> {
    for name in ["accept-profile", "content-profile"] {
        if let Some(schema) = headers.get(name).and_then(|v| v.to_str().ok())
            && schema != "public"
        {
            return Err(error(
                406,
                "PGRST106",
                "The schema must be one of the following: public",
            ));
        }
    }
    Ok(())
}

/// `application/vnd.pgrst.object+json` on a set: its one row, else 406 PGRST116.
pub(super) fn single_object(body: &str, count: i64) -> Result<String, Response<String>> {
    if count == 1
        && let Ok(Value::Array(mut rows)) = serde_json::from_str::<Value>(body)
        && rows.len() == 1
    {
        return Ok(rows.remove(0).to_string());
    }
    Err(pgrst_error(
        406,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
        Some(&format!("The result contains {count} rows")),
        None,
    ))
}

pub(super) fn content_range(offset: i64, count: i64) -> String {
    if count == 0 {
        "*/*".to_string()
    } else {
        format!("{offset}-{}/*", offset + count - 1)
    }
}

pub(super) fn unavailable(e: &tokio_postgres::Error) -> Response<String> {
    unavailable_text(&e.to_string())
}

pub(super) fn unavailable_text(details: &str) -> Response<String> {
    pgrst_error(
        503,
        "PGRST000",
        "Could not connect to the database",
        Some(details),
        None,
    )
}

pub(super) fn error(status: u16, code: &str, message: &str) -> Response<String> {
    pgrst_error(status, code, message, None, None)
}

pub(super) fn pgrst_error(
    status: u16,
    code: &str,
    message: &str,
    details: Option<&str>,
    hint: Option<&str>,
) -> Response<String> {
    let body = json!({"code": code, "message": message, "details": details, "hint": hint});
    reply(status, body.to_string())
}

pub(super) fn reply(status: u16, body: String) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .expect("response")
}

pub(super) fn reply_object(body: String) -> Response<String> {
    Response::builder()
        .status(200)
        .header("content-type", format!("{OBJECT_TYPE}; charset=utf-8"))
        .body(body)
        .expect("response")
}

pub(super) fn set_header(response: &mut Response<String>, name: &'static str, value: &str) {
    if let Ok(value) = value.parse() {
        response.headers_mut().insert(name, value);
    }
}
