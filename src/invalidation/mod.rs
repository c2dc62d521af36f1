//! Invalidations that reach every instance. A clear or invalidate done on one daemon is
//! published on a Redis channel as versioned JSON ([`Message`]); every daemon of the
//! group (those sharing the Redis) drops the matching entries from its own memory tier.
//! Shared tiers need no message: the instance that invalidated already removed the keys
//! there. This module owns the config and the message; `broadcast.rs` the connections.

mod broadcast;

use serde::{Deserialize, Serialize};

pub use broadcast::{Broadcast, Subscription};

/// Keys one message may carry (a bound on what a peer can make us do per message).
pub const MAX_KEYS: usize = 1_000;

/// `[invalidation]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvalidationConfig {
    /// Publish and apply invalidations across instances; on by default when a redis
    /// tier exists (its URL is the one used).
    pub broadcast: Option<bool>,
    /// The Redis pub/sub channel of the group.
    pub channel: String,
}

impl Default for InvalidationConfig {
    fn default() -> Self {
        Self {
            broadcast: None,
            channel: "codette-cache:invalidate".into(),
        }
    }
}

impl InvalidationConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        if self.channel.is_empty() || self.channel.len() > 256 {
            vec!["invalidation.channel must be 1 to 256 bytes".into()]
        } else {
            Vec::new()
        }
    }
}

/// What an invalidation removes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// These keys (`context:…`).
    Keys { keys: Vec<String> },
    /// Every entry.
    Clear,
}

impl Op {
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Keys { .. } => "keys",
            Op::Clear => "clear",
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
    pub op: Op,
    /// The sending process's instance id; an instance ignores its own messages.
    pub sender: String,
    /// When it was sent, milliseconds since the Unix epoch (for the lag metric).
    pub sent_at_ms: u64,
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a message: {0}")]
    Parse(String),
    #[error("unknown version {0}")]
    Version(u32),
    #[error("{0} keys; at most {MAX_KEYS}")]
    TooManyKeys(usize),
    #[error("{0:?} is not a context key")]
    NotAKey(String),
}

impl Message {
    /// Parses and checks a payload.
    ///
    /// # Errors
    /// [`MessageError`] for anything but a version-1 message of context keys or a clear.
    pub fn parse(payload: &[u8]) -> Result<Message, MessageError> {
        let message: Message =
            serde_json::from_slice(payload).map_err(|e| MessageError::Parse(e.to_string()))?;
        if message.v != 1 {
            return Err(MessageError::Version(message.v));
        }
        if let Op::Keys { keys } = &message.op {
            if keys.len() > MAX_KEYS {
                return Err(MessageError::TooManyKeys(keys.len()));
            }
            if let Some(bad) = keys.iter().find(|k| crate::key::Key::parse(k).is_none()) {
                return Err(MessageError::NotAKey(bad.clone()));
            }
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
            op: Op::Keys {
                keys: vec!["context:367ac8be2a4e9fccd1f5aa007d810371".into()],
            },
            sender: "a".into(),
            sent_at_ms: 1,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""op":"keys""#), "{text}");
        assert_eq!(Message::parse(text.as_bytes()).unwrap(), m);
        let clear = br#"{"v":1,"op":"clear","sender":"b","sent_at_ms":2}"#;
        assert_eq!(Message::parse(clear).unwrap().op, Op::Clear);
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"op":"clear","sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"drop","sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"keys","keys":["session:1"],"sender":"b","sent_at_ms":2}"#,
            br#"{"v":1,"op":"clear","sent_at_ms":2}"#,
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"v":1,"op":"keys","keys":[{}],"sender":"b","sent_at_ms":2}}"#,
            vec![r#""context:00000000000000000000000000000000""#; MAX_KEYS + 1].join(",")
        );
        assert!(matches!(
            Message::parse(many.as_bytes()),
            Err(MessageError::TooManyKeys(_))
        ));
    }
}
