//! Who covers a start. An instance that starts listening empties its shared tiers,
//! since changes may have landed while no one listened, unless an older session of its
//! group still listens: that one kept them current. A session shows its beat in
//! `pg_stat_activity`, and the beat names the channel and the group.

/// How many other sessions of this database idle on our beat (`$1`: they listen on our
/// channel) and began before this one. Older than ours breaks the tie when several
/// start together after an outage: the oldest finds none and empties the tiers.
pub(super) const OLDER: &str = "\
SELECT count(*) FROM pg_stat_activity a,
     (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) me
WHERE a.pid <> pg_backend_pid() AND a.datname = current_database() AND a.query = $1
  AND a.backend_start < me.backend_start";

/// The session's setup and heartbeat in one text, so that `pg_stat_activity.query`
/// shows it while the session idles: LISTEN (a no-op once listening), and the server's
/// clock in ms. It names the group (its shared tiers, [`group_of`]), so a listener of
/// another group on the same database and channel, which keeps other tiers current,
/// never counts as covering this one's start.
pub(super) fn beat_text(channel: &str, group: &str) -> String {
    format!(
        "LISTEN \"{channel}\"; SELECT (extract(epoch FROM now()) * 1000)::bigint /* group {group} */"
    )
}

/// A group's name in the beat: the MD5 of its shared Redis nodes without their
/// credentials (so the beat, visible in `pg_stat_activity`, shows no password), or
/// `local` for instances without shared tiers.
pub fn group_of(redis: Option<&[String]>) -> String {
    use md5::{Digest, Md5};
    let Some(nodes) = redis else {
        return "local".into();
    };
    let mut names: Vec<String> = nodes
        .iter()
        .map(|node| match reqwest::Url::parse(node) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => String::new(),
        })
        .collect();
    names.sort();
    format!(
        "{:032x}",
        u128::from_be_bytes(Md5::digest(names.join(" ")).into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group is named by its Redis nodes, whatever their order, never by their
    /// credentials; instances without shared tiers are one `local` group.
    #[test]
    fn groups_are_named_by_their_nodes() {
        let a = group_of(Some(&[
            "redis://:pw@127.0.0.1:7001".into(),
            "redis://127.0.0.1:7002".into(),
        ]));
        let b = group_of(Some(&[
            "redis://127.0.0.1:7002".into(),
            "redis://user:other@127.0.0.1:7001".into(),
        ]));
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, group_of(Some(&["redis://127.0.0.1:7003".into()])));
        assert_eq!(group_of(None), "local");
        assert!(beat_text("codette", &a).ends_with(&format!("/* group {a} */")));
    }
}
