//! JWT verification for the proxy: who a caller is decides which cached answers it may
//! be served, so a token is believed only when its signature checks out with a key we
//! hold. Supabase signs with the project's legacy secret (HS256) or, on projects with
//! asymmetric keys, with a key published in its JWKS (ES256, or RS256), named by `kid`.
//!
//! The algorithm is chosen from the token header but only among what the configured
//! keys cover: HS256 only with the secret, ES256/RS256 only with a JWKS public key of
//! that type (so a public key can never be used as an HMAC secret), never `none`. The
//! JWKS is fetched on first need and again when a token names a `kid` it lacks (a key
//! rotation), at most once per [`REFETCH_INTERVAL`] and one fetch at a time, so a flood
//! of made-up `kid`s costs the JWKS host nothing. Errors never quote the token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::jwks::{Jwks, check_jwks_url};
use crate::secret::{Secret, read_secret_file};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The shortest time between two JWKS fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Longer bearer strings are not taken for tokens (headers are bounded anyway).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// `[proxy.jwt]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The project's legacy JWT secret (HS256), as shown in the dashboard (not decoded).
    pub secret: Secret,
    /// A file holding the secret (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The project's JWKS (ES256/RS256 signing keys), e.g.
    /// `https://xyz.supabase.co/auth/v1/.well-known/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

impl JwtConfig {
    /// Whether any key source is set (else no token can be verified).
    pub fn is_configured(&self) -> bool {
        !self.secret.is_empty() || self.secret_file.is_some() || self.jwks_url.is_some()
    }

    /// Reads `secret_file` into `secret` (an unreadable file is reported by `validate`).
    pub(crate) fn resolve_files(&mut self) {
        if let Some(secret) = self.secret_file.as_deref().and_then(read_secret_file) {
            self.secret = secret;
        }
    }

    /// Every problem, as sentences an operator can act on.
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(file) = &self.secret_file {
            if read_secret_file(file).is_none() {
                problems.push(format!(
                    "proxy.jwt.secret_file: cannot read a secret from {}",
                    file.display()
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            if let Err(problem) = check_jwks_url(url) {
                problems.push(problem);
            }
        }
        problems
    }
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Postgres role PostgREST would switch to (`anon`, `authenticated`, …).
    pub role: String,
    /// The user id; `None` for tokens that name no user (the anon key).
    pub sub: Option<String>,
    /// A digest of the token's other claims, empty when it has none: row-level
    /// security may read any claim (`auth.jwt()->>'aal'` for MFA, `app_metadata`,
    /// `is_anonymous`, `session_id`), so a user's answers are keyed on them too. The
    /// times (`iat`, `nbf`, `exp`) are left out: they change with every refresh of the
    /// same session.
    pub claims: String,
}

/// Why a token is not accepted, or a verifier cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Neither a secret nor a JWKS URL is configured.
    #[error(
        "no key to verify tokens with: set proxy.jwt.secret (or secret_file) or proxy.jwt.jwks_url"
    )]
    NoKey,
    /// `jwks_url` is unusable.
    #[error("{0}")]
    JwksUrl(String),
    /// The HTTP client for the JWKS could not be built.
    #[error("cannot build the HTTP client for the JWKS: {0}")]
    Client(String),
    /// Not three base64url parts with a JSON header.
    #[error("not a JWT: expected three base64url parts with a JSON header naming its alg")]
    Malformed,
    /// `alg: none`: an unsigned token proves nothing.
    #[error("unsigned token (alg \"none\") rejected")]
    Unsigned,
    /// An algorithm outside HS256, ES256 and RS256.
    #[error("token signed with {alg}; only HS256, ES256 and RS256 are accepted")]
    UnsupportedAlgorithm { alg: String },
    /// The algorithm is supported but its key source is not configured.
    #[error("{alg} token, but no {needs} is configured in [proxy.jwt]")]
    NotConfigured {
        alg: &'static str,
        needs: &'static str,
    },
    /// The header lists critical extensions we do not implement (RFC 7515 §4.1.11).
    #[error("token header has a \"crit\" extension list, which is not supported")]
    CriticalExtension,
    /// ES256/RS256 tokens must name their key.
    #[error("{alg} token without a \"kid\" header: cannot tell which JWKS key signed it")]
    MissingKid { alg: &'static str },
    /// The JWKS (even after a refetch, or within the refetch pause) has no such key.
    #[error("no key with kid {kid:?} in the JWKS (refetched at most every 30 s)")]
    UnknownKid { kid: String },
    /// The key named by `kid` is of another type than the token's `alg`.
    #[error("JWKS key {kid:?} cannot verify {alg} tokens")]
    KeyMismatch { kid: String, alg: &'static str },
    /// The JWKS could not be fetched and no keys are cached.
    #[error("JWKS at {url} unavailable: {reason}")]
    JwksUnavailable { url: String, reason: String },
    /// The signature does not match.
    #[error("bad signature: wrong secret or key, or the token was altered")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    /// No `exp`: a token that never expires is not accepted.
    #[error("token has no exp claim")]
    MissingExp,
    /// No `role` claim, or an empty one.
    #[error("token has no role claim")]
    MissingRole,
    /// A claim has the wrong type (`role`/`sub` strings, `exp`/`nbf` numbers).
    #[error("token claims are malformed: {claim}")]
    BadClaims { claim: String },
}

/// Whether `s` has a JWT's shape: base64url header and payload and a base64url
/// (possibly empty, as in unsigned tokens) signature, dot-separated. Cheap: decodes nothing.
pub fn looks_like_jwt(s: &str) -> bool {
    let b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if s.len() > MAX_TOKEN_BYTES {
        return false;
    }
    // A plain count, not `split('.')` (a searcher built per call): this runs on every
    // publishable key too, and those have no dot.
    if s.bytes().filter(|&b| b == b'.').count() != 2 {
        return false;
    }
    let Some((h, rest)) = s.split_once('.') else {
        return false;
    };
    let Some((p, sig)) = rest.split_once('.') else {
        return false;
    };
    !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(sig)
}

/// The header fields we look at, read before any library call so `none` and unknown
/// algorithms get their own error.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    fn parse(token: &str) -> Result<Self, JwtError> {
        if !looks_like_jwt(token) {
            return Err(JwtError::Malformed);
        }
        let encoded = token.split('.').next().unwrap_or_default();
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| JwtError::Malformed)
    }
}

