//! Timed tier operations: every tier is measured alike, here rather than in each tier.
//! A value read from a shared (remote) tier is served only if the daemon would have
//! stored it (`storable.rs`, its verdicts memoised in `verdict_memo.rs`); anything else
//! is a miss, counted by reason.

use std::time::Instant;

use super::Chain;
use super::call::{answer_tags, tags_of};
use super::fence::Ticket;
use super::filing::{Filing, file_local};
use super::storable::Verdict;
use super::verdict_memo;
use crate::key::Key;
use crate::metrics::{Metrics, TierOp, ValueRejection};
use crate::names::TierKind;
use crate::origins::Asked;
use crate::tiers::{Found, Tier, TierError};

impl Chain {
    /// One timed tier read; failures are counted and turn into a skip, unusable values
    /// into a miss.
    pub(super) async fn tier_get(&self, tier: &Tier, key: &Key) -> Option<Found> {
        let started = Instant::now();
        let result = tier.get(key).await;
        record(&self.metrics, tier.kind(), TierOp::Get, started, &result);
        let found = result.ok().flatten()?;
        if !tier.is_local() {
            let why = match verdict_memo::judge(key, &found.body, self.shape) {
                Verdict::Store | Verdict::StoreFor(_) | Verdict::Blank => return Some(found),
                // Another instance's negative entry, if this one would store it too.
                Verdict::Empty if !self.policy.load().ttl.negative.is_zero() => {
                    return Some(found);
                }
                Verdict::Empty | Verdict::Keep => ValueRejection::NotStorable,
                Verdict::Invalid => ValueRejection::Invalid,
            };
            self.metrics.value_rejected(tier.kind(), why);
            tracing::debug!(
                tier = tier.kind().as_str(),
                key = key.as_str(),
                reason = why.as_str(),
                "value in the tier not served"
            );
            return None;
        }
        Some(found)
    }

    /// Copies a hit into the local tiers above the one that had it, fenced like an
    /// origin answer (`ticket` was taken before the reads). Shared tiers above a hit
    /// are not written: the hit is this instance's view, and publishing it to the group
    /// could bring back what another instance has just purged.
    pub(super) fn backfill(
        &self,
        hit_index: usize,
        key: &Key,
        found: &Found,
        ticket: Ticket,
        request: &Asked,
    ) {
        let above = &self.tiers[..hit_index];
        if !above.iter().any(Tier::is_local) {
            return;
        }
        let request_tags = tags_of(request);
        let answer_tags = answer_tags(self.shape, &found.body);
        // As old as it is below, and no fresher: the copy expires with the original.
        let filing = Filing::new(key, ticket, request, request_tags, answer_tags).copy_of(found);
        for tier in above.iter().filter(|t| t.is_local()) {
            // In-process puts are synchronous under the hood: no task needed.
            let fut = file_local(&self.metrics, &self.fence, tier, &filing, &found.body);
            futures_util::FutureExt::now_or_never(fut);
        }
    }
}

/// Records a tier operation; a skip of a tier known to be down is neither timed nor an
/// error (the tier did no work), `tier_up` already says it is down. A value too large to
/// read is a rejected value, not a failed operation.
pub(super) fn record<T>(
    metrics: &Metrics,
    kind: TierKind,
    op: TierOp,
    started: Instant,
    result: &Result<T, TierError>,
) {
    match result {
        Err(TierError::Unavailable { .. }) => {}
        Err(TierError::TooLarge { .. }) => {
            metrics.tier_op(kind, op, started.elapsed(), false);
            metrics.value_rejected(kind, ValueRejection::TooLarge);
        }
        Ok(_) => metrics.tier_op(kind, op, started.elapsed(), false),
        Err(e) => {
            tracing::debug!(tier = kind.as_str(), op = op.as_str(), error = %e, "tier operation failed");
            metrics.tier_op(kind, op, started.elapsed(), true);
        }
    }
}
