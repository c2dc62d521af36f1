//! The Redis Cluster tier: the single-server tier's keys and values (`context:<md5>`,
//! plain JSON, `SET … EX`), spread over the cluster's masters by redis-rs's cluster
//! client, which follows MOVED/ASK and refreshes the slot map itself. The circuit, the
//! read and the SCAN walk are `redis_link.rs`'s, shared with the single-server tier;
//! the fence is `redis_cluster_fence.rs`, since a cluster script reaches one slot only.
//!
//! The probe passes when a node says `cluster_state:ok` and every master answers PING,
//! so a dead master keeps the tier skipped (at no cost) until its replica is promoted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::try_join_all;
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_read_routing::RandomReplicaStrategy;
use serde::{Deserialize, Serialize};

use super::redis_cluster_fence::{self as fence, LEASE, SET_SLACK_MS, WRITE_WITHIN, WRITING};
use super::redis_cluster_nodes::{self as nodes, View};
use super::redis_link::{self as link, Link};
use super::{
    BuildContext, CacheTier, Entry, Found, Health, Size, TierError, TierKind, Topology, Watch,
};
use crate::key::Key;
use crate::tags::Tag;

const TIER: &str = "redis_cluster";

/// `[[tiers]] type = "redis_cluster"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisClusterConfig {
    /// Seed nodes, `redis://[user:password@]host:port`; the rest are discovered.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Outer limit for one operation; past it the request moves on without the tier.
    #[serde(default = "link::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Limit for establishing a connection to one node.
    #[serde(default = "link::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Read from replicas too. Off by default: a replica may still hold a value for a
    /// moment after its master removed it (replication is asynchronous).
    #[serde(default)]
    pub read_from_replicas: bool,
    /// Freshness lifetime (`SET ... EX`); `[cache] ttl_secs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

impl RedisClusterConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.nodes.is_empty() {
            problems.push(
                "nodes must name at least one node, e.g. nodes = [\"redis://127.0.0.1:7001\"]"
                    .into(),
            );
        }
        for node in &self.nodes {
            problems.extend(link::url_problem("node", node));
        }
        problems.extend(link::limit_problems(
            self.timeout_ms,
            self.connect_timeout_ms,
            self.ttl_secs,
        ));
        problems
    }

    pub(crate) fn redact(&mut self) {
        for node in &mut self.nodes {
            *node = crate::secret::redact_url(node);
        }
    }
}

/// The Redis Cluster tier.
pub struct RedisClusterTier {
    pub(super) link: Link<ClusterConnection>,
    view: Arc<View>,
}

impl RedisClusterTier {
    /// Creates the tier and its probe; connects in the background.
    ///
    /// # Errors
    /// [`TierError::Config`] for nodes the client rejects.
    pub fn new(config: &RedisClusterConfig, ctx: &BuildContext) -> Result<Self, TierError> {
        let config_error = |e: redis::RedisError| TierError::Config {
            tier: TIER,
            message: e.to_string(),
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let connect = Duration::from_millis(config.connect_timeout_ms);
        // One quick retry (a MOVED after a failover); the outer timeout bounds the rest.
        let mut builder = ClusterClientBuilder::new(config.nodes.clone())
            .connection_timeout(connect)
            .response_timeout(timeout)
            .overall_response_timeout(Some(timeout))
            .retries(1)
            .min_retry_wait(5)
            .max_retry_wait(20);
        if config.read_from_replicas {
            builder = builder.read_routing_strategy(RandomReplicaStrategy);
        }
        let client = builder.build().map_err(config_error)?;
        let conn = client.get_pending_async_connection_with_config(
            ClusterConfig::new()
                .set_connection_timeout(connect)
                .set_response_timeout(timeout),
        );
        let view = Arc::new(View::default());
        let probe_view = Arc::clone(&view);
        let check = Arc::new(move |conn| nodes::probe(conn, Arc::clone(&probe_view)).boxed());
        Ok(Self {
            link: Link::new(conn, TierKind::RedisCluster, timeout, ctx, check),
            view,
        })
    }
}

impl CacheTier for RedisClusterTier {
    async fn get(&self, key: &Key) -> Result<Option<Found>, TierError> {
        self.link.read(key).await
    }

    async fn watch(&self, key: &Key, tags: &[Tag]) -> Result<Option<Watch>, TierError> {
        let taken = Instant::now();
        let k = key.as_str();
        let lease_ms = LEASE.as_millis() as u64;
        // The version first, then the registrations, all before the origin is asked:
        // each purge after a registration moves the version (a trim's too, see
        // `redis_cluster_fence.rs`), so it was read before any purge that could miss us.
        let version: Option<i64> = self
            .link
            .call(async |c| {
                let mut get = redis::cmd("GET");
                get.arg(fence::version_of_key(k));
                let version = get.query_async(c).await?;
                let mut write = fence::REGISTER_WRITE.prepare_invoke();
                write.key(WRITING).arg(k).arg(lease_ms);
                let registered = tags.iter().filter(|t| **t != Tag::Snippets).map(|tag| {
                    let mut c = c.clone();
                    let mut script = fence::REGISTER.prepare_invoke();
                    script.key(fence::set_of_tag(tag)).arg(k).arg(lease_ms);
                    async move { script.invoke_async::<()>(&mut c).await }
                });
                let mut w = c.clone();
                let (write, tags) = futures_util::join!(
                    write.invoke_async::<i64>(&mut w),
                    try_join_all(registered),
                );
                write?;
                tags?;
                Ok(version)
            })
            .await?;
        Ok(Some(Watch {
            versions: vec![version.unwrap_or_default()],
            taken: Some(taken),
        }))
    }

