//! The JWKS: a project's published signing keys, fetched on first need, again when a
//! token names a `kid` it lacks (a rotation), and again once the set is older than
//! [`MAX_AGE`] (a revocation: a key taken out of the set must stop verifying tokens);
//! at most once per [`REFETCH_INTERVAL`](super::jwt::REFETCH_INTERVAL) after the first,
//! one fetch at a time. A set too old that cannot be fetched again verifies nothing:
//! its tokens' calls are forwarded without the cache, for the upstream to judge.

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

/// How long a fetched set is trusted: Supabase's own edge caches the JWKS this long.
pub(super) const MAX_AGE: Duration = Duration::from_secs(600);
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

/// The keys of one fetch, by `kid`, and when they were fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, JwksKey>,
    fetched: Option<Instant>,
}

impl KeySet {
    fn fresh(&self, max_age: Duration) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() < max_age)
    }

    /// The key named `kid`, if the set is still to be trusted.
    fn usable(&self, kid: &str, max_age: Duration) -> Option<JwksKey> {
        let key = self.keys.get(kid)?;
        self.fresh(max_age).then(|| key.clone())
    }
}

/// The JWKS, fetched lazily and cached by `kid`.
pub(super) struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// [`MAX_AGE`], shorter in tests.
    max_age: Duration,
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
            keys: ArcSwap::from_pointee(KeySet::default()),
            max_age: MAX_AGE,
            state: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    #[cfg(test)]
    pub(super) fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    /// The key named `kid`, fetching the JWKS when the key is not known or the set is
    /// too old, and a fetch is due.
    pub(super) async fn key(&self, kid: &str) -> Result<JwksKey, JwtError> {
        if let Some(key) = self.keys.load().usable(kid, self.max_age) {
            return Ok(key);
        }
        let mut state = self.state.lock().await;
        // Another caller may have fetched it while this one waited for the lock.
        if let Some(key) = self.keys.load().usable(kid, self.max_age) {
            return Ok(key);
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
                    let fetched = Some(Instant::now());
                    self.keys.store(Arc::new(KeySet { keys, fetched }));
                    state.last_error = None;
                }
                Err(reason) => {
                    tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS");
                    state.last_error = Some(reason);
                }
            }
            if let Some(key) = self.keys.load().usable(kid, self.max_age) {
                return Ok(key);
            }
        }
        match &state.last_error {
            Some(reason) if !self.keys.load().fresh(self.max_age) => {
                Err(JwtError::JwksUnavailable {
                    url: self.url.clone(),
                    reason: reason.clone(),
                })
            }
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
