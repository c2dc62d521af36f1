//! The Redis tiers' fences, through the library against a real redis-server and a real
//! Redis Cluster: a write whose watch was taken before a purge of its key, of one of its
//! tags, or a clear, is refused, whichever instance purged; unrelated purges refuse
//! nothing; the value stays the plain JSON the original server reads. Tag sets shed
//! the keys of expired entries, and on a cluster the shedding refuses the writers it
//! takes out; a tag purge that failed halfway finds its keys again when retried.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codette_cache::key::Key;
use codette_cache::metrics::Metrics;
use codette_cache::tags::Tag;
use codette_cache::tiers::{BuildContext, Entry, Tier, TierConfig};
use figment::Figment;
use figment::providers::{Format, Toml};

use crate::common::{TestCluster, TestRedis, redis_cluster_tier, redis_tier};
use crate::run;

fn tier(toml: &str) -> Tier {
    #[derive(serde::Deserialize)]
    struct Tiers {
        tiers: Vec<TierConfig>,
    }
    let Tiers { tiers } = Figment::from(Toml::string(toml))
        .extract()
        .expect("tier config");
    tiers[0]
        .build(&BuildContext {
            metrics: Arc::new(Metrics::new()),
            ttl: Duration::from_secs(300),
            stale_retention: Duration::ZERO,
            max_value_bytes: 1 << 20,
        })
        .expect("redis tier")
}

/// Waits for the tiers, which connect in the background.
async fn connected(tiers: &[&Tier]) {
    for t in tiers {
        let up = crate::poll(Duration::from_secs(5), async || {
            t.health().is_serving().then_some(())
        });
        assert!(up.await.is_some(), "a tier never connected");
    }
}

/// What the other instance does between the writer's watch and its write.
enum Between {
    Nothing,
    PurgeTag(Tag),
    PurgeKey,
    Clear,
}

/// Watches, lets `purger` do `between`, writes; gives whether the value is there.
async fn write(writer: &Tier, purger: &Tier, key: &Key, tags: &[Tag], between: Between) -> bool {
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    let watch = writer.watch(key, tags).await.unwrap().expect("a watch");
    match between {
        Between::Nothing => {}
        Between::PurgeTag(tag) => drop(purger.remove_tags(&[tag]).await.unwrap()),
        Between::PurgeKey => purger.remove(key).await.unwrap(),
        Between::Clear => drop(purger.clear().await.unwrap()),
    }
    let entry = Entry {
        tags,
        indexed: &tags[2..],
        watch: Some(&watch),
        ..Entry::PLAIN
    };
    writer.put(key, &body, &entry).await.unwrap();
    writer.get(key).await.unwrap().is_some()
}

#[test]
fn purges_refuse_writes_watched_before_them() {
    run(async {
        let redis = TestRedis::start();
        let toml = redis_tier(&redis.url(), 1_000, 300);
        // Two instances of the group: one writes, the other purges.
        let (writer, purger) = (tier(&toml), tier(&toml));
        connected(&[&writer, &purger]).await;
        refusals(&writer, &purger, |key| redis.cmd(&["GET", key])).await;
    });
}

/// A version that expired between a watch and a purge (an hour after its last move)
/// does not count up from nothing again: the watch read 1, and the purge after the
/// expiry must not make it 1 again, or the pre-purge answer is stored.
#[test]
fn an_expired_version_never_repeats_a_value() {
    run(async {
        let redis = TestRedis::start();
        let toml = redis_tier(&redis.url(), 1_000, 300);
        let (writer, purger) = (tier(&toml), tier(&toml));
        connected(&[&writer, &purger]).await;
        let key = Key::derive("expired version", None, false);
        let version = format!("codette-cache:v:k:{}", key.as_str());
        let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
        purger.remove(&key).await.unwrap();
        let moved: u64 = redis.cmd(&["GET", &version]).trim().parse().unwrap();
        assert!(
            moved > 1_000_000_000_000_000,
            "started at the clock: {moved}"
        );
        redis.cmd(&["SET", &version, "1"]);
        let watch = writer.watch(&key, &[]).await.unwrap().expect("a watch");
        redis.cmd(&["DEL", &version]);
        purger.remove(&key).await.unwrap();
        let entry = Entry {
            watch: Some(&watch),
            ..Entry::PLAIN
        };
        writer.put(&key, &body, &entry).await.unwrap();
        assert!(
            writer.get(&key).await.unwrap().is_none(),
            "stored after a purge"
        );
    });
}

