//! Configuration: parsed and validated, never built into live objects here (`app` does
//! that). Layers, lowest first: the embedded `config.toml` (the annotated reference at the
//! top of the repo), the file given by `--config`, then `CODETTE_CACHE_*` env variables
//! (nested with `__`). The original Python server's env names (`REDIS_HOST`, `REDIS_PORT`,
//! `REDIS_DB`, `VITE_SUPABASE_URL`, `VITE_SUPABASE_ANON_KEY`, `SUPABASE_SERVICE_ROLE_KEY`)
//! fill the matching fields unless a `CODETTE_CACHE_*` variable sets them.

mod cache;
mod legacy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use crate::advice::AdviceConfig;
pub use crate::dashboard::DashboardConfig;
pub use crate::invalidation::InvalidationConfig;
pub use crate::origins::OriginConfig;
pub use crate::proxy::ProxyConfig;
pub use crate::secret::{REDACTED, Secret, read_secret_file, redact_url};
pub use crate::tiers::TierConfig;
pub use crate::warm::WarmConfig;
pub use cache::{AdaptiveTtlConfig, CacheConfig};

/// The reference configuration, embedded so a bare `codette-cache` runs on a fresh machine.
pub const EMBEDDED: &str = include_str!("../../config.toml");

/// Prefix of the env variables that override the file.
pub const ENV_PREFIX: &str = "CODETTE_CACHE_";

