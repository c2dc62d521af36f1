//! The read-through walk: tiers in configured order, then the origin through a single
//! flight per key, then the fresh answer stored into every tier. A hit in a lower tier
//! back-fills the tiers above it. A tier that fails is skipped for that request.
//! Stale answers: within `stale_while_revalidate` past TTL one is served at once while
//! one background refresh runs; within `stale_if_error` it is served when the origin
//! fails, when its breaker is open, or when it has not answered within
//! `stale_if_error_wait` (the call goes on and fills the tiers). Empty or misshapen
//! answers and errors are never stored (`storable.rs`).
//!
//! The chain serves one function: its origin, key namespace and answer shape. A daemon
//! serving several functions (the proxy's) builds one more each with
//! [`Chain::sibling`]: the same tiers, fence and flights, its own origin and breaker.

mod answer;
mod call;
pub mod fence;
mod filing;
mod flight;
mod purge;
pub mod storable;
mod tier_io;
mod ttl;
mod variants;
mod verdict_memo;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::key::Key;
use crate::metrics::{Function, Metrics, Outcome, Refresh};
use crate::origins::{Asked, Breaker, BreakerSettings, ContextRequest, Origin, OriginError};
use crate::tiers::{Found, Tier, TierKind};
pub use answer::{Answer, Failure, Source};
use fence::{Fence, Ticket};
pub use flight::{FlightResult, Flights, Publisher, Role};
pub use purge::{Purged, Reach};
pub use storable::Shape;
use ttl::Previous;
pub use ttl::{Bounds, TtlRule};
pub use variants::Variants;

/// The parts of the policy a reload may change.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub normalize: bool,
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
    /// With a stale entry at hand, the longest a request waits on the origin.
    pub stale_if_error_wait: Duration,
    /// Fraction of an entry's TTL past which a hit refreshes it behind the answer; 0: never.
    pub refresh_ahead: f64,
    /// Negative entries and adaptive TTLs (`ttl.rs`).
    pub ttl: TtlRule,
}

/// The chain of tiers in front of one origin.
pub struct Chain {
    /// The key prefix of this origin's answers ([`Key::namespace`]).
    namespace: String,
    /// What this function's answers look like.
    shape: Shape,
    tiers: Arc<[Tier]>,
    /// Keeps stores from bringing back what a purge removed. Chains sharing tiers would
    /// share it too.
    fence: Arc<Fence>,
    origin: Arc<Origin>,
    breaker: Arc<Breaker>,
    flights: Arc<Flights>,
    metrics: Arc<Metrics>,
    /// The `function` series its requests and origin calls are recorded under.
    function: Function,
    variants: Arc<Variants>,
    policy: ArcSwap<Policy>,
}

impl Chain {
    /// A chain whose keys live under `namespace` ([`Key::namespace`] of the origin's
    /// function). The original function's namespace holds answers of its shape. Chains
    /// of several functions can share one set of tiers (pass the same `Arc<[Tier]>`).
    pub fn new(
        namespace: String,
        tiers: impl Into<Arc<[Tier]>>,
        origin: Origin,
        breaker: BreakerSettings,
        metrics: Arc<Metrics>,
        policy: Policy,
    ) -> Self {
        let shape = if namespace == Key::PREFIX {
            Shape::Context
        } else {
            Shape::Any
        };
        Self {
            namespace,
            shape,
            tiers: tiers.into(),
            fence: Arc::default(),
            origin: Arc::new(origin),
            breaker: Arc::new(Breaker::new(breaker)),
            flights: Arc::new(Flights::default()),
            function: Function::ORIGINAL,
            metrics,
            variants: Arc::new(Variants::default()),
            policy: ArcSwap::from_pointee(policy),
        }
    }

    /// A chain for another function over the same tiers, fence and flights (so purges
    /// and single flights reach across functions), with its own origin and breaker;
    /// its keys live under the function's namespace ([`Key::rpc_namespace`]) and its
    /// requests are recorded under its name.
    pub fn sibling(
        &self,
        function: &str,
        shape: Shape,
        origin: Origin,
        breaker: BreakerSettings,
    ) -> Self {
        Self {
            namespace: Key::rpc_namespace(function),
            function: self.metrics.function(function),
            shape,
            tiers: Arc::clone(&self.tiers),
            fence: Arc::clone(&self.fence),
            origin: Arc::new(origin),
            breaker: Arc::new(Breaker::new(breaker)),
            flights: Arc::clone(&self.flights),
            metrics: Arc::clone(&self.metrics),
            variants: Arc::clone(&self.variants),
            policy: ArcSwap::new(self.policy.load_full()),
        }
    }

    /// The key prefix of its answers ([`Key::namespace`]).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The `function` series of its requests, origin calls and breaker.
    pub fn function(&self) -> Function {
        self.function
    }

