//! Reloading: a re-read config applied to the running daemon, as far as it can be
//! without a restart.

use std::sync::Arc;

use super::{SetLogLevel, policy, stale_retention, tier_ttl};
use crate::config::Config;
use crate::http::State;
use crate::notify;

/// Applies a re-read config: TTLs, stale windows, normalisation, limits, log level,
/// admin token and advice take effect at once; listener, tier and origin changes need a
/// restart and are reported. A config that fails to load changes nothing.
pub(super) fn reload(state: &State, path: Option<&std::path::Path>, set_log_level: &SetLogLevel) {
    notify::reloading();
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; the running config stays");
            state.metrics.config_reloaded(false);
            notify::ready();
            return;
        }
    };
    if let Err(e) = set_log_level(&new.log.level) {
        tracing::warn!(error = %e, "log level not changed");
    }
    let old = state.config.load();
    let kinds = |c: &Config| c.tiers.iter().map(|t| t.kind()).collect::<Vec<_>>();
    let same_tiers = kinds(&old) == kinds(&new);
    if same_tiers {
        for (tier, cfg) in state.chain.tiers().iter().zip(&new.tiers) {
            tier.set_ttl(tier_ttl(&new, cfg.ttl_secs()), stale_retention(&new));
        }
    }
    let needs_restart: Vec<&str> = [
        (old.server.listen != new.server.listen, "server.listen"),
        (
            old.server.max_connections != new.server.max_connections
                || old.server.header_read_timeout_ms != new.server.header_read_timeout_ms
                || old.server.send_timeout_ms != new.server.send_timeout_ms,
            "server connection limits",
        ),
        (
            !same_tiers
                || old
                    .tiers
                    .iter()
                    .zip(&new.tiers)
                    .any(|(a, b)| !same_except_ttl(a, b)),
            "tiers",
        ),
        (old.origin != new.origin, "origin"),
        (old.invalidation != new.invalidation, "invalidation"),
        (old.warm != new.warm, "warm"),
        (old.dashboard != new.dashboard, "dashboard"),
        (old.proxy != new.proxy, "proxy"),
    ]
    .into_iter()
    .filter_map(|(changed, what)| changed.then_some(what))
    .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(changed = ?needs_restart, "these settings take effect after a restart");
    }
    state.chain.set_policy(policy(&new));
    if let Some(proxy) = &state.proxy {
        proxy.set_policy(&policy(&new));
    }
    state.config.store(Arc::new(new));
    state.metrics.config_reloaded(true);
    tracing::info!("config reloaded");
    notify::ready();
}

/// Two tier configs that differ at most in their TTL.
fn same_except_ttl(a: &crate::config::TierConfig, b: &crate::config::TierConfig) -> bool {
    use crate::config::TierConfig::{Memory, Redis, RedisCluster};
    match (a.clone(), b.clone()) {
        (Memory(mut a), Memory(b)) => {
            a.ttl_secs = b.ttl_secs;
            a == b
        }
        (Redis(mut a), Redis(b)) => {
            a.ttl_secs = b.ttl_secs;
            a == b
        }
        (RedisCluster(mut a), RedisCluster(b)) => {
            a.ttl_secs = b.ttl_secs;
            a == b
        }
        _ => false,
    }
}
