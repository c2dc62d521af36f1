//! The two Redis connections of the invalidation broadcast: a connection manager that
//! publishes, and a dedicated pub/sub connection that receives. On a Redis Cluster a
//! message published on any node reaches subscribers on every node, so both ends use
//! one node at a time and move to the next seed node when theirs fails. The subscriber never
//! trusts a gap: whenever it (re)subscribes, and whenever its connection ends (redis-rs
//! pub/sub never reconnects; the stream's end is the signal), it empties the memory tier,
//! since messages sent meanwhile are lost. A server that hangs (stopped, or a link that
//! drops packets) ends no stream, so the subscriber also PINGs over its connection every
//! [`HEARTBEAT`] and treats a missing answer as the end. A subscription counts only once
//! a probe it published has come back on it (redis-rs reports a refused SUBSCRIBE as a
//! success). It retries with a backoff; start-up never waits on it.
//!
//! Until it is live, the chain is told it is deaf and reads no memory tier while the
//! Redis tier answers (messages sent meanwhile would be missed, so the memory tier could
//! hold what another instance purged; Redis cannot). While Redis is down too, no
//! instance can publish through it, and the memory tier serves: sending every request
//! to the origin instead would turn a Redis outage into an origin one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};

use super::{Message, Purge, Subscription};
use crate::chain::{Chain, Reach};
use crate::metrics::{InvalidationSource, Metrics};

/// Limit for one publish, one subscribe attempt or one heartbeat.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How often the subscription asks its server whether it is still there: a hung server
/// is noticed within this plus [`CALL_TIMEOUT`].
const HEARTBEAT: Duration = Duration::from_millis(1_000);
/// First and longest pause between subscribe attempts.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// This instance's end of the broadcast.
pub struct Broadcast {
    /// One per node (a single server has one), each with its lazy publisher.
    nodes: Vec<(redis::Client, ConnectionManager)>,
    /// The node the last publish went through.
    publishing: AtomicUsize,
    channel: String,
    instance_id: String,
    subscription: Arc<Subscription>,
    metrics: Arc<Metrics>,
}

