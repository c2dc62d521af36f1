//! The memory tier's unit tests.
use super::*;
use crate::metrics::Metrics;

fn tier(max_entries: u64, max_bytes: u64, ttl: Duration) -> MemoryTier {
    let ctx = BuildContext {
        metrics: Arc::new(Metrics::new()),
        ttl,
        stale_retention: Duration::ZERO,
        max_value_bytes: 4 << 20,
    };
    MemoryTier::new(
        &MemoryConfig {
            max_entries,
            max_bytes,
            ttl_secs: None,
        },
        &ctx,
    )
}

fn key(i: usize) -> Key {
    Key::derive(&format!("message {i}"), None, false)
}

/// A stored body comes back byte for byte, with its age.
#[tokio::test]
async fn put_then_get_returns_the_same_bytes() {
    let t = tier(100, 1 << 20, Duration::from_secs(60));
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    t.put(&key(1), &body, &Entry::PLAIN).await.unwrap();
    let found = t.get(&key(1)).await.unwrap().expect("hit");
    assert_eq!(found.body, body);
    assert!(found.age < found.ttl);
    assert!(t.get(&key(2)).await.unwrap().is_none());
}

/// The entry-count bound holds even when bodies are tiny.
#[tokio::test]
async fn entry_bound_is_respected() {
    let t = tier(50, 1 << 20, Duration::from_secs(60));
    for i in 0..500 {
        t.put(&key(i), &Bytes::from_static(b"{}"), &Entry::PLAIN)
            .await
            .unwrap();
    }
    let size = t.size();
    assert!(size.entries.unwrap() <= 50, "{size:?}");
}

/// The byte bound holds when bodies are large.
#[tokio::test]
async fn byte_bound_is_respected() {
    let t = tier(10_000, 256 * 1024, Duration::from_secs(60));
    let body = Bytes::from(vec![b'x'; 10_000]);
    for i in 0..200 {
        t.put(&key(i), &body, &Entry::PLAIN).await.unwrap();
    }
    let size = t.size();
    assert!(size.bytes.unwrap() <= 256 * 1024, "{size:?}");
    assert!(size.entries.unwrap() >= 10, "{size:?}");
}

/// The size is the bytes entries hold, not their padded weight; removals give it back.
#[tokio::test]
async fn size_is_the_bytes_held() {
    let t = tier(100, 1 << 20, Duration::from_secs(60));
    let body = Bytes::from_static(br#"{"snippets":[]}"#);
    let one = (key(1).as_str().len() + body.len() + ENTRY_OVERHEAD_BYTES) as u64;
    t.put(&key(1), &body, &Entry::PLAIN).await.unwrap();
    t.put(&key(1), &body, &Entry::PLAIN).await.unwrap();
    t.put(&key(2), &body, &Entry::PLAIN).await.unwrap();
    assert_eq!(t.size().bytes, Some(2 * one));
    t.remove(&key(1)).await.unwrap();
    assert_eq!(t.size().bytes, Some(one));
    t.clear().await.unwrap();
    assert_eq!(t.size().bytes, Some(0));
}

/// A purge by tag removes the entries indexed under it, and only those.
#[tokio::test]
async fn purges_by_tag_remove_indexed_entries() {
    let t = tier(100, 1 << 20, Duration::from_secs(60));
    let body = Bytes::from_static(b"{}");
    let (a, b) = (Tag::User("a".into()), Tag::User("b".into()));
    let indexed = |tags| Entry {
        tags,
        indexed: tags,
        ..Entry::PLAIN
    };
    t.put(&key(1), &body, &indexed(std::slice::from_ref(&a)))
        .await
        .unwrap();
    t.put(&key(2), &body, &indexed(std::slice::from_ref(&b)))
        .await
        .unwrap();
    t.put(&key(3), &body, &Entry::PLAIN).await.unwrap();
    assert_eq!(t.remove_tags(std::slice::from_ref(&a)).await.unwrap(), 1);
    assert!(t.get(&key(1)).await.unwrap().is_none());
    assert!(t.get(&key(2)).await.unwrap().is_some());
    assert!(t.get(&key(3)).await.unwrap().is_some());
    // Replaced without tags: the key is no longer under b.
    t.put(&key(2), &body, &Entry::PLAIN).await.unwrap();
    assert_eq!(t.remove_tags(&[b]).await.unwrap(), 0);
    t.clear().await.unwrap();
    assert_eq!(t.index.len(), (0, 0));
}

/// An entry's own TTL and age (adapted, negative, back-filled) are kept and reported.
#[tokio::test]
async fn entries_keep_their_own_ttl_and_age() {
    let t = tier(100, 1 << 20, Duration::from_secs(60));
    let entry = Entry {
        ttl: Some(Duration::from_secs(600)),
        age: Duration::from_secs(100),
        copy: true,
        ..Entry::PLAIN
    };
    t.put(&key(1), &Bytes::from_static(b"{}"), &entry)
        .await
        .unwrap();
    let found = t.get(&key(1)).await.unwrap().expect("hit");
    // A copy: at most this tier's 60 s from now.
    assert_eq!(found.ttl, Duration::from_secs(160));
    assert!(found.age >= Duration::from_secs(100), "{:?}", found.age);
    let adapted = Entry {
        ttl: Some(Duration::from_secs(600)),
        ..Entry::PLAIN
    };
    t.put(&key(3), &Bytes::from_static(b"{}"), &adapted)
        .await
        .unwrap();
    let found = t.get(&key(3)).await.unwrap().expect("hit");
    assert_eq!(found.ttl, Duration::from_secs(600));
    // Already older than its TTL (and no retention): gone at once.
    let old = Entry {
        ttl: Some(Duration::from_millis(10)),
        age: Duration::from_millis(50),
        copy: true,
        ..Entry::PLAIN
    };
    t.put(&key(2), &Bytes::from_static(b"{}"), &old)
        .await
        .unwrap();
    t.sync();
    assert!(t.get(&key(2)).await.unwrap().is_none());
}

/// Entries disappear after TTL plus retention (real time; moka ignores tokio's clock).
#[tokio::test]
async fn entries_expire() {
    let t = tier(100, 1 << 20, Duration::from_millis(50));
    t.put(&key(1), &Bytes::from_static(b"{}"), &Entry::PLAIN)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    t.sync();
    assert!(t.get(&key(1)).await.unwrap().is_none());
}

/// An entry older than the host's monotonic clock (a copy made soon after a boot) keeps
/// only what its TTL has left: it expires when the original does, not a full TTL later.
#[tokio::test]
async fn an_entry_older_than_the_clock_keeps_what_it_has_left() {
    let t = tier(100, 1 << 20, Duration::from_secs(60));
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    let year = Duration::from_secs(365 * 24 * 3_600);
    let entry = Entry {
        ttl: Some(2 * year),
        age: year,
        ..Entry::PLAIN
    };
    t.put(&key(1), &body, &entry).await.unwrap();
    let found = t.get(&key(1)).await.unwrap().expect("hit");
    let left = found.ttl - found.age;
    assert!(
        left <= year && left > year - Duration::from_secs(60),
        "{left:?}"
    );
}
