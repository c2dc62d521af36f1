//! The PostgreSQL origin: the same SQL function called directly,
//! `SELECT public.get_codette_context($1, $2)`, over a deadpool of tokio-postgres
//! connections. A connection-level failure (closed, refused, reset, "the database system
//! is starting up / shutting down") is retried on a fresh connection with a short,
//! growing backoff until the call's `timeout_ms` runs out, so a restart shorter than the
//! timeout costs a client nothing, as PgBouncer's pause would; only errors the function
//! itself raised are final at once. Retrying is safe: the function is STABLE (it reads).
//! Waiters stay bounded: one call per key (the chain's single flight), each bounded by
//! the timeout, and the breaker refuses calls once a longer outage opens it.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};

use super::supabase::{default_max_response_bytes, default_timeout_ms};
use super::{ContextOrigin, ContextRequest, OriginError, is_plain_identifier};
use crate::pg_tls::{self, PgConnect};

/// `[origin] type = "postgres"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`; TLS as its `sslmode` says (`pg_tls.rs`).
    #[serde(default)]
    pub url: String,
    /// The SQL function, optionally schema-qualified.
    #[serde(default = "default_function")]
    pub function: String,
    /// Pooled connections at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Limit for one call, waiting for a connection included (504 past it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest answer accepted.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Consecutive timeouts or connection errors that open the circuit breaker (0: never).
    #[serde(default = "super::breaker::default_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call.
    #[serde(default = "super::breaker::default_open_ms")]
    pub breaker_open_ms: u64,
}

fn default_function() -> String {
    "public.get_codette_context".into()
}

fn default_pool_size() -> usize {
    8
}

impl PostgresConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::pg_tls::connect_options(&self.url) {
            problems.push(format!(
                "url {:?} is not a usable PostgreSQL URL: {e}",
                crate::secret::redact_url(&self.url)
            ));
        }
        if !is_plain_identifier(&self.function) {
            problems.push(format!(
                "function {:?} is not a plain identifier",
                self.function
            ));
        }
        if self.pool_size == 0 || self.timeout_ms == 0 || self.max_response_bytes == 0 {
            problems.push("pool_size, timeout_ms and max_response_bytes must be > 0".into());
        }
        problems
    }
}

/// The PostgreSQL origin.
pub struct PostgresOrigin {
    pool: Pool,
    sql: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl PostgresOrigin {
    /// # Errors
    /// [`OriginError::Database`] when the URL or pool settings are unusable.
    pub fn new(config: &PostgresConfig) -> Result<Self, OriginError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let PgConnect {
            config: mut pg,
            tls,
        } = pg_tls::connect_options(&config.url)
            .map_err(|e| OriginError::Database(e.to_string()))?;
        pg.connect_timeout(timeout);
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                // Fast: checks the connection is not closed; a restart closes them all.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .build()
            .map_err(|e| OriginError::Database(e.to_string()))?;
        Ok(Self {
            pool,
            sql: format!("SELECT {}($1::text, $2::text)::text", config.function),
            timeout,
            max_response_bytes: config.max_response_bytes,
        })
    }

    async fn call(&self, request: &ContextRequest) -> Result<Option<String>, CallError> {
        let client = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => CallError::from(e),
            other => CallError::Other(other.to_string()),
        })?;
        let statement = client.prepare_cached(&self.sql).await?;
        let row = client
            .query_one(&statement, &[&request.message, &request.filename])
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// First pause between retries of a connection-level failure; it doubles up to
/// [`RETRY_MAX`]. Short: a restart takes a few hundred milliseconds.
const RETRY_FIRST: Duration = Duration::from_millis(10);
/// Longest pause between retries: keeps a returning server noticed within this.
const RETRY_MAX: Duration = Duration::from_millis(200);

/// A failed call, remembering whether it failed at the connection level (retryable).
enum CallError {
    Connection(String),
    Other(String),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (e.g. a missing function) is in the DbError.
        let text = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        if is_connection_level(&e) {
            CallError::Connection(text)
        } else {
            CallError::Other(text)
        }
    }
}

/// Closed connections, socket errors, and the server's connection-class SQLSTATEs:
/// 08xxx (connection exception), 57P01-57P03 (shutting down, crashed, starting up).
fn is_connection_level(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // A socket error (refused, reset, broken pipe) carries the io::Error as its source.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

impl ContextOrigin for PostgresOrigin {
    async fn fetch(&self, request: &ContextRequest) -> Result<Bytes, OriginError> {
        let attempts = async {
            let mut pause = RETRY_FIRST;
            loop {
                match self.call(request).await {
                    Err(CallError::Connection(m)) => {
                        tracing::debug!(error = %m, ?pause, "postgres connection failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                    other => return other,
                }
            }
        };
        let text = match tokio::time::timeout(self.timeout, attempts).await {
            Err(_) => return Err(OriginError::Timeout(self.timeout)),
            Ok(Err(CallError::Connection(m) | CallError::Other(m))) => {
                return Err(OriginError::Database(m));
            }
            Ok(Ok(text)) => text.unwrap_or_else(|| "null".into()),
        };
        if text.len() > self.max_response_bytes {
            return Err(OriginError::TooLarge {
                limit: self.max_response_bytes,
            });
        }
        Ok(Bytes::from(text))
    }

    async fn health(&self) -> Result<(), OriginError> {
        let check = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| OriginError::Unreachable(e.to_string()))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| OriginError::Database(e.to_string()))?;
            Ok(())
        };
        tokio::time::timeout(self.timeout, check)
            .await
            .unwrap_or(Err(OriginError::Timeout(self.timeout)))
    }

    fn describe(&self) -> &'static str {
        "PostgreSQL function get_codette_context"
    }
}
