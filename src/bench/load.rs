//! The load generator: N workers, each on its own keep-alive HTTP/1.1 connection (a
//! minimal wire client, precomputed requests, one event loop per core, only
//! `"source":"…"` read from each answer, so the client costs little next to the server). Closed loop by default; with `--rate` an
//! open loop whose latencies are measured from each request's intended start, so a
//! stalled server cannot hide its stall (coordinated omission).
//!
//! Longer than 400 lines by a few: the loops and the schedule they share read best in one file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

use super::progress::{Counter, Progress};
use super::wire::{Conn, get_request};
use crate::metrics::{Percentiles, empty_histogram as histogram};

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Zipf with this exponent (1.0 is typical of user queries).
    Zipf(f64),
    Uniform,
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "uniform" => Ok(Self::Uniform),
            None if s == "zipf" => Ok(Self::Zipf(1.0)),
            Some(("zipf", e)) => e
                .parse::<f64>()
                .ok()
                .filter(|e| *e > 0.0 && e.is_finite())
                .map(Self::Zipf)
                .ok_or_else(|| format!("zipf exponent {e:?} must be a number > 0")),
            _ => Err(format!("{s:?}: use zipf:1.0 or uniform")),
        }
    }
}

/// One load run's settings.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub url: String,
    pub path: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub keys: u64,
    pub distribution: KeyDistribution,
    pub rate: Option<f64>,
    /// Progress as a bar (stderr is a terminal) or as plain lines.
    pub progress_bar: bool,
    /// Prefix of every message, so runs do not share keys unless asked to.
    pub prefix: String,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub seconds: f64,
    pub throughput_rps: f64,
    /// Answers from any tier (memory, redis, stale) over all answers.
    pub hit_ratio: f64,
    pub by_source: BTreeMap<String, Percentiles>,
    pub all: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// Every answer's latency (µs), for `--plot`.
    #[serde(skip)]
    pub latencies: Histogram<u64>,
}

/// The `message` of key `k`.
pub fn message(prefix: &str, k: u64) -> String {
    format!("{prefix}query {k}")
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Worker {
    histograms: BTreeMap<String, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    requests: u64,
}

/// The `cache.source` value in a context answer, without parsing the JSON.
pub fn source_of(body: &[u8]) -> Option<&str> {
    const NEEDLE: &[u8] = b"\"source\":\"";
    let start = memchr::memmem::rfind(body, NEEDLE)? + NEEDLE.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// Runs the plan.
///
/// # Errors
/// When the URL is unusable.
pub async fn run(plan: &LoadPlan) -> anyhow::Result<LoadResult> {
    let uri: hyper::Uri = plan.url.parse().context("--url is not a URL")?;
    let authority = uri
        .authority()
        .context("--url needs host:port")?
        .as_str()
        .to_owned();
    let n = plan.keys.max(1);
    // Every request prepared once, as bytes.
    let paths: Vec<Vec<u8>> = (1..=n)
        .map(|k| {
            let path = format!(
                "{}?message={}",
                plan.path,
                url_encode(&message(&plan.prefix, k))
            );
            get_request(&authority, &path)
        })
        .collect();
    let paths = std::sync::Arc::new(paths);
    let started = Instant::now();
    let deadline = started + plan.duration;
    let progress = Progress::start(plan.duration, plan.progress_bar);
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.concurrency as f64 / r));
    // Like wrk's threads: one single-threaded event loop per core, each with its share
    // of the connections, so no request pays for work stealing or cross-thread wake-ups.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(plan.concurrency);
    let mut loops = Vec::with_capacity(threads);
    for t in 0..threads {
        let (paths, authority, distribution) =
            (paths.clone(), authority.clone(), plan.distribution);
        let ids: Vec<u64> = (t..plan.concurrency)
            .step_by(threads)
            .map(|w| w as u64)
            .collect();
        let counters: Vec<Counter> = ids.iter().map(|_| progress.counter()).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let workers = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| {
                        let workers = ids.into_iter().zip(counters).map(|(id, counter)| {
                            worker(
                                id,
                                &authority,
                                &paths,
                                distribution,
                                deadline,
                                interval,
                                counter,
                            )
                        });
                        rt.block_on(futures_util::future::join_all(workers))
                    });
                let _ = tx.send(workers);
            })
            .context("cannot start a load thread")?;
        loops.push(rx);
    }
    let mut by_source: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut requests = 0;
    let mut workers = Vec::with_capacity(plan.concurrency);
    for rx in loops {
        let done = rx.await.context("a load thread panicked")?;
        workers.extend(done.context("cannot start a load thread's runtime")?);
    }
    for w in workers {
        requests += w.requests;
        for (k, h) in w.histograms {
            by_source.entry(k).or_insert_with(histogram).add(&h).ok();
        }
        for (k, v) in w.errors {
            *errors.entry(k).or_insert(0) += v;
        }
    }
    progress.finish();
    let seconds = started
        .elapsed()
        .as_secs_f64()
        .min(plan.duration.as_secs_f64().max(1e-9) + 1.0);
    let mut all = histogram();
    for h in by_source.values() {
        all.add(h).ok();
    }
    let answered = all.len();
    let hits: u64 = by_source
        .iter()
        .filter(|(k, _)| k.as_str() != "origin")
        .map(|(_, h)| h.len())
        .sum();
    Ok(LoadResult {
        requests,
        seconds,
        throughput_rps: answered as f64 / seconds,
        hit_ratio: if answered == 0 {
            0.0
        } else {
            hits as f64 / answered as f64
        },
        by_source: by_source
            .iter()
            .map(|(k, h)| (k.clone(), Percentiles::of(h)))
            .collect(),
        all: Percentiles::of(&all),
        errors,
        latencies: all,
    })
}

