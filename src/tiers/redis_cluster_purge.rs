//! The Redis Cluster tier's purges of keys (each key's version moved and its value
//! removed), by tag, and the trim of tag sets that writes do. A key leaves a tag set
//! only to be purged after (`redis_cluster_fence.rs` says why), and a purge by tag
//! purges its keys before, too, so a purge that failed halfway is retried whole.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::try_join_all;

use super::TierError;
use super::redis_cluster::RedisClusterTier;
use super::redis_cluster_fence as fence;
use super::redis_fence::{REMOVE, VERSION_TTL_MS};
use crate::tags::Tag;

/// Keys moved or removed at once by a purge (one script each, sent together).
const PURGE_BATCH: usize = 256;
/// Tries of one batch of a purge, 100 ms, then 200 ms apart (a failover's blip).
const PURGE_TRIES: u32 = 3;
/// Members taken out of a set by one SREM.
const SREM_BATCH: usize = 500;

impl RedisClusterTier {
    /// Moves the version of each key and removes its value, `PURGE_BATCH` at a time.
    /// A batch is tried [`PURGE_TRIES`] times: its keys may have left a tag set already
    /// (a purge by tag, a trim), and only this move keeps their writers out then.
    pub(super) async fn remove_all(&self, keys: &[String]) -> Result<u64, TierError> {
        let mut removed = 0;
        for batch in keys.chunks(PURGE_BATCH) {
            let mut tries = 1;
            let done = loop {
                let done = self
                    .link
                    .call(async |c| {
                        try_join_all(batch.iter().map(|key| {
                            let mut c = c.clone();
                            let mut script = REMOVE.prepare_invoke();
                            script
                                .key(fence::version_of_key(key))
                                .key(key)
                                .arg(VERSION_TTL_MS);
                            async move { script.invoke_async::<u64>(&mut c).await }
                        }))
                        .await
                    })
                    .await;
                match done {
                    Err(e) if tries < PURGE_TRIES => {
                        tracing::debug!(error = %e, "cluster purge batch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                        tries += 1;
                    }
                    done => break done?,
                }
            };
            removed += done.iter().sum::<u64>();
        }
        Ok(removed)
    }

    /// Purges by tag: the set's keys first, with the set left whole (a purge that fails
    /// here finds them all again when retried), then out of the set ([`Self::take_out`]).
    pub(super) async fn purge_tag(&self, tag: &Tag) -> Result<u64, TierError> {
        let set = fence::set_of_tag(tag);
        let members: Vec<String> = self
            .link
            .call(async |c| redis::cmd("SMEMBERS").arg(&set).query_async(c).await)
            .await?;
        if members.is_empty() {
            return Ok(0);
        }
        let removed = self.remove_all(&members).await?;
        let pairs: Vec<_> = members.into_iter().map(|m| (set.clone(), m)).collect();
        self.take_out(&pairs).await?;
        Ok(removed)
    }

    /// Takes sampled `(tag set, member)` pairs whose value is gone out of their sets.
    pub(super) async fn trim(&self, sampled: Vec<(String, String)>) -> Result<(), TierError> {
        if sampled.is_empty() {
            return Ok(());
        }
        let exists: Vec<bool> = self
            .link
            .call(async |c| {
                try_join_all(sampled.iter().map(|(_, member)| {
                    let (mut c, mut exists) = (c.clone(), redis::cmd("EXISTS"));
                    exists.arg(member);
                    async move { exists.query_async::<bool>(&mut c).await }
                }))
                .await
            })
            .await?;
        let dead: Vec<(String, String)> = sampled
            .into_iter()
            .zip(exists)
            .filter_map(|(pair, exists)| (!exists).then_some(pair))
            .collect();
        self.take_out(&dead).await
    }

    /// Takes `(tag set, member)` pairs out of their sets, then purges those keys:
    /// leaving a set is safe only with the version moved after (`redis_cluster_fence.rs`),
    /// so the purge runs even when a removal failed.
    async fn take_out(&self, pairs: &[(String, String)]) -> Result<(), TierError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut by_set: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (set, member) in pairs {
            by_set.entry(set).or_default().push(member);
        }
        let taken = self
            .link
            .call(async |c| {
                let removals = by_set.iter().flat_map(|(set, members)| {
                    members.chunks(SREM_BATCH).map(|chunk| {
                        let (mut c, mut srem) = (c.clone(), redis::cmd("SREM"));
                        srem.arg(*set).arg(chunk);
                        async move { srem.query_async::<i64>(&mut c).await }
                    })
                });
                try_join_all(removals).await
            })
            .await;
        let mut keys: Vec<String> = pairs.iter().map(|(_, m)| m.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        self.remove_all(&keys).await.inspect_err(|e| {
            tracing::warn!(error = %e, "keys taken out of tag sets could not be purged");
        })?;
        taken.map(drop)
    }
}
