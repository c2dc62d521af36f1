//! The proxy as it runs: one chain per cached function (siblings of the
//! `/codette/context` chain, so tiers, purges and single flights are shared), who a
//! caller is, and each function's scope once introspection has said what it is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use warp::http::{HeaderMap, HeaderName, header};

use super::jwt::looks_like_jwt;
use super::{Identity, JwtError, ProxyConfig, Scope, Verifier};
use crate::chain::{Chain, Policy, Shape};
use crate::metrics::{Metrics, ProxyChildren};
use crate::origins::{BreakerSettings, Origin, OriginError, UpstreamOrigin};

/// Why the proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy.jwt: {0}")]
    Jwt(#[from] JwtError),
    #[error("proxy upstream: {0}")]
    Upstream(#[from] OriginError),
}

/// Bytes of tokens whose verdict is kept (a Supabase token is about 1 KB; tokens up to
/// 16 KB are read): at most this much memory, however long the tokens sent.
const VERIFIED_BYTES: u64 = 16 * 1024 * 1024;
/// What one kept verdict costs besides its token (identity, map entry).
const VERIFIED_OVERHEAD: u32 = 256;
/// How long a verdict is kept at most: a key removed from the JWKS stops being
/// honoured within this time.
const VERIFIED_FOR: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    /// The token's `exp`, in Unix seconds.
    expires: u64,
}

/// What a kept verdict weighs against [`VERIFIED_BYTES`].
#[allow(clippy::borrowed_box)] // moka's weigher is given `&K`, and the key is `Box<str>`.
fn weight(token: &Box<str>, _: &Verified) -> u32 {
    u32::try_from(token.len())
        .unwrap_or(u32::MAX)
        .saturating_add(VERIFIED_OVERHEAD)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a cached function's calls get now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Cached in this scope.
    Cached(Scope),
    /// Forwarded until introspection has answered (`scope = "auto"`, or any function
    /// while a VOLATILE one cannot be ruled out).
    Pending,
    /// VOLATILE: forwarded always, whatever the config says.
    Never,
}

/// One cached function.
pub struct Route {
    /// The function's name, shared by the calls a miss forwards.
    pub name: Arc<str>,
    pub chain: Arc<Chain>,
    /// Its `codette_cache_proxy_*` series.
    pub metrics: ProxyChildren,
    configured: Scope,
    resolved: RwLock<Resolved>,
}

impl Route {
    pub fn resolved(&self) -> Resolved {
        *self.resolved.read()
    }
}

/// The running proxy.
pub struct Proxy {
    upstream: String,
    verifier: Verifier,
    publishable: Vec<crate::secret::Secret>,
    /// Seeded foldhash: looked up with the caller's function name on every call.
    routes: HashMap<String, Route, foldhash::fast::RandomState>,
    /// The series of everything not a listed function (`function="other"`).
    pub other: ProxyChildren,
    /// Tokens verified lately, so a client's every call does not redo the signature.
    /// Seeded foldhash, not SipHash: a token is a few hundred bytes, hashed per call.
    verified: moka::sync::Cache<Box<str>, Verified, foldhash::fast::RandomState>,
    /// A caller with a publishable key.
    anon: Arc<Identity>,
    /// The `/codette/context` chain, for plain calls of the original function, when it
    /// asks the same upstream (so its entries are the same answers).
    pub original: Option<Arc<Chain>>,
    /// For pass-through requests: no total timeout (bodies stream for as long as they
    /// take), no redirects followed, nothing decompressed.
    client: reqwest::Client,
    timeout: Duration,
}

