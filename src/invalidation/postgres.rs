//! LISTEN on the changes `sql/invalidation.sql` notifies, and purge what depended on
//! them: on every tier here (the shared ones too), then on the other instances through
//! the broadcast. The connection is our own (tokio-postgres, no pool: LISTEN lives in a
//! session); it never reconnects by itself, so its end is the signal.
//!
//! Notifications sent while no one listens are lost. After every (re)connect the memory
//! tier is emptied, and the shared tiers too: after a lost session always, at start-up
//! unless a session that began listening before ours is still alive (it kept them
//! current; read from `pg_stat_activity`). So rolling restarts keep Redis warm, and a
//! group-wide outage or a database restart leaves no stale entry in it. A heartbeat
//! every 5 s finds half-open connections, which show no end.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FusedStream, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use crate::pg_tls::{self, PgConnect};

use super::broadcast::now_ms;
use super::change::purge_for;
use super::group::{OLDER, beat_text};
use super::{Broadcast, Purge, Subscription};
use crate::chain::{Chain, Reach};
use crate::metrics::{InvalidationSource, Metrics};

/// Limit for connecting and for each statement of the session.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle session proves it is alive (a half-open connection shows no end).
const HEARTBEAT: Duration = Duration::from_secs(5);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a purge the shared tiers could not do is retried.
const PURGE_RETRY_FOR: Duration = Duration::from_secs(60);

/// `[invalidation.postgres]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// `postgres://user:password@host:port/db`: a direct (session) connection.
    pub url: String,
    /// The channel `sql/invalidation.sql` notifies.
    pub channel: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            channel: "codette_cache_invalidate".into(),
        }
    }
}

impl ListenConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::pg_tls::connect_options(&self.url) {
            problems.push(format!(
                "invalidation.postgres.url {:?} is not a usable PostgreSQL URL: {e} \
                 (set it or CODETTE_CACHE_INVALIDATION__POSTGRES__URL)",
                crate::secret::redact_url(&self.url)
            ));
        }
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if self.channel.is_empty() || self.channel.len() > 63 || !self.channel.chars().all(plain) {
            problems.push("invalidation.postgres.channel must be 1 to 63 of a-z, 0-9 and _".into());
        }
        problems
    }
}

/// Why a LISTEN session could not start.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Settings(#[from] crate::pg_tls::PgTlsError),
    #[error("timed out")]
    Timeout,
    #[error("the connection closed")]
    Closed,
    #[error("the heartbeat did not give the server's clock")]
    Unexpected,
}