/// The claims that make an [`Identity`]; `exp`/`nbf` are checked by `jsonwebtoken`.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    /// Required, and checked, by `decode`.
    #[serde(default)]
    exp: u64,
    /// Every other claim.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// [`Identity::claims`]: the MD5, in hex, of the claims other than role, sub and the
/// times, as sorted JSON.
fn claims_digest(other: &BTreeMap<String, serde_json::Value>) -> String {
    use md5::{Digest, Md5};
    let kept: BTreeMap<&str, &serde_json::Value> = other
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "iat" | "nbf" | "exp"))
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    let text = serde_json::to_vec(&kept).unwrap_or_default();
    format!("{:032x}", u128::from_be_bytes(Md5::digest(&text).into()))
}

/// Verifies tokens with the configured secret and JWKS. Cheap to share (`Arc`).
pub struct Verifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

impl Verifier {
    /// Builds from the settings; nothing is fetched until a token needs the JWKS. With
    /// no key source at all it still builds (a proxy may accept only publishable keys)
    /// and rejects every token with [`JwtError::NoKey`].
    ///
    /// # Errors
    /// [`JwtError::JwksUrl`] for an unusable URL, [`JwtError::Client`] when the HTTP
    /// client cannot be built.
    pub fn new(config: &JwtConfig) -> Result<Self, JwtError> {
        let mut secret = config.secret.clone();
        if secret.is_empty() {
            if let Some(from_file) = config.secret_file.as_deref().and_then(read_secret_file) {
                secret = from_file;
            }
        }
        let secret =
            (!secret.is_empty()).then(|| DecodingKey::from_secret(secret.expose().as_bytes()));
        let jwks = match &config.jwks_url {
            Some(url) => Some(Jwks::new(url)?),
            None => None,
        };
        Ok(Self { secret, jwks })
    }

    /// The caller's identity if `token` is signed by a configured key and current.
    ///
    /// # Errors
    /// [`JwtError`] saying why the token is not accepted.
    pub async fn verify(&self, token: &str) -> Result<Identity, JwtError> {
        self.verify_until(token).await.map(|(identity, _)| identity)
    }

    /// [`Verifier::verify`], with the token's `exp` (Unix seconds): how long the
    /// verdict holds.
    ///
    /// # Errors
    /// As [`Verifier::verify`].
    pub async fn verify_until(&self, token: &str) -> Result<(Identity, u64), JwtError> {
        if self.secret.is_none() && self.jwks.is_none() {
            return Err(JwtError::NoKey);
        }
        let header = RawHeader::parse(token)?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalExtension);
        }
        let claims = match header.alg.as_str() {
            "HS256" => {
                let key = self.secret.as_ref().ok_or(JwtError::NotConfigured {
                    alg: "HS256",
                    needs: "secret",
                })?;
                decode(token, key, Algorithm::HS256)?
            }
            "ES256" | "RS256" => {
                let alg = if header.alg == "ES256" {
                    "ES256"
                } else {
                    "RS256"
                };
                let jwks = self.jwks.as_ref().ok_or(JwtError::NotConfigured {
                    alg,
                    needs: "jwks_url",
                })?;
                let kid = header.kid.ok_or(JwtError::MissingKid { alg })?;
                let key = jwks.key(&kid).await?;
                if key.alg_name() != alg {
                    return Err(JwtError::KeyMismatch { kid, alg });
                }
                decode(token, &key.key, key.alg)?
            }
            other if other.eq_ignore_ascii_case("none") => return Err(JwtError::Unsigned),
            other => {
                return Err(JwtError::UnsupportedAlgorithm {
                    alg: other.chars().take(16).collect(),
                });
            }
        };
        let role = claims
            .role
            .filter(|r| !r.is_empty())
            .ok_or(JwtError::MissingRole)?;
        let sub = claims.sub.filter(|s| !s.is_empty());
        let identity = Identity {
            role,
            sub,
            claims: claims_digest(&claims.other),
        };
        Ok((identity, claims.exp))
    }
}

/// Checks the signature with `key` for exactly `alg`, then `exp` (required) and `nbf`.
fn decode(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, JwtError> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    // Supabase sets aud to "authenticated" or "anon" depending on the key; the role
    // claim is what scopes the cache, so aud is not checked.
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Claims>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.into_kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::MissingRequiredClaim(c) if c == "exp" => JwtError::MissingExp,
            ErrorKind::InvalidClaimFormat(claim) => JwtError::BadClaims { claim },
            // serde's message may quote claim values: name the expectation instead.
            ErrorKind::Json(_) => JwtError::BadClaims {
                claim: "role and sub must be strings, exp and nbf numbers".into(),
            },
            _ => JwtError::Malformed,
        }),
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