/// The most connections `server.max_connections` may admit (a semaphore's permits
/// overflow far above, and each connection is a file descriptor).
const MAX_CONNECTIONS: usize = 1_000_000;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` is missing or unreadable.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A value has the wrong type, or a key is unknown (figment names the key and file).
    #[error("{0}")]
    Parse(Box<figment::Error>),
    /// The values parse but make no sense together; every problem is listed.
    #[error("invalid configuration{}:\n  - {}", .source_name, .problems.join("\n  - "))]
    Invalid {
        source_name: String,
        problems: Vec<String>,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Log verbosity.
    #[serde(default)]
    pub log: LogConfig,
    /// Settings every tier shares.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The chain, in look-up order.
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
    /// Where misses are answered from.
    #[serde(default)]
    pub origin: OriginConfig,
    /// Admin routes (clear, invalidate).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Thresholds for the optimisation advice.
    #[serde(default)]
    pub advice: AdviceConfig,
    /// Invalidations across the instances sharing a Redis.
    #[serde(default)]
    pub invalidation: InvalidationConfig,
    /// Warming at start-up.
    #[serde(default)]
    pub warm: WarmConfig,
    /// The live HTML dashboard.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// The transparent Supabase proxy under `/rest/v1/`, `/auth/v1/`, ….
    #[serde(default)]
    pub proxy: ProxyConfig,
}

/// `[server]`: the listener and what one request may cost.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; loopback by default because the read routes are open.
    pub listen: String,
    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    pub shutdown_grace_secs: u64,
    /// Largest request body accepted (413 above it, without reading it all).
    pub max_body_bytes: u64,
    /// Largest `message` accepted, in bytes of UTF-8 (413 above it).
    pub max_message_bytes: usize,
    /// A client must finish sending its request headers within this time.
    pub header_read_timeout_ms: u64,
    /// A response whose client reads none of it for this long is closed.
    pub send_timeout_ms: u64,
    /// Open connections above this are refused at accept.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            shutdown_grace_secs: 10,
            max_body_bytes: 64 * 1024,
            max_message_bytes: 8 * 1024,
            header_read_timeout_ms: 5_000,
            send_timeout_ms: 60_000,
            max_connections: 4_096,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, or `codette_cache=debug,warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[admin]`: the bearer token that admin routes require.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The token; better set by `CODETTE_CACHE_ADMIN__TOKEN` or `token_file`.
    pub token: Secret,
    /// A file holding the token (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Loads the layers and validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the key and why.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(EMBEDDED));
        if let Some(path) = path {
            // Check it ourselves so a missing file is a clear error, not silently skipped.
            std::fs::metadata(path)
                .and_then(|_| std::fs::File::open(path))
                .map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let source_name = path
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        Self::finish(figment, source_name, &|name| std::env::var(name).ok())
    }

    /// Parses a TOML text on top of the embedded defaults, ignoring the environment:
    /// for tests and tools.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let figment = Figment::from(Toml::string(EMBEDDED)).merge(Toml::string(text));
        Self::finish(figment, String::new(), &|_| None)
    }

    fn finish(
        figment: Figment,
        source_name: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        legacy::apply(&mut config, env);
        config.resolve_files();
        config.validate().map_err(|problems| ConfigError::Invalid {
            source_name,
            problems,
        })?;
        Ok(config)
    }

    /// Reads secrets named by `*_file` options into their fields.
    fn resolve_files(&mut self) {
        if let Some(file) = &self.admin.token_file {
            if let Some(token) = read_secret_file(file) {
                self.admin.token = token;
            }
        }
        self.origin.resolve_files(read_secret_file);
        self.proxy.jwt.resolve_files();
    }

    /// Every problem at once, so an operator fixes the file in one pass.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let s = &self.server;
        if s.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:8000",
                s.listen
            ));
        }
        if s.max_body_bytes == 0 || s.max_message_bytes == 0 {
            problems.push("server.max_body_bytes and server.max_message_bytes must be > 0".into());
        }
        if s.max_message_bytes as u64 > s.max_body_bytes {
            problems.push(format!(
                "server.max_message_bytes ({}) cannot exceed server.max_body_bytes ({})",
                s.max_message_bytes, s.max_body_bytes
            ));
        }
        if s.header_read_timeout_ms == 0 || s.send_timeout_ms == 0 || s.max_connections == 0 {
            problems.push(
                "server.header_read_timeout_ms, server.send_timeout_ms and server.max_connections must be > 0".into(),
            );
        }
        if s.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "server.max_connections is {}: at most {MAX_CONNECTIONS} (each holds a file descriptor)",
                s.max_connections
            ));
        }
        problems.extend(self.cache.validate());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!("log.level: {:?}: {e}", self.log.level));
        }
        if let Some(file) = &self.admin.token_file {
            if read_secret_file(file).is_none() {
                problems.push(format!(
                    "admin.token_file: cannot read a token from {}",
                    file.display()
                ));
            }
        }
        let mut kinds = Vec::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            if kinds.contains(&tier.kind()) {
                problems.push(format!(
                    "tiers[{i}]: a second {:?} tier; each kind may appear once",
                    tier.kind().as_str()
                ));
            }
            kinds.push(tier.kind());
            if tier.ttl_secs().is_some_and(|t| t > cache::MAX_SECS) {
                problems.push(format!(
                    "tiers[{i}] ({}): ttl_secs is over ten years ({} s): use a shorter time",
                    tier.kind().as_str(),
                    cache::MAX_SECS
                ));
            }
            for p in tier.validate() {
                problems.push(format!("tiers[{i}] ({}): {p}", tier.kind().as_str()));
            }
        }
        for p in self.origin.validate() {
            problems.push(format!("origin ({}): {p}", self.origin.kind()));
        }
        problems.extend(self.advice.validate());
        problems.extend(self.invalidation.validate());
        problems.extend(self.warm.validate());
        problems.extend(self.dashboard.validate());
        problems.extend(self.proxy.validate());
        if !self.proxy.functions.is_empty() && self.proxy_upstream().is_none() {
            problems.push(
                "proxy.functions need an upstream: set proxy.upstream (CODETTE_CACHE_PROXY__UPSTREAM) or a supabase origin"
                    .into(),
            );
        }
        if self.invalidation.broadcast == Some(true) && self.shared_redis().is_none() {
            problems.push(
                "invalidation.broadcast = true needs a redis or redis_cluster tier (its nodes are used)"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The URLs of the first Redis tier (one server, or a cluster's seed nodes): where
    /// the invalidation broadcast runs.
    pub fn shared_redis(&self) -> Option<Vec<String>> {
        self.tiers.iter().find_map(|t| match t {
            TierConfig::Redis(c) => Some(vec![c.url.clone()]),
            TierConfig::RedisCluster(c) => Some(c.nodes.clone()),
            TierConfig::Memory(_) => None,
        })
    }

    /// Where the proxy forwards to: `[proxy] upstream`, else the supabase origin's URL.
    /// `None`: the proxy is off.
    pub fn proxy_upstream(&self) -> Option<String> {
        self.proxy.upstream.clone().or_else(|| match &self.origin {
            OriginConfig::Supabase(c) => Some(c.url.clone()),
            _ => None,
        })
    }

    /// Whether invalidations are broadcast: as configured, else when a Redis tier exists.
    pub fn broadcasts(&self) -> bool {
        self.invalidation
            .broadcast
            .unwrap_or_else(|| self.shared_redis().is_some())
    }

    /// The listen address (validated at load).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8000)))
    }

    /// The effective configuration as TOML with secrets redacted (`check-config`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for tier in &mut shown.tiers {
            tier.redact();
        }
        shown.origin.redact();
        shown.invalidation.redact();
        shown.proxy.redact();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