/// A tag's set keeps the keys of entries that have expired only until writes under the
/// tag find them: each write drops the dead members it samples, so a tag written
/// again and again does not hold every key it was ever written with.
#[test]
fn tag_sets_shed_expired_keys() {
    run(async {
        let redis = TestRedis::start();
        let t = tier(&redis_tier(&redis.url(), 1_000, 300));
        connected(&[&t]).await;
        let set = format!("codette-cache:t:{:032x}", popular().digest());
        shedding(&t, &set, |args| redis.cmd(args)).await;
    });
}

#[test]
fn tag_sets_shed_expired_keys_on_a_cluster() {
    let cluster = TestCluster::shared();
    run(async {
        let t = tier(&redis_cluster_tier(&cluster.urls(), 1_000, 300));
        connected(&[&t]).await;
        let set = format!("codette-cache:t:{{{:032x}}}", popular().digest());
        shedding(&t, &set, |args| cluster.cluster_cmd(args)).await;
    });
}

fn popular() -> Tag {
    Tag::File("popular.wav".into())
}

/// 20 entries under [`popular`] that expire, then 50 that stay; `set` is its tag set,
/// `raw` runs a command as another Redis client would.
async fn shedding(t: &Tier, set: &str, raw: impl Fn(&[&str]) -> String) {
    let tags = [Tag::Snippets, popular()];
    let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
    let put = async |i: usize, ttl: u64| {
        let key = Key::derive(&format!("question {i}"), Some("popular.wav"), false);
        let watch = t.watch(&key, &tags).await.unwrap().expect("a watch");
        let entry = Entry {
            tags: &tags,
            indexed: &tags[1..],
            watch: Some(&watch),
            ttl: Some(Duration::from_secs(ttl)),
            ..Entry::PLAIN
        };
        t.put(&key, &body, &entry).await.unwrap();
    };
    let members = || raw(&["SCARD", set]).trim().parse::<u64>().unwrap();
    for i in 0..20 {
        put(i, 1).await;
    }
    assert_eq!(members(), 20);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    for i in 20..70 {
        put(i, 300).await;
    }
    // 50 live keys, and of the 20 expired ones those no write sampled: each write
    // looks at two members, so one survives with a chance near 1 in 10, and more
    // than ten of them with one under a millionth. Without the trim: 70.
    let left = members();
    assert!((50..=60).contains(&left), "{left} members");
}

/// On a cluster a trim cannot check a writer's registration and remove it in one
/// step, so it purges the key it takes out: a writer registered under the tag before
/// the trim, whose tag is then purged, is refused although the purge no longer
/// finds its key in the set.
#[test]
fn a_trim_on_a_cluster_refuses_the_writers_it_unregisters() {
    let cluster = TestCluster::shared();
    run(async {
        let toml = redis_cluster_tier(&cluster.urls(), 1_000, 300);
        let (writer, trimmer) = (tier(&toml), tier(&toml));
        connected(&[&writer, &trimmer]).await;
        let tags = [Tag::Snippets, Tag::File("trimmed.wav".into())];
        let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
        let entry = |watch| Entry {
            tags: &tags,
            indexed: &tags[1..],
            watch: Some(watch),
            ..Entry::PLAIN
        };
        let slow = Key::derive("a slow origin call", Some("trimmed.wav"), false);
        let watch = writer.watch(&slow, &tags).await.unwrap().expect("a watch");

        // Another write under the tag samples the slow writer's key: no value yet.
        let other = Key::derive("another question", Some("trimmed.wav"), false);
        let other_watch = trimmer
            .watch(&other, &tags)
            .await
            .unwrap()
            .expect("a watch");
        trimmer
            .put(&other, &body, &entry(&other_watch))
            .await
            .unwrap();
        let set = format!("codette-cache:t:{{{:032x}}}", tags[1].digest());
        let member = cluster.cluster_cmd(&["SISMEMBER", &set, slow.as_str()]);
        assert_eq!(member.trim(), "0", "the trim did not take the key out");

        // The file changes; its purge finds only the other key.
        trimmer.remove_tags(&tags[1..]).await.unwrap();
        writer.put(&slow, &body, &entry(&watch)).await.unwrap();
        assert!(
            writer.get(&slow).await.unwrap().is_none(),
            "stored an answer from before the purge"
        );
    });
}

