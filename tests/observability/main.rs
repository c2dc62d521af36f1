//! Observability against real servers: known traffic through a running daemon in front
//! of a real Redis, PostgreSQL and the PostgREST-shaped gateway, then every figure of the
//! four JSON dashboards and of `/metrics` checked, counts exactly and latencies by their
//! relations; each advice rule provoked with crafted traffic; the Redis status flip;
//! coalesced waiters; errors counted apart; and `promtool check metrics`.
//!
//! - `stack`: the servers a test runs against.
//! - `readings`: requests, and reading the dashboards, `/metrics` and advice.
//! - `seed_shapes`: the seed's JSON shapes, the compatibility contract, and their checks.
//! - `known_traffic`: 8 distinct messages, then 42 repeats cycling over them.
//! - `json_dashboards`: the known traffic's figures in the four JSON dashboards.
//! - `prometheus`: the known traffic in `/metrics`, and `promtool check metrics`.
//! - `advice_rules`: each advice rule provoked with crafted traffic.
//! - `events`: the Redis status flip, coalesced waiters, errors counted apart.

mod advice_rules;
#[path = "../common/mod.rs"]
mod common;
mod events;
mod json_dashboards;
mod known_traffic;
mod prometheus;
mod readings;
mod seed_shapes;
mod stack;

const STATS: &str = "/codette/cache/stats";
const METRICS: &str = "/codette/cache/metrics";
const DASHBOARD: &str = "/codette/analytics/dashboard";
const STATUS: &str = "/codette/cache/status";

/// The 8 distinct messages of the known traffic: the tester's five and three more.
const MESSAGES: [&str; 8] = [
    "how to use reverb in mixing",
    "compression techniques for vocals",
    "EQ strategies for drums",
    "mixing orchestral instruments",
    "audio production workflow",
    "sidechain compression",
    "stereo imaging",
    "gain staging",
];
