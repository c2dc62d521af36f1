//! The local fence: no store may bring back what a purge removed. A read (of a tier or
//! of the origin) that began before a purge may return the old answer; storing it after
//! the purge would keep that answer until its TTL. So every store carries the [`Ticket`]
//! taken before its read, and is refused (or undone) when a purge that matches its key
//! or tags was running at any time since that ticket.
//!
//! Purges log a start and an end on one counter. A store inserts first, then asks
//! [`Fence::clean`]; a purge logs its start before it removes anything. Either the
//! store's question sees the purge (refused, undone), or the purge started after the
//! question and its removal comes after the insert (removed). Shared tiers fence their
//! writes across instances themselves (see `tiers/redis_fence.rs`).
//!
//! Purges from other instances arrive by broadcast; while this instance cannot hear
//! them (its subscription is down), the fence says so ([`Fence::deaf`]) and the chain
//! reads no local tier while a shared one answers (`mod.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::key::Key;
use crate::tags::{Purge, Tag};

/// Purges remembered; a store whose ticket is older than the oldest forgotten purge's
/// end is refused (a miss later, never a wrong answer).
const REMEMBERED: usize = 1_024;

/// The counter's value when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What one purge matched.
#[derive(Debug)]
enum Scope {
    All,
    Keys(Vec<Key>),
    Tags(Vec<u128>),
}

impl Scope {
    fn matches(&self, key: &Key, tags: &[u128]) -> bool {
        match self {
            Scope::All => true,
            Scope::Keys(keys) => keys.contains(key),
            Scope::Tags(purged) => purged.iter().any(|d| tags.contains(d)),
        }
    }
}

struct Entry {
    id: u64,
    scope: Scope,
    /// Counter value at its end; `None` while it runs.
    ended: Option<u64>,
}

#[derive(Default)]
struct Log {
    entries: VecDeque<Entry>,
    /// Tickets below this may have missed a forgotten purge.
    floor: u64,
}

/// One per set of tiers.
#[derive(Default)]
pub struct Fence {
    counter: AtomicU64,
    /// Purges running now (so a store with nothing to check takes no lock).
    running: AtomicU64,
    log: Mutex<Log>,
    /// Purges from other instances may be missed now (see [`Fence::set_deaf`]).
    deaf: AtomicBool,
}

/// A purge in progress; ends it when dropped.
pub struct Running<'a> {
    fence: &'a Fence,
    id: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut log = self.fence.log.lock();
        let end = self.fence.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.fence.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(entry) = log.entries.iter_mut().find(|e| e.id == self.id) {
            entry.ended = Some(end);
        }
        // Forget ended purges beyond the bound, oldest first.
        while log.entries.len() > REMEMBERED && log.entries[0].ended.is_some() {
            let forgotten = log.entries.pop_front().and_then(|e| e.ended);
            log.floor = log.floor.max(forgotten.unwrap_or(0) + 1);
        }
    }
}

