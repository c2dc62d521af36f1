//! The original Python server's env names, mapped onto our fields so an operator can
//! reuse its `.env`. A `CODETTE_CACHE_*` variable for the same field wins.

use super::{Config, ENV_PREFIX, Secret};
use crate::origins::OriginConfig;
use crate::tiers::TierConfig;

/// Applies `REDIS_HOST` / `REDIS_PORT` / `REDIS_DB` to the redis tier and the Supabase
/// variables to a `supabase` origin. Env is read through `env` so tests need no globals.
pub(super) fn apply(config: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
    let ours = |field: &str| env(&format!("{ENV_PREFIX}{field}")).is_some();

    for tier in &mut config.tiers {
        if let TierConfig::Redis(redis) = tier {
            let (host, port, db) = (env("REDIS_HOST"), env("REDIS_PORT"), env("REDIS_DB"));
            if host.is_some() || port.is_some() || db.is_some() {
                redis.url = rewrite_redis_url(&redis.url, host, port, db);
            }
        }
    }

    if let OriginConfig::Supabase(supabase) = &mut config.origin {
        if !ours("ORIGIN__URL") {
            if let Some(url) = env("VITE_SUPABASE_URL") {
                supabase.url = url;
            }
        }
        // The original made the context RPC with the anon key; the service-role key is
        // the fallback when no anon key is given.
        if !ours("ORIGIN__API_KEY") {
            if let Some(key) =
                env("VITE_SUPABASE_ANON_KEY").or_else(|| env("SUPABASE_SERVICE_ROLE_KEY"))
            {
                supabase.api_key = Secret::new(key);
            }
        }
    }
}

/// Replaces host, port and db of a `redis://[user:pass@]host:port/db` URL, keeping the
/// scheme and credentials.
fn rewrite_redis_url(
    url: &str,
    host: Option<String>,
    port: Option<String>,
    db: Option<String>,
) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let (authority, old_db) = hostpart.split_once('/').unwrap_or((hostpart, "0"));
    let (old_host, old_port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    format!(
        "{scheme}://{userinfo}{}:{}/{}",
        host.as_deref().unwrap_or(old_host),
        port.as_deref().unwrap_or(old_port),
        db.as_deref().unwrap_or(old_db)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original's REDIS_* names move the redis tier and keep its credentials.
    #[test]
    fn redis_env_rewrites_host_port_db() {
        assert_eq!(
            rewrite_redis_url(
                "redis://u:p@127.0.0.1:6379/0",
                Some("cache.internal".into()),
                None,
                Some("3".into())
            ),
            "redis://u:p@cache.internal:6379/3"
        );
        assert_eq!(
            rewrite_redis_url("redis://127.0.0.1", None, Some("6380".into()), None),
            "redis://127.0.0.1:6380/0"
        );
    }
}
