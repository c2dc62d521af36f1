//! The Redis tier, compatible with the original server's layout: `GET context:<md5>`,
//! `SET context:<md5> <json> EX <ttl>`, values are plain JSON text. Clearing walks the
//! prefix with SCAN + UNLINK, never KEYS. A read takes at most `max_value_bytes + 1`
//! bytes (GETRANGE), so a huge value another writer left is a miss, never read whole;
//! whether a value may be served at all is the chain's call (`chain/storable.rs`).
//!
//! Failure handling: every call has its own outer timeout (the connection manager alone
//! can hang for seconds after a restart). The first failure opens a circuit: requests
//! skip Redis at no cost while a background probe PINGs it, and the probe closes the
//! circuit as soon as Redis answers. Start-up never waits on Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::redis_fence::{self as fence, VERSION_TTL_MS};
use super::{BuildContext, CacheTier, Entry, Found, Health, Size, TierError, TierKind, Watch};
use crate::key::Key;
use crate::metrics::Metrics;
use crate::tags::Tag;

const TIER: &str = "redis";
/// Probe interval while Redis is up: keeps `tier_up` honest with no traffic.
const PROBE_UP_INTERVAL: Duration = Duration::from_millis(500);
/// Probe interval while down: how fast the circuit closes after Redis returns.
const PROBE_DOWN_INTERVAL: Duration = Duration::from_millis(100);
/// Keys per SCAN step when clearing; small enough not to stall Redis.
const SCAN_COUNT: usize = 500;

/// `[[tiers]] type = "redis"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Outer limit for one Redis operation; past it the request moves on without Redis.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Limit for establishing a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Freshness lifetime (`SET ... EX`); `[cache] ttl_secs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

fn default_url() -> String {
    "redis://127.0.0.1:6379/0".into()
}

fn default_timeout_ms() -> u64 {
    50
}

fn default_connect_timeout_ms() -> u64 {
    1_000
}

impl RedisConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            problems.push(format!(
                "url {:?} is not a Redis URL: {e}",
                crate::secret::redact_url(&self.url)
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            problems.push("timeout_ms and connect_timeout_ms must be > 0".into());
        }
        if self.ttl_secs == Some(0) {
            problems.push("ttl_secs must be > 0".into());
        }
        problems
    }
}

/// Whether Redis is believed up, and a way to wake the probe early.
struct Link {
    up: AtomicBool,
    wake: Notify,
}

