//! What an answer depends on, as tags, and what an invalidation removes ([`Purge`]).
//!
//! A context answer depends on three kinds of rows (see the reference function):
//! - `snippets`: any row of `public.codette` (a full-text match can change for any
//!   prompt), so every answer has it and purging it empties the cache;
//! - `user:<id>`: the `public.chat_history` rows of user `<id>`. The function selects
//!   rows whose `user_id` equals the prompt or the first UUID in it (lowercased), so
//!   those ids are tags before the origin answers; the answer's own rows add theirs;
//! - `file:<filename>`: the `public.codette_files` row the request named (present or
//!   not: a cached `null` is stale once the file is inserted).
//!
//! A leaf: keys and tags only, no I/O.

use std::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::key::Key;

/// Longest tag accepted from outside (a NOTIFY payload is under 8000 bytes).
pub const MAX_TAG_BYTES: usize = 8_000;

/// Keys or tags one purge may carry from outside (admin body, broadcast message).
pub const MAX_ITEMS: usize = 1_000;

/// One dependency of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Tag {
    /// Every answer: `public.codette`.
    Snippets,
    /// `public.chat_history` rows of one user.
    User(String),
    /// The `public.codette_files` row of one filename.
    File(String),
}

/// Why a text is not a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("{0:?} is not a tag: use \"snippets\", \"user:<id>\" or \"file:<filename>\"")]
    Unknown(String),
    #[error("a tag's id must not be empty")]
    Empty,
    #[error("a tag is at most {MAX_TAG_BYTES} bytes")]
    TooLong,
}

impl Tag {
    /// Reads `snippets`, `user:<id>` or `file:<filename>`.
    ///
    /// # Errors
    /// [`TagError`] for anything else, an empty id, or a tag over [`MAX_TAG_BYTES`].
    pub fn parse(text: &str) -> Result<Tag, TagError> {
        if text.len() > MAX_TAG_BYTES {
            return Err(TagError::TooLong);
        }
        let nonempty = |id: &str| {
            if id.is_empty() {
                Err(TagError::Empty)
            } else {
                Ok(id.to_owned())
            }
        };
        if text == "snippets" {
            Ok(Tag::Snippets)
        } else if let Some(id) = text.strip_prefix("user:") {
            Ok(Tag::User(nonempty(id)?))
        } else if let Some(name) = text.strip_prefix("file:") {
            Ok(Tag::File(nonempty(name)?))
        } else {
            Err(TagError::Unknown(text.chars().take(80).collect()))
        }
    }

    /// A fixed-size name for indexes (MD5 of the text; tags can be long).
    pub fn digest(&self) -> u128 {
        let mut hasher = Md5::new();
        match self {
            Tag::Snippets => hasher.update(b"snippets"),
            Tag::User(id) => {
                hasher.update(b"user:");
                hasher.update(id.as_bytes());
            }
            Tag::File(name) => {
                hasher.update(b"file:");
                hasher.update(name.as_bytes());
            }
        }
        u128::from_be_bytes(hasher.finalize().into())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Snippets => f.write_str("snippets"),
            Tag::User(id) => write!(f, "user:{id}"),
            Tag::File(name) => write!(f, "file:{name}"),
        }
    }
}

impl TryFrom<String> for Tag {
    type Error = TagError;
    fn try_from(text: String) -> Result<Tag, TagError> {
        Tag::parse(&text)
    }
}

impl From<Tag> for String {
    fn from(tag: Tag) -> String {
        tag.to_string()
    }
}

/// What one invalidation removes. Its JSON form (`{"op": "keys", "keys": [...]}`,
/// `{"op": "tags", "tags": [...]}`, `{"op": "clear"}`) travels between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Purge {
    /// These entries.
    Keys { keys: Vec<Key> },
    /// Every entry that depends on one of these.
    Tags { tags: Vec<Tag> },
    /// Every entry.
    Clear,
}

impl Purge {
    /// The `op` label of metrics and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Purge::Keys { .. } => "keys",
            Purge::Tags { .. } => "tags",
            Purge::Clear => "clear",
        }
    }

    /// A purge of tags that includes `snippets` is a clear.
    pub fn simplified(self) -> Purge {
        match self {
            Purge::Tags { tags } if tags.contains(&Tag::Snippets) => Purge::Clear,
            other => other,
        }
    }

    /// How many keys or tags it names.
    pub fn len(&self) -> usize {
        match self {
            Purge::Keys { keys } => keys.len(),
            Purge::Tags { tags } => tags.len(),
            Purge::Clear => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && *self != Purge::Clear
    }
}

/// The tags a request's answer will have, known before the origin is asked.
pub fn for_request(message: &str, filename: Option<&str>) -> Vec<Tag> {
    let mut tags = vec![Tag::Snippets, Tag::User(message.to_owned())];
    if let Some(uuid) = first_uuid(message) {
        if uuid != message {
            tags.push(Tag::User(uuid));
        }
    }
    if let Some(f) = filename.filter(|f| !f.is_empty()) {
        tags.push(Tag::File(f.to_owned()));
    }
    tags
}