/// A purge by tag that fails halfway on a cluster (here the daemon's ACL user may take
/// keys out of tag sets but no longer move versions) leaves the set whole, so the
/// purge's retry still finds the entry.
#[test]
fn a_failed_tag_purge_on_a_cluster_is_found_again_by_its_retry() {
    let cluster = TestCluster::shared();
    run(async {
        let acl = |rules: &[&str]| {
            for port in cluster.ports() {
                let args = [&["ACL", "SETUSER", "purger"], rules].concat();
                cluster.cmd(*port, &args);
            }
        };
        acl(&["reset", "on", ">purger-pw", "~*", "&*", "+@all"]);
        let urls: Vec<String> = (cluster.ports().iter())
            .map(|port| format!("redis://purger:purger-pw@127.0.0.1:{port}"))
            .collect();
        let t = tier(&redis_cluster_tier(&urls, 1_000, 300));
        connected(&[&t]).await;
        let tags = [Tag::Snippets, Tag::File("retried.wav".into())];
        let key = Key::derive("purged twice", Some("retried.wav"), false);
        let body = Bytes::from_static(br#"{"snippets":[],"file":null,"chat_history":[]}"#);
        let watch = t.watch(&key, &tags).await.unwrap().expect("a watch");
        let entry = Entry {
            tags: &tags,
            indexed: &tags[1..],
            watch: Some(&watch),
            ..Entry::PLAIN
        };
        t.put(&key, &body, &entry).await.unwrap();
        assert!(t.get(&key).await.unwrap().is_some());

        acl(&[
            "resetkeys",
            "~context:*",
            "~codette-cache:t:*",
            "%R~codette-cache:v:*",
        ]);
        let failed = t.remove_tags(&tags[1..]).await;
        acl(&["resetkeys", "~*"]);
        assert!(failed.is_err(), "the purge moved versions it may not");
        connected(&[&t]).await;
        t.remove_tags(&tags[1..]).await.unwrap();
        let left = t.get(&key).await.unwrap();
        for port in cluster.ports() {
            cluster.cmd(*port, &["ACL", "DELUSER", "purger"]);
        }
        assert!(left.is_none(), "the retried purge did not find the entry");
    });
}

#[test]
fn purges_refuse_writes_watched_before_them_on_a_cluster() {
    let cluster = TestCluster::shared();
    run(async {
        let toml = redis_cluster_tier(&cluster.urls(), 1_000, 300);
        let (writer, purger) = (tier(&toml), tier(&toml));
        connected(&[&writer, &purger]).await;
        refusals(&writer, &purger, |key| cluster.cluster_cmd(&["GET", key])).await;
    });
}

/// The fence's cases, `raw` reading a key as another Redis client would.
async fn refusals(writer: &Tier, purger: &Tier, raw: impl Fn(&str) -> String) {
    let key = Key::derive("what did I ask before", Some("mix.wav"), false);
    let tags = [
        Tag::Snippets,
        Tag::User("what did I ask before".into()),
        Tag::File("mix.wav".into()),
        Tag::User("u-1".into()),
    ];
    let write = async |between| write(writer, purger, &key, &tags, between).await;

    assert!(write(Between::Nothing).await, "an unpurged write is stored");
    let stored = raw(key.as_str());
    assert!(
        stored.starts_with(r#"{"snippets":[]"#),
        "not plain JSON: {stored}"
    );
    let unrelated = Between::PurgeTag(Tag::User("someone else".into()));
    assert!(write(unrelated).await, "an unrelated purge refused it");

    for (purge, what) in [
        (Between::PurgeTag(Tag::File("mix.wav".into())), "its file"),
        (Between::PurgeTag(Tag::User("u-1".into())), "its user"),
        (Between::PurgeKey, "its key"),
        (Between::Clear, "everything"),
    ] {
        assert!(!write(purge).await, "stored after a purge of {what}");
        assert!(
            write(Between::Nothing).await,
            "a watch after the purge stores"
        );
    }
    // A purge by tag finds the entry through its index.
    assert_eq!(
        purger
            .remove_tags(&[Tag::File("mix.wav".into())])
            .await
            .unwrap(),
        1
    );
    assert!(writer.get(&key).await.unwrap().is_none());

    // No watch, no write: nothing can vouch for the value.
    let body = Bytes::from_static(b"{}");
    writer.put(&key, &body, &Entry::PLAIN).await.unwrap();
    assert!(writer.get(&key).await.unwrap().is_none());
}
