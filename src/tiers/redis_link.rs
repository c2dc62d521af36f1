//! What the two Redis tiers (one server, a cluster) share: the circuit around every
//! call, the read of one value, the SCAN + UNLINK walk of one node, and the checks of
//! the settings they have in common.
//!
//! The circuit: every call has its own outer timeout (a client alone can hang for
//! seconds after a restart or a failover). The first connection-level failure opens the
//! circuit: requests skip the tier at no cost while a background probe checks it, and
//! the probe closes the circuit as soon as it passes. Start-up never waits on Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionLike;
use tokio::sync::Notify;

use super::redis_batch::{Batch, Failed, read_commands};
use super::{BuildContext, Entry, Found, Health, TierError, TierKind};
use crate::key::Key;
use crate::metrics::Metrics;

/// Probe interval while the tier is up: keeps `tier_up` honest with no traffic.
const PROBE_UP_INTERVAL: Duration = Duration::from_millis(500);
/// Probe interval while down: how fast the circuit closes after Redis returns.
const PROBE_DOWN_INTERVAL: Duration = Duration::from_millis(100);
/// Keys per SCAN step when clearing; small enough not to stall Redis.
pub const SCAN_COUNT: usize = 500;

pub fn default_timeout_ms() -> u64 {
    50
}

pub fn default_connect_timeout_ms() -> u64 {
    1_000
}

/// `what {url:?} is not a Redis URL: …` (password hidden), if it is not one.
pub fn url_problem(what: &str, url: &str) -> Option<String> {
    redis::Client::open(url).err().map(|e| {
        format!(
            "{what} {:?} is not a Redis URL: {e}",
            crate::secret::redact_url(url)
        )
    })
}

/// The limits both Redis tiers share must be positive.
pub fn limit_problems(
    timeout_ms: u64,
    connect_timeout_ms: u64,
    ttl_secs: Option<u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if timeout_ms == 0 || connect_timeout_ms == 0 {
        problems.push("timeout_ms and connect_timeout_ms must be > 0".into());
    }
    if ttl_secs == Some(0) {
        problems.push("ttl_secs must be > 0".into());
    }
    problems
}

/// The check a probe runs: true when the tier may serve again.
pub type Check<C> = Arc<dyn Fn(C) -> BoxFuture<'static, bool> + Send + Sync>;

/// Whether the tier is believed up, and a way to wake the probe early.
struct State {
    up: AtomicBool,
    wake: Notify,
}

/// A connection behind a circuit, with what both tiers read and write by: their TTL
/// and the largest value they read.
pub struct Link<C> {
    conn: C,
    kind: TierKind,
    timeout: Duration,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    ttl_secs: AtomicU64,
    max_value_bytes: usize,
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Link<C> {
    /// Wraps `conn` and starts the probe, which runs `check` until the link is dropped.
    pub fn new(
        conn: C,
        kind: TierKind,
        timeout: Duration,
        ctx: &BuildContext,
        check: Check<C>,
    ) -> Self {
        let metrics = &ctx.metrics;
        let state = Arc::new(State {
            up: AtomicBool::new(false),
            wake: Notify::new(),
        });
        metrics.set_tier_up(kind, false);
        tokio::spawn(probe(
            Arc::downgrade(&state),
            conn.clone(),
            kind,
            timeout.max(Duration::from_millis(250)),
            check,
            Arc::clone(metrics),
        ));
        Self {
            conn,
            kind,
            timeout,
            state,
            metrics: Arc::clone(metrics),
            ttl_secs: AtomicU64::new(ctx.ttl.as_secs().max(1)),
            max_value_bytes: ctx.max_value_bytes,
        }
    }

    fn is_up(&self) -> bool {
        self.state.up.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        if self.is_up() {
            Health::Connected
        } else {
            Health::Unavailable
        }
    }

    /// The tier's own TTL in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs.load(Ordering::Relaxed)
    }

