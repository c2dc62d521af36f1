//! The Redis Cluster tier's purges of keys: each key's version moved and its value
//! removed, and the trim of tag sets that writes do (`redis_cluster_fence.rs` says why
//! a key leaves a tag set only to be purged).

use std::time::Duration;

use futures_util::future::try_join_all;

use super::TierError;
use super::redis_cluster::RedisClusterTier;
use super::redis_cluster_fence as fence;
use super::redis_fence::{REMOVE, VERSION_TTL_MS};

/// Keys moved or removed at once by a purge (one script each, sent together).
const PURGE_BATCH: usize = 256;
/// Tries of one batch of a purge, 100 ms, then 200 ms apart (a failover's blip).
const PURGE_TRIES: u32 = 3;

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

    /// Takes sampled `(tag set, member)` pairs whose value is gone out of their sets,
    /// then purges those keys: leaving a set is safe only with the version moved after
    /// (`redis_cluster_fence.rs`), so the purge runs even when a removal failed.
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
        let dead: Vec<&(String, String)> = sampled
            .iter()
            .zip(exists)
            .filter_map(|(pair, exists)| (!exists).then_some(pair))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let removed = self
            .link
            .call(async |c| {
                try_join_all(dead.iter().map(|(set, member)| {
                    let (mut c, mut srem) = (c.clone(), redis::cmd("SREM"));
                    srem.arg(set).arg(member);
                    async move { srem.query_async::<i64>(&mut c).await }
                }))
                .await
            })
            .await;
        let mut keys: Vec<String> = dead.into_iter().map(|(_, m)| m.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        self.remove_all(&keys).await.inspect_err(|e| {
            tracing::warn!(error = %e, "keys trimmed from tag sets could not be purged");
        })?;
        removed.map(drop)
    }
}
