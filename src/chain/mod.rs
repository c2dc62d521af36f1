//! The read-through walk: tiers in configured order, then the origin through a single
//! flight per key, then the fresh answer stored into every tier. A hit in a lower tier
//! back-fills the tiers above it. A tier that fails is skipped for that request.
//! Stale answers: within `stale_while_revalidate` past TTL one is served at once while
//! one background refresh runs; within `stale_if_error` it is served only when the origin
//! fails. Empty answers (`null`, `{}`) and errors are never stored.

mod flight;
mod key;
mod variants;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::metrics::{Metrics, TierOp};
use crate::origins::{ContextRequest, Origin, OriginError};
use crate::tiers::{Found, Tier, TierError, TierKind};
pub use flight::{FlightResult, Flights, Publisher, Role};
pub use key::{Key, normalized};
pub use variants::Variants;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fresh entry in this tier.
    Tier(TierKind),
    /// The origin, just now (or a concurrent request's origin call).
    Origin,
    /// An expired entry in this tier, served under a stale rule.
    Stale(TierKind),
}

impl Source {
    /// The value of `cache.source` in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tier(kind) => kind.as_str(),
            Source::Origin => "origin",
            Source::Stale(_) => "stale",
        }
    }

    pub fn is_hit(self) -> bool {
        !matches!(self, Source::Origin)
    }
}

/// A successful look-up.
#[derive(Debug)]
pub struct Answer {
    pub key: Key,
    pub body: Bytes,
    pub source: Source,
    pub age: Duration,
    /// This request waited on another request's origin call.
    pub coalesced: bool,
}

/// A failed look-up: the origin failed and nothing stale could stand in.
#[derive(Debug)]
pub struct Failure {
    pub key: Key,
    pub error: Arc<OriginError>,
}

/// The parts of the policy a reload may change.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub normalize: bool,
    pub stale_if_error: Duration,
    pub stale_while_revalidate: Duration,
}

/// The chain of tiers in front of one origin.
pub struct Chain {
    /// The key prefix of this origin's answers ([`Key::namespace`]).
    namespace: String,
    tiers: Arc<[Tier]>,
    origin: Arc<Origin>,
    flights: Arc<Flights>,
    metrics: Arc<Metrics>,
    variants: Arc<Variants>,
    policy: ArcSwap<Policy>,
}

