//! The Redis tier, compatible with the original server's layout: `GET context:<md5>`,
//! `SET context:<md5> <json> EX <ttl>`, values are plain JSON text. Clearing walks the
//! prefix with SCAN + UNLINK, never KEYS. A read takes at most `max_value_bytes + 1`
//! bytes (GETRANGE), so a huge value another writer left is a miss, never read whole;
//! whether a value may be served at all is the chain's call (`chain/storable.rs`).
//!
//! Failure handling is `redis_link.rs`'s circuit, with PING as its probe. Reads are
//! pipelined with the other reads of the moment (`redis_batch.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::redis_batch::Batch;
use super::redis_fence::{self as fence, VERSION_TTL_MS};
use super::redis_link::{self as link, Link};
use super::{BuildContext, CacheTier, Entry, Found, Health, Size, TierError, TierKind, Watch};
use crate::key::Key;
use crate::tags::Tag;

const TIER: &str = "redis";

/// `[[tiers]] type = "redis"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Outer limit for one Redis operation; past it the request moves on without Redis.
    #[serde(default = "link::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Limit for establishing a connection.
    #[serde(default = "link::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Freshness lifetime (`SET ... EX`); `[cache] ttl_secs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

fn default_url() -> String {
    "redis://127.0.0.1:6379/0".into()
}

impl RedisConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(link::url_problem("url", &self.url));
        problems.extend(link::limit_problems(
            self.timeout_ms,
            self.connect_timeout_ms,
            self.ttl_secs,
        ));
        problems
    }
}

/// The Redis tier.
pub struct RedisTier {
    link: Link<ConnectionManager>,
    /// Reads go out as pipelines of the moment's reads (`redis_batch.rs`).
    batch: Batch<ConnectionManager>,
}

impl RedisTier {
    /// Creates the tier and its probe; does not connect.
    ///
    /// # Errors
    /// [`TierError::Config`] for a URL the client rejects.
    pub fn new(config: &RedisConfig, ctx: &BuildContext) -> Result<Self, TierError> {
        let config_error = |e: redis::RedisError| TierError::Config {
            tier: TIER,
            message: e.to_string(),
        };
        let client = redis::Client::open(config.url.as_str()).map_err(config_error)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(config_error)?;
        let ping = Arc::new(|mut conn: ConnectionManager| {
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
            .boxed()
        });
        Ok(Self {
            batch: Batch::new(conn.clone(), ctx.max_value_bytes, timeout),
            link: Link::new(conn, TierKind::Redis, timeout, ctx, ping),
        })
    }
}

impl CacheTier for RedisTier {
    async fn get(&self, key: &Key) -> Result<Option<Found>, TierError> {
        self.link.read_batched(key, &self.batch).await
    }

    async fn watch(&self, key: &Key, tags: &[Tag]) -> Result<Option<Watch>, TierError> {
        let names = fence::watched(key, tags);
        let versions: Vec<Option<i64>> = self
            .link
            .call(async |c| redis::cmd("MGET").arg(&names).query_async(c).await)
            .await?;
        Ok(Some(Watch {
            taken: None,
            versions: versions
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        }))
    }

    async fn put(&self, key: &Key, body: &Bytes, entry: &Entry<'_>) -> Result<(), TierError> {
        // Without a watch no one can say the value is still current for the group.
        let Some(watch) = entry.watch else {
            return Ok(());
        };
        let names = fence::watched(key, entry.tags);
        if names.len() != watch.versions.len() {
            return Ok(());
        }
        let mut script = fence::PUT.prepare_invoke();
        script.key(key.as_str()).key(&names);
        for tag in entry.indexed {
            script.key(fence::set_of_tag(tag));
        }
        let ttl = self.link.entry_ttl_secs(entry);
        script
            .arg(body.as_ref())
            .arg(ttl)
            .arg(names.len())
            .arg(
                ttl.saturating_mul(1_000)
                    .saturating_add(fence::SET_SLACK_MS),
            )
            .arg(&watch.versions);
        let stored: i64 = self
            .link
            .call(async |c| script.invoke_async(c).await)
            .await?;
        if stored == 0 {
            tracing::debug!(
                key = key.as_str(),
                "redis write refused: purged since its read"
            );
        }
        Ok(())
    }

    async fn remove(&self, key: &Key) -> Result<(), TierError> {
        let mut script = fence::REMOVE.prepare_invoke();
        script
            .key(fence::version_of_key(key))
            .key(key.as_str())
            .arg(VERSION_TTL_MS);
        self.link
            .call(async |c| script.invoke_async::<i64>(c).await)
            .await
            .map(drop)
    }

    async fn remove_tags(&self, tags: &[Tag]) -> Result<u64, TierError> {
        let tags: Vec<&Tag> = tags.iter().filter(|t| **t != Tag::Snippets).collect();
        if tags.is_empty() {
            return Ok(0);
        }
        let mut script = fence::REMOVE_TAGS.prepare_invoke();
        for tag in &tags {
            script.key(fence::version_of_tag(tag));
        }
        for tag in &tags {
            script.key(fence::set_of_tag(tag));
        }
        script.arg(VERSION_TTL_MS);
        self.link.call(async |c| script.invoke_async(c).await).await
    }

    async fn clear(&self) -> Result<u64, TierError> {
        // Moved first: a write read before this clear is refused from now on.
        let mut bump = fence::REMOVE.prepare_invoke();
        bump.key(fence::VERSION_ALL).arg(VERSION_TTL_MS);
        self.link
            .call(async |c| bump.invoke_async::<i64>(c).await)
            .await?;
        let pattern = format!("{}*", Key::PREFIX);
        self.link
            .scan_unlink(&pattern, |c, step| {
                async move { step.query_async(c).await }.boxed()
            })
            .await
    }

    fn health(&self) -> Health {
        self.link.health()
    }

    fn size(&self) -> Size {
        // Counting keys would need a round trip; status routes never wait on Redis.
        Size::default()
    }

    fn set_ttl(&self, ttl: Duration, _stale_retention: Duration) {
        self.link.set_ttl(ttl);
    }
}
