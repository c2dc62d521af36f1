//! How long an origin answer is kept. By default every answer gets the tiers' own TTL
//! and empty ones (`null`, `{}`) are not stored, as in the original. Two opt-in rules:
//!
//! - Negative entries (`[cache] negative_ttl_secs`): empty answers (`null`, `{}`, or all
//!   three parts empty) are stored for that long, so a question with no context does
//!   not cost an origin call each time.
//! - Adaptive TTL (`[cache.adaptive_ttl]`): a refresh compares its answer byte for byte
//!   with the entry it replaces (the one the look-up found, fresh or stale; no copy or
//!   hash is kept for it). Unchanged, the TTL doubles; changed, it halves; always within
//!   `[min, max]`. An entry with nothing to compare with starts at `[cache] ttl_secs`.
//!   Doubling and halving converge in a few refreshes (30 s to an hour in 7) and never
//!   let one unlucky refresh throw away more than half of what was learned. The entry
//!   replaced is what the memory tier still holds (it keeps entries for
//!   `stale_if_error_secs` past expiry) or what a refresh-ahead hit found; a Redis-only
//!   chain without refresh-ahead has nothing to compare with and keeps the base TTL.

use std::time::Duration;

use bytes::Bytes;

use super::storable::Verdict;

/// `[cache.adaptive_ttl]` bounds, when it is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

/// The TTL rules of a chain (reloadable with the rest of the policy).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TtlRule {
    /// `[cache] ttl_secs`: where adaptive TTLs start.
    pub base: Duration,
    /// Empty answers are stored this long; zero: `null`/`{}` are not stored and
    /// all-empty answers are stored like any other.
    pub negative: Duration,
    pub adaptive: Option<Bounds>,
}

/// The entry a refresh replaces: what the look-up found under its key.
#[derive(Debug, Clone)]
pub struct Previous {
    pub body: Bytes,
    pub ttl: Duration,
}

impl Previous {
    /// What a refresh of `found` replaces, for the adaptive TTL's comparison.
    pub fn of(found: &crate::tiers::Found) -> Self {
        Self {
            body: found.body.clone(),
            ttl: found.ttl,
        }
    }
}

/// What to do with one origin answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Served, not stored.
    No,
    /// Stored for each tier's own TTL.
    TierTtl,
    /// Stored for this long in every tier (an adapted TTL).
    For(Duration),
    /// Stored for this long as a negative entry.
    Negative(Duration),
}

impl TtlRule {
    /// How an answer judged `verdict` is kept, and whether it changed from `previous`
    /// (when adaptive TTL compared them).
    pub fn keep(
        &self,
        verdict: Verdict,
        body: &[u8],
        previous: Option<&Previous>,
    ) -> (Keep, Option<bool>) {
        let negative = !self.negative.is_zero();
        match verdict {
            Verdict::Empty | Verdict::Blank if negative => (Keep::Negative(self.negative), None),
            Verdict::Empty | Verdict::Keep | Verdict::Invalid => (Keep::No, None),
            // HTTP's limit for a proxied answer; not adapted (its upstream sets it).
            Verdict::StoreFor(ttl) => (Keep::For(ttl), None),
            Verdict::Store | Verdict::Blank => match self.adaptive {
                None => (Keep::TierTtl, None),
                Some(bounds) => {
                    let changed = previous.map(|p| p.body.as_ref() != body);
                    let ttl = match (previous, changed) {
                        (Some(p), Some(false)) => p.ttl.saturating_mul(2),
                        (Some(p), Some(true)) => p.ttl / 2,
                        _ => self.base,
                    };
                    (Keep::For(ttl.clamp(bounds.min, bounds.max)), changed)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn adaptive() -> TtlRule {
        TtlRule {
            base: S(300),
            negative: Duration::ZERO,
            adaptive: Some(Bounds {
                min: S(30),
                max: S(3600),
            }),
        }
    }

    fn previous(body: &'static [u8], secs: u64) -> Previous {
        Previous {
            body: Bytes::from_static(body),
            ttl: S(secs),
        }
    }

    /// Unchanged doubles, changed halves, within the bounds; nothing to compare: base.
    #[test]
    fn the_adaptive_rule() {
        let rule = adaptive();
        let keep = |prev: Option<&Previous>, body: &[u8]| rule.keep(Verdict::Store, body, prev);
        assert_eq!(keep(None, b"a"), (Keep::For(S(300)), None));
        assert_eq!(
            keep(Some(&previous(b"a", 300)), b"a"),
            (Keep::For(S(600)), Some(false))
        );
        assert_eq!(
            keep(Some(&previous(b"a", 300)), b"b"),
            (Keep::For(S(150)), Some(true))
        );
        assert_eq!(
            keep(Some(&previous(b"a", 3000)), b"a").0,
            Keep::For(S(3600))
        );
        assert_eq!(keep(Some(&previous(b"a", 40)), b"b").0, Keep::For(S(30)));
        // A short previous TTL (a negative or back-filled entry) is lifted to the minimum.
        assert_eq!(keep(Some(&previous(b"a", 5)), b"a").0, Keep::For(S(30)));
        // From the minimum to the maximum in 7 unchanged refreshes.
        let mut ttl = S(30);
        for _ in 0..7 {
            let Keep::For(next) = rule
                .keep(Verdict::Store, b"a", Some(&previous(b"a", ttl.as_secs())))
                .0
            else {
                panic!("stored");
            };
            ttl = next;
        }
        assert_eq!(ttl, S(3600));
    }

    /// Off, answers keep the tiers' TTL; empty ones follow the original unless negative.
    #[test]
    fn defaults_and_negative_entries() {
        let off = TtlRule {
            base: S(300),
            ..TtlRule::default()
        };
        assert_eq!(off.keep(Verdict::Store, b"x", None).0, Keep::TierTtl);
        assert_eq!(off.keep(Verdict::Blank, b"x", None).0, Keep::TierTtl);
        assert_eq!(off.keep(Verdict::Empty, b"null", None).0, Keep::No);
        assert_eq!(off.keep(Verdict::Keep, b"42", None).0, Keep::No);
        let negative = TtlRule {
            negative: S(20),
            ..adaptive()
        };
        for v in [Verdict::Empty, Verdict::Blank] {
            assert_eq!(negative.keep(v, b"{}", None).0, Keep::Negative(S(20)));
        }
        assert_eq!(negative.keep(Verdict::Keep, b"42", None).0, Keep::No);
    }
}
