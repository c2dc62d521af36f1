//! The JWTs the gateway and its tests share: HS256 signing and verifying with
//! [`JWT_SECRET`], and the project's keys and users' tokens built from it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The HS256 secret the gateway verifies JWTs with (a Supabase project's JWT secret).
pub const JWT_SECRET: &str = "codette-test-jwt-secret-with-at-least-32-characters";

type HmacSha256 = Hmac<Sha256>;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 JWT of `claims`, signed with [`JWT_SECRET`].
pub fn sign_jwt(claims: &Value) -> String {
    sign_jwt_with(claims, JWT_SECRET)
}

/// An HS256 JWT of `claims`, signed with `secret` (a wrong secret makes a forged token).
pub fn sign_jwt_with(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac(secret, &input));
    format!("{input}.{signature}")
}

/// The project's anon key: role `anon`, no `sub`, expiring in 2100.
pub fn anon_key() -> String {
    sign_jwt(&json!({
        "iss": "supabase", "ref": "codette-test", "role": "anon",
        "iat": 1_700_000_000u64, "exp": 4_102_444_800u64,
    }))
}

/// The project's service-role key: role `service_role` (bypasses row-level security).
pub fn service_role_key() -> String {
    sign_jwt(&json!({
        "iss": "supabase", "ref": "codette-test", "role": "service_role",
        "iat": 1_700_000_000u64, "exp": 4_102_444_800u64,
    }))
}

/// A signed-in user's access token: role `authenticated`, this `sub`, expiring in an hour.
pub fn user_token(sub: &str) -> String {
    user_token_expiring(sub, unix_now() + 3600)
}

/// `user_token` with this `exp` (a past one makes an expired token).
pub fn user_token_expiring(sub: &str, exp: u64) -> String {
    sign_jwt(&user_claims(sub, exp))
}

pub(super) fn user_claims(sub: &str, exp: u64) -> Value {
    json!({
        "iss": "http://127.0.0.1/auth/v1", "sub": sub, "aud": "authenticated",
        "exp": exp, "iat": exp.saturating_sub(3600), "email": email_for_sub(sub),
        "phone": "", "role": "authenticated", "aal": "aal1", "is_anonymous": false,
        "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
        "session_id": format!("session-{sub}"),
    })
}

/// The `sub` `/auth/v1/token` gives an email: its local part (`user-a@example.com` →
/// `user-a`), so signing in as `user-a@…` reads user-a's notes.
pub fn sub_for_email(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_string()
}

/// The email `user_token(sub)` carries: `{sub}@example.com`.
pub fn email_for_sub(sub: &str) -> String {
    format!("{sub}@example.com")
}

/// The claims of a token signed with [`JWT_SECRET`], or PostgREST's message for why not
/// (`JWT expired`, `JWSError JWSInvalidSignature`, ...).
pub fn verify_jwt(token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(format!(
            "JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got {})",
            parts.len()
        ));
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("JWSError (CompactDecodeError Invalid base64: {e})"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JWSError (JSONDecodeError {e})"))
    };
    let header = decode(header)?;
    if header["alg"] != "HS256" {
        return Err("JWSError JWSInvalidSignature".into());
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "JWSError JWSInvalidSignature".to_string())?;
    let mut mac = HmacSha256::new_from_slice(JWT_SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return Err("JWSError JWSInvalidSignature".into());
    }
    let claims = decode(payload)?;
    if !claims.is_object() {
        return Err("JWTClaimsSetDecodeError \"claims are not an object\"".into());
    }
    // PostgREST allows 30 s of clock skew.
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_u64().ok_or("JWTClaimsSetDecodeError \"exp\"")?;
        if unix_now() > exp + 30 {
            return Err("JWT expired".into());
        }
    }
    Ok(claims)
}

fn hmac(secret: &str, input: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
}
