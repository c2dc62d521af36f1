//! The transparent Supabase proxy's tests, against REAL servers and the REAL client
//! libraries: a PostgreSQL loaded with `tests/sql/schema.sql`, the PostgREST-shaped
//! gateway in front of it (tests/common/postgrest/: JWT roles and claims like
//! PostgREST), and supabase-js / supabase-py pinned in tests/clients (installed by
//! .ci/run) driven through `clients`.
//!
//! - `gateway`: raw-HTTP requests to the gateway, for `gateway_auth` and `gateway_rest`,
//!   which check the gateway itself behaves like PostgREST with JWTs.
//! - `daemon`: the daemon in front of the gateway, set up to be asked over plain HTTP:
//!   what is cached, for whom, under which key (`daemon_caching`), and what passes
//!   through (`daemon_passthrough`).
//! - `through_daemon`: both client libraries pointed at the daemon instead.
//! - `clients`: the helper API to run a client library's `rpc` ([`clients::Rpc`],
//!   [`clients::rpc`]); `clients_on_gateway`: both clients against the
//!   gateway directly.

mod clients;
mod clients_on_gateway;
#[path = "../common/mod.rs"]
mod common;
mod daemon;
mod daemon_caching;
mod daemon_passthrough;
mod gateway;
mod gateway_auth;
mod gateway_rest;
mod through_daemon;