    /// Records one request this chain answered from `source` (`None`: it failed), under
    /// its function.
    pub fn record_request(&self, source: Option<Source>, latency: Duration) {
        let outcome = match source {
            Some(Source::Tier(kind)) => Outcome::Hit(kind),
            Some(Source::Origin) => Outcome::Miss,
            Some(Source::Stale(kind)) => Outcome::Stale(kind),
            None => Outcome::Error,
        };
        self.metrics.request(self.function, outcome, latency);
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn variants(&self) -> &Variants {
        &self.variants
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// Whether keys are derived from normalised messages, under the current policy.
    pub fn normalizes(&self) -> bool {
        self.policy.load().normalize
    }

    /// The key a request maps to under the current policy.
    pub fn key_for(&self, message: &str, filename: Option<&str>) -> Key {
        Key::derive_in(
            &self.namespace,
            message,
            filename,
            self.policy.load().normalize,
        )
    }

    /// Starts one origin call behind an answer already served (a flight no one waits
    /// on; joined, not repeated, when one runs). A failure leaves the entry as it was.
    fn refresh(
        &self,
        key: &Key,
        ticket: Ticket,
        request: Asked,
        replaces: &Found,
        reason: Refresh,
    ) {
        let (role, _) = self.fly(key, ticket, request, Some(Previous::of(replaces)));
        if matches!(role, Role::Leader) {
            self.metrics.refresh_started(reason);
        }
    }

    /// Answers one context request.
    ///
    /// # Errors
    /// [`Failure`] when the origin fails and no stale entry may stand in.
    pub async fn lookup(&self, request: Arc<ContextRequest>) -> Result<Answer, Failure> {
        let key = self.key_for(&request.message, request.filename.as_deref());
        self.serve(key, || Asked::Context(request)).await
    }

    /// Answers what `key` names; a miss asks the origin what `request` makes. The caller
    /// derived the key from everything the answer depends on. `request` is called only
    /// when the origin may be asked or a tier filled: a hit in the first tier, the usual
    /// answer, never makes it (for a proxied call it was an allocation and a copy).
    ///
    /// # Errors
    /// [`Failure`] when the origin fails and no stale entry may stand in.
    pub async fn serve(
        &self,
        key: Key,
        request: impl FnOnce() -> Asked,
    ) -> Result<Answer, Failure> {
        let policy = self.policy.load();
        let mut stale: Option<(TierKind, Found)> = None;
        // Before any read: a store of what it finds must not outlive a purge after it.
        let ticket = self.fence.ticket();
        // Purges from other instances may be missing from the local tiers: while a
        // shared tier answers, it holds what the group purged, so only it is read.
        let shared_only = self.fence.deaf() && self.shared_tier_serving();

        for (i, tier) in self.tiers.iter().enumerate() {
            if shared_only && tier.is_local() {
                continue;
            }
            let Some(found) = self.tier_get(tier, &key).await else {
                continue;
            };
            if found.age < found.ttl {
                let ahead = policy.refresh_ahead > 0.0
                    && found.age >= found.ttl.mul_f64(policy.refresh_ahead);
                if i > 0 || ahead {
                    let request = request();
                    if i > 0 {
                        self.backfill(i, &key, &found, ticket, &request);
                    }
                    if ahead {
                        self.refresh(&key, ticket, request, &found, Refresh::Ahead);
                    }
                }
                return Ok(self.answer(key, Source::Tier(tier.kind()), found, &policy));
            }
            let past = found.age - found.ttl;
            if past < policy.stale_while_revalidate {
                self.refresh(&key, ticket, request(), &found, Refresh::Revalidate);
                return Ok(self.answer(key, Source::Stale(tier.kind()), found, &policy));
            }
            if past < policy.stale_if_error && stale.is_none() {
                stale = Some((tier.kind(), found));
            }
        }

        let request = request();
        if let (false, Asked::Context(context)) = (policy.normalize, &request) {
            self.variants.observe(&context.message);
        }
        let replaces = stale.as_ref().map(|(_, found)| Previous::of(found));
        // What a purge of the stale entry would name: it is served only if none ran.
        let stale_digests = stale
            .as_ref()
            .map(|(_, found)| call::digests(&request, self.shape, &found.body));
        let (role, waiting) = self.fly(&key, ticket, request, replaces);
        let coalesced = matches!(role, Role::Waiter);
        if coalesced {
            self.metrics.coalesced_waiter();
        }
        let result = match &stale {
            // The call goes on without us, and fills the tiers when it ends.
            Some(_) => tokio::time::timeout(policy.stale_if_error_wait, waiting)
                .await
                .unwrap_or_else(|_| {
                    Err(Arc::new(OriginError::Timeout(policy.stale_if_error_wait)))
                }),
            None => waiting.await,
        };
        match result {
            Ok(body) => Ok(Answer {
                negative: self.is_negative(&body, &policy),
                key,
                body,
                source: Source::Origin,
                age: Duration::ZERO,
                ttl: None,
                coalesced,
            }),
            Err(error) => match stale {
                // A purge since the read said the stale entry is wrong: the error stands.
                Some(_)
                    if !stale_digests
                        .is_some_and(|digests| self.fence.clean(ticket, &key, &digests)) =>
                {
                    tracing::debug!(key = key.as_str(), %error, "origin failed; the stale entry was purged meanwhile");
                    Err(Failure { key, error })
                }
                Some((kind, found)) => {
                    tracing::debug!(key = key.as_str(), %error, "origin failed; serving stale");
                    let mut answer = self.answer(key, Source::Stale(kind), found, &policy);
                    answer.coalesced = coalesced;
                    Ok(answer)
                }
                None => Err(Failure { key, error }),
            },
        }
    }

    /// Tells the chain (and its siblings) whether other instances' purges reach it
    /// ([`Fence::set_deaf`]).
    pub fn set_deaf(&self, deaf: bool) {
        self.fence.set_deaf(deaf);
    }

    fn shared_tier_serving(&self) -> bool {
        self.tiers
            .iter()
            .any(|t| !t.is_local() && t.health().is_serving())
    }

    /// An empty answer while negative entries are on (so stored, or from, one).
    fn is_negative(&self, body: &[u8], policy: &Policy) -> bool {
        !policy.ttl.negative.is_zero() && storable::is_empty_answer(body, self.shape)
    }

    /// An answer from an entry.
    fn answer(&self, key: Key, source: Source, found: Found, policy: &Policy) -> Answer {
        let negative = self.is_negative(&found.body, policy);
        if negative {
            self.metrics.negative_served();
        }
        Answer {
            key,
            source,
            age: found.age,
            ttl: Some(found.ttl),
            body: found.body,
            coalesced: false,
            negative,
        }
    }
}
