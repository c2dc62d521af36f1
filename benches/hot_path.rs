//! Criterion benchmarks of the pieces every request touches: key derivation, a
//! memory-tier read, and one latency record (HDR + Prometheus).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codette_cache::key::Key;
use codette_cache::metrics::{Function, Metrics, Outcome};
use codette_cache::tiers::{BuildContext, CacheTier, MemoryConfig, MemoryTier, TierKind};
use criterion::{Criterion, criterion_group, criterion_main};

fn key_derivation(c: &mut Criterion) {
    c.bench_function("key_derive", |b| {
        b.iter(|| Key::derive(black_box("how to use reverb in mixing"), None, false))
    });
    c.bench_function("key_derive_normalised", |b| {
        b.iter(|| Key::derive(black_box("  How to use REVERB in mixing "), None, true))
    });
}

fn memory_get(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tier = MemoryTier::new(
        &MemoryConfig {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            ttl_secs: None,
        },
        &BuildContext {
            metrics: Arc::new(Metrics::new()),
            ttl: Duration::from_secs(300),
            stale_retention: Duration::ZERO,
            max_value_bytes: 4 << 20,
        },
    );
    let key = Key::derive("how to use reverb in mixing", None, false);
    let body = Bytes::from(vec![b'x'; 2048]);
    runtime
        .block_on(tier.put(&key, &body, &codette_cache::tiers::Entry::PLAIN))
        .expect("put");
    c.bench_function("memory_tier_get_hit", |b| {
        b.iter(|| {
            futures_util::FutureExt::now_or_never(tier.get(black_box(&key)))
                .expect("memory get is synchronous")
                .expect("no error")
        })
    });
}

fn record(c: &mut Criterion) {
    let metrics = Metrics::new();
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| {
            metrics.request(
                Function::ORIGINAL,
                Outcome::Hit(TierKind::Memory),
                black_box(Duration::from_micros(180)),
            )
        })
    });
}

criterion_group!(benches, key_derivation, memory_get, record);
criterion_main!(benches);
