//! The chain's own tests: back-fill, fill-on-miss, what is stored.

use super::*;
use crate::origins::{SampleConfig, SampleOrigin};
use crate::tiers::{BuildContext, MemoryConfig, MemoryTier};

fn memory(metrics: &Arc<Metrics>) -> Tier {
    let config = MemoryConfig {
        max_entries: 100,
        max_bytes: 1 << 20,
        ttl_secs: None,
    };
    let ctx = BuildContext {
        metrics: Arc::clone(metrics),
        ttl: Duration::from_secs(60),
        stale_retention: Duration::ZERO,
        max_value_bytes: 1 << 20,
    };
    Tier::Memory(MemoryTier::new(&config, &ctx))
}

fn request(message: &str) -> Arc<ContextRequest> {
    Arc::new(ContextRequest {
        message: message.into(),
        filename: None,
    })
}

/// A hit in a lower tier is copied into the tiers above it; a miss fills them all.
#[tokio::test]
async fn hits_back_fill_and_misses_fill_every_tier() {
    let metrics = Arc::new(Metrics::new());
    let origin = Origin::Sample(SampleOrigin::new(&SampleConfig::default()).unwrap());
    let chain = Chain::new(
        Key::PREFIX.to_owned(),
        vec![memory(&metrics), memory(&metrics)],
        origin,
        BreakerSettings {
            failures: 5,
            open_for: Duration::from_secs(2),
        },
        Arc::clone(&metrics),
        Policy::default(),
    );
    let key = chain.key_for("reverb", None);
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    chain.tiers()[1]
        .put(&key, &body, &crate::tiers::Entry::PLAIN)
        .await
        .unwrap();
    assert!(chain.tiers()[0].get(&key).await.unwrap().is_none());

    let answer = chain.lookup(request("reverb")).await.unwrap();
    assert_eq!(answer.body, body);
    let upper = chain.tiers()[0].get(&key).await.unwrap();
    assert_eq!(upper.expect("back-filled").body, body);

    let miss = chain.lookup(request("compression")).await.unwrap();
    assert_eq!(miss.source, Source::Origin);
    let key = chain.key_for("compression", None);
    for tier in chain.tiers() {
        assert!(
            tier.get(&key).await.unwrap().is_some(),
            "stored in every tier"
        );
    }
}