async fn worker(
    id: u64,
    authority: &str,
    paths: &[Vec<u8>],
    distribution: KeyDistribution,
    deadline: Instant,
    interval: Option<Duration>,
    mut counter: Counter,
) -> Worker {
    let authority = authority.to_owned();
    let authority = authority.as_str();
    let mut out = Worker {
        histograms: BTreeMap::new(),
        errors: BTreeMap::new(),
        requests: 0,
    };
    let mut rng = SmallRng::seed_from_u64(0x5eed ^ id);
    let zipf = match distribution {
        KeyDistribution::Zipf(e) => Zipf::new(paths.len() as f64, e).ok(),
        KeyDistribution::Uniform => None,
    };
    let mut conn: Option<Conn> = None;
    // Open loop: each worker's schedule starts at a staggered offset.
    let mut next =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64((id % 97) as f64 / 97.0));
    while Instant::now() < deadline {
        let intended = match interval {
            Some(i) => {
                pace_until(next).await;
                let at = next;
                next += i;
                at
            }
            None => Instant::now(),
        };
        let k = match &zipf {
            Some(z) => (z.sample(&mut rng) as usize).clamp(1, paths.len()) - 1,
            None => rand::Rng::random_range(&mut rng, 0..paths.len()),
        };
        if conn.is_none() {
            match Conn::connect(authority).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *out.errors
                        .entry(format!("connect: {}", e.kind()))
                        .or_insert(0) += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        out.requests += 1;
        let outcome = match c.request(&paths[k]).await {
            Ok((200, body)) => Ok(source_of(body).unwrap_or("ceiling")),
            Ok((status, _)) => Err(format!("status {status}")),
            Err(kind) => {
                conn = None;
                Err(kind.to_owned())
            }
        };
        match outcome {
            Ok(source) => {
                let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
                match out.histograms.get_mut(source) {
                    Some(h) => h.saturating_record(micros.max(1)),
                    None => {
                        let mut h = histogram();
                        h.saturating_record(micros.max(1));
                        out.histograms.insert(source.to_owned(), h);
                    }
                }
            }
            Err(kind) => *out.errors.entry(kind).or_insert(0) += 1,
        }
        counter.one();
    }
    out
}

