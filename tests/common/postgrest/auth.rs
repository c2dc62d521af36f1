//! Who is calling: the gateway's credential check for `/rest/v1/` (plain key, anon or
//! service-role key, user JWT) and the GoTrue-shaped `/auth/v1/` endpoints.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use warp::http::{HeaderMap, Method, Response};

use super::State;
use super::reply::error;
use super::tokens::{
    email_for_sub, looks_like_jwt, sign_jwt, sub_for_email, unix_now, user_claims, verify_jwt,
};

/// The password `/auth/v1/token?grant_type=password` accepts for every email.
pub const USER_PASSWORD: &str = "test-password";

/// The role a JWT without a `role` claim runs as (PostgREST's `db-anon-role`).
pub const ANON_ROLE: &str = "anon";

/// Whom a request runs as.
#[derive(Clone, Debug)]
pub(super) enum Caller {
    /// The plain test key: the connection's superuser, no role switch (the old behaviour).
    Superuser,
    /// A verified JWT: its role and claims.
    Jwt { role: String, claims: Value },
}

impl Caller {
    /// PostgREST's "authenticated": a JWT whose role is not the anon role.
    pub(super) fn authenticated(&self) -> bool {
        match self {
            Caller::Superuser => true,
            Caller::Jwt { role, .. } => role != ANON_ROLE,
        }
    }
}

pub(super) fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller of a `/rest/v1/` request, or the 401 to answer.
pub(super) fn authenticate(state: &State, headers: &HeaderMap) -> Result<Caller, Response<String>> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorised = |message: &str| {
        let mut response = error(401, "PGRST301", message);
        let challenge = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        if let Ok(value) = challenge.parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
        response
    };
    // The API gateway's check: the plain key, or the project's anon / service-role JWT.
    let apikey_jwt = match get("apikey") {
        Some(key) if key == state.api_key => None,
        Some(key) if looks_like_jwt(key) => match verify_jwt(key) {
            Ok(claims) if matches!(claims["role"].as_str(), Some("anon" | "service_role")) => {
                Some(key)
            }
            _ => return Err(unauthorised("Invalid API key")),
        },
        Some(_) => return Err(unauthorised("JWT invalid or missing API key")),
        None => return Err(unauthorised("No API key found in request")),
    };
    let token = match get("authorization") {
        Some(value) => match strip_bearer(value) {
            Some(token) => token,
            None => return Err(unauthorised("JWT invalid or missing API key")),
        },
        // Supabase's gateway sends an apikey JWT on as the bearer; a plain key is not one.
        None => match apikey_jwt {
            Some(key) => key,
            None => return Err(unauthorised("JWT invalid or missing API key")),
        },
    };
    if token == state.api_key {
        return Ok(Caller::Superuser);
    }
    match verify_jwt(token) {
        Ok(claims) => {
            let role = claims
                .get("role")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .unwrap_or(ANON_ROLE)
                .to_string();
            Ok(Caller::Jwt { role, claims })
        }
        Err(message) => Err(unauthorised(&message)),
    }
}

pub(super) fn auth(
    state: &State,
    rest: &str,
    method: Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Response<String> {
    // The API gateway's key check comes first.
    match headers.get("apikey").and_then(|v| v.to_str().ok()) {
        None => return kong_error(401, "No API key found in request"),
        Some(key) if key == state.api_key => {}
        Some(key) => match verify_jwt(key) {
            Ok(claims) if matches!(claims["role"].as_str(), Some("anon" | "service_role")) => {}
            _ => return kong_error(401, "Invalid authentication credentials"),
        },
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest.trim_end_matches('/')) {
        (Method::GET, "health") => auth_reply(
            200,
            json!({
                "version": "v2.170.0", "name": "GoTrue",
                "description": "GoTrue is a user registration and authentication API",
            }),
        ),
        (Method::POST, "token") => match param("grant_type") {
            Some("password") => {
                let email = body["email"].as_str().unwrap_or("");
                let password = body["password"].as_str().unwrap_or("");
                if !email.contains('@') || password != USER_PASSWORD {
                    return gotrue_error(400, "invalid_credentials", "Invalid login credentials");
                }
                auth_reply(200, session(email))
            }
            Some("refresh_token") => {
                let email = body["refresh_token"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("refresh."))
                    .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                match email {
                    Some(email) => auth_reply(200, session(&email)),
                    None => gotrue_error(
                        400,
                        "refresh_token_not_found",
                        "Invalid Refresh Token: Refresh Token Not Found",
                    ),
                }
            }
            _ => gotrue_error(
                400,
                "unsupported_grant_type",
                "unsupported_grant_type: only password and refresh_token are supported here",
            ),
        },
        (Method::GET, "user") => {
            let Some(token) = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(strip_bearer)
            else {
                return gotrue_error(
                    401,
                    "no_authorization",
                    "This endpoint requires a Bearer token",
                );
            };
            match verify_jwt(token) {
                Ok(claims) if claims["sub"].is_string() => {
                    let sub = claims["sub"].as_str().unwrap_or_default();
                    let email = claims["email"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| email_for_sub(sub));
                    auth_reply(200, user_json(sub, &email))
                }
                Ok(_) => gotrue_error(403, "bad_jwt", "invalid claim: missing sub claim"),
                Err(e) => gotrue_error(403, "bad_jwt", &format!("invalid JWT: {e}")),
            }
        }
        (Method::POST, "logout") => Response::builder()
            .status(204)
            .body(String::new())
            .expect("response"),
        _ => gotrue_error(404, "not_found", "Not Found"),
    }
}

fn user_json(sub: &str, email: &str) -> Value {
    json!({
        "id": sub, "aud": "authenticated", "role": "authenticated", "email": email,
        "email_confirmed_at": "2024-01-01T00:00:00Z", "phone": "",
        "confirmed_at": "2024-01-01T00:00:00Z", "last_sign_in_at": "2024-01-01T00:00:00Z",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {}, "identities": [],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "is_anonymous": false,
    })
}

/// A GoTrue session for `email`: a real access token for `sub_for_email(email)`.
fn session(email: &str) -> Value {
    let sub = sub_for_email(email);
    let exp = unix_now() + 3600;
    let mut claims = user_claims(&sub, exp);
    claims["email"] = json!(email);
    json!({
        "access_token": sign_jwt(&claims), "token_type": "bearer",
        "expires_in": 3600, "expires_at": exp,
        "refresh_token": format!("refresh.{}", URL_SAFE_NO_PAD.encode(email)),
        "user": user_json(&sub, email),
    })
}

fn auth_reply(status: u16, body: Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .expect("response")
}

fn gotrue_error(status: u16, error_code: &str, msg: &str) -> Response<String> {
    auth_reply(
        status,
        json!({"code": status, "error_code": error_code, "msg": msg}),
    )
}

/// What Supabase's API gateway (Kong) answers itself.
pub(super) fn kong_error(status: u16, message: &str) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({ "message": message }).to_string())
        .expect("response")
}
