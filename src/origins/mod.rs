//! Origins: where misses are answered. The `ContextOrigin` trait, the config enum tagged
//! by `type`, and `Origin`, the registry enum dispatching with a plain `match`.
//! Adding one: a file, a variant in `OriginConfig` and `Origin`, and its arms.
//! `upstream` is the proxy's origin, built from `[proxy]` rather than `[origin]`: it
//! answers proxied RPC calls ([`Asked::Rpc`]), the others context requests.

pub mod breaker;
pub mod postgres;
pub mod sample;
pub mod supabase;
pub mod upstream;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
pub use breaker::{Admit, Breaker, BreakerSettings, BreakerState, CallResult, Moved};
pub use postgres::{PostgresConfig, PostgresOrigin};
pub use sample::{SampleConfig, SampleOrigin};
pub use supabase::{SupabaseConfig, SupabaseOrigin};
pub use upstream::{RpcCall, UpstreamOrigin};

/// What a chain asks its origin.
#[derive(Debug, Clone)]
pub enum Asked {
    /// The original function's `{message, filename}`, shared with the memo of parsed
    /// queries (`http/query_memo.rs`) so a hit copies nothing.
    Context(Arc<ContextRequest>),
    /// A client's RPC call, forwarded by the proxy.
    Rpc(Arc<RpcCall>),
}

/// One context request, as the RPC takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRequest {
    pub message: String,
    pub filename: Option<String>,
}

/// Why a request cannot be asked of an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("message must not be empty")]
    Empty,
    #[error("message is {len} bytes; the limit is {limit} (server.max_message_bytes)")]
    TooLong { len: usize, limit: usize },
    #[error("message and filename must not contain NUL characters")]
    Nul,
    #[error("filename is over 1024 bytes")]
    FilenameTooLong,
}

impl ContextRequest {
    /// The rules every request meets, from a client or a warming list.
    ///
    /// # Errors
    /// [`RequestError`]: an empty message, one over `max_message_bytes`, a NUL (which
    /// PostgreSQL text cannot hold, so the origin could never answer), a long filename.
    pub fn check(
        message: &str,
        filename: Option<&str>,
        max_message_bytes: usize,
    ) -> Result<(), RequestError> {
        if message.trim().is_empty() {
            return Err(RequestError::Empty);
        }
        if message.len() > max_message_bytes {
            return Err(RequestError::TooLong {
                len: message.len(),
                limit: max_message_bytes,
            });
        }
        if message.contains('\0') || filename.is_some_and(|f| f.contains('\0')) {
            return Err(RequestError::Nul);
        }
        if filename.is_some_and(|f| f.len() > 1024) {
            return Err(RequestError::FilenameTooLong);
        }
        Ok(())
    }
}

/// Why an origin call failed. Messages never carry secrets or the user's message.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No answer within the origin's timeout (504).
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    /// Could not reach the origin (502).
    #[error("cannot reach the origin: {0}")]
    Unreachable(String),
    /// The origin answered with an error status (502).
    #[error("the origin answered {status}: {message}")]
    Status { status: u16, message: String },
    /// The answer was not usable JSON (502).
    #[error("the origin's answer is unusable: {0}")]
    Malformed(String),
    /// The answer was larger than `max_response_bytes` (502).
    #[error("the origin's answer exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The database call failed (502).
    #[error("the database call failed: {0}")]
    Database(String),
    /// The call's task ended without an answer (a bug or a shutdown).
    #[error("the origin call was aborted")]
    Aborted,
    /// The circuit breaker is open: not called (503 with `Retry-After`).
    #[error("the origin is unavailable (circuit breaker open after repeated failures); retry in {}s", retry_after_secs(*.retry_after))]
    Unavailable { retry_after: Duration },
}

/// Whole seconds for `Retry-After`, at least 1.
pub fn retry_after_secs(after: Duration) -> u64 {
    (after.as_millis().div_ceil(1000) as u64).max(1)
}

impl OriginError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, OriginError::Timeout(_))
    }

    /// How the circuit breaker counts this error: timeouts, connection errors and a
    /// gateway's 502/503/504 count against the origin; an error the origin raised
    /// itself proves it is reachable; a call that never went out counts not at all.
    pub fn breaker_result(&self) -> Option<CallResult> {
        match self {
            OriginError::Timeout(_) | OriginError::Unreachable(_) => Some(CallResult::Failed),
            OriginError::Status { status, .. } if (502..=504).contains(status) => {
                Some(CallResult::Failed)
            }
            OriginError::Aborted | OriginError::Unavailable { .. } => None,
            OriginError::Status { .. }
            | OriginError::Malformed(_)
            | OriginError::TooLarge { .. }
            | OriginError::Database(_) => Some(CallResult::Reached),
        }
    }
}

/// `[origin]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OriginConfig {
    Supabase(SupabaseConfig),
    Postgres(PostgresConfig),
    Sample(SampleConfig),
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig::Sample(SampleConfig::default())
    }
}

