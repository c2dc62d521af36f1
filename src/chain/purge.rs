//! Purges: by keys, by tags, or everything, on every tier or only the local ones (an
//! instance applying another's purge: the shared tiers are already done). The fence
//! logs each purge from before its first removal to after its last, so no store from a
//! read it overtook survives it (`fence.rs`).

use std::time::Instant;

use super::Chain;
use super::tier_io::record;
use crate::key::Key;
use crate::metrics::TierOp;
use crate::tags::{Purge, Tag};
use crate::tiers::{Tier, TierError, TierKind};

/// Which tiers a purge reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every tier: the purge starts here.
    Everywhere,
    /// In-process tiers only: another instance purged the shared ones.
    Local,
}

/// What a purge did.
#[derive(Debug, Default)]
pub struct Purged {
    /// Entries removed (as far as the tiers can count).
    pub removed: u64,
    /// Tiers that could not do it.
    pub failed: Vec<(TierKind, TierError)>,
}

impl Chain {
    /// Removes what `purge` names from the tiers `reach` says.
    pub async fn purge(&self, purge: &Purge, reach: Reach) -> Purged {
        let purge = purge.clone().simplified();
        let running = self.fence.begin(&purge);
        let implicit = match &purge {
            Purge::Tags { tags } => self.reached_by_key(tags),
            _ => Vec::new(),
        };
        let mut purged = Purged::default();
        let tiers = self
            .tiers
            .iter()
            .filter(|t| reach == Reach::Everywhere || t.is_local());
        for tier in tiers {
            let started = Instant::now();
            let (op, result) = match &purge {
                Purge::Clear => (TierOp::Clear, tier.clear().await),
                Purge::Keys { keys } => (TierOp::Remove, remove_keys(tier, keys).await),
                Purge::Tags { tags } => {
                    let by_tag = tier.remove_tags(tags).await;
                    let by_key = remove_keys(tier, &implicit).await;
                    (TierOp::Remove, by_tag.and_then(|n| by_key.map(|m| n + m)))
                }
            };
            record(&self.metrics, tier.kind(), op, started, &result);
            match result {
                Ok(n) => purged.removed += n,
                Err(e) => purged.failed.push((tier.kind(), e)),
            }
        }
        drop(running);
        purged
    }

    /// The keys of entries whose prompt is a purged user id and that have no filename:
    /// the only entries not in the tag index (see `filing.rs`). Both key forms, so a
    /// reload of `normalize_queries` leaves none behind.
    fn reached_by_key(&self, tags: &[Tag]) -> Vec<Key> {
        let mut keys = Vec::new();
        for tag in tags {
            if let Tag::User(id) = tag {
                for normalize in [false, true] {
                    let key = Key::derive_in(&self.namespace, id, None, normalize);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        keys
    }
}

/// Removes keys one by one; gives how many were asked (tiers cannot all count).
async fn remove_keys(tier: &Tier, keys: &[Key]) -> Result<u64, TierError> {
    for key in keys {
        tier.remove(key).await?;
    }
    Ok(keys.len() as u64)
}
