//! The transparent Supabase proxy's tests, against REAL servers and the REAL client
//! libraries: a PostgreSQL loaded with `tests/sql/schema.sql`, the PostgREST-shaped
//! gateway in front of it (tests/common/postgrest.rs: JWT roles and claims like
//! PostgREST), and supabase-js / supabase-py pinned in tests/clients (installed by
//! .ci/run) driven through `clients`.
//!
//! - `gateway`: the gateway itself behaves like PostgREST with JWTs.
//! - `daemon`: the daemon in front of the gateway, asked over plain HTTP: what is
//!   cached, for whom, under which key, and what passes through.
//! - `through_daemon`: both client libraries pointed at the daemon instead.
//! - `clients`: the helper API to run a client library's `rpc` ([`clients::Rpc`],
//!   [`clients::rpc`]), and both clients against the
//!   gateway directly.

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod daemon;
mod gateway;
mod through_daemon;
