//! `codette-cache bench` end to end: the built binary run as an operator runs it,
//! against a daemon on the real PostgreSQL through the PostgREST-shaped gateway (whose
//! call count shows which first calls really missed), or against nothing at all.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    ADMIN_TOKEN, API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, admin_section, cache_section,
    config_memory_postgrest, free_port, log_section, memory_tier, sample_origin,
};
use serde_json::Value;

/// The original tester's five queries, in its order.
const QUERIES: [&str; 5] = [
    "how to use reverb in mixing",
    "compression techniques for vocals",
    "EQ strategies for drums",
    "mixing orchestral instruments",
    "audio production workflow",
];

/// Runs `codette-cache bench <args>` with a clean environment plus `env`.
fn bench(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codette-cache"));
    cmd.env_remove("CODETTE_CACHE_ADMIN__TOKEN");
    cmd.envs(env.iter().copied())
        .arg("bench")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run codette-cache bench")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// With the admin token every first call is a real miss (one gateway call per query),
/// the second a memory hit; the report has the seed's sections, is saved to `--out`,
/// and `--json` carries the same figures.
#[test]
fn report_forces_misses_by_invalidation_and_saves_the_seed_layout() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let d = Daemon::start(&config_memory_postgrest(&rest, API_KEY));
    rest.set_delay(Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.txt");
    let url = d.url("");
    let args = ["--url", url.as_str(), "--out", out.to_str().unwrap()];
    let token = [("CODETTE_CACHE_ADMIN__TOKEN", ADMIN_TOKEN)];

    let run = bench(&args, &token, dir.path());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = std::fs::read_to_string(&out).expect("report saved to --out");
    assert_eq!(
        text(&run.stdout),
        report,
        "printed and saved reports differ"
    );
    for section in [
        "CACHE PERFORMANCE ANALYSIS REPORT",
        "CACHE BACKEND STATUS",
        "QUERY PERFORMANCE TEST RESULTS",
        "AGGREGATE STATISTICS",
        "OPTIMIZATION RECOMMENDATIONS",
        "Std dev (first call):",
        "invalidation through POST /codette/cache/invalidate",
    ] {
        assert!(report.contains(section), "no {section:?} in:\n{report}");
    }
    for q in QUERIES {
        assert!(report.contains(&format!("Query: {q}")), "{q}:\n{report}");
    }
    assert_eq!(rest.calls(), 5, "one origin call per first call");

    // Again, as JSON: the keys were invalidated, so the first calls miss once more.
    let run = bench(&[&args[..], &["--json"]].concat(), &token, dir.path());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let v: Value = serde_json::from_slice(&run.stdout).expect("--json prints JSON");
    assert_eq!(
        rest.calls(),
        10,
        "the second run's first calls were not misses"
    );
    let queries = v["queries"].as_array().expect("queries");
    assert_eq!(queries.len(), 5);
    for q in queries {
        assert_eq!(q["first_call_source"], "origin", "{q}");
        assert_eq!(q["cached_call_source"], "memory", "{q}");
        let (first, cached) = (q["first_call_ms"].as_f64(), q["cached_call_ms"].as_f64());
        assert!(first.unwrap() >= 40.0, "a miss faster than the origin: {q}");
        assert!(cached.unwrap() < first.unwrap(), "{q}");
    }
    assert!(v["average_speedup"].as_f64().unwrap() > 1.0, "{v}");
    assert!(v["std_dev_first_call_ms"].as_f64().is_some(), "{v}");
    assert!(
        ["Excellent", "Good", "Low"]
            .iter()
            .any(|w| v["verdict"].as_str().unwrap_or("").contains(w)),
        "{v}"
    );
}

/// Without a token, `--queries FILE` queries get a per-run suffix so the first calls
/// still miss, and the report says so.
#[test]
fn report_without_a_token_uses_a_unique_suffix_and_reads_queries_from_a_file() {
    let text_config = [
        log_section("info"),
        cache_section(300),
        memory_tier(1_000, 1 << 24, 300),
        sample_origin(),
        admin_section(""),
    ]
    .concat();
    let d = Daemon::start(&text_config);
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "reverb on vocals\n\n  drum bus compression  \n").unwrap();
    let url = d.url("");
    let run = bench(
        &[
            "--url",
            &url,
            "--queries",
            queries.to_str().unwrap(),
            "--json",
        ],
        &[],
        dir.path(),
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let v: Value = serde_json::from_slice(&run.stdout).expect("JSON");
    let names: Vec<&str> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["query"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reverb on vocals", "drum bus compression"]);
    assert!(
        v["miss_forced_by"]
            .as_str()
            .unwrap()
            .contains("unique suffix"),
        "{v}"
    );
    for q in v["queries"].as_array().unwrap() {
        assert_eq!(
            (&q["first_call_source"], &q["cached_call_source"]),
            (&Value::from("origin"), &Value::from("memory")),
            "{q}"
        );
    }
    assert!(
        dir.path().join("cache_performance_report.txt").exists(),
        "the default --out"
    );
}

/// A daemon that is not there: a non-zero exit with a message naming the URL, no report.
#[test]
fn report_fails_clearly_when_the_daemon_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = bench(&["--url", &url], &[], dir.path());
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("codette-cache bench:") && stderr.contains(&url),
        "{stderr}"
    );
    assert!(!dir.path().join("cache_performance_report.txt").exists());
}

