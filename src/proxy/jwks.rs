//! The JWKS: a project's published signing keys, fetched on first need and again when
//! a token names a `kid` it lacks (a rotation), at most once per
//! [`REFETCH_INTERVAL`](super::jwt::REFETCH_INTERVAL) and one fetch at a time.

/// Largest JWKS accepted (a real one is a few hundred bytes a key).
const JWKS_MAX_BYTES: usize = 256 * 1024;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::jwt::{JwtError, REFETCH_INTERVAL};

/// Limit for one JWKS fetch, body included.
const JWKS_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys fetched over plain HTTP could be swapped in transit, and with them anyone could
/// mint tokens: `http://` is allowed for loopback only.
pub(super) fn check_jwks_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("proxy.jwt.jwks_url {url:?} is not a valid URL: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err(format!(
            "proxy.jwt.jwks_url {url:?} must use https:// (http:// only on 127.0.0.1 or localhost)"
        )),
        _ => Err(format!(
            "proxy.jwt.jwks_url {url:?} must start with https:// (or http:// on loopback)"
        )),
    }
}

/// One usable JWKS key.
#[derive(Clone)]
pub(super) struct JwksKey {
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

impl JwksKey {
    pub(super) fn alg_name(&self) -> &'static str {
        if self.alg == Algorithm::ES256 {
            "ES256"
        } else {
            "RS256"
        }
    }

    /// EC P-256 keys verify ES256, RSA keys RS256; anything else (symmetric keys in a
    /// public document, encryption keys, other curves) is skipped.
    fn from_jwk(jwk: &Jwk) -> Option<(String, Self)> {
        let kid = jwk.common.key_id.clone()?;
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let (alg, declared) = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
            _ => return None,
        };
        if jwk.common.key_algorithm.is_some_and(|a| a != declared) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some((kid, Self { alg, key }))
    }
}

/// The JWKS, fetched lazily and cached by `kid`.
pub(super) struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<HashMap<String, JwksKey>>,
    /// Held across a fetch: fetches are single-flight.
    state: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    /// Whether the first fetch was tried; it is the only one not rate limited.
    tried: bool,
    last_refetch: Option<Instant>,
    last_error: Option<String>,
}

impl Jwks {
    pub(super) fn new(url: &str) -> Result<Self, JwtError> {
        check_jwks_url(url).map_err(JwtError::JwksUrl)?;
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT)
            .user_agent(concat!("codette-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwtError::Client(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            keys: ArcSwap::from_pointee(HashMap::new()),
            state: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    /// The key named `kid`, fetching the JWKS when it is not known and a fetch is due.
    pub(super) async fn key(&self, kid: &str) -> Result<JwksKey, JwtError> {
        if let Some(key) = self.keys.load().get(kid) {
            return Ok(key.clone());
        }
        let mut state = self.state.lock().await;
        // Another caller may have fetched it while this one waited for the lock.
        if let Some(key) = self.keys.load().get(kid) {
            return Ok(key.clone());
        }
        let due = !state.tried
            || state
                .last_refetch
                .is_none_or(|t| t.elapsed() >= REFETCH_INTERVAL);
        if due {
            if state.tried {
                state.last_refetch = Some(Instant::now());
            }
            state.tried = true;
            match self.fetch().await {
                Ok(keys) => {
                    self.keys.store(Arc::new(keys));
                    state.last_error = None;
                }
                Err(reason) => {
                    tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS");
                    state.last_error = Some(reason);
                }
            }
            if let Some(key) = self.keys.load().get(kid) {
                return Ok(key.clone());
            }
        }
        match &state.last_error {
            Some(reason) if self.keys.load().is_empty() => Err(JwtError::JwksUnavailable {
                url: self.url.clone(),
                reason: reason.clone(),
            }),
            _ => Err(JwtError::UnknownKid {
                kid: kid.chars().take(64).collect(),
            }),
        }
    }

    /// One GET of the JWKS; unusable keys are skipped, not fatal.
    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("larger than {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(&body)
            .map_err(|e| format!("not a JWKS ({{\"keys\": [...]}}): {e}"))?;
        let keys: HashMap<_, _> = set
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| JwksKey::from_jwk(&jwk))
            .collect();
        if keys.is_empty() {
            return Err("no ES256 (P-256) or RS256 signing key with a kid".into());
        }
        Ok(keys)
    }
}
