//! PostgreSQL restarted under the daemon: pooled connections are replaced.

use std::time::{Duration, Instant};

use crate::client::{Load, tally};
use crate::common::{Daemon, TestPostgres, log_section, memory_tier, postgres_origin};
use crate::{CONTEXT, MIB, cache, ms, shared};

// ---------------------------------------------------------------------------------------
// 6. PostgreSQL restarted
// ---------------------------------------------------------------------------------------

/// PostgreSQL restarted under the postgres origin: no request outlives the origin timeout and requests succeed again right after.
#[test]
fn postgres_restart_replaces_pooled_connections() {
    shared(async {
        let mut pg = TestPostgres::start();
        let config = [
            log_section("info"),
            cache(300, 0, 0),
            memory_tier(100_000, 64 * MIB, 300),
            postgres_origin(&pg.url(), 4, 1_000),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        // Every request a miss: each one needs the database.
        let load = Load::start(daemon.url(CONTEXT), 4, |t, i| {
            format!("reverb over a restart {t} {i}")
        });
        load.wait_for(100, Duration::from_secs(5)).await;

        let stopping = Instant::now();
        pg.restart();
        let back = Instant::now();
        load.wait_for(200, Duration::from_secs(5)).await;
        let records = load.finish().await;

        let (sources, failures) = tally(&records);
        let slowest = records.iter().map(|r| r.elapsed).max().unwrap_or_default();
        let first_ok = records
            .iter()
            .filter(|r| r.started >= back && r.outcome.is_ok())
            .map(|r| r.started)
            .min()
            .expect("no success after the restart");
        let late_failures: Vec<&String> = records
            .iter()
            .filter(|r| r.started >= back + Duration::from_millis(500))
            .filter_map(|r| r.outcome.as_ref().err())
            .collect();
        let after_back = records.iter().filter(|r| r.started >= back).count();
        println!(
            "postgres restart: took {:.0} ms; {} requests {sources:?}, {} failed (during the \
             restart), slowest {:.0} ms; first success {:.0} ms after it was back, then {after_back} requests",
            ms(back - stopping),
            records.len(),
            failures.len(),
            ms(slowest),
            ms(first_ok - back)
        );
        if let Some(f) = failures.first() {
            println!("  e.g. {f}");
        }
        assert!(
            slowest < Duration::from_millis(1_500),
            "a request took {slowest:?}"
        );
        assert!(first_ok - back < Duration::from_secs(2));
        assert!(
            late_failures.is_empty(),
            "failures after recovery: {late_failures:?}"
        );
        assert!(
            after_back >= 200,
            "too few requests after the restart: {after_back}"
        );
    });
}