impl Chain {
    /// A chain whose keys live under `namespace` ([`Key::namespace`] of the origin's
    /// function).
    pub fn new(
        namespace: String,
        tiers: Vec<Tier>,
        origin: Origin,
        metrics: Arc<Metrics>,
        policy: Policy,
    ) -> Self {
        Self {
            namespace,
            tiers: tiers.into(),
            origin: Arc::new(origin),
            flights: Arc::new(Flights::default()),
            metrics,
            variants: Arc::new(Variants::default()),
            policy: ArcSwap::from_pointee(policy),
        }
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
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

    /// The key a request maps to under the current policy.
    pub fn key_for(&self, message: &str, filename: Option<&str>) -> Key {
        Key::derive_in(
            &self.namespace,
            message,
            filename,
            self.policy.load().normalize,
        )
    }

    /// Answers one context request.
    ///
    /// # Errors
    /// [`Failure`] when the origin fails and no stale entry may stand in.
    pub async fn lookup(&self, request: ContextRequest) -> Result<Answer, Failure> {
        let policy = self.policy.load();
        let key = Key::derive_in(
            &self.namespace,
            &request.message,
            request.filename.as_deref(),
            policy.normalize,
        );
        let mut stale: Option<(TierKind, Found)> = None;

        for (i, tier) in self.tiers.iter().enumerate() {
            let Some(found) = self.tier_get(tier, &key).await else {
                continue;
            };
            if found.age < found.ttl {
                self.backfill(i, &key, &found.body);
                return Ok(Answer {
                    key,
                    source: Source::Tier(tier.kind()),
                    age: found.age,
                    body: found.body,
                    coalesced: false,
                });
            }
            let past = found.age - found.ttl;
            if past < policy.stale_while_revalidate {
                // Serve now; one refresh behind it (a flight with no one waiting).
                drop(self.fly(&key, request));
                return Ok(Answer {
                    key,
                    source: Source::Stale(tier.kind()),
                    age: found.age,
                    body: found.body,
                    coalesced: false,
                });
            }
            if past < policy.stale_if_error && stale.is_none() {
                stale = Some((tier.kind(), found));
            }
        }

        if !policy.normalize {
            self.variants.observe(&request.message);
        }
        let (role, waiting) = self.fly(&key, request);
        let coalesced = matches!(role, Role::Waiter);
        if coalesced {
            self.metrics.coalesced_waiter();
        }
        match waiting.await {
            Ok(body) => Ok(Answer {
                key,
                body,
                source: Source::Origin,
                age: Duration::ZERO,
                coalesced,
            }),
            Err(error) => match stale {
                Some((kind, found)) => {
                    tracing::warn!(key = key.as_str(), %error, "origin failed; serving stale");
                    Ok(Answer {
                        key,
                        source: Source::Stale(kind),
                        age: found.age,
                        body: found.body,
                        coalesced,
                    })
                }
                None => Err(Failure { key, error }),
            },
        }
    }

    /// Joins (or starts) the origin call for `key`.
    fn fly(
        &self,
        key: &Key,
        request: ContextRequest,
    ) -> (
        Role,
        futures_util::future::Shared<futures_util::future::BoxFuture<'static, FlightResult>>,
    ) {
        let origin = Arc::clone(&self.origin);
        let tiers = Arc::clone(&self.tiers);
        let metrics = Arc::clone(&self.metrics);
        let flight_key = key.clone();
        self.flights.join(key, move |tx| async move {
            let started = Instant::now();
            let result = origin.fetch(&request).await.and_then(|body| {
                let cacheable = check_body(&body)?;
                Ok((body, cacheable))
            });
            metrics.origin_call(result.as_ref().map(|_| ()), started.elapsed());
            match result {
                Ok((body, cacheable)) => {
                    if !cacheable {
                        // Not stored, so not shared with requests that come after it.
                        tx.release();
                    }
                    // Local tiers first (microseconds), so a request arriving right after
                    // the answer is a hit; remote tiers after the waiters are answered.
                    let (local, remote): (Vec<&Tier>, Vec<&Tier>) = tiers
                        .iter()
                        .filter(|_| cacheable)
                        .partition(|t| t.is_local());
                    for tier in local {
                        timed_put(&metrics, tier, &flight_key, &body).await;
                    }
                    let _ = tx.send(Ok(body.clone()));
                    for tier in remote {
                        timed_put(&metrics, tier, &flight_key, &body).await;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "origin call failed");
                    let _ = tx.send(Err(Arc::new(error)));
                }
            }
        })
    }

    /// One timed tier read; failures are counted and turn into a skip.
    async fn tier_get(&self, tier: &Tier, key: &Key) -> Option<Found> {
        let started = Instant::now();
        let result = tier.get(key).await;
        record(&self.metrics, tier.kind(), TierOp::Get, started, &result);
        result.ok().flatten()
    }

    /// Copies a hit into the tiers above the one that had it.
    fn backfill(&self, hit_index: usize, key: &Key, body: &Bytes) {
        for (i, tier) in self.tiers[..hit_index].iter().enumerate() {
            if tier.is_local() {
                // In-process puts are synchronous under the hood: no task needed.
                let fut = timed_put(&self.metrics, tier, key, body);
                futures_util::FutureExt::now_or_never(fut);
            } else {
                let (tiers, metrics) = (Arc::clone(&self.tiers), Arc::clone(&self.metrics));
                let (key, body) = (key.clone(), body.clone());
                tokio::spawn(async move { timed_put(&metrics, &tiers[i], &key, &body).await });
            }
        }
    }

    /// Removes one key from every tier; returns the tiers that failed.
    pub async fn invalidate(&self, key: &Key) -> Vec<(TierKind, TierError)> {
        let mut failed = Vec::new();
        for tier in self.tiers.iter() {
            let started = Instant::now();
            let result = tier.remove(key).await;
            record(&self.metrics, tier.kind(), TierOp::Remove, started, &result);
            if let Err(e) = result {
                failed.push((tier.kind(), e));
            }
        }
        failed
    }

    /// Empties every tier; returns entries removed and the tiers that failed.
    pub async fn clear(&self) -> (u64, Vec<(TierKind, TierError)>) {
        let mut removed = 0;
        let mut failed = Vec::new();
        for tier in self.tiers.iter() {
            let started = Instant::now();
            let result = tier.clear().await;
            record(&self.metrics, tier.kind(), TierOp::Clear, started, &result);
            match result {
                Ok(n) => removed += n,
                Err(e) => failed.push((tier.kind(), e)),
            }
        }
        (removed, failed)
    }
}

async fn timed_put(metrics: &Metrics, tier: &Tier, key: &Key, body: &Bytes) {
    let started = Instant::now();
    let result = tier.put(key, body).await;
    record(metrics, tier.kind(), TierOp::Put, started, &result);
}

/// Records a tier operation; a skip of a tier known to be down is neither timed nor an
/// error (the tier did no work), `tier_up` already says it is down.
fn record<T>(
    metrics: &Metrics,
    kind: TierKind,
    op: TierOp,
    started: Instant,
    result: &Result<T, TierError>,
) {
    match result {
        Err(TierError::Unavailable { .. }) => {}
        Ok(_) => metrics.tier_op(kind, op, started.elapsed(), false),
        Err(e) => {
            tracing::debug!(tier = kind.as_str(), op = op.as_str(), error = %e, "tier operation failed");
            metrics.tier_op(kind, op, started.elapsed(), true);
        }
    }
}

/// Checks an origin answer is JSON; `Ok(false)` for an empty one (`null`, `{}`), which is
/// answered but not stored, as the original did.
fn check_body(body: &Bytes) -> Result<bool, OriginError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| OriginError::Malformed(format!("the answer is not JSON: {e}")))?;
    Ok(match value {
        serde_json::Value::Null => false,
        serde_json::Value::Object(map) => !map.is_empty(),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origins::{SampleConfig, SampleOrigin};
    use crate::tiers::{BuildContext, MemoryConfig, MemoryTier};

    fn memory(metrics: &Arc<Metrics>) -> Tier {
        let config = MemoryConfig {
            max_entries: 100,
            max_bytes: 1 << 20,
            ttl_secs: None,
        };
        let ctx = BuildContext {
            metrics: Arc::clone(metrics),
            ttl: Duration::from_secs(60),
            stale_retention: Duration::ZERO,
        };
        Tier::Memory(MemoryTier::new(&config, &ctx))
    }

    fn request(message: &str) -> ContextRequest {
        ContextRequest {
            message: message.into(),
            filename: None,
        }
    }

    /// A hit in a lower tier is copied into the tiers above it; a miss fills them all.
    #[tokio::test]
    async fn hits_back_fill_and_misses_fill_every_tier() {
        let metrics = Arc::new(Metrics::new());
        let origin = Origin::Sample(SampleOrigin::new(&SampleConfig::default()).unwrap());
        let chain = Chain::new(
            Key::PREFIX.to_owned(),
            vec![memory(&metrics), memory(&metrics)],
            origin,
            Arc::clone(&metrics),
            Policy::default(),
        );
        let key = chain.key_for("reverb", None);
        let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
        chain.tiers()[1].put(&key, &body).await.unwrap();
        assert!(chain.tiers()[0].get(&key).await.unwrap().is_none());

        let answer = chain.lookup(request("reverb")).await.unwrap();
        assert_eq!(answer.body, body);
        let upper = chain.tiers()[0].get(&key).await.unwrap();
        assert_eq!(upper.expect("back-filled").body, body);

        let miss = chain.lookup(request("compression")).await.unwrap();
        assert_eq!(miss.source, Source::Origin);
        let key = chain.key_for("compression", None);
        for tier in chain.tiers() {
            assert!(
                tier.get(&key).await.unwrap().is_some(),
                "stored in every tier"
            );
        }
    }

    /// Empty answers are not stored; non-JSON is an error.
    #[test]
    fn empty_and_malformed_answers() {
        assert!(!check_body(&Bytes::from_static(b"null")).unwrap());
        assert!(!check_body(&Bytes::from_static(b" { } ")).unwrap());
        assert!(check_body(&Bytes::from_static(br#"{"snippets":[]}"#)).unwrap());
        assert!(check_body(&Bytes::from_static(b"<html>")).is_err());
    }
}