/// `bench load --json`: the client's counts equal the daemon's own (every answer is a
/// hit or a miss, none lost), progress goes to stderr as plain lines, `--plot` writes
/// the run's curve without disturbing the JSON, and nonsense arguments are refused with
/// a message.
#[test]
fn load_mode_counts_match_the_daemon_and_progress_is_plain_lines() {
    let d = Daemon::start(&[memory_tier(1_000, 1 << 24, 300), sample_origin()].concat());
    let dir = tempfile::tempdir().unwrap();
    let url = d.url("");
    let svg = dir.path().join("load.svg");
    let run = bench(
        &[
            "load",
            "--url",
            &url,
            "--concurrency",
            "4",
            "--duration",
            "2s",
            "--keys",
            "20",
            "--distribution",
            "zipf:1.0",
            "--json",
            "--plot",
            svg.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let v: Value = serde_json::from_slice(&run.stdout).expect("JSON");
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 100, "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    let by_source = v["by_source"].as_object().unwrap();
    let count = |s: &str| by_source.get(s).map_or(0, |p| p["count"].as_u64().unwrap());
    assert_eq!(count("memory") + count("origin"), requests, "{v}");
    assert!(v["hit_ratio"].as_f64().unwrap() > 0.5, "{v}");
    for p in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(v["all"][p].as_f64().unwrap() > 0.0, "{p}: {v}");
    }
    let stderr = text(&run.stderr);
    assert!(stderr.contains("load: 1s of 2s"), "{stderr}");
    assert!(
        stderr.contains(&format!("wrote {}", svg.display())),
        "{stderr}"
    );
    let plot = std::fs::read_to_string(&svg).expect("--plot wrote the SVG");
    assert!(plot.starts_with("<svg") && plot.contains(&url), "{plot}");

    let stats: Value = reqwest::blocking::get(d.url("/codette/cache/stats"))
        .and_then(|r| r.json())
        .expect("GET /codette/cache/stats");
    assert_eq!(stats["metrics"]["hits"].as_u64(), Some(count("memory")));
    assert_eq!(stats["metrics"]["misses"].as_u64(), Some(count("origin")));
    // Every answer from the origin made a call or waited on one (two workers asking
    // one hot key at once). About one call per key: a miss whose tier read came just
    // before a fill, and whose flight lookup just after that flight ended, calls again.
    let counters = &stats["metrics"]["counters"];
    let coalesced = counters["coalesced_waits"].as_u64().unwrap();
    let calls = counters["origin_calls"]["ok"].as_u64().unwrap();
    assert_eq!(count("origin"), calls + coalesced, "{v} {stats}");
    assert!((20..=30).contains(&calls), "{v} {stats}");

    for bad in [
        &["load", "--url", &url, "--concurrency", "0"][..],
        &["load", "--url", &url, "--distribution", "gauss"],
        &["load", "--url", &url, "--rate", "-5"],
        &[
            "load",
            "--url",
            &url,
            "--plot",
            "/nonexistent-codette-dir/p.svg",
        ],
    ] {
        let run = bench(bad, &[], dir.path());
        assert!(!run.status.success(), "{bad:?} accepted");
        assert!(!text(&run.stderr).is_empty(), "{bad:?}: no message");
    }
}

/// `bench load --compare --plot`: both daemons are started and measured, the table
/// printed, and the SVG holds one curve per run with its name in the legend. A plot
/// target in a missing directory is refused before any run, with a message, not a panic.
#[test]
fn compare_plots_the_percentile_curves_of_both_runs() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("p.svg");
    let redis_url = redis.url();
    let args = |plot: &str| {
        let args = [
            "load",
            "--compare",
            "--redis-url",
            &redis_url,
            "--origin-latency-ms",
            "20",
            "--concurrency",
            "2",
            "--duration",
            "1s",
            "--keys",
            "20",
            "--plot",
            plot,
        ];
        bench(&args, &[], dir.path())
    };
    let run = args(svg.to_str().unwrap());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("memory-only") && stdout.contains("memory+redis"),
        "{stdout}"
    );
    assert!(
        text(&run.stderr).contains("wrote "),
        "{}",
        text(&run.stderr)
    );
    let plot = std::fs::read_to_string(&svg).expect("--plot wrote the SVG");
    for expected in [
        "<svg",
        "memory-only",
        "memory+redis",
        "percentile (%)",
        "latency (ms",
    ] {
        assert!(plot.contains(expected), "no {expected:?} in:\n{plot}");
    }

    let run = args("/nonexistent-codette-dir/p.svg");
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("/nonexistent-codette-dir/p.svg") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("running memory-only"),
        "ran before refusing: {stderr}"
    );
}