impl OriginConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            OriginConfig::Supabase(_) => "supabase",
            OriginConfig::Postgres(_) => "postgres",
            OriginConfig::Sample(_) => "sample",
        }
    }

    pub(crate) fn validate(&self) -> Vec<String> {
        match self {
            OriginConfig::Supabase(c) => c.validate(),
            OriginConfig::Postgres(c) => c.validate(),
            OriginConfig::Sample(c) => c.validate(),
        }
    }

    pub(crate) fn redact(&mut self) {
        if let OriginConfig::Postgres(c) = self {
            c.url = crate::secret::redact_url(&c.url);
        }
    }

    pub(crate) fn resolve_files(&mut self, read: impl Fn(&Path) -> Option<Secret>) {
        if let OriginConfig::Supabase(c) = self {
            if let Some(key) = c.api_key_file.as_deref().and_then(read) {
                c.api_key = key;
            }
        }
    }

    /// The RPC function called, `None` for the sample origin (which answers as the
    /// original's function does).
    pub fn function(&self) -> Option<&str> {
        match self {
            OriginConfig::Supabase(c) => Some(&c.function),
            OriginConfig::Postgres(c) => Some(&c.function),
            OriginConfig::Sample(_) => None,
        }
    }

    /// The circuit breaker's settings.
    pub fn breaker(&self) -> BreakerSettings {
        let (failures, open_ms) = match self {
            OriginConfig::Supabase(c) => (c.breaker_failures, c.breaker_open_ms),
            OriginConfig::Postgres(c) => (c.breaker_failures, c.breaker_open_ms),
            OriginConfig::Sample(c) => (c.breaker_failures, c.breaker_open_ms),
        };
        BreakerSettings {
            failures,
            open_for: Duration::from_millis(open_ms),
        }
    }

    /// Largest answer the origin accepts; tiers refuse larger values as well.
    pub fn max_response_bytes(&self) -> usize {
        match self {
            OriginConfig::Supabase(c) => c.max_response_bytes,
            OriginConfig::Postgres(c) => c.max_response_bytes,
            OriginConfig::Sample(_) => supabase::default_max_response_bytes(),
        }
    }

    /// Builds the live origin. Never waits on the network.
    ///
    /// # Errors
    /// [`OriginError`] when the settings cannot be turned into a client.
    pub fn build(&self) -> Result<Origin, OriginError> {
        Ok(match self {
            OriginConfig::Supabase(c) => Origin::Supabase(SupabaseOrigin::new(c)?),
            OriginConfig::Postgres(c) => Origin::Postgres(PostgresOrigin::new(c)?),
            OriginConfig::Sample(c) => Origin::Sample(SampleOrigin::new(c)?),
        })
    }
}

/// What every origin offers.
pub trait ContextOrigin: Send + Sync {
    /// Calls the RPC; the answer is the function's JSON value, unparsed.
    fn fetch(
        &self,
        request: &ContextRequest,
    ) -> impl Future<Output = Result<Bytes, OriginError>> + Send;
    /// A cheap check that the origin can answer now (for `/readyz`).
    fn health(&self) -> impl Future<Output = Result<(), OriginError>> + Send;
    /// The fallback chain's last step, in words.
    fn describe(&self) -> &'static str;
    /// Whether the half-open breaker should check [`ContextOrigin::health`] before
    /// letting a real call through (an HTTP origin with `health_path`).
    fn probes_health(&self) -> bool {
        false
    }
}

/// The registry.
pub enum Origin {
    Supabase(SupabaseOrigin),
    Postgres(PostgresOrigin),
    Sample(SampleOrigin),
    /// The proxy's (see the module note).
    Upstream(UpstreamOrigin),
}

macro_rules! each_context_origin {
    ($origin:expr, $o:ident => $body:expr, $upstream:ident => $other:expr) => {
        match $origin {
            Origin::Supabase($o) => $body,
            Origin::Postgres($o) => $body,
            Origin::Sample($o) => $body,
            Origin::Upstream($upstream) => $other,
        }
    };
}

impl Origin {
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Supabase(_) => "supabase",
            Origin::Postgres(_) => "postgres",
            Origin::Sample(_) => "sample",
            Origin::Upstream(_) => "upstream",
        }
    }

    /// Answers what a chain asks. A chain is built with an origin for what it asks
    /// (`app.rs`); a mismatch is a bug, answered as an aborted call.
    pub async fn fetch(&self, asked: &Asked) -> Result<Bytes, OriginError> {
        match (self, asked) {
            (Origin::Upstream(o), Asked::Rpc(call)) => o.forward(call).await,
            (Origin::Upstream(_), Asked::Context(_)) | (_, Asked::Rpc(_)) => {
                Err(OriginError::Aborted)
            }
            (o, Asked::Context(request)) => {
                each_context_origin!(o, o => o.fetch(request).await, _u => Err(OriginError::Aborted))
            }
        }
    }

    pub async fn health(&self) -> Result<(), OriginError> {
        each_context_origin!(self, o => o.health().await, u => u.health().await)
    }

    pub fn describe(&self) -> &'static str {
        each_context_origin!(self, o => o.describe(), _u => "Supabase RPC, proxied")
    }

    pub fn probes_health(&self) -> bool {
        each_context_origin!(self, o => o.probes_health(), _u => false)
    }
}

/// Rejects SQL identifiers we would have to quote: the function name is spliced into SQL.
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').count() <= 2
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        })
}
