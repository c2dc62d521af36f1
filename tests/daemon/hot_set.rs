//! The hot set: the daemon counts requests, writes the hottest to `[warm] hot_set_path`
//! on shutdown (and every interval), and warms from it at the next start, so the first
//! request after a restart for every key in the set is a memory hit, not a 300 ms miss.

use std::time::Duration;

use crate::client::{ask, wait_ready};
use crate::common::{API_KEY, Daemon, Postgrest, TestPostgres, toml_str};
use crate::{memory, run, supabase};

fn hot_config(rest: &Postgrest, path: &std::path::Path) -> String {
    format!(
        "[warm]\nhot_set_path = {}\nhot_set_size = 20\nhot_set_interval_secs = 1\n\
         concurrency = 8\nready_after = true\n\n{}{}",
        toml_str(&path.display().to_string()),
        memory(300),
        supabase(rest)
    )
}

/// 20 hot keys asked often and 40 cold ones once, against a 300 ms origin; after a
/// restart every hot key is served from memory at its first request.
#[test]
fn the_hot_set_survives_a_restart() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        rest.set_delay(Duration::from_millis(300));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.jsonl");
        let config = hot_config(&rest, &path);
        let hot: Vec<String> = (0..20).map(|i| format!("how to use reverb {i}")).collect();
        let cold: Vec<String> = (0..40).map(|i| format!("cold question {i}")).collect();

        let mut d = Daemon::start(&config);
        assert!(
            wait_ready(&d, Duration::from_secs(15)).await,
            "never ready:\n{}",
            d.logs()
        );
        for round in 0..5 {
            let asks = hot.iter().map(|m| ask(&d, m));
            for answer in futures_util::future::join_all(asks).await {
                assert_eq!(answer.status, 200, "{answer:?}");
            }
            let asks = cold[round * 8..round * 8 + 8].iter().map(|m| ask(&d, m));
            futures_util::future::join_all(asks).await;
        }
        // Written every second already; SIGTERM writes it once more.
        d.signal("TERM");
        assert!(d.wait_exit(Duration::from_secs(15)).is_some());
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 20, "{written}");
        for m in &hot {
            assert!(
                written.contains(&format!("\"{m}\"")),
                "{m} not kept:\n{written}"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it holds users' messages");

        let calls = rest.calls();
        let d = Daemon::start(&config);
        assert!(
            wait_ready(&d, Duration::from_secs(15)).await,
            "never ready:\n{}",
            d.logs()
        );
        assert_eq!(rest.calls() - calls, 20, "warming fetched the hot set");
        for m in &hot {
            let answer = ask(&d, m).await;
            assert_eq!(answer.source(), "memory", "{m}: {answer:?}\n{}", d.logs());
        }
        assert!(d.logs().contains("warmed from"), "{}", d.logs());
    });
}

/// A corrupt hot-set file (not UTF-8, or bad lines) is logged and ignored: the daemon
/// starts, turns ready and serves.
#[test]
fn a_corrupt_hot_set_is_ignored() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.jsonl");
        for corrupt in [&b"\xff\xfe\x00 not text"[..], b"{\"message\": 5}\n{\"messa"] {
            std::fs::write(&path, corrupt).unwrap();
            let d = Daemon::start(&hot_config(&rest, &path));
            assert!(
                wait_ready(&d, Duration::from_secs(15)).await,
                "never ready:\n{}",
                d.logs()
            );
            assert_eq!(ask(&d, "how to use reverb in mixing").await.status, 200);
            assert!(d.logs().contains("hot set"), "{}", d.logs());
        }
    });
}