    /// Applies a reloaded TTL.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_secs.store(ttl.as_secs().max(1), Ordering::Relaxed);
    }

    /// `SET … EX` of an entry: its own TTL less its age, else the tier's.
    pub fn entry_ttl_secs(&self, entry: &Entry<'_>) -> u64 {
        entry.ttl.map_or_else(
            || self.ttl_secs(),
            |t| t.saturating_sub(entry.age).as_secs().max(1),
        )
    }

    fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    /// Runs one operation on the connection under the outer timeout; a connection
    /// failure opens the circuit.
    pub async fn call<T>(
        &self,
        run: impl AsyncFnOnce(&mut C) -> redis::RedisResult<T>,
    ) -> Result<T, TierError> {
        let mut conn = self.conn.clone();
        self.guard(run(&mut conn)).await
    }

    /// Runs `operation` under the outer timeout, if the circuit is closed.
    async fn guard<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, TierError> {
        self.admit()?;
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(answer) => self.settle(answer.map_err(Failed::Redis)),
            Err(_) => self.settle(Err(Failed::TimedOut)),
        }
    }

    /// `Unavailable` while the circuit is open: requests skip the tier at no cost.
    fn admit(&self) -> Result<(), TierError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(TierError::Unavailable { tier: self.name() })
        }
    }

    /// An operation's outcome as the tier's; a failure of the link opens the circuit.
    fn settle<T>(&self, outcome: Result<T, Failed>) -> Result<T, TierError> {
        let tier = self.name();
        let error = match outcome {
            Ok(value) => return Ok(value),
            Err(Failed::Redis(e)) if !is_link_error(&e) => {
                // Redis answered with an error: the link is fine.
                return Err(TierError::Backend {
                    tier,
                    message: e.to_string(),
                });
            }
            Err(Failed::Redis(e)) => TierError::Backend {
                tier,
                message: e.to_string(),
            },
            Err(Failed::TimedOut) => TierError::Timeout {
                tier,
                after: self.timeout,
            },
        };
        if self.state.up.swap(false, Ordering::Relaxed) {
            self.metrics.set_tier_up(self.kind, false);
            tracing::warn!(tier, error = %error, "tier down; requests skip it until it answers");
        }
        self.state.wake.notify_one();
        Err(error)
    }

    /// Reads one value: at most `max_value_bytes + 1` bytes of it (GETRANGE), so a huge
    /// value another writer left is a miss, never read whole.
    pub async fn read(&self, key: &Key) -> Result<Option<Found>, TierError> {
        let limit = self.max_value_bytes;
        let reply = self
            .call(async |c| {
                let mut pipe = redis::pipe();
                read_commands(&mut pipe, key.as_str(), limit);
                pipe.query_async(c).await
            })
            .await?;
        self.found(reply)
    }

    /// [`Link::read`] through `batch`: sent with the other reads of the moment, under
    /// the batch's timeout.
    pub async fn read_batched(
        &self,
        key: &Key,
        batch: &Batch<C>,
    ) -> Result<Option<Found>, TierError> {
        self.admit()?;
        let reply = self.settle(batch.read(key).await)?;
        self.found(reply)
    }

    /// The entry a read's (PTTL, bytes) describe.
    fn found(&self, (pttl, body): (i64, Bytes)) -> Result<Option<Found>, TierError> {
        // PTTL first: -2 says the key is absent (GETRANGE answers "" for that too).
        if pttl == -2 {
            return Ok(None);
        }
        let limit = self.max_value_bytes;
        if body.len() > limit {
            return Err(TierError::TooLarge {
                tier: self.name(),
                limit,
            });
        }
        // Redis keeps the time left, not the TTL it was set with: an entry is read as
        // having this tier's TTL, or the time left when that is longer (an adapted TTL).
        // PTTL is -1 for a key without expiry: its age is unknown, call it new.
        let left = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
        let ttl = Duration::from_secs(self.ttl_secs()).max(left);
        let age = if pttl < 0 { Duration::ZERO } else { ttl - left };
        Ok(Some(Found { body, age, ttl }))
    }

    /// SCANs one node for `pattern` (never KEYS) and UNLINKs what it finds; `scan` sends
    /// one SCAN step to that node and gives (next cursor, keys). Returns keys removed.
    pub async fn scan_unlink(
        &self,
        pattern: &str,
        scan: impl Fn(&mut C, redis::Cmd) -> BoxFuture<'_, redis::RedisResult<(u64, Vec<String>)>>
        + Sync,
    ) -> Result<u64, TierError> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut step = redis::cmd("SCAN");
            step.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys) = self.call(async |c| scan(c, step).await).await?;
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
}

/// A failure of the link rather than an answer: the connection, a timeout, or a cluster
/// that cannot serve the slot now (down, resharding, failing over).
fn is_link_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.is_cluster_error()
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

/// Runs `check` forever (until the link is dropped), flipping the link state.
async fn probe<C: Clone>(
    state: Weak<State>,
    conn: C,
    kind: TierKind,
    limit: Duration,
    check: Check<C>,
    metrics: Arc<Metrics>,
) {
    let tier = kind.as_str();
    let mut ever_up = false;
    loop {
        let Some(state) = state.upgrade() else { return };
        let answered = tokio::time::timeout(limit, check(conn.clone()))
            .await
            .unwrap_or(false);
        let was_up = state.up.swap(answered, Ordering::Relaxed);
        if answered && !was_up {
            metrics.set_tier_up(kind, true);
            if ever_up {
                metrics.tier_reconnected(kind);
                tracing::info!(tier, "tier is back");
            } else {
                tracing::info!(tier, "tier connected");
            }
            ever_up = true;
        } else if !answered && was_up {
            metrics.set_tier_up(kind, false);
            tracing::warn!(tier, "tier stopped answering its probe");
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