/// The Redis tier.
pub struct RedisTier {
    conn: ConnectionManager,
    timeout: Duration,
    ttl_secs: AtomicU64,
    max_value_bytes: usize,
    link: Arc<Link>,
    metrics: Arc<Metrics>,
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
        let link = Arc::new(Link {
            up: AtomicBool::new(false),
            wake: Notify::new(),
        });
        ctx.metrics.set_tier_up(TierKind::Redis, false);
        tokio::spawn(probe(
            Arc::downgrade(&link),
            conn.clone(),
            timeout.max(Duration::from_millis(250)),
            Arc::clone(&ctx.metrics),
        ));
        Ok(Self {
            conn,
            timeout,
            ttl_secs: AtomicU64::new(ctx.ttl.as_secs().max(1)),
            max_value_bytes: ctx.max_value_bytes,
            link,
            metrics: Arc::clone(&ctx.metrics),
        })
    }

    /// Runs one command under the outer timeout; a failure opens the circuit.
    async fn call<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, TierError> {
        if !self.link.up.load(Ordering::Relaxed) {
            return Err(TierError::Unavailable { tier: TIER });
        }
        let mut conn = self.conn.clone();
        let result = match tokio::time::timeout(self.timeout, run(&mut conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if !is_connection_error(&e) => {
                // Redis answered with an error: the link is fine.
                return Err(TierError::Backend {
                    tier: TIER,
                    message: e.to_string(),
                });
            }
            Ok(Err(e)) => TierError::Backend {
                tier: TIER,
                message: e.to_string(),
            },
            Err(_) => TierError::Timeout {
                tier: TIER,
                after: self.timeout,
            },
        };
        if self.link.up.swap(false, Ordering::Relaxed) {
            self.metrics.set_tier_up(TierKind::Redis, false);
            tracing::warn!(error = %result, "redis tier down; requests skip it until it answers");
        }
        self.link.wake.notify_one();
        Err(result)
    }

    fn ttl(&self) -> u64 {
        self.ttl_secs.load(Ordering::Relaxed)
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Pings Redis forever (until the tier is dropped), flipping the link state.
async fn probe(
    link: Weak<Link>,
    mut conn: ConnectionManager,
    limit: Duration,
    metrics: Arc<Metrics>,
) {
    let mut ever_up = false;
    loop {
        let Some(state) = link.upgrade() else { return };
        let ping = redis::cmd("PING");
        let answered = matches!(
            tokio::time::timeout(limit, ping.query_async::<String>(&mut conn)).await,
            Ok(Ok(_))
        );
        let was_up = state.up.swap(answered, Ordering::Relaxed);
        if answered && !was_up {
            metrics.set_tier_up(TierKind::Redis, true);
            if ever_up {
                metrics.tier_reconnected(TierKind::Redis);
                tracing::info!("redis tier is back");
            } else {
                tracing::info!("redis tier connected");
            }
            ever_up = true;
        } else if !answered && was_up {
            metrics.set_tier_up(TierKind::Redis, false);
            tracing::warn!("redis tier stopped answering PING");
        }
        let pause = if answered {
            PROBE_UP_INTERVAL
        } else {
            PROBE_DOWN_INTERVAL
        };
        // Once the tier is dropped, the next upgrade fails and the probe ends.
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = state.wake.notified(), if answered => {}
        }
        drop(state);
    }
}

impl CacheTier for RedisTier {
    async fn get(&self, key: &Key) -> Result<Option<Found>, TierError> {
        let (k, limit) = (key.as_str(), self.max_value_bytes);
        // PTTL first: -2 says the key is absent (GETRANGE answers "" for that too).
        let (pttl, body): (i64, Bytes) = self
            .call(async |c| {
                redis::pipe()
                    .cmd("PTTL")
                    .arg(k)
                    .cmd("GETRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(limit)
                    .query_async(c)
                    .await
            })
            .await?;
        if pttl == -2 {
            return Ok(None);
        }
        if body.len() > limit {
            return Err(TierError::TooLarge { tier: TIER, limit });
        }
        // Redis keeps the time left, not the TTL it was set with: an entry is read as
        // having this tier's TTL, or the time left when that is longer (an adapted TTL).
        // PTTL is -1 for a key without expiry: its age is unknown, call it new.
        let left = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
        let ttl = Duration::from_secs(self.ttl()).max(left);
        let age = if pttl < 0 { Duration::ZERO } else { ttl - left };
        Ok(Some(Found { body, age, ttl }))
    }

    async fn watch(&self, key: &Key, tags: &[Tag]) -> Result<Option<Watch>, TierError> {
        let names = fence::watched(key, tags);
        let versions: Vec<Option<i64>> = self
            .call(async |c| redis::cmd("MGET").arg(&names).query_async(c).await)
            .await?;
        Ok(Some(Watch {
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
        let ttl = entry.ttl.map_or_else(
            || self.ttl(),
            |t| t.saturating_sub(entry.age).as_secs().max(1),
        );
        script
            .arg(body.as_ref())
            .arg(ttl)
            .arg(names.len())
            .arg(
                ttl.saturating_mul(1_000)
                    .saturating_add(fence::SET_SLACK_MS),
            )
            .arg(&watch.versions);
        let stored: i64 = self.call(async |c| script.invoke_async(c).await).await?;
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
        self.call(async |c| script.invoke_async::<i64>(c).await)
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
        self.call(async |c| script.invoke_async(c).await).await
    }

    async fn clear(&self) -> Result<u64, TierError> {
        // Moved first: a write read before this clear is refused from now on.
        let mut bump = fence::REMOVE.prepare_invoke();
        bump.key(fence::VERSION_ALL).arg(VERSION_TTL_MS);
        self.call(async |c| bump.invoke_async::<i64>(c).await)
            .await?;
        let pattern = format!("{}*", Key::PREFIX);
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .call(async |c| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(c)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                removed += self
                    .call(async |c| redis::cmd("UNLINK").arg(&keys).query_async::<u64>(c).await)
                    .await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    fn health(&self) -> Health {
        if self.link.up.load(Ordering::Relaxed) {
            Health::Connected
        } else {
            Health::Unavailable
        }
    }

    fn size(&self) -> Size {
        // Counting keys would need a round trip; status routes never wait on Redis.
        Size::default()
    }

    fn set_ttl(&self, ttl: Duration, _stale_retention: Duration) {
        self.ttl_secs.store(ttl.as_secs().max(1), Ordering::Relaxed);
    }
}
