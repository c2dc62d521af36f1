//! Wiring: config -> tiers, origin, chain, metrics, routes; then serve until told to
//! stop, reloading on request. `run` is the one seam `main`, the tests and the bench
//! use, so the daemon starts the same way everywhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::chain::{Bounds, Chain, Policy, TtlRule};
use crate::config::{CacheConfig, Config};
use crate::dashboard::Live;
use crate::http::{self, State};
use crate::invalidation::{Broadcast, Listener};
use crate::key::Key;
use crate::metrics::Metrics;
use crate::notify;
use crate::origins::OriginError;
use crate::proxy::{Proxy, ProxyError};
use crate::server::{self, Limits};
use crate::shutdown::Intent;
use crate::tiers::{BuildContext, TierError};
use crate::warm::HotSet;
use reload::reload;

mod reload;

/// Swaps the log filter (given by `main`, which owns the subscriber).
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Everything `run` needs.
pub struct Options {
    pub config: Config,
    /// Re-read on reload; `None` reloads the embedded config plus env.
    pub config_path: Option<PathBuf>,
    pub listener: TcpListener,
    pub intents: mpsc::Receiver<Intent>,
    pub set_log_level: SetLogLevel,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A tier's settings could not be turned into a client.
    #[error("cannot build the {kind} tier: {source}")]
    Tier {
        kind: &'static str,
        source: TierError,
    },
    /// The origin's settings could not be turned into a client.
    #[error("cannot build the {kind} origin: {source}")]
    Origin {
        kind: &'static str,
        source: OriginError,
    },
    /// The proxy's verifier or upstream client could not be built.
    #[error("cannot build the proxy: {0}")]
    Proxy(#[from] ProxyError),
}

/// Builds the shared state from a validated config. Connects to nothing.
///
/// # Errors
/// [`AppError`] when a tier or the origin cannot be built.
pub fn build_state(config: Config, metrics: Arc<Metrics>) -> Result<State, AppError> {
    let mut tiers = Vec::with_capacity(config.tiers.len());
    for tier in &config.tiers {
        let ctx = BuildContext {
            metrics: Arc::clone(&metrics),
            ttl: tier_ttl(&config, tier.ttl_secs()),
            stale_retention: stale_retention(&config),
            max_value_bytes: config.origin.max_response_bytes(),
        };
        tiers.push(tier.build(&ctx).map_err(|source| AppError::Tier {
            kind: tier.kind().as_str(),
            source,
        })?);
    }
    let origin = config.origin.build().map_err(|source| AppError::Origin {
        kind: config.origin.kind(),
        source,
    })?;
    let instance_id = format!("{:016x}", rand::random::<u64>());
    let broadcast = match config.shared_redis().filter(|_| config.broadcasts()) {
        Some(nodes) => Some(Arc::new(
            Broadcast::new(
                &nodes,
                &config.invalidation.channel,
                &instance_id,
                Arc::clone(&metrics),
            )
            .map_err(|e| AppError::Tier {
                kind: "redis",
                source: TierError::Config {
                    tier: "redis",
                    message: e.to_string(),
                },
            })?,
        )),
        None => None,
    };
    let group = crate::invalidation::group_of(config.shared_redis().as_deref());
    let listener = config.invalidation.postgres.clone().map(|listen| {
        Arc::new(Listener::new(
            listen,
            &instance_id,
            group,
            Arc::clone(&metrics),
        ))
    });
    let namespace = Key::namespace(config.origin.function());
    let chain = Arc::new(Chain::new(
        namespace,
        tiers,
        origin,
        config.origin.breaker(),
        Arc::clone(&metrics),
        policy(&config),
    ));
    let proxy = match config.proxy_upstream() {
        Some(upstream) => Some(Arc::new(Proxy::new(
            &config.proxy,
            &upstream,
            &chain,
            same_upstream(&config.origin, &upstream),
            config.origin.breaker(),
            config.origin.max_response_bytes(),
            &metrics,
        )?)),
        None => None,
    };
    let warm = &config.warm;
    let warming = warm.ready_after && (warm.file.is_some() || warm.hot_set_path.is_some());
    let live = config
        .dashboard
        .enabled
        .then(|| Live::new(&config.dashboard));
    let hot = warm
        .hot_set_path
        .as_ref()
        .map(|_| Arc::new(HotSet::new(warm.hot_set_size)));
    Ok(State {
        chain,
        metrics,
        config: ArcSwap::from_pointee(config),
        started: Instant::now(),
        draining: AtomicBool::new(false),
        warming: AtomicBool::new(warming),
        instance_id,
        broadcast,
        listener,
        hot,
        live,
        proxy,
        readiness: crate::http::Readiness::default(),
    })
}

/// Whether the `/codette/context` origin answers `get_codette_context` as the proxy's
/// upstream would: the supabase origin at the same URL, or the same function straight
/// on the project's PostgreSQL. The sample origin is never the upstream's stand-in.
fn same_upstream(origin: &crate::config::OriginConfig, upstream: &str) -> bool {
    use crate::config::OriginConfig;
    let same_function = origin
        .function()
        .is_some_and(|f| Key::namespace(Some(f)) == Key::PREFIX);
    same_function
        && match origin {
            OriginConfig::Supabase(c) => {
                c.url.trim_end_matches('/') == upstream.trim_end_matches('/')
            }
            OriginConfig::Postgres(_) => true,
            OriginConfig::Sample(_) => false,
        }
}

/// Warms from the hot set kept by the last run (hottest first), then `[warm] file`, in
/// the background. A missing, unreadable or corrupt list, or a bad line, is logged and
/// skipped, never fatal; `/readyz` is released however it ends.
async fn warm_at_start(state: Arc<State>) {
    let (warm, limit) = {
        let config = state.config.load();
        (config.warm.clone(), config.server.max_message_bytes)
    };
    let mut requests = Vec::new();
    if let (Some(path), Some(hot)) = (&warm.hot_set_path, &state.hot) {
        let kept = crate::warm::read_list(path, limit, "hot set").await;
        // Counted once each, so a restart before new traffic keeps the set.
        for request in &kept {
            hot.saw(request);
        }
        requests.extend(kept);
    }
    if let Some(path) = &warm.file {
        requests.extend(crate::warm::read_list(path, limit, "warm list").await);
    }
    if !requests.is_empty() {
        let sources = [warm.hot_set_path.as_ref(), warm.file.as_ref()];
        let names: Vec<String> = sources
            .iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        let source = format!("from {}", names.join(" and "));
        crate::warm::warm(
            &state.chain,
            &state.metrics,
            requests,
            warm.concurrency,
            &source,
        )
        .await;
    }
    state.warming.store(false, Ordering::Relaxed);
}

/// Writes the hot set every `hot_set_interval_secs`, then halves its counts.
fn spawn_hot_set_writer(state: &Arc<State>) {
    let (Some(hot), Some(path)) = (
        state.hot.clone(),
        state.config.load().warm.hot_set_path.clone(),
    ) else {
        return;
    };
    let every = state.config.load().warm.hot_set_interval();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            crate::warm::persist(&hot, &path).await;
            hot.age();
        }
    });
}

