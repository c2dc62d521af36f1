//! codette-cache: a read-through cache daemon in front of the Codette context RPC.
//!
//! # Layout
//! - [`config`]: figment layering (embedded defaults -> `config.toml` -> env), validation.
//! - [`app`]: wiring: config -> tiers, origin, chain, metrics, routes; the `run` seam.
//! - [`server`]: the HTTP/1 accept loop (connection cap, header timeout, drain deadline).
//! - [`shutdown`]: signals -> intents (shutdown, quit, reload) and a handle tasks await.
//! - [`chain`]: the read-through walk over tiers, single-flight origin calls, keys.
//! - [`tiers`]: cache tier plugins (memory, redis) behind one registry enum.
//! - [`origins`]: origin plugins (supabase, postgres, sample) behind one registry enum.
//! - [`metrics`]: one `Metrics` struct: HDR histograms and Prometheus families.
//! - [`advice`]: optimisation advice rules evaluated on a metrics snapshot.
//! - [`http`]: warp routes, JSON shapes, and the one rejection handler.
//! - [`notify`]: systemd readiness / watchdog messages.
//! - [`bench`]: the performance tester (`codette-cache bench`).
#![forbid(unsafe_code)]

pub mod advice;
pub mod app;
pub mod bench;
pub mod chain;
pub mod config;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod origins;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod tiers;
