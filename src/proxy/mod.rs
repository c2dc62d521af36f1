//! The transparent Supabase proxy: `/rest/v1/rpc/{function}` served through the chain
//! for the functions in `[[proxy.functions]]`, everything else under the Supabase
//! prefixes forwarded as it came. What a cached answer may be shared with is its
//! function's [`Scope`]: every caller, callers of one role, or one user (the JWT's
//! `sub`); a caller whose JWT cannot be verified is forwarded and never cached.

mod canonical;
pub mod introspect;
mod jwks;
pub mod jwt;
pub mod plan_memo;
pub mod request;
mod routes;

use serde::{Deserialize, Serialize};

pub use jwt::{Identity, JwtConfig, JwtError, Verifier};
pub use routes::{Proxy, ProxyError, Resolved, Route};

/// Who may be served one cached answer of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every verified caller: the answer does not depend on who asks.
    Shared,
    /// Callers of the same role (`anon`, `authenticated`, …).
    Role,
    /// One user: the same role and JWT `sub`.
    User,
    /// From introspection (`[proxy] introspect_url`), the rules of `codette-cache introspect`.
    Auto,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Shared => "shared",
            Scope::Role => "role",
            Scope::User => "user",
            Scope::Auto => "auto",
        }
    }
}

/// `[proxy]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The Supabase project URL calls are forwarded to (env
    /// `CODETTE_CACHE_PROXY__UPSTREAM`); the supabase origin's `url` when unset. The
    /// proxy is off without either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The RPC functions served through the cache; other calls are forwarded.
    pub functions: Vec<FunctionConfig>,
    /// How callers' tokens are verified.
    pub jwt: JwtConfig,
    /// A database to read the functions from at start-up, for `scope = "auto"` and to
    /// refuse VOLATILE ones (`codette-cache introspect` prints the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspect_url: Option<String>,
    /// The schemas PostgREST exposes (introspection looks there).
    pub schemas: Vec<String>,
    /// Publishable API keys (`sb_publishable_…`): a caller presenting one and no user
    /// token is role `anon`. A legacy anon key is a JWT and is verified instead.
    pub publishable_keys: Vec<crate::secret::Secret>,
    /// Limit for one forwarded RPC call, body included; for a pass-through request,
    /// the longest wait for the upstream's response headers.
    pub timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            upstream: None,
            functions: Vec::new(),
            jwt: JwtConfig::default(),
            introspect_url: None,
            schemas: vec!["public".into()],
            publishable_keys: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

/// `[[proxy.functions]]`: one RPC served through the cache.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The function as in `/rest/v1/rpc/{name}`.
    pub name: String,
    /// How long an answer is kept (shortened by the upstream's `max-age`).
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// Who may share an answer; `user` (the safe choice) when unset.
    #[serde(default = "default_scope")]
    pub scope: Scope,
}

fn default_ttl_secs() -> u64 {
    300
}

fn default_scope() -> Scope {
    Scope::User
}

impl ProxyConfig {
    /// Every problem, as sentences for `check-config`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.upstream {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(url).is_err()
            {
                problems.push(format!(
                    "proxy.upstream {url:?} must be an http:// or https:// URL, e.g. \"https://xyz.supabase.co\""
                ));
            }
        }
        let mut seen = Vec::new();
        for (i, f) in self.functions.iter().enumerate() {
            if !crate::origins::is_plain_identifier(&f.name) || f.name.contains('.') {
                problems.push(format!(
                    "proxy.functions[{i}].name {:?} must be a function name as in /rest/v1/rpc/<name>",
                    f.name
                ));
            }
            if seen.contains(&&f.name) {
                problems.push(format!(
                    "proxy.functions[{i}]: {:?} is listed twice",
                    f.name
                ));
            }
            seen.push(&f.name);
            if f.ttl_secs == 0 {
                problems.push(format!("proxy.functions[{i}].ttl_secs must be > 0"));
            }
            if f.scope == Scope::Auto && self.introspect_url.is_none() {
                problems.push(format!(
                    "proxy.functions[{i}] ({}): scope = \"auto\" needs proxy.introspect_url (or set shared, role or user)",
                    f.name
                ));
            }
        }
        if self.timeout_ms == 0 {
            problems.push("proxy.timeout_ms must be > 0".into());
        }
        problems.extend(self.jwt.validate());
        if !self.functions.is_empty()
            && !self.jwt.is_configured()
            && self.publishable_keys.is_empty()
        {
            problems.push(
                "proxy.functions are cached only for verified callers: set proxy.jwt.secret (or secret_file), proxy.jwt.jwks_url or proxy.publishable_keys"
                    .into(),
            );
        }
        problems
    }

    /// The function's entry, if cached.
    pub fn function(&self, name: &str) -> Option<&FunctionConfig> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Hides the password of `introspect_url` (for `check-config`).
    pub fn redact(&mut self) {
        if let Some(url) = &mut self.introspect_url {
            *url = crate::secret::redact_url(url);
        }
    }
}
