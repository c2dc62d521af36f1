//! Purges and fenced writes on a Redis Cluster, where a script may touch one slot only.
//!
//! The single-server fence (`redis_fence.rs`) checks every version in one script; a
//! cluster cannot, so here a write registers itself before the origin is asked, and
//! every purge moves the version of each key it reaches, registered writers included:
//! - a key's version, `codette-cache:v:k:{context:<md5>}`, shares the value's slot (the
//!   hash tag is the value's key), so the write checks it in the script that stores;
//! - an indexed tag's set, `codette-cache:t:{<md5 of the tag>}`, holds the keys stored
//!   or being written under it; a tag purge moves each member's version (and removes
//!   its value), then takes them out of the set and moves their versions again;
//! - `codette-cache:writing` holds every key being written (scored by its lease's end);
//!   a clear moves their versions, then SCANs every master for `context:*`.
//!
//! A purge that runs after a writer registered moves that writer's key version, so its
//! store is refused; one that ran before it cannot concern its answer, which the origin
//! gives after the registration. A writer whose lease ran out stores nothing, since a
//! clear may no longer see it. Values stay plain JSON under `context:<md5>`.
//!
//! A key leaves a tag set only to be purged: its version moves after it left. So a
//! writer whose registration was taken is refused, provided it read the version before
//! registering (the watch does, in that order). Writes trim their tag sets this way,
//! purging sampled members whose value is gone, as the single-server store does.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::tags::Tag;

/// How long a registration lasts: far beyond any origin call.
pub const LEASE: Duration = Duration::from_secs(60);
/// A writer older than this stores nothing (half the lease: clocks and queues slack).
pub const WRITE_WITHIN: Duration = Duration::from_secs(30);
/// How long a tag set outlives the entries added to it.
pub const SET_SLACK_MS: u64 = 60_000;

pub const WRITING: &str = "codette-cache:writing";

/// The version of the value stored under `key` (`context:<md5>`).
pub fn version_of_key(key: &str) -> String {
    format!("codette-cache:v:k:{{{key}}}")
}

pub fn set_of_tag(tag: &Tag) -> String {
    format!("codette-cache:t:{{{:032x}}}", tag.digest())
}

/// KEYS: a tag set. ARGV: the key, the set's lifetime in ms (kept if longer). Returns
/// up to two other members: a sample the writer trims (see above).
pub static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local others = {}
for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[1], 3)) do
  if member ~= ARGV[1] and #others < 2 then
    others[#others + 1] = member
  end
end
return others
",
    )
});

/// KEYS: the writing set. ARGV: the key, the lease in ms. Drops leases that ended.
pub static REGISTER_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
",
    )
});

/// KEYS: the value's key, its version. ARGV: body, TTL seconds, the version watched.
/// Returns 1 when stored, 0 when the version moved.
pub static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if (tonumber(redis.call('GET', KEYS[2])) or 0) ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
",
    )
});