/// Runs the beat; gives the server's clock (ms), proof of a round trip.
async fn beat(client: &tokio_postgres::Client, text: &str) -> Result<i64, SessionError> {
    let replies = client.simple_query(text).await?;
    replies
        .iter()
        .find_map(|reply| match reply {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or(SessionError::Unexpected)
}

/// Runs `work` (within [`CALL_TIMEOUT`]) while driving the connection, keeping the
/// notifications that arrive meanwhile in `backlog`.
async fn drive<S, T>(
    messages: &mut S,
    backlog: &mut Vec<String>,
    work: impl Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError>
where
    S: Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + FusedStream + Unpin,
{
    let mut work = std::pin::pin!(tokio::time::timeout(CALL_TIMEOUT, work));
    loop {
        tokio::select! {
            done = &mut work => return done.map_err(|_| SessionError::Timeout)?,
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => backlog.push(n.payload().to_owned()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SessionError::Closed),
            },
        }
    }
}

/// The LISTEN side of one instance.
pub struct Listener {
    config: ListenConfig,
    /// `codette-cache <instance id>`: names our session in `pg_stat_activity`.
    application_name: String,
    /// [`group_of`] this instance's shared tiers.
    group: String,
    subscription: Subscription,
    metrics: Arc<Metrics>,
}

impl Listener {
    pub fn new(
        config: ListenConfig,
        instance_id: &str,
        group: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_invalidation_subscribed(&config.channel, false);
        Self {
            config,
            application_name: format!("codette-cache {instance_id}"),
            group,
            subscription: Subscription::default(),
            metrics,
        }
    }

    pub fn channel(&self) -> &str {
        &self.config.channel
    }

    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Listens in the background for as long as the process runs.
    pub fn spawn(self: &Arc<Self>, chain: Arc<Chain>, broadcast: Option<Arc<Broadcast>>) {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.listen_forever(&chain, broadcast.as_ref()).await });
    }

    async fn listen_forever(&self, chain: &Arc<Chain>, broadcast: Option<&Arc<Broadcast>>) {
        let mut pause = RETRY_FIRST;
        let mut first = true;
        loop {
            match self.session(chain, broadcast, first).await {
                Ok(()) => {
                    first = false;
                    pause = RETRY_FIRST;
                    self.set_live(false);
                    self.metrics.invalidation_subscription_lost();
                    chain.purge(&Purge::Clear, Reach::Local).await;
                    tracing::warn!(
                        channel = self.config.channel,
                        "database LISTEN connection lost; memory tier emptied, reconnecting"
                    );
                }
                Err(error) => tracing::debug!(%error, "database LISTEN failed"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// One connection: LISTEN, catch up on the gap, apply notifications until it ends.
    /// `Ok` once it was live and then ended.
    async fn session(
        &self,
        chain: &Arc<Chain>,
        broadcast: Option<&Arc<Broadcast>>,
        first: bool,
    ) -> Result<(), SessionError> {
        let PgConnect {
            config: mut options,
            tls,
        } = pg_tls::connect_options(&self.config.url)?;
        if options.get_application_name().is_none() {
            options.application_name(&self.application_name);
        }
        let connect = options.connect(tls);
        let (client, mut connection) = tokio::time::timeout(CALL_TIMEOUT, connect)
            .await
            .map_err(|_| SessionError::Timeout)??;
        let mut messages =
            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).fuse();
        let mut backlog = Vec::new();
        let beat_text = beat_text(&self.config.channel, &self.group);
        // LISTEN first, then (at start-up) look for a session that began listening
        // before ours and is still alive: it has kept the shared tiers current. Beat
        // again last, so our session shows the beat's text to the others' same check.
        drive(&mut messages, &mut backlog, beat(&client, &beat_text)).await?;
        let covered = first && {
            let older: i64 = drive(&mut messages, &mut backlog, async {
                Ok(client.query_one(OLDER, &[&beat_text]).await?.get(0))
            })
            .await?;
            drive(&mut messages, &mut backlog, beat(&client, &beat_text)).await?;
            older > 0
        };
        // What arrived so far is covered by the catch-up.
        backlog.clear();
        self.catch_up(chain, broadcast, covered).await;
        self.set_live(true);
        tracing::info!(channel = self.config.channel, "database LISTEN live");
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        self.apply(n.payload(), chain, broadcast).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "database LISTEN connection error");
                        return Ok(());
                    }
                    None => return Ok(()),
                },
                _ = heartbeat.tick() => {
                    let beat = drive(&mut messages, &mut backlog, beat(&client, &beat_text));
                    match beat.await {
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "database LISTEN heartbeat failed");
                            return Ok(());
                        }
                    }
                    for payload in std::mem::take(&mut backlog) {
                        self.apply(&payload, chain, broadcast).await;
                    }
                }
            }
        }
    }

    /// Changes in the gap are lost: empty the memory tier, and the shared tiers unless
    /// another listener covered the gap (known only at start-up: after a loss we
    /// cannot tell when it began, so the shared tiers are emptied too).
    async fn catch_up(
        &self,
        chain: &Arc<Chain>,
        broadcast: Option<&Arc<Broadcast>>,
        covered: bool,
    ) {
        if covered {
            chain.purge(&Purge::Clear, Reach::Local).await;
            return;
        }
        tracing::info!("no other listener covered the gap: emptying every tier");
        self.purge(Purge::Clear, chain, broadcast).await;
    }

    async fn apply(&self, payload: &str, chain: &Arc<Chain>, broadcast: Option<&Arc<Broadcast>>) {
        let (purge, at_ms) = match purge_for(payload) {
            Ok(found) => found,
            Err(e) => {
                // Something changed and we cannot say what: purge everything.
                self.metrics.invalidation_refused();
                tracing::warn!(error = %e, "change notification not understood; emptying every tier");
                (Some(Purge::Clear), None)
            }
        };
        let Some(purge) = purge else { return };
        let lag = at_ms.map(|at| Duration::from_millis(now_ms().saturating_sub(at)));
        self.metrics
            .invalidation(InvalidationSource::Database, purge.as_str(), lag);
        self.purge(purge, chain, broadcast).await;
    }

    /// Purges every tier here and tells the others; a shared tier that could not do it
    /// is retried in the background (its entries would outlive the change otherwise).
    async fn purge(&self, purge: Purge, chain: &Arc<Chain>, broadcast: Option<&Arc<Broadcast>>) {
        let purged = chain.purge(&purge, Reach::Everywhere).await;
        if let Some(broadcast) = broadcast {
            broadcast.publish(purge.clone()).await;
        }
        if !purged.failed.is_empty() {
            tracing::warn!(op = purge.as_str(), "purge failed on a tier; retrying");
            tokio::spawn(retry(Arc::clone(chain), purge));
        }
    }

    fn set_live(&self, live: bool) {
        self.subscription.set(live);
        self.metrics
            .set_invalidation_subscribed(&self.config.channel, live);
    }
}

/// Retries a purge until every tier did it, for [`PURGE_RETRY_FOR`].
async fn retry(chain: Arc<Chain>, purge: Purge) {
    let deadline = tokio::time::Instant::now() + PURGE_RETRY_FOR;
    let mut pause = RETRY_FIRST;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        if chain
            .purge(&purge, Reach::Everywhere)
            .await
            .failed
            .is_empty()
        {
            return;
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
    tracing::error!(
        op = purge.as_str(),
        "purge still failing after {PURGE_RETRY_FOR:?}; shared entries may stay until their TTL"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The channel goes into a LISTEN statement: only plain names pass.
    #[test]
    fn channel_names_are_plain() {
        let config = |channel: &str| ListenConfig {
            url: "postgres://u:p@127.0.0.1:5432/db".into(),
            channel: channel.into(),
        };
        assert!(config("codette_cache_invalidate").validate().is_empty());
        for bad in ["", "a\"b", "Upper", "semi;colon"] {
            assert_eq!(config(bad).validate().len(), 1, "{bad:?}");
        }
    }
}
