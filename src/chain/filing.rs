//! An answer on its way into the tiers: what it depends on (its tags, from the request
//! and from the answer itself), which of those a purge must find it by, and the fence
//! ticket taken before the read it came from. Local tiers are written first and the
//! fence asked after (an overtaken write is undone); shared tiers write only through
//! their own watch, and only answers whose every tag was watched.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fence::{Fence, Ticket};
use super::tier_io::record;
use crate::key::Key;
use crate::metrics::{Metrics, TierOp};
use crate::origins::Asked;
use crate::tags::Tag;
use crate::tiers::{Entry, Found, Tier, Watch};

pub(super) struct Filing {
    pub key: Key,
    pub ticket: Ticket,
    pub tags: Vec<Tag>,
    /// Tags a purge finds the entry by; the prompt's own `user:` tag is reached through
    /// the key when there is no filename (see `Chain::purge`).
    pub indexed: Vec<Tag>,
    pub digests: Vec<u128>,
    /// The answer named no tag the request did not (so the shared tiers' watch, taken
    /// from the request, covers them all).
    pub predicted: bool,
    /// Its own TTL (`ttl.rs`); each tier's when `None`.
    pub ttl: Option<Duration>,
    /// How old it already is (a back-filled hit).
    pub age: Duration,
    /// A back-filled copy of a lower tier's entry.
    pub copy: bool,
}

impl Filing {
    /// `tags` are the request's (`tags::for_request`), `answer` the answer's own.
    pub fn new(
        key: &Key,
        ticket: Ticket,
        request: &Asked,
        mut tags: Vec<Tag>,
        answer: Vec<Tag>,
    ) -> Self {
        // The prompt's own `user:` tag: see `indexed`.
        let prompt = match request {
            Asked::Context(r) if r.filename.as_deref().is_none_or(str::is_empty) => {
                Some(r.message.as_str())
            }
            _ => None,
        };
        let predicted = answer.iter().all(|t| tags.contains(t));
        for tag in answer {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let indexed = tags
            .iter()
            .filter(|t| match t {
                Tag::Snippets => false,
                Tag::User(id) => prompt != Some(id.as_str()),
                Tag::File(_) => true,
            })
            .cloned()
            .collect();
        Self {
            key: key.clone(),
            ticket,
            digests: tags.iter().map(Tag::digest).collect(),
            tags,
            indexed,
            predicted,
            ttl: None,
            age: Duration::ZERO,
            copy: false,
        }
    }

    /// The same, kept for `ttl` (an origin answer's own TTL, `ttl.rs`).
    pub fn lasting(self, ttl: Option<Duration>) -> Self {
        Self { ttl, ..self }
    }

    /// The same, as a copy of `found` (as old as it is, expiring with it).
    pub fn copy_of(self, found: &Found) -> Self {
        Self {
            ttl: Some(found.ttl),
            age: found.age,
            copy: true,
            ..self
        }
    }

    fn entry<'a>(&'a self, watch: Option<&'a Watch>) -> Entry<'a> {
        Entry {
            tags: &self.tags,
            indexed: &self.indexed,
            watch,
            ttl: self.ttl,
            age: self.age,
            copy: self.copy,
        }
    }

    /// Whether no purge has overtaken the read.
    pub fn clean(&self, fence: &Fence) -> bool {
        fence.clean(self.ticket, &self.key, &self.digests)
    }
}

/// Writes into `tier` (local), then undoes it if a purge overtook the read.
/// Gives whether it stayed.
pub(super) async fn file_local(
    metrics: &Metrics,
    fence: &Fence,
    tier: &Tier,
    filing: &Filing,
    body: &Bytes,
) -> bool {
    let started = Instant::now();
    let result = tier.put(&filing.key, body, &filing.entry(None)).await;
    record(metrics, tier.kind(), TierOp::Put, started, &result);
    if filing.clean(fence) {
        return true;
    }
    let _ = tier.remove(&filing.key).await;
    tracing::debug!(
        key = filing.key.as_str(),
        "not kept: a purge overtook the read"
    );
    false
}

/// Writes into a shared tier under the watch it gave before the origin call.
pub(super) async fn file_shared(
    metrics: &Metrics,
    tier: &Tier,
    filing: &Filing,
    watch: &Watch,
    body: &Bytes,
) {
    if !filing.predicted {
        return;
    }
    let started = Instant::now();
    let result = tier
        .put(&filing.key, body, &filing.entry(Some(watch)))
        .await;
    record(metrics, tier.kind(), TierOp::Put, started, &result);
}
