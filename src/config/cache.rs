//! `[cache]`: the freshness rules every tier shares.

use serde::{Deserialize, Serialize};

/// `[cache]`: what every tier shares.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long an answer is fresh, unless a tier sets its own `ttl_secs`.
    pub ttl_secs: u64,
    /// Trim, collapse inner whitespace and lowercase messages before keying.
    /// Off by default so keys equal the original server's.
    pub normalize_queries: bool,
    /// After expiry, how long the memory tier keeps an answer to serve if the origin fails.
    pub stale_if_error_secs: u64,
    /// After expiry, how long an answer is served at once while one refresh runs behind it.
    pub stale_while_revalidate_secs: u64,
    /// With a stale entry at hand, the longest a request waits on the origin before it
    /// is served the stale entry (the call goes on and fills the tiers).
    pub stale_if_error_wait_ms: u64,
    /// A hit on an entry older than this fraction of its TTL starts one background
    /// refresh, so a hot key never misses; 0 (the default) turns it off.
    pub refresh_ahead: f64,
    /// Empty answers are stored this long (negative entries); 0 (the default) keeps the
    /// original's rule: `null` and `{}` are never stored.
    pub negative_ttl_secs: u64,
    pub adaptive_ttl: AdaptiveTtlConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 300,
            normalize_queries: false,
            stale_if_error_secs: 3_600,
            stale_while_revalidate_secs: 0,
            stale_if_error_wait_ms: 200,
            refresh_ahead: 0.0,
            negative_ttl_secs: 0,
            adaptive_ttl: AdaptiveTtlConfig::default(),
        }
    }
}

/// `[cache.adaptive_ttl]`: each refresh doubles the TTL of an unchanged answer and halves
/// that of a changed one, within `[min_secs, max_secs]` (`chain/ttl.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveTtlConfig {
    pub enabled: bool,
    pub min_secs: u64,
    pub max_secs: u64,
}

impl Default for AdaptiveTtlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_secs: 30,
            max_secs: 3_600,
        }
    }
}

/// The longest lifetime or window accepted, ten years: beyond any use, and far from
/// where `Instant` and Redis's `EX` arithmetic overflow.
pub const MAX_SECS: u64 = 10 * 365 * 24 * 3_600;

impl CacheConfig {
    pub(super) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..1.0).contains(&self.refresh_ahead) {
            problems.push(format!(
                "cache.refresh_ahead is {}: use a fraction of the TTL from 0 (off) to below 1, e.g. 0.8",
                self.refresh_ahead
            ));
        }
        if self.ttl_secs == 0 {
            problems.push("cache.ttl_secs must be > 0 (remove a tier to stop caching)".into());
        }
        for (name, secs) in [
            ("ttl_secs", self.ttl_secs),
            ("stale_if_error_secs", self.stale_if_error_secs),
            (
                "stale_while_revalidate_secs",
                self.stale_while_revalidate_secs,
            ),
            (
                "stale_if_error_wait_ms",
                self.stale_if_error_wait_ms / 1_000,
            ),
            ("negative_ttl_secs", self.negative_ttl_secs),
            ("adaptive_ttl.min_secs", self.adaptive_ttl.min_secs),
            ("adaptive_ttl.max_secs", self.adaptive_ttl.max_secs),
        ] {
            if secs > MAX_SECS {
                problems.push(format!(
                    "cache.{name} is over ten years ({MAX_SECS} s): use a shorter time"
                ));
            }
        }
        let a = &self.adaptive_ttl;
        if a.enabled && (a.min_secs == 0 || a.min_secs > a.max_secs) {
            problems.push(format!(
                "cache.adaptive_ttl: min_secs ({}) must be > 0 and at most max_secs ({})",
                a.min_secs, a.max_secs
            ));
        }
        problems
    }
}
