//! codette-cache: a read-through cache daemon in front of the Codette context RPC.
//!
//! # Layout
//! - [`config`]: figment layering (embedded defaults -> `config.toml` -> env), validation.
//! - [`key`]: cache keys, the only place they are built (a leaf).
//! - [`tags`]: what an answer depends on, and what a purge removes (a leaf).
//! - [`names`]: bounded names shared by plugins and metrics (a leaf).
//! - [`secret`]: strings that never print, and URL redaction (a leaf).
//! - [`figures`]: the rounding of every shown figure (a leaf).
//! - [`pg_tls`]: TLS for PostgreSQL connections, as libpq's `sslmode` says; it reads
//!   key=value strings with [`pg_conninfo`] (a leaf).
//! - [`memo`]: the per-thread store of the request path's memos (a leaf).
//! - [`app`]: wiring: config -> tiers, origin, chain, metrics, routes; the `run` seam.
//! - [`server`]: the HTTP/1 accept loop (connection cap, header timeout, drain deadline).
//! - [`shutdown`]: signals -> intents (shutdown, quit, reload) and a handle tasks await.
//! - [`chain`]: the read-through walk over tiers, single-flight origin calls, keys.
//! - [`tiers`]: cache tier plugins (memory, redis) behind one registry enum.
//! - [`origins`]: origin plugins (supabase, postgres, sample) behind one registry enum,
//!   and the proxy's upstream (a client's RPC call forwarded as it came).
//! - [`envelope`]: a proxied RPC answer as the tiers hold it: status, headers, body (a leaf).
//! - [`proxy`]: the Supabase proxy's parts: config, JWT verification, introspection,
//!   request canonicalisation into keys, and one sibling chain per cached function.
//! - [`metrics`]: one `Metrics` struct: HDR histograms and Prometheus families.
//! - [`advice`]: optimisation advice rules evaluated on a metrics snapshot.
//! - [`invalidation`]: invalidations broadcast to every instance over Redis pub/sub.
//! - [`http`]: warp routes, JSON shapes, and the one rejection handler.
//! - [`notify`]: systemd readiness / watchdog messages.
//! - [`bench`]: the performance tester (`codette-cache bench`).
#![forbid(unsafe_code)]

pub mod advice;
pub mod app;
pub mod bench;
pub mod chain;
pub mod config;
pub mod dashboard;
pub mod envelope;
pub mod figures;
pub mod form;
pub mod http;
pub mod invalidation;
pub mod key;
pub mod memo;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod origins;
pub mod pg_conninfo;
pub mod pg_tls;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod tags;
pub mod tiers;
pub mod warm;

#[cfg(test)]
mod layout_tests;