impl Broadcast {
    /// Prepares both ends on `urls` (a server, or a cluster's seed nodes); connects to
    /// nothing yet.
    ///
    /// # Errors
    /// The redis client's error for a URL it cannot use.
    pub fn new(
        urls: &[String],
        channel: &str,
        instance_id: &str,
        metrics: Arc<Metrics>,
    ) -> redis::RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str())?;
            let publisher =
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
            nodes.push((client, publisher));
        }
        metrics.set_invalidation_subscribed(channel, false);
        Ok(Self {
            nodes,
            publishing: AtomicUsize::new(0),
            channel: channel.to_owned(),
            instance_id: instance_id.to_owned(),
            subscription: Arc::default(),
            metrics,
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Tells the other instances; a failure is logged and counted (their memory tiers
    /// keep the entries until their TTL), never returned to the admin caller, whose own
    /// tiers are already done.
    pub async fn publish(&self, op: Purge) {
        let message = Message {
            v: 1,
            op,
            sender: self.instance_id.clone(),
            sent_at_ms: now_ms(),
            probe: false,
        };
        let command = self.publish_command(&message);
        // The node that worked last first, then each other one.
        let first = self.publishing.load(Ordering::Relaxed);
        let mut error = String::new();
        for i in (0..self.nodes.len()).map(|n| (first + n) % self.nodes.len()) {
            let mut conn = self.nodes[i].1.clone();
            let publish = command.query_async::<i64>(&mut conn);
            match tokio::time::timeout(CALL_TIMEOUT, publish).await {
                Ok(Ok(receivers)) => {
                    self.publishing.store(i, Ordering::Relaxed);
                    tracing::debug!(
                        receivers,
                        op = message.op.as_str(),
                        "invalidation published"
                    );
                    return;
                }
                Ok(Err(e)) => error = e.to_string(),
                Err(_) => error = "timed out".into(),
            }
        }
        self.metrics.invalidation_publish_failed();
        tracing::warn!(%error, channel = self.channel, "invalidation not published; other instances keep their entries until their TTL");
    }

    fn publish_command(&self, message: &Message) -> redis::Cmd {
        let payload = serde_json::to_string(message).unwrap_or_default();
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.channel).arg(payload);
        command
    }

    /// Whether a probe published through `node` comes back on `messages` in time.
    /// redis-rs takes a SUBSCRIBE that Redis refused (a user without the channel:
    /// `NOPERM`) for a success; only a message that arrives proves the subscription.
    async fn probe(&self, node: usize, messages: &mut PubSubStream) -> Result<(), String> {
        // Sent at now, as any message (older versions record its lag); an earlier probe
        // of ours that matched it would prove the subscription as well.
        let message = Message {
            v: 1,
            op: Purge::Keys { keys: Vec::new() },
            sender: self.instance_id.clone(),
            sent_at_ms: now_ms(),
            probe: true,
        };
        let mut conn = self.nodes[node].1.clone();
        let command = self.publish_command(&message);
        let publish = command.query_async::<i64>(&mut conn);
        let heard = async {
            publish.await.map_err(|e| e.to_string())?;
            // Other messages before it are covered by the clear that follows.
            while let Some(m) = messages.next().await {
                if Message::parse(m.get_payload_bytes()).is_ok_and(|m| m == message) {
                    return Ok(());
                }
            }
            Err("the connection closed".to_owned())
        };
        match tokio::time::timeout(CALL_TIMEOUT, heard).await {
            Ok(result) => result,
            Err(_) => Err("subscribed, but a probe published on the channel never arrived (a Redis user without permission for the channel?)".to_owned()),
        }
    }

    /// Subscribes in the background for as long as the process runs, applying other
    /// instances' messages to `chain`'s local tiers.
    pub fn spawn_subscriber(self: &Arc<Self>, chain: Arc<Chain>) {
        chain.set_deaf(true);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.subscribe_forever(&chain).await });
    }

    async fn subscribe_forever(&self, chain: &Chain) {
        let mut pause = RETRY_FIRST;
        // The first failure of a run is a warning: the memory tier is not read meanwhile.
        let mut told = false;
        for node in (0..self.nodes.len()).cycle() {
            let client = &self.nodes[node].0;
            let attempt = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
                Ok(Ok(pubsub)) => self.use_subscription(node, pubsub, chain).await,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            };
            match outcome {
                Ok(()) => {
                    pause = RETRY_FIRST;
                    told = false;
                }
                Err(e) => self.subscribe_failed(&e, &mut told),
            }
            // The next node at once; the whole list again only after a pause.
            if node + 1 == self.nodes.len() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }

    /// Proves the subscription on `node` works, then applies its messages until it is
    /// lost; the memory tier is emptied as it starts and as it ends.
    async fn use_subscription(
        &self,
        node: usize,
        pubsub: redis::aio::PubSub,
        chain: &Chain,
    ) -> Result<(), String> {
        let (mut sink, mut messages) = pubsub.split();
        self.probe(node, &mut messages).await?;
        // Whatever was sent while we were not listening is lost.
        clear_local(chain).await;
        self.set_live(chain, true);
        tracing::info!(channel = self.channel, "invalidation subscription live");
        let why = self.listen(&mut sink, &mut messages, chain).await;
        self.set_live(chain, false);
        self.metrics.invalidation_subscription_lost();
        clear_local(chain).await;
        tracing::warn!(
            channel = self.channel,
            why,
            "invalidation subscription lost; memory tier emptied and not read while Redis answers, resubscribing"
        );
        Ok(())
    }

    /// Logs a failed subscribe: the first of a run as a warning, since the memory tier
    /// is not read until one succeeds.
    fn subscribe_failed(&self, error: &str, told: &mut bool) {
        if std::mem::replace(told, true) {
            tracing::debug!(error, "invalidation subscribe failed");
        } else {
            tracing::warn!(
                error,
                channel = self.channel,
                "invalidation subscribe failed; the memory tier is not read while Redis answers, retrying (a Redis without pub/sub needs [invalidation] broadcast = false)"
            );
        }
    }

    /// Applies messages until the connection ends or its server stops answering PING;
    /// says which.
    async fn listen(
        &self,
        sink: &mut PubSubSink,
        messages: &mut PubSubStream,
        chain: &Chain,
    ) -> &'static str {
        const CLOSED: &str = "the connection closed";
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            // The next heartbeat: wait for its tick, then for the answer. Messages are
            // applied all the while.
            let beat = async {
                heartbeat.tick().await;
                tokio::time::timeout(CALL_TIMEOUT, sink.ping::<redis::Value>()).await
            };
            tokio::pin!(beat);
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(m) => self.apply(m.get_payload_bytes(), chain).await,
                        None => return CLOSED,
                    },
                    answer = &mut beat => match answer {
                        Ok(Ok(_)) => break,
                        Ok(Err(_)) => return CLOSED,
                        Err(_) => return "the server stopped answering PING",
                    },
                }
            }
        }
    }

    /// Deaf before the memory tier is emptied on a loss, hearing only after it was
    /// emptied on a subscribe.
    fn set_live(&self, chain: &Chain, live: bool) {
        chain.set_deaf(!live);
        self.subscription.set(live);
        self.metrics
            .set_invalidation_subscribed(&self.channel, live);
    }

    /// Applies one received message to the local tiers.
    async fn apply(&self, payload: &[u8], chain: &Chain) {
        let message = match Message::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.invalidation_refused();
                tracing::warn!(error = %e, "invalidation message refused");
                return;
            }
        };
        if message.sender == self.instance_id || message.probe {
            return;
        }
        chain.purge(&message.op, Reach::Local).await;
        let lag = Duration::from_millis(now_ms().saturating_sub(message.sent_at_ms));
        self.metrics.invalidation(
            InvalidationSource::Broadcast,
            message.op.as_str(),
            Some(lag),
        );
    }
}

/// Empties the memory tier (fenced, so no read from before survives it).
pub(super) async fn clear_local(chain: &Chain) {
    chain.purge(&Purge::Clear, Reach::Local).await;
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