/// Waits until `at`, to within microseconds. tokio's timer has millisecond ticks and
/// wakes up to a tick late, which an open loop, timing each request from its intended
/// start, would count as the server's latency (about 1 ms on every request, measured):
/// so the timer takes the wait to 2 ms before `at`, and yielding does the rest. The
/// generator's own core is busier for it, never the server's.
async fn pace_until(at: Instant) {
    if let Some(early) = at.checked_sub(Duration::from_millis(2)) {
        if Instant::now() < early {
            tokio::time::sleep_until(early.into()).await;
        }
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// A plain-text table of one or more results side by side.
pub fn table(columns: &[(&str, &LoadResult)]) -> String {
    let mut out = String::new();
    out.push_str(&format!("  {:<24}", ""));
    for (name, _) in columns {
        out.push_str(&format!("{name:>22}"));
    }
    out.push('\n');
    let mut row = |label: &str, cell: &dyn Fn(&LoadResult) -> String| {
        out.push_str(&format!("  {label:<24}"));
        for (_, r) in columns {
            out.push_str(&format!("{:>22}", cell(r)));
        }
        out.push('\n');
    };
    row("throughput (req/s)", &|r| {
        format!("{:.0}", r.throughput_rps)
    });
    row("hit ratio (client)", &|r| {
        format!("{:.1}%", r.hit_ratio * 100.0)
    });
    row("p50 / p99 all (ms)", &|r| {
        format!("{:.3} / {:.3}", r.all.p50_ms, r.all.p99_ms)
    });
    let mut sources: Vec<&String> = columns
        .iter()
        .flat_map(|(_, r)| r.by_source.keys())
        .collect();
    sources.sort();
    sources.dedup();
    for s in sources {
        row(&format!("{s}: count"), &|r| {
            r.by_source
                .get(s)
                .map_or("-".into(), |p| p.count.to_string())
        });
        for (label, pick) in [
            (
                "p50",
                (|p: &Percentiles| p.p50_ms) as fn(&Percentiles) -> f64,
            ),
            ("p90", |p| p.p90_ms),
            ("p99", |p| p.p99_ms),
            ("p999", |p| p.p999_ms),
            ("max", |p| p.max_ms),
        ] {
            row(&format!("{s}: {label} (ms)"), &|r| {
                r.by_source
                    .get(s)
                    .map_or("-".into(), |p| format!("{:.3}", pick(p)))
            });
        }
    }
    row("errors", &|r| {
        if r.errors.is_empty() {
            "0".into()
        } else {
            r.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zipf:1.0` and `uniform` parse; nonsense is a clear error.
    #[test]
    fn distributions_parse() {
        assert_eq!("zipf:1.0".parse(), Ok(KeyDistribution::Zipf(1.0)));
        assert_eq!("uniform".parse(), Ok(KeyDistribution::Uniform));
        assert!("zipf:-1".parse::<KeyDistribution>().is_err());
        assert!("gauss".parse::<KeyDistribution>().is_err());
    }

    /// Zipf sampling favours low keys and stays in range.
    #[test]
    fn zipf_skews_to_the_head() {
        let z = Zipf::new(1000.0, 1.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<u64> = (0..10_000).map(|_| z.sample(&mut rng) as u64).collect();
        assert!(draws.iter().all(|&k| (1..=1000).contains(&k)));
        let head = draws.iter().filter(|&&k| k <= 10).count();
        assert!(head > 3_000, "{head} of 10000 in the top 10 keys");
    }

    /// The source is read from the answer's cache object without parsing it.
    #[test]
    fn source_is_found() {
        let body =
            br#"{"context":{"source":"fake"},"cache":{"hit":true,"source":"memory","key":"k"}}"#;
        assert_eq!(source_of(body), Some("memory"));
        assert_eq!(source_of(b"{}"), None);
        assert_eq!(url_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
