//! The change notifications of `sql/invalidation.sql`, and what each purges.

use serde::Deserialize;

use super::Purge;
use crate::tags::{MAX_ITEMS, Tag};

/// Why a notification was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("not a change notification: {0}")]
    Parse(String),
    #[error("unknown version {0}")]
    Version(u32),
    #[error("unknown table {0:?}")]
    Table(String),
}

/// One notification of `sql/invalidation.sql`.
#[derive(Debug, Deserialize)]
struct Change {
    v: u32,
    table: String,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    user_id: Vec<String>,
    #[serde(default)]
    filename: Vec<String>,
    #[serde(default)]
    at_ms: Option<u64>,
}

/// What a change purges (`None`: nothing cached depends on it), and when it was made.
///
/// # Errors
/// [`ChangeError`] for a payload that is not a version-1 change of a known table.
pub fn purge_for(payload: &str) -> Result<(Option<Purge>, Option<u64>), ChangeError> {
    let change: Change =
        serde_json::from_str(payload).map_err(|e| ChangeError::Parse(e.to_string()))?;
    if change.v != 1 {
        return Err(ChangeError::Version(change.v));
    }
    let (prefix, ids) = match change.table.as_str() {
        // Any snippet can change any full-text result.
        "codette" => return Ok((Some(Purge::Clear), change.at_ms)),
        "chat_history" => ("user:", &change.user_id),
        "codette_files" => ("file:", &change.filename),
        _ => return Err(ChangeError::Table(change.table)),
    };
    let tags: Result<Vec<Tag>, _> = ids
        .iter()
        .map(|id| Tag::parse(&format!("{prefix}{id}")))
        .collect();
    let purge = match tags {
        _ if change.all => Some(Purge::Clear),
        // An id we cannot name as a tag (empty, too long): purge wide, never too little.
        Err(_) => Some(Purge::Clear),
        Ok(tags) if tags.len() > MAX_ITEMS => Some(Purge::Clear),
        Ok(tags) if tags.is_empty() => None,
        Ok(tags) => Some(Purge::Tags { tags }),
    };
    Ok((purge, change.at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table's change purges what depends on it; odd payloads purge wide or fail.
    #[test]
    fn changes_become_purges() {
        let purge = |p: &str| purge_for(p).unwrap().0;
        assert_eq!(
            purge(r#"{"v":1,"table":"chat_history","op":"INSERT","user_id":["a","b"],"at_ms":5}"#),
            Some(Purge::Tags {
                tags: vec![Tag::User("a".into()), Tag::User("b".into())]
            })
        );
        assert_eq!(
            purge(r#"{"v":1,"table":"codette_files","op":"UPDATE","filename":["x.wav"]}"#),
            Some(Purge::Tags {
                tags: vec![Tag::File("x.wav".into())]
            })
        );
        assert_eq!(
            purge(r#"{"v":1,"table":"codette","op":"INSERT","FileName":["x"]}"#),
            Some(Purge::Clear)
        );
        for wide in [
            r#"{"v":1,"table":"chat_history","op":"TRUNCATE","all":true}"#,
            r#"{"v":1,"table":"chat_history","op":"INSERT","user_id":[""]}"#,
        ] {
            assert_eq!(purge(wide), Some(Purge::Clear), "{wide}");
        }
        // A row without a user: nothing cached depends on it.
        assert_eq!(
            purge(r#"{"v":1,"table":"chat_history","op":"INSERT","user_id":[]}"#),
            None
        );
        assert_eq!(
            purge_for(r#"{"v":1,"table":"chat_history","user_id":[],"at_ms":7}"#)
                .unwrap()
                .1,
            Some(7)
        );
        for bad in [
            "nope",
            r#"{"v":2,"table":"codette"}"#,
            r#"{"v":1,"table":"users"}"#,
        ] {
            assert!(purge_for(bad).is_err(), "{bad}");
        }
    }
}