fn tier_ttl(config: &Config, own: Option<u64>) -> Duration {
    Duration::from_secs(own.unwrap_or(config.cache.ttl_secs))
}

/// Expired entries are kept as long as either stale rule may still serve them.
fn stale_retention(config: &Config) -> Duration {
    Duration::from_secs(
        config
            .cache
            .stale_if_error_secs
            .max(config.cache.stale_while_revalidate_secs),
    )
}

fn policy(config: &Config) -> Policy {
    Policy {
        normalize: config.cache.normalize_queries,
        stale_if_error: Duration::from_secs(config.cache.stale_if_error_secs),
        stale_while_revalidate: Duration::from_secs(config.cache.stale_while_revalidate_secs),
        refresh_ahead: config.cache.refresh_ahead,
        stale_if_error_wait: Duration::from_millis(config.cache.stale_if_error_wait_ms),
        ttl: ttl_rule(&config.cache),
    }
}

fn ttl_rule(cache: &CacheConfig) -> TtlRule {
    let a = &cache.adaptive_ttl;
    TtlRule {
        base: Duration::from_secs(cache.ttl_secs),
        negative: Duration::from_secs(cache.negative_ttl_secs),
        adaptive: a.enabled.then(|| Bounds {
            min: Duration::from_secs(a.min_secs),
            max: Duration::from_secs(a.max_secs),
        }),
    }
}

