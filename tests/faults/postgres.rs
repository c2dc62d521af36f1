//! PostgreSQL restarted under the daemon: pooled connections are replaced.

use std::time::{Duration, Instant};

use crate::client::{Load, ask, tally};
use crate::common::{Daemon, TestPostgres, log_section, memory_tier, postgres_origin};
use crate::{CONTEXT, MIB, cache, ms, poll, shared};

// ---------------------------------------------------------------------------------------
// 6. PostgreSQL restarted
// ---------------------------------------------------------------------------------------

/// `pg_ctl restart -m fast` under 8 clients of misses with the default timeout: no
/// request fails (connection-level errors are retried within the timeout), none outlives
/// the timeout, and requests succeed again right after.
#[test]
fn postgres_restart_replaces_pooled_connections() {
    shared(async {
        let mut pg = TestPostgres::start();
        let config = pg_config(&pg, 8, 2_000, "");
        let daemon = Daemon::start(&config);
        // Every request a miss: each one needs the database.
        let load = Load::start(daemon.url(CONTEXT), 8, |t, i| {
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
        assert!(failures.is_empty(), "failed over the restart: {failures:?}");
        assert!(
            slowest < Duration::from_millis(2_000),
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

/// PostgreSQL stopped for longer than the timeout: the first misses fail at the timeout
/// with 504, and once the breaker opens, at once with 503; it comes back after a restart.
#[test]
fn postgres_stopped_fails_at_the_timeout_then_at_once() {
    shared(async {
        let mut pg = TestPostgres::start();
        let config = pg_config(&pg, 4, 300, "breaker_failures = 3\nbreaker_open_ms = 500\n");
        let daemon = Daemon::start(&config);
        assert_eq!(ask(&daemon, "before the stop").await.status, 200);
        pg.stop();
        let mut answers = Vec::new();
        for i in 0..6 {
            let reply = ask(&daemon, &format!("while stopped {i}")).await;
            answers.push((reply.status, reply.error_code().to_owned(), reply.elapsed));
        }
        println!("postgres stopped: {answers:?}");
        for (status, code, elapsed) in &answers[..3] {
            assert_eq!((*status, code.as_str()), (504, "origin_timeout"));
            assert!(
                *elapsed >= Duration::from_millis(290) && *elapsed < Duration::from_millis(1_000)
            );
        }
        for (status, code, elapsed) in &answers[3..] {
            assert_eq!((*status, code.as_str()), (503, "origin_unavailable"));
            assert!(*elapsed < Duration::from_millis(50), "{elapsed:?}");
        }
        pg.start_again();
        let back = poll(Duration::from_secs(5), async || {
            (ask(&daemon, "after the start").await.status == 200).then_some(())
        });
        assert!(back.await.is_some(), "no answer after PostgreSQL came back");
    });
}

/// Memory tier in front of the postgres origin, with `origin_extra` lines in `[origin]`.
fn pg_config(pg: &TestPostgres, pool: u32, timeout_ms: u64, origin_extra: &str) -> String {
    [
        log_section("info"),
        cache(300, 0, 0),
        memory_tier(100_000, 64 * MIB, 300),
        postgres_origin(&pg.url(), pool, timeout_ms),
        format!("{origin_extra}\n"),
    ]
    .concat()
}
