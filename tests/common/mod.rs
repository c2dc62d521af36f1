//! Shared integration-test harness: real Redis and PostgreSQL servers, a PostgREST-shaped
//! gateway in front of the PostgreSQL, and the `codette-cache` daemon, each started on
//! free 127.0.0.1 ports and torn down on drop. Every test binary uses a subset of it.
#![allow(dead_code, unused_imports)]

pub mod config;
pub mod daemon;
pub mod ports;
pub mod postgres;
pub mod postgrest;
pub mod process;
pub mod redis;
pub mod redis_cluster;
pub mod tls;

pub use config::*;
pub use daemon::Daemon;
pub use ports::free_port;
pub use postgres::TestPostgres;
pub use postgrest::{API_KEY, Postgrest};
pub use redis::TestRedis;
pub use redis_cluster::TestCluster;
pub use tls::make_certificates;
