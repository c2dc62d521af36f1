//! The bounded soak: Zipf load, memory bounded and every answer counted exactly.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

use crate::common::{Daemon, TestRedis, log_section, sample_origin, toml_str};
use crate::daemon_side::{metric, metrics_text, num, redis_state, rss_bytes, stats, wait_redis};
use crate::{CONTEXT, MIB, cache, exclusive};

// ---------------------------------------------------------------------------------------
// 9. Soak
// ---------------------------------------------------------------------------------------

/// Counts one soak client saw.
#[derive(Default, Debug, Clone, Copy)]
struct SoakCounts {
    memory: u64,
    redis: u64,
    origin: u64,
    other: u64,
    errors: u64,
}

impl SoakCounts {
    fn add(&mut self, o: SoakCounts) {
        self.memory += o.memory;
        self.redis += o.redis;
        self.origin += o.origin;
        self.other += o.other;
        self.errors += o.errors;
    }

    fn total(&self) -> u64 {
        self.memory + self.redis + self.origin + self.other + self.errors
    }
}

/// The `cache.source` of a context response, read from the end of the bytes.
fn source_of(body: &[u8]) -> Option<&str> {
    const MARK: &[u8] = b"\"source\":\"";
    let at = body.windows(MARK.len()).rposition(|w| w == MARK)? + MARK.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[at..at + len]).ok()
}

/// Soak: 256 clients, Zipf keys over 100,000 messages, memory bound 16 MiB, Redis on: no errors, bounded RSS, server hit counts equal the clients'.
#[test]
fn soak_zipf_load_is_bounded_and_counted_exactly() {
    exclusive(async {
        const CLIENTS: usize = 256;
        const MESSAGES: f64 = 100_000.0;
        const RUN: Duration = Duration::from_secs(15);
        const HEADROOM: u64 = 24 * MIB;
        let redis = TestRedis::start();
        let config = [
            log_section("warn"),
            cache(300, 0, 0),
            format!(
                "[[tiers]]\ntype = \"memory\"\nmax_entries = 1000000\nmax_bytes = {}\n\n",
                16 * MIB
            ),
            format!(
                "[[tiers]]\ntype = \"redis\"\nurl = {}\ntimeout_ms = 50\n\n",
                toml_str(&redis.url())
            ),
            sample_origin(),
        ]
        .concat();
        let daemon = Daemon::start(&config);
        wait_redis(&daemon, "connected", Duration::from_secs(5))
            .await
            .expect("redis tier never connected");
        let pid = daemon.pid();
        let baseline = rss_bytes(pid);

        let url = daemon.url(CONTEXT);
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(CLIENTS)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let started = Instant::now();
        let end = started + RUN;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let zipf = Zipf::new(MESSAGES, 1.0).expect("zipf");
                    let mut rng = SmallRng::seed_from_u64(t as u64);
                    let mut counts = SoakCounts::default();
                    let mut first_error = None;
                    while Instant::now() < end {
                        let k = zipf.sample(&mut rng) as u64;
                        let body = format!("{{\"message\":\"reverb soak question {k}\"}}");
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        let outcome = match sent {
                            Ok(resp) if resp.status() == 200 => {
                                resp.bytes().await.map_err(|e| e.to_string())
                            }
                            Ok(resp) => Err(format!("status {}", resp.status())),
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome.as_deref().map(source_of) {
                            Ok(Some("memory")) => counts.memory += 1,
                            Ok(Some("redis")) => counts.redis += 1,
                            Ok(Some("origin")) => counts.origin += 1,
                            Ok(_) => counts.other += 1,
                            Err(e) => {
                                counts.errors += 1;
                                first_error.get_or_insert_with(|| e.to_owned());
                            }
                        }
                    }
                    (counts, first_error)
                })
            })
            .collect();

        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            while Instant::now() < end {
                peak = peak.max(rss_bytes(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        let mut counts = SoakCounts::default();
        let mut first_error = None;
        for task in tasks {
            let (c, e) = task.await.expect("soak client");
            counts.add(c);
            first_error = first_error.or(e);
        }
        let elapsed = started.elapsed();
        let peak = sampler.await.expect("sampler").max(rss_bytes(pid));

        let s = stats(&daemon).await;
        let (_, m) = daemon.get_json("/codette/cache/metrics").await;
        let held_mb = m["performance_dashboard"]["cache_efficiency"]["estimated_memory_mb"]
            .as_f64()
            .unwrap_or(-1.0);
        let (state, _) = redis_state(&daemon).await;
        let mib = |b: u64| b as f64 / MIB as f64;
        println!(
            "soak: {CLIENTS} clients, {:.1} s, {} requests = {:.0} req/s; {counts:?}; \
             hit rate {:.1}%; memory tier holds {held_mb} MiB, {} entries; redis {state}, \
             {} tier errors counted",
            elapsed.as_secs_f64(),
            counts.total(),
            counts.total() as f64 / elapsed.as_secs_f64(),
            (counts.memory + counts.redis) as f64 * 100.0 / counts.total().max(1) as f64,
            s["entries"],
            metric(
                &metrics_text(&daemon).await,
                "codette_cache_tier_errors_total{op=\"get\",tier=\"redis\"}"
            )
            .unwrap_or(0.0)
        );
        println!(
            "soak RSS: baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB); limit baseline + 16 MiB \
             cache + {:.0} MiB headroom = {:.1} MiB",
            mib(baseline),
            mib(peak),
            mib(peak.saturating_sub(baseline)),
            mib(HEADROOM),
            mib(baseline + 16 * MIB + HEADROOM)
        );
        assert_eq!(counts.errors, 0, "first error: {first_error:?}");
        assert_eq!(counts.other, 0, "answers with another source");
        assert!(
            counts.total() > 10_000,
            "too little load to mean anything: {counts:?}"
        );
        assert_eq!(
            num(&s, "/metrics/hits"),
            counts.memory + counts.redis,
            "{s}"
        );
        assert_eq!(
            num(&s, "/metrics/counters/hits_by_tier/memory"),
            counts.memory,
            "{s}"
        );
        assert_eq!(
            num(&s, "/metrics/counters/hits_by_tier/redis"),
            counts.redis,
            "{s}"
        );
        assert_eq!(num(&s, "/metrics/misses"), counts.origin, "{s}");
        assert_eq!(num(&s, "/metrics/counters/errors"), 0, "{s}");
        assert!(held_mb <= 16.0, "memory tier holds {held_mb} MiB");
        assert!(
            peak <= baseline + 16 * MIB + HEADROOM,
            "RSS peak {peak} over the bound"
        );
    });
}