/// The tags an answer names itself: its chat rows' `user_id`s and its file's name.
/// Empty for a body that is not a context object (other functions' answers).
pub fn from_answer(body: &[u8]) -> Vec<Tag> {
    #[derive(Deserialize)]
    struct Context<'a> {
        #[serde(default, borrow)]
        file: Option<File<'a>>,
        #[serde(default, borrow)]
        chat_history: Vec<Row<'a>>,
    }
    #[derive(Deserialize)]
    struct File<'a> {
        #[serde(default, borrow)]
        filename: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Row<'a> {
        #[serde(default, borrow)]
        user_id: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(context) = serde_json::from_slice::<Context<'_>>(body) else {
        return Vec::new();
    };
    let users = context
        .chat_history
        .into_iter()
        .filter_map(|row| row.user_id)
        .map(|id| Tag::User(id.into_owned()));
    let file = context
        .file
        .and_then(|f| f.filename)
        .map(|name| Tag::File(name.into_owned()));
    users.chain(file).collect()
}

/// The first `8-4-4-4-12` hex group in `text`, lowercased, as PostgreSQL's
/// `regexp_match(text, '[0-9a-fA-F]{8}-...-[0-9a-fA-F]{12}')` finds it.
pub fn first_uuid(text: &str) -> Option<String> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = text.as_bytes();
    let matches_at = |start: usize| {
        let mut at = start;
        for (i, len) in GROUPS.iter().enumerate() {
            if i > 0 {
                if bytes.get(at) != Some(&b'-') {
                    return false;
                }
                at += 1;
            }
            let Some(group) = bytes.get(at..at + len) else {
                return false;
            };
            if !group.iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            at += len;
        }
        true
    };
    (0..bytes.len().saturating_sub(35))
        .find(|&start| matches_at(start))
        .map(|start| text[start..start + 36].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags read back as they print; anything else is refused with a reason.
    #[test]
    fn tags_round_trip_and_refuse() {
        for text in ["snippets", "user:abc", "file:effect_chain.ts", "user:a:b"] {
            assert_eq!(Tag::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Tag::parse("user:"), Err(TagError::Empty));
        assert!(matches!(Tag::parse("session:1"), Err(TagError::Unknown(_))));
        assert_eq!(
            Tag::parse(&format!("user:{}", "x".repeat(MAX_TAG_BYTES))),
            Err(TagError::TooLong)
        );
        assert_ne!(
            Tag::User("a".into()).digest(),
            Tag::File("a".into()).digest()
        );
    }

    /// The request names the prompt, the UUID in it and the file.
    #[test]
    fn request_tags_follow_the_function() {
        let tags = for_request(
            "history for 3F2B9C1E-8A4D-4C6B-9E2F-1A2B3C4D5E6F?",
            Some("a.ts"),
        );
        assert_eq!(
            tags,
            vec![
                Tag::Snippets,
                Tag::User("history for 3F2B9C1E-8A4D-4C6B-9E2F-1A2B3C4D5E6F?".into()),
                Tag::User("3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f".into()),
                Tag::File("a.ts".into()),
            ]
        );
        let exact = "3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f";
        assert_eq!(for_request(exact, None).len(), 2);
        assert_eq!(first_uuid("3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6"), None);
        assert_eq!(
            first_uuid("é3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6fé").unwrap(),
            exact
        );
    }

    /// The answer's rows and file are read without building a tree.
    #[test]
    fn answer_tags_are_its_rows_and_file() {
        let body = br#"{"snippets":[{"filename":"x","snippet":"y"}],
            "file":{"id":"1","filename":"a.ts"},
            "chat_history":[{"id":"1","user_id":"u1","messages":[]},{"user_id":"u\"2"}]}"#;
        assert_eq!(
            from_answer(body),
            vec![
                Tag::User("u1".into()),
                Tag::User("u\"2".into()),
                Tag::File("a.ts".into())
            ]
        );
        assert!(from_answer(b"[1,2]").is_empty());
        assert!(from_answer(br#"{"snippets":[],"file":null,"chat_history":[]}"#).is_empty());
    }

    /// The wire form of purges, and `snippets` as a clear.
    #[test]
    fn purges_have_a_wire_form() {
        let purge: Purge = serde_json::from_str(r#"{"op":"tags","tags":["user:a"]}"#).unwrap();
        assert_eq!(
            purge,
            Purge::Tags {
                tags: vec![Tag::User("a".into())]
            }
        );
        let all: Purge = serde_json::from_str(r#"{"op":"tags","tags":["snippets"]}"#).unwrap();
        assert_eq!(all.simplified(), Purge::Clear);
        assert!(serde_json::from_str::<Purge>(r#"{"op":"tags","tags":["nope"]}"#).is_err());
        assert!(serde_json::from_str::<Purge>(r#"{"op":"keys","keys":["other:1"]}"#).is_err());
    }
}
