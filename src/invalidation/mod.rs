//! Invalidations that reach every instance. A purge started on one daemon (an admin
//! call, a database change) is published on a Redis channel as versioned JSON
//! ([`Message`]); every daemon of the group (those sharing the Redis) applies it to its
//! own memory tier. Shared tiers need no message: the instance that started the purge
//! already did them. This module owns the config and the message; `broadcast.rs` the
//! Redis connections, `postgres.rs` the LISTEN on database changes.

mod broadcast;
mod change;
mod group;
mod postgres;

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::tags::MAX_ITEMS;
pub use crate::tags::Purge;
pub use broadcast::Broadcast;
pub use group::group_of;
pub use postgres::{ListenConfig, Listener};

/// Whether a subscription is live now (for status routes; never waits).
#[derive(Default)]
pub struct Subscription {
    live: AtomicBool,
}

impl Subscription {
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    fn set(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
}

/// `[invalidation]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvalidationConfig {
    /// Publish and apply invalidations across instances; on by default when a redis
    /// tier exists (its URL is the one used).
    pub broadcast: Option<bool>,
    /// The Redis pub/sub channel of the group.
    pub channel: String,
    /// `[invalidation.postgres]`: LISTEN for the changes `sql/invalidation.sql` notifies.
    pub postgres: Option<ListenConfig>,
}

impl Default for InvalidationConfig {
    fn default() -> Self {
        Self {
            broadcast: None,
            channel: "codette-cache:invalidate".into(),
            postgres: None,
        }
    }
}

impl InvalidationConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.channel.is_empty() || self.channel.len() > 256 {
            problems.push("invalidation.channel must be 1 to 256 bytes".into());
        }
        if let Some(postgres) = &self.postgres {
            problems.extend(postgres.validate());
        }
        problems
    }

    /// Hides the password of the LISTEN URL (for `check-config`).
    pub(crate) fn redact(&mut self) {
        if let Some(postgres) = &mut self.postgres {
            postgres.url = crate::secret::redact_url(&postgres.url);
        }
    }
}

/// One message on the channel. Unknown members are ignored (serde cannot deny them
/// through `flatten`), so a later version may add some.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Message {
    /// Format version; 1.
    pub v: u32,
    #[serde(flatten)]
    pub op: Purge,
    /// The sending process's instance id; an instance ignores its own messages.
    pub sender: String,
    /// When it was sent, milliseconds since the Unix epoch (for the lag metric).
    pub sent_at_ms: u64,
    /// A subscriber's check that its own subscription works (`broadcast.rs`), sent as
    /// an empty key purge: versions that do not know the member apply nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a message: {0}")]
    Parse(String),
    #[error("unknown version {0}")]
    Version(u32),
    #[error("{0} keys or tags; at most {MAX_ITEMS}")]
    TooMany(usize),
}

impl Message {
    /// Parses and checks a payload.
    ///
    /// # Errors
    /// [`MessageError`] for anything but a version-1 message of context keys, tags or
    /// a clear.
    pub fn parse(payload: &[u8]) -> Result<Message, MessageError> {
        let message: Message =
            serde_json::from_slice(payload).map_err(|e| MessageError::Parse(e.to_string()))?;
        if message.v != 1 {
            return Err(MessageError::Version(message.v));
        }
        if message.op.len() > MAX_ITEMS {
            return Err(MessageError::TooMany(message.op.len()));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages round-trip; malformed ones are refused with a reason.
    #[test]
    fn messages_parse_and_refuse() {
        let m = Message {
            v: 1,
            op: Purge::Keys {
                keys: vec![crate::key::Key::derive(
                    "how to use reverb in mixing",
                    None,
                    false,
                )],
            },
            sender: "a".into(),
            sent_at_ms: 1,
            probe: false,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""op":"keys""#), "{text}");
        assert!(!text.contains("probe"), "{text}");
        assert_eq!(Message::parse(text.as_bytes()).unwrap(), m);
        let clear = br#"{"v":1,"op":"clear","sender":"b","sent_at_ms":2}"#;
        assert_eq!(Message::parse(clear).unwrap().op, Purge::Clear);
        let tags = br#"{"v":1,"op":"tags","tags":["user:a","file:b"],"sender":"b","sent_at_ms":2}"#;
        assert_eq!(Message::parse(tags).unwrap().op.len(), 2);
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"op":"clear","sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"drop","sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"keys","keys":["session:1"],"sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"clear","sent_at_ms":2}"#,
            br#"{"v":1,"op":"tags","tags":["group:1"],"sender":"b","sent_at_ms":2}"#,
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"v":1,"op":"keys","keys":[{}],"sender":"b","sent_at_ms":2}}"#,
            vec![r#""context:00000000000000000000000000000000""#; MAX_ITEMS + 1].join(",")
        );
        assert!(matches!(
            Message::parse(many.as_bytes()),
            Err(MessageError::TooMany(_))
        ));
    }
}
