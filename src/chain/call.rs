//! The origin call behind a miss: one per key at a time (the single flight), asked of
//! the circuit breaker first, its answer judged (`storable.rs`) and stored into every
//! tier: local tiers before the waiters are answered (so the next request is a hit),
//! remote tiers after, each fenced against purges (`filing.rs`, `fence.rs`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared};

use super::fence::Ticket;
use super::filing::{Filing, file_local, file_shared};
use super::storable::{self, Shape, Verdict};
use super::ttl::{Keep, Previous};
use super::{Chain, FlightResult, Role};
use crate::envelope::Envelope;
use crate::key::Key;
use crate::metrics::{Function, Metrics, OriginResult};
use crate::origins::{Admit, Asked, Breaker, CallResult, Origin, OriginError};
use crate::tags::{self, Tag};

/// What a waiter awaits.
pub type Waiting = Shared<BoxFuture<'static, FlightResult>>;

impl Chain {
    /// Joins (or starts) the origin call for `key`. `ticket` was taken before this
    /// request's tier reads: a flight a purge overtook since is not joined.
    pub(super) fn fly(
        &self,
        key: &Key,
        ticket: Ticket,
        request: Asked,
        replaces: Option<Previous>,
    ) -> (Role, Waiting) {
        let rule = self.policy.load().ttl;
        let origin = Arc::clone(&self.origin);
        let breaker = Arc::clone(&self.breaker);
        let tiers = Arc::clone(&self.tiers);
        let metrics = Arc::clone(&self.metrics);
        let function = self.function;
        let fence = Arc::clone(&self.fence);
        let shape = self.shape;
        let flight_key = key.clone();
        // Tags are worked out only when needed: by a request finding a flight a purge
        // may have overtaken, and by the leader. A flight's answer is not known yet, so
        // any tag purge since it began may name it: a request that came after one
        // starts its own call rather than get an answer the purge may have outdated.
        let request_tags = tags_of;
        let request = Arc::new(request);
        let asked = Arc::clone(&request);
        let joinable = |started| {
            self.fence.quiet_since(started) || {
                let digests: Vec<u128> = request_tags(&asked).iter().map(Tag::digest).collect();
                self.fence.clean_whatever_the_answer(started, key, &digests)
            }
        };
        self.flights
            .join(key, ticket, joinable, move |tx| async move {
                let request_tags = request_tags(&request);
                // Before the origin is asked: what the shared tiers' writes must find unchanged.
                let mut watches = Vec::new();
                for tier in tiers.iter().filter(|t| !t.is_local()) {
                    if let Ok(Some(watch)) = tier.watch(&flight_key, &request_tags).await {
                        watches.push((tier, watch));
                    }
                }
                match call(&origin, &breaker, &metrics, function, shape, &request).await {
                    Ok((body, verdict)) => {
                        let (keep, changed) = rule.keep(verdict, &body, replaces.as_ref());
                        let ttl = match keep {
                            Keep::No => {
                                // Not stored, so not shared with requests that come after it.
                                tx.release();
                                let _ = tx.send(Ok(body));
                                return;
                            }
                            Keep::TierTtl => None,
                            Keep::For(ttl) => Some(ttl),
                            Keep::Negative(ttl) => {
                                metrics.negative_stored();
                                Some(ttl)
                            }
                        };
                        metrics.ttl_assigned(ttl.unwrap_or(rule.base));
                        if let Some(changed) = changed {
                            metrics.answer_compared(changed);
                        }
                        let answer_tags = answer_tags(shape, &body);
                        let filing =
                            Filing::new(&flight_key, ticket, &request, request_tags, answer_tags)
                                .lasting(ttl);
                        let mut kept = true;
                        for tier in tiers.iter().filter(|t| t.is_local()) {
                            kept &= file_local(&metrics, &fence, tier, &filing, &body).await;
                        }
                        if !kept {
                            // Overtaken: its waiters asked before the purge; no one after.
                            tx.release();
                        }
                        let _ = tx.send(Ok(body.clone()));
                        if kept && filing.clean(&fence) {
                            for (tier, watch) in &watches {
                                file_shared(&metrics, tier, &filing, watch, &body).await;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "origin call failed");
                        let _ = tx.send(Err(Arc::new(error)));
                    }
                }
            })
    }
}

/// One origin call under the breaker: refused at once while it is open; in half-open,
/// this call is the probe (preceded by the origin's health check when it has one).
/// Gives the answer and how it was judged.
async fn call(
    origin: &Origin,
    breaker: &Breaker,
    metrics: &Metrics,
    function: Function,
    shape: Shape,
    request: &Asked,
) -> Result<(Bytes, Verdict), OriginError> {
    let (admit, moved) = breaker.admit();
    if let Some(moved) = moved {
        metrics.breaker_moved(function, moved.from, moved.to);
        tracing::info!(state = moved.to.as_str(), "origin breaker: probing");
    }
    match admit {
        Admit::Refuse { retry_after } => {
            metrics.breaker_refused(function);
            return Err(OriginError::Unavailable { retry_after });
        }
        Admit::Probe if origin.probes_health() => {
            if let Err(error) = origin.health().await {
                // Any failed check keeps it open, even one the origin answered (a 401).
                if let Some(moved) = breaker.record(CallResult::Failed) {
                    metrics.breaker_moved(function, moved.from, moved.to);
                    tracing::warn!(%error, "origin breaker: health probe failed; open again");
                }
                return Err(OriginError::Unavailable {
                    retry_after: breaker.open_for(),
                });
            }
        }
        Admit::Probe | Admit::Call => {}
    }
    let started = Instant::now();
    let result = origin
        .fetch(request)
        .await
        .and_then(|body| match storable::judge(&body, shape) {
            Verdict::Invalid => Err(OriginError::Malformed(
                "the answer is not UTF-8 JSON".into(),
            )),
            verdict => Ok((body, verdict)),
        });
    let label = match &result {
        Ok(_) => OriginResult::Ok,
        Err(e) if e.is_timeout() => OriginResult::Timeout,
        Err(_) => OriginResult::Error,
    };
    metrics.origin_call(function, label, started.elapsed());
    settle(breaker, metrics, function, &result);
    result
}

/// The tags a request names: the original function's prompt and filename, asked on
/// `/codette/context` or through the proxy; another function's call is reached by its
/// key (and by a clear).
pub(super) fn tags_of(asked: &Asked) -> Vec<Tag> {
    match asked {
        Asked::Context(r) => tags::for_request(&r.message, r.filename.as_deref()),
        Asked::Rpc(call) => call
            .original_request()
            .map_or_else(Vec::new, |(prompt, file)| {
                tags::for_request(&prompt, file.as_deref())
            }),
    }
}

/// The digests of every tag `asked` and `body` name, as the fence compares them.
pub(super) fn digests(asked: &Asked, shape: Shape, body: &[u8]) -> Vec<u128> {
    let mut tags = tags_of(asked);
    tags.extend(answer_tags(shape, body));
    tags.iter().map(Tag::digest).collect()
}

/// The tags an answer names: those of the original function's shape.
pub(super) fn answer_tags(shape: Shape, body: &[u8]) -> Vec<Tag> {
    match shape {
        Shape::Context | Shape::Any => tags::from_answer(body),
        // A proxied answer is stored with its status and headers: its body names them.
        Shape::Rpc(_) => Envelope::body_of(body).map_or_else(Vec::new, tags::from_answer),
    }
}

/// Tells the breaker how a call ended, and the metrics and log if that moved it.
fn settle<T>(
    breaker: &Breaker,
    metrics: &Metrics,
    function: Function,
    result: &Result<T, OriginError>,
) {
    let counted = match result {
        Ok(_) => Some(CallResult::Reached),
        Err(e) => e.breaker_result(),
    };
    if let Some(moved) = counted.and_then(|r| breaker.record(r)) {
        metrics.breaker_moved(function, moved.from, moved.to);
        let state = moved.to;
        match result {
            Err(error) => tracing::warn!(state = state.as_str(), %error, "origin breaker moved"),
            Ok(_) => tracing::info!(state = state.as_str(), "origin breaker moved"),
        }
    }
}