    async fn put(&self, key: &Key, body: &Bytes, entry: &Entry<'_>) -> Result<(), TierError> {
        // Without a live registration no one can say the value is still current.
        let Some(Watch {
            versions,
            taken: Some(taken),
        }) = entry.watch
        else {
            return Ok(());
        };
        let [version] = versions.as_slice() else {
            return Ok(());
        };
        if taken.elapsed() > WRITE_WITHIN {
            tracing::debug!(
                key = key.as_str(),
                "cluster write dropped: its lease ran out"
            );
            return Ok(());
        }
        let ttl = self.link.entry_ttl_secs(entry);
        let mut script = fence::PUT.prepare_invoke();
        script
            .key(key.as_str())
            .key(fence::version_of_key(key.as_str()))
            .arg(body.as_ref())
            .arg(ttl)
            .arg(*version);
        let stored: i64 = self
            .link
            .call(async |c| script.invoke_async(c).await)
            .await?;
        if stored == 0 {
            tracing::debug!(
                key = key.as_str(),
                "cluster write refused: purged since its read"
            );
            return Ok(());
        }
        if entry.indexed.is_empty() {
            return Ok(());
        }
        // The tag sets must outlive the entry (they were made to outlive the lease).
        let set_ms = ttl.saturating_mul(1_000).saturating_add(SET_SLACK_MS);
        let k = key.as_str();
        let registered = self
            .link
            .call(async |c| {
                try_join_all(entry.indexed.iter().map(|tag| {
                    let mut c = c.clone();
                    let set = fence::set_of_tag(tag);
                    let mut script = fence::REGISTER.prepare_invoke();
                    script.key(&set).arg(k).arg(set_ms);
                    async move {
                        let others: Vec<String> = script.invoke_async(&mut c).await?;
                        Ok(others.into_iter().map(move |m| (set.clone(), m)))
                    }
                }))
                .await
            })
            .await;
        match registered {
            Ok(sampled) => {
                if let Err(e) = self.trim(sampled.into_iter().flatten().collect()).await {
                    tracing::debug!(error = %e, "cluster tag set trim failed");
                }
                Ok(())
            }
            Err(e) => {
                // A value its tags' purges cannot find must not stay for its TTL.
                tracing::debug!(key = k, error = %e, "cluster tag registration failed; value removed");
                self.remove_all(&[k.to_owned()]).await?;
                Err(e)
            }
        }
    }

    async fn remove(&self, key: &Key) -> Result<(), TierError> {
        self.remove_all(&[key.as_str().to_owned()]).await.map(drop)
    }

    async fn remove_tags(&self, tags: &[Tag]) -> Result<u64, TierError> {
        let mut removed = 0;
        for tag in tags.iter().filter(|t| **t != Tag::Snippets) {
            removed += self.purge_tag(tag).await?;
        }
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64, TierError> {
        // Writers first: one registered before this clear must not store after it.
        let writing: Vec<String> = self
            .link
            .call(async |c| {
                redis::cmd("ZRANGE")
                    .arg(WRITING)
                    .arg(0)
                    .arg(-1)
                    .query_async(c)
                    .await
            })
            .await?;
        let mut removed = self.remove_all(&writing).await?;
        let addrs = self.link.call(async |c| nodes::masters(c).await).await?;
        let pattern = format!("{}*", Key::PREFIX);
        let mut failed = Vec::new();
        for addr in &addrs {
            match self
                .link
                .scan_unlink(&pattern, |c, step| {
                    nodes::scan(c, addr.clone(), step).boxed()
                })
                .await
            {
                Ok(n) => removed += n,
                Err(e) => failed.push(format!("{addr}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(removed)
        } else {
            Err(TierError::Backend {
                tier: TIER,
                message: format!(
                    "clear failed on {} of {} masters ({}); {removed} keys removed elsewhere",
                    failed.len(),
                    addrs.len(),
                    failed.join("; ")
                ),
            })
        }
    }

    fn health(&self) -> Health {
        self.link.health()
    }

    fn size(&self) -> Size {
        // Counting keys would need a round trip to every master.
        Size::default()
    }

    fn topology(&self) -> Option<Topology> {
        Some(self.view.topology())
    }

    fn set_ttl(&self, ttl: Duration, _stale_retention: Duration) {
        self.link.set_ttl(ttl);
    }
}