impl Proxy {
    /// Builds the proxy for `upstream`, its functions' chains siblings of `main` (the
    /// `/codette/context` chain), which also answers the original function's plain calls
    /// when `aliased`; connects to nothing.
    ///
    /// # Errors
    /// [`ProxyError`] when the verifier or an upstream client cannot be built.
    pub fn new(
        config: &ProxyConfig,
        upstream: &str,
        main: &Arc<Chain>,
        aliased: bool,
        breaker: BreakerSettings,
        max_response_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Self, ProxyError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut routes = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for f in &config.functions {
            let origin = UpstreamOrigin::new(upstream, timeout, max_response_bytes)?;
            let chain = main.sibling(
                &f.name,
                Shape::Rpc(Duration::from_secs(f.ttl_secs)),
                Origin::Upstream(origin),
                breaker,
            );
            // With a database to ask, nothing is cached before it has answered.
            let resolved = match (f.scope, &config.introspect_url) {
                (Scope::Auto, _) | (_, Some(_)) => Resolved::Pending,
                (scope, None) => Resolved::Cached(scope),
            };
            routes.insert(
                f.name.clone(),
                Route {
                    name: f.name.as_str().into(),
                    chain: Arc::new(chain),
                    metrics: metrics.proxy_children(&f.name),
                    configured: f.scope,
                    resolved: RwLock::new(resolved),
                },
            );
        }
        Ok(Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            verifier: Verifier::new(&config.jwt)?,
            publishable: config.publishable_keys.clone(),
            routes,
            other: metrics.proxy_children(crate::names::OTHER_FUNCTION),
            anon: Arc::new(Identity {
                role: "anon".into(),
                sub: None,
                claims: String::new(),
            }),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_BYTES)
                .weigher(weight)
                .time_to_live(VERIFIED_FOR)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            original: aliased.then(|| Arc::clone(main)),
            client: reqwest::Client::builder()
                .connect_timeout(timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| OriginError::Unreachable(e.to_string()))?,
            timeout,
        })
    }

    /// The project URL requests are forwarded to, without a trailing slash.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The pass-through client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `[proxy] timeout_ms`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The cached function named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    /// The cached function named `name`, with the name as the proxy holds it.
    pub fn route_entry(&self, name: &str) -> Option<(&str, &Route)> {
        self.routes
            .get_key_value(name)
            .map(|(k, r)| (k.as_str(), r))
    }

    /// The cached functions' names, sorted.
    pub fn functions(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Applies a reloaded policy to every function's chain.
    pub fn set_policy(&self, policy: &Policy) {
        for route in self.routes.values() {
            route.chain.set_policy(policy.clone());
        }
    }

    /// Who the caller is: the user token (`Authorization: Bearer <JWT>`) verified, else
    /// the API key: a legacy anon key (a JWT, verified) or a configured publishable key
    /// (role `anon`). `None`: not verifiable, so never served from or into the cache.
    pub async fn identify(&self, headers: &HeaderMap) -> Option<Arc<Identity>> {
        // Names built once: a `&str` name is parsed on every look-up.
        const APIKEY: HeaderName = HeaderName::from_static("apikey");
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = text(&header::AUTHORIZATION)
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let apikey = text(&APIKEY).map(str::trim);
        if let Some(token) = bearer.filter(|t| looks_like_jwt(t)) {
            return self.verify(token).await;
        }
        // A non-JWT bearer is only the API key repeated (what supabase-js sends).
        if bearer.is_some_and(|b| Some(b) != apikey) {
            return None;
        }
        let key = apikey?;
        if looks_like_jwt(key) {
            return self.verify(key).await;
        }
        self.publishable
            .iter()
            .any(|p| p.matches(key))
            .then(|| Arc::clone(&self.anon))
    }

    /// A token's identity, from the tokens verified lately or by verifying it. A cached
    /// verdict lasts [`VERIFIED_FOR`] at most and never past the token's `exp`; a
    /// failed one is not kept (so a new key in the JWKS is found at once).
    async fn verify(&self, token: &str) -> Option<Arc<Identity>> {
        let now = unix_now();
        if let Some(v) = self.verified.get(token) {
            if v.expires > now {
                return Some(v.identity);
            }
        }
        // Boxed: a JWKS fetch is a large future, and a verified token rarely needs it.
        let (identity, expires) = Box::pin(self.verifier.verify_until(token)).await.ok()?;
        let identity = Arc::new(identity);
        self.verified.insert(
            token.into(),
            Verified {
                identity: Arc::clone(&identity),
                expires,
            },
        );
        Some(identity)
    }

    /// Asks the database what each function is (`[proxy] introspect_url`), in the
    /// background, until it answers: VOLATILE ones are never cached, `auto` ones get
    /// the scope the introspection rules give. Until then they are forwarded.
    pub fn spawn_introspection(self: &Arc<Self>, config: &ProxyConfig) {
        let Some(url) = config.introspect_url.clone() else {
            return;
        };
        let schemas = config.schemas.clone();
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match super::introspect::introspect(&url, &schemas).await {
                    Ok(facts) => {
                        proxy.apply(&facts);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "proxy: cannot introspect the functions; cached functions are forwarded until it can (retry in 30 s)");
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
        });
    }

    /// Every overload and schema of a name counts: one VOLATILE makes the calls
    /// uncached, and `auto` takes the narrowest scope any of them needs.
    fn apply(&self, facts: &[super::introspect::FunctionFacts]) {
        for (name, route) in &self.routes {
            let suggested: Vec<Option<Scope>> = facts
                .iter()
                .filter(|f| f.name == *name)
                .map(super::introspect::FunctionFacts::suggested_scope)
                .collect();
            let resolved = if suggested.contains(&None) {
                tracing::warn!(function = %name, "proxy: the function is VOLATILE; its calls are never cached");
                Resolved::Never
            } else if route.configured != Scope::Auto {
                Resolved::Cached(route.configured)
            } else {
                let narrowest = [Scope::User, Scope::Role, Scope::Shared]
                    .into_iter()
                    .find(|s| suggested.contains(&Some(*s)));
                if narrowest.is_none() {
                    tracing::warn!(function = %name, "proxy: the function is not in the exposed schemas; cached per user");
                }
                Resolved::Cached(narrowest.unwrap_or(Scope::User))
            };
            tracing::info!(function = %name, ?resolved, "proxy: function scope");
            *route.resolved.write() = resolved;
        }
    }
}
