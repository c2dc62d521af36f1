//! Purges and fenced writes in Redis, shared by every instance of a group.
//!
//! Every purge moves a version counter: one per key (`codette-cache:v:k:<key>`), one per
//! tag (`codette-cache:v:t:<md5 of the tag>`) and one for everything
//! (`codette-cache:v:all`, moved by a clear or a `snippets` purge). Before asking the
//! origin, an instance reads the versions of the entry's key and tags (the watch); its
//! write is one script that stores only if none has moved. So an answer read before a
//! purge anywhere in the group never lands after it, whichever instance did the purge.
//!
//! The tag index is one set per tag (`codette-cache:t:<md5 of the tag>`) of the keys
//! that depend on it, written by the same script, expiring a minute after the longest
//! entry in it. A tag written at least once per TTL never expires, so each write also
//! looks at two random members and drops those whose value is gone (expired or
//! removed): like Redis's own expiry sampling, that holds a set near its live entries.
//! The members are read by name, undeclared: this script runs on one server only (the
//! cluster tier has its own, `redis_cluster_fence.rs`).
//!
//! Versions expire an hour after their last move (far beyond any origin call). One
//! that has expired reads as 0, so a purge never counts up from nothing: it starts a
//! missing version at Redis's clock in microseconds. Otherwise a watch that read 1 just
//! before the expiry would match the 1 of the purge just after it, and a pre-purge
//! answer would be stored.
//!
//! Values stay plain JSON under `context:<md5>`, as the original server reads them;
//! entries it writes itself are in no set and are purged by key or by clear.

use std::sync::LazyLock;

use redis::Script;

use crate::key::Key;
use crate::tags::Tag;

/// How long a version outlives its last move.
pub const VERSION_TTL_MS: u64 = 3_600_000;
/// How long a tag set outlives the entries added to it.
pub const SET_SLACK_MS: u64 = 60_000;

pub const VERSION_ALL: &str = "codette-cache:v:all";

pub fn version_of_key(key: &Key) -> String {
    format!("codette-cache:v:k:{}", key.as_str())
}

pub fn version_of_tag(tag: &Tag) -> String {
    format!("codette-cache:v:t:{:032x}", tag.digest())
}

pub fn set_of_tag(tag: &Tag) -> String {
    format!("codette-cache:t:{:032x}", tag.digest())
}

/// The versions an entry's write depends on: everything, its key, its tags.
/// `snippets` is everything's.
pub fn watched(key: &Key, tags: &[Tag]) -> Vec<String> {
    let mut names = vec![VERSION_ALL.to_owned(), version_of_key(key)];
    names.extend(
        tags.iter()
            .filter(|t| **t != Tag::Snippets)
            .map(version_of_tag),
    );
    names
}

/// KEYS: the value's key, `n` versions, then the tag sets.
/// ARGV: body, TTL seconds, `n`, set TTL ms, then the `n` versions watched.
/// Returns 1 when stored, 0 when a version moved. Trims each set it writes to.
pub static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[3])
for i = 1, n do
  if (tonumber(redis.call('GET', KEYS[1 + i])) or 0) ~= tonumber(ARGV[4 + i]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local set_ttl = tonumber(ARGV[4])
for i = 2 + n, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < set_ttl then
    redis.call('PEXPIRE', KEYS[i], set_ttl)
  end
  for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[i], 2)) do
    if redis.call('EXISTS', member) == 0 then
      redis.call('SREM', KEYS[i], member)
    end
  end
end
return 1
",
    )
});

/// Lua: moves version `v` and sets it to expire in `ttl` ms; a missing version starts
/// at Redis's clock in microseconds, never at a value a watch may have read before.
const MOVE: &str = r"
local function move(v, ttl)
  if redis.call('EXISTS', v) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', v, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  redis.call('INCR', v)
  redis.call('PEXPIRE', v, ttl)
end
";

/// KEYS: a version, then the keys to remove. ARGV: version TTL ms.
/// Returns how many keys were removed.
pub static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MOVE}{}",
        r"
move(KEYS[1], ARGV[1])
if #KEYS < 2 then return 0 end
return redis.call('UNLINK', unpack(KEYS, 2))
"
    ))
});

/// KEYS: `n` versions, then their `n` tag sets. ARGV: version TTL ms.
/// Moves each version, removes each set's keys and the set; returns keys removed.
pub static REMOVE_TAGS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MOVE}{}",
        r"
local n = #KEYS / 2
local removed = 0
for i = 1, n do
  move(KEYS[i], ARGV[1])
  local members = redis.call('SMEMBERS', KEYS[n + i])
  for j = 1, #members, 500 do
    removed = removed + redis.call('UNLINK', unpack(members, j, math.min(j + 499, #members)))
  end
  redis.call('UNLINK', KEYS[n + i])
end
return removed
"
    ))
});
