//! The PostgreSQL origin: the same SQL function called directly,
//! `SELECT public.get_codette_context($1, $2)`, over a deadpool of tokio-postgres
//! connections. After a server restart the pool drops closed connections and opens new
//! ones; a call that finds its connection closed is retried once on a fresh one.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;

use super::supabase::{default_max_response_bytes, default_timeout_ms};
use super::{ContextOrigin, ContextRequest, OriginError, is_plain_identifier};

/// `[origin] type = "postgres"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db` (no TLS: use it on a private network).
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
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            problems.push(format!(
                "url {:?} is not a PostgreSQL URL: {e}",
                crate::config::redact_url(&self.url)
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
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| OriginError::Database(e.to_string()))?;
        pg.connect_timeout(timeout);
        let manager = Manager::from_config(
            pg,
            NoTls,
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

/// A failed call, remembering whether the connection was closed under it (retryable).
enum CallError {
    Closed(String),
    Other(String),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (e.g. a missing function) is in the DbError.
        let text = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        if e.is_closed() {
            CallError::Closed(text)
        } else {
            CallError::Other(text)
        }
    }
}

impl ContextOrigin for PostgresOrigin {
    async fn fetch(&self, request: &ContextRequest) -> Result<Bytes, OriginError> {
        let attempt = async {
            match self.call(request).await {
                Err(CallError::Closed(_)) => self.call(request).await,
                other => other,
            }
        };
        let text = match tokio::time::timeout(self.timeout, attempt).await {
            Err(_) => return Err(OriginError::Timeout(self.timeout)),
            Ok(Err(CallError::Closed(m) | CallError::Other(m))) => {
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