impl Fence {
    /// Taken before a read whose answer may be stored. An atomic load: free on hits.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.counter.load(Ordering::SeqCst))
    }

    /// Logs a purge's start; its end is logged when the guard drops (after the tiers).
    pub fn begin(&self, purge: &Purge) -> Running<'_> {
        let scope = match purge {
            Purge::Clear => Scope::All,
            Purge::Keys { keys } => Scope::Keys(keys.clone()),
            // `snippets` is every answer's tag, so its digest matches every store.
            Purge::Tags { tags } => Scope::Tags(tags.iter().map(Tag::digest).collect()),
        };
        let mut log = self.log.lock();
        // Running first: a store that saw the old counter then sees this one running.
        self.running.fetch_add(1, Ordering::SeqCst);
        let id = self.counter.fetch_add(1, Ordering::SeqCst);
        log.entries.push_back(Entry {
            id,
            scope,
            ended: None,
        });
        Running { fence: self, id }
    }

    /// Nothing runs, and no purge began or ended since `ticket`: every store is clean,
    /// whatever its key and tags (two atomic loads, no lock).
    pub fn quiet_since(&self, ticket: Ticket) -> bool {
        // Running before counter: a purge ends by moving the counter, then running.
        self.running.load(Ordering::SeqCst) == 0 && self.counter.load(Ordering::SeqCst) == ticket.0
    }

    /// Whether a value read after `ticket` under `key`, depending on `tags` (digests),
    /// may stay stored: no matching purge ran at any time since the ticket.
    pub fn clean(&self, ticket: Ticket, key: &Key, tags: &[u128]) -> bool {
        self.none_since(ticket, |scope| scope.matches(key, tags))
    }

    /// [`Fence::clean`] for a read whose answer is not known yet, so neither are the
    /// tags it will name: any tag purge since `ticket` may have named one of them.
    pub fn clean_whatever_the_answer(&self, ticket: Ticket, key: &Key, tags: &[u128]) -> bool {
        self.none_since(ticket, |scope| {
            matches!(scope, Scope::Tags(_)) || scope.matches(key, tags)
        })
    }

    /// Says whether other instances' purges may be missed from now on: set before the
    /// broadcast subscription is (re)made and as soon as it is lost, cleared once it is
    /// live again and the local tiers were emptied of what it may have missed.
    pub fn set_deaf(&self, deaf: bool) {
        // Release: a request that sees it cleared sees the emptying before it too.
        self.deaf.store(deaf, Ordering::Release);
    }

    /// Whether local tiers may hold what another instance purged meanwhile.
    pub fn deaf(&self) -> bool {
        self.deaf.load(Ordering::Acquire)
    }

    /// No purge that `hits` ran at any time since `ticket`.
    fn none_since(&self, ticket: Ticket, hits: impl Fn(&Scope) -> bool) -> bool {
        if self.quiet_since(ticket) {
            return true;
        }
        let log = self.log.lock();
        ticket.0 >= log.floor
            && !log
                .entries
                .iter()
                .any(|e| e.ended.is_none_or(|end| end > ticket.0) && hits(&e.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::derive(s, None, false)
    }

    /// A purge that ran after the ticket, or runs now, refuses a matching store only.
    #[test]
    fn purges_since_the_ticket_refuse_matching_stores() {
        let fence = Fence::default();
        let user_a = Tag::User("a".into()).digest();
        let user_b = Tag::User("b".into()).digest();
        let before = fence.ticket();
        assert!(fence.clean(before, &key("x"), &[user_a]));
        let running = fence.begin(&Purge::Tags {
            tags: vec![Tag::User("a".into())],
        });
        // Running: refuses even a ticket taken now.
        assert!(!fence.clean(fence.ticket(), &key("x"), &[user_a]));
        assert!(fence.clean(fence.ticket(), &key("x"), &[user_b]));
        drop(running);
        assert!(!fence.clean(before, &key("x"), &[user_a]));
        assert!(fence.clean(before, &key("x"), &[user_b]));
        // An answer not known yet may name user a: the purge of it counts.
        assert!(!fence.clean_whatever_the_answer(before, &key("x"), &[user_b]));
        // A read that began after the purge ended is fresh.
        assert!(fence.clean(fence.ticket(), &key("x"), &[user_a]));
        assert!(fence.clean_whatever_the_answer(fence.ticket(), &key("x"), &[]));
        drop(fence.begin(&Purge::Keys {
            keys: vec![key("y")],
        }));
        assert!(!fence.clean(before, &key("y"), &[]));
        drop(fence.begin(&Purge::Clear));
        assert!(!fence.clean(before, &key("z"), &[]));
    }

    /// Past the bound, old tickets are refused rather than judged on a partial log.
    #[test]
    fn forgotten_purges_refuse_old_tickets() {
        let fence = Fence::default();
        let old = fence.ticket();
        for i in 0..REMEMBERED + 10 {
            drop(fence.begin(&Purge::Keys {
                keys: vec![key(&i.to_string())],
            }));
        }
        assert!(!fence.clean(old, &key("unrelated"), &[]));
        assert!(fence.clean(fence.ticket(), &key("unrelated"), &[]));
        assert!(fence.log.lock().entries.len() <= REMEMBERED);
    }
}