/// Serves until a shutdown intent, then drains within the grace period.
///
/// # Errors
/// [`AppError`] when the configured tiers or origin cannot be built.
pub async fn run(options: Options) -> Result<(), AppError> {
    let Options {
        config,
        config_path,
        listener,
        mut intents,
        set_log_level,
    } = options;
    let metrics = Arc::new(Metrics::with_functions(
        config.proxy.functions.iter().map(|f| f.name.as_str()),
    ));
    let limits = Limits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
        send_timeout: Duration::from_millis(config.server.send_timeout_ms),
    };
    let state = Arc::new(build_state(config, Arc::clone(&metrics))?);
    if let Some(broadcast) = &state.broadcast {
        broadcast.spawn_subscriber(Arc::clone(&state.chain));
    }
    if let Some(listener) = &state.listener {
        listener.spawn(Arc::clone(&state.chain), state.broadcast.clone());
    }
    if let Some(proxy) = &state.proxy {
        proxy.spawn_introspection(&state.config.load().proxy);
    }
    tokio::spawn(warm_at_start(Arc::clone(&state)));
    spawn_hot_set_writer(&state);
    if let Some(live) = &state.live {
        live.spawn(Arc::clone(&state.chain), Arc::clone(&state.metrics));
    }
    let service = http::service(Arc::clone(&state));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server::accept_until(
        listener,
        service,
        limits,
        metrics,
        async {
            let _ = stop_rx.await;
        },
    ));
    {
        let config = state.config.load();
        let tiers: Vec<&str> = config.tiers.iter().map(|t| t.kind().as_str()).collect();
        tracing::info!(
            listen = %config.server.listen,
            tiers = ?tiers,
            origin = config.origin.kind(),
            "codette-cache serving"
        );
    }
    notify::ready();
    notify::spawn_watchdog();

    loop {
        match intents.recv().await {
            Some(Intent::Reload) => reload(&state, config_path.as_deref(), &set_log_level),
            Some(Intent::Quit) => {
                tracing::warn!("quit: exiting without draining");
                return Ok(());
            }
            Some(Intent::Shutdown) | None => break,
        }
    }

    let grace = Duration::from_secs(state.config.load().server.shutdown_grace_secs);
    tracing::info!(
        ?grace,
        "draining: no new connections, finishing in-flight requests"
    );
    state.draining.store(true, Ordering::Relaxed);
    notify::stopping();
    let _ = stop_tx.send(());
    let Ok(graceful) = server.await else {
        return Ok(());
    };
    tokio::select! {
        drained = tokio::time::timeout(grace, graceful.shutdown()) => match drained {
            Ok(()) => tracing::info!("drained; exiting"),
            Err(_) => tracing::warn!(?grace, "grace period over with requests in flight; exiting anyway"),
        },
        () = second_stop(&mut intents) => {
            tracing::warn!("second stop signal: exiting now");
        }
    }
    if let (Some(hot), Some(path)) = (&state.hot, &state.config.load().warm.hot_set_path) {
        crate::warm::persist(hot, path).await;
    }
    Ok(())
}

/// Ends at the next stop signal while draining; a reload asked for meanwhile is
/// ignored (a `select!` arm that matched only stops would be switched off by it, and a
/// second SIGTERM would then wait out the grace period).
async fn second_stop(intents: &mut mpsc::Receiver<Intent>) {
    loop {
        match intents.recv().await {
            Some(Intent::Shutdown | Intent::Quit) => return,
            Some(Intent::Reload) => tracing::info!("reload ignored: draining"),
            None => std::future::pending().await,
        }
    }
}
