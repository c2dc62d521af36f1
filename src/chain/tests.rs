//! The chain's own tests: back-fill, fill-on-miss, what is stored.

use super::*;
use crate::origins::{SampleConfig, SampleOrigin};
use crate::tags::Purge;
use crate::tiers::{BuildContext, MemoryConfig, MemoryTier};
use bytes::Bytes;

fn memory(metrics: &Arc<Metrics>) -> Tier {
    memory_keeping(metrics, Duration::ZERO)
}

/// A memory tier that keeps entries `retention` past their TTL (for stale answers).
fn memory_keeping(metrics: &Arc<Metrics>, retention: Duration) -> Tier {
    let config = MemoryConfig {
        max_entries: 100,
        max_bytes: 1 << 20,
        ttl_secs: None,
    };
    let ctx = BuildContext {
        metrics: Arc::clone(metrics),
        ttl: Duration::from_secs(60),
        stale_retention: retention,
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

/// A stale entry purged while its request waits on a hung origin is not the fallback:
/// the purge said it is wrong, so the origin's error stands. Without a purge the same
/// wait ends in the stale answer.
#[tokio::test]
async fn a_stale_entry_purged_during_the_wait_is_not_served() {
    // An origin that takes connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config: crate::origins::SupabaseConfig =
        serde_json::from_value(serde_json::json!({"url": url, "api_key": "k", "timeout_ms": 5000}))
            .unwrap();
    let origin = Origin::Supabase(crate::origins::SupabaseOrigin::new(&config).unwrap());
    let metrics = Arc::new(Metrics::new());
    let policy = Policy {
        stale_if_error: Duration::from_secs(600),
        stale_if_error_wait: Duration::from_millis(300),
        ..Policy::default()
    };
    let chain = Chain::new(
        Key::PREFIX.to_owned(),
        vec![memory_keeping(&metrics, Duration::from_secs(600))],
        origin,
        BreakerSettings {
            failures: 0,
            open_for: Duration::from_secs(2),
        },
        Arc::clone(&metrics),
        policy,
    );
    let key = chain.key_for("reverb", None);
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    // Stored 90 s ago with a 60 s TTL: stale, within `stale_if_error`.
    let entry = crate::tiers::Entry {
        ttl: Some(Duration::from_secs(60)),
        age: Duration::from_secs(90),
        ..crate::tiers::Entry::PLAIN
    };
    chain.tiers()[0].put(&key, &body, &entry).await.unwrap();

    let stale = chain.lookup(request("reverb")).await.unwrap();
    assert_eq!(stale.source, Source::Stale(TierKind::Memory));

    let purge = Purge::Keys {
        keys: vec![key.clone()],
    };
    let (answer, _) = tokio::join!(chain.lookup(request("reverb")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        chain.purge(&purge, Reach::Everywhere).await
    });
    let failure = answer.expect_err("the purged entry is not served");
    assert_eq!(failure.key, key);
}
