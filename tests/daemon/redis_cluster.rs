//! The Redis Cluster tier on a real 6-node cluster (tests/common/redis_cluster.rs), one
//! shared fixture taken by one test at a time: the original's keys on every master,
//! a clear without KEYS, a master's failover under load, and the invalidation broadcast
//! of a group, which survives the loss of the node it listens on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{ask, ask_ok, original_key, wait_redis_state};
use crate::common::{ADMIN_TOKEN, Daemon, TestCluster, redis_cluster_tier, sample_origin};
use crate::{CLEAR, INVALIDATE, STATUS, config, memory, poll, run};

const TIER: &str = "redis_cluster";

fn cluster_only(cluster: &TestCluster) -> Daemon {
    Daemon::start(&config(
        &[redis_cluster_tier(&cluster.urls(), 50, 300)],
        &sample_origin(),
    ))
}

async fn status(d: &Daemon) -> Value {
    d.get_json(STATUS).await.1
}

/// The redis_cluster entry of `/codette/cache/status`'s `tiers`.
async fn tier_status(d: &Daemon) -> Value {
    let s = status(d).await;
    s["tiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tier"] == TIER).cloned())
        .unwrap_or_else(|| panic!("no {TIER} tier in {s}"))
}

/// Waits until `key` holds a value in the cluster (writes land after the reply).
async fn cluster_value(cluster: &TestCluster, key: &str) -> String {
    poll(Duration::from_secs(2), async || {
        Some(cluster.cluster_cmd(&["GET", key])).filter(|v| !v.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("{key} never reached the cluster"))
}

/// Keys land on all three masters under the original's names, `redis-cli -c` reads what
/// the daemon wrote and the daemon serves what `redis-cli -c` wrote; the status shows
/// the cluster's state and nodes.
#[test]
fn the_cluster_tier_shares_the_original_keys() {
    let cluster = TestCluster::shared();
    run(async {
        let d = cluster_only(&cluster);
        assert!(
            wait_redis_state(&d, "connected", Duration::from_secs(5)).await,
            "{}",
            d.logs()
        );
        let tier = tier_status(&d).await;
        assert_eq!(
            tier["cluster"],
            json!({"state": "ok", "known_nodes": 6, "masters": 3}),
            "{tier}"
        );
        assert_eq!(status(&d).await["current_mode"], "redis-only");

        for i in 0..30 {
            let message = format!("cluster spread {i}");
            let answer = ask_ok(&d, &message).await;
            assert_eq!(answer.source(), "origin");
            let stored = cluster_value(&cluster, &original_key(&message, None)).await;
            let stored: Value = serde_json::from_str(&stored).expect("plain JSON");
            assert_eq!(&stored, answer.context());
            assert_eq!(ask_ok(&d, &message).await.source(), TIER);
        }
        for port in cluster.masters() {
            let keys = cluster.keys_on(port, "context:*");
            assert!(!keys.is_empty(), "no key on master {port}");
        }

        let message = "written by the original server";
        let legacy = r#"{"snippets": [{"filename": "legacy.md", "snippet": "From redis-py."}], "file": null, "chat_history": []}"#;
        let key = original_key(message, None);
        assert_eq!(
            cluster.cluster_cmd(&["SET", &key, legacy, "EX", "300"]),
            "OK"
        );
        let hit = ask_ok(&d, message).await;
        assert_eq!((hit.source(), hit.key()), (TIER, key.as_str()));
        assert!(
            hit.text.starts_with(&format!("{{\"context\":{legacy},")),
            "not served byte for byte: {}",
            hit.text
        );
        let metrics = d.get_text("/metrics").await.1;
        assert!(
            metrics.contains("codette_cache_tier_up{tier=\"redis_cluster\"} 1"),
            "{metrics}"
        );
    });
}

/// A clear removes `context:*` from every master with SCAN + UNLINK; no node ever sees
/// KEYS.
#[test]
fn a_clear_walks_every_master_without_keys() {
    let cluster = TestCluster::shared();
    run(async {
        for &port in cluster.ports() {
            cluster.cmd(port, &["CONFIG", "RESETSTAT"]);
        }
        let d = cluster_only(&cluster);
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(5)).await);
        for i in 0..30 {
            let message = format!("cluster clear {i}");
            ask_ok(&d, &message).await;
            cluster_value(&cluster, &original_key(&message, None)).await;
        }
        let (code, v) = d.post_json(CLEAR, &json!({}), Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 200, "{v}");
        for port in cluster.masters() {
            assert_eq!(cluster.keys_on(port, "context:*"), Vec::<String>::new());
            let stats = cluster.cmd(port, &["INFO", "commandstats"]);
            assert!(
                stats.contains("cmdstat_scan:"),
                "no SCAN on {port}: {stats}"
            );
        }
        for &port in cluster.ports() {
            let stats = cluster.cmd(port, &["INFO", "commandstats"]);
            assert!(
                !stats.contains("cmdstat_keys:"),
                "KEYS sent to {port}: {stats}"
            );
        }
        assert_eq!(
            ask_ok(&d, "cluster clear 0").await.source(),
            "origin",
            "a cleared entry was served"
        );
    });
}

/// One answer a load task saw.
struct Seen {
    status: u16,
    source: String,
}

/// Under bounded load (8 clients, cluster tier only), a master is killed: every answer
/// is 200 (another master or the origin), the tier serves again within 3 s of its
/// replica's promotion, and the old master's return as a replica costs nothing either.
#[test]
fn a_master_failover_loses_no_request() {
    let mut cluster = TestCluster::shared();
    run(async {
        let d = Arc::new(cluster_only(&cluster));
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(5)).await);
        let messages: Vec<String> = (0..100).map(|i| format!("failover {i}")).collect();
        for m in &messages {
            ask_ok(&d, m).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let load: Vec<_> = (0..8)
            .map(|worker| {
                let (d, stop, messages) = (Arc::clone(&d), Arc::clone(&stop), messages.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut i = worker;
                    while !stop.load(Ordering::Relaxed) {
                        let a = ask(&d, &messages[i % messages.len()]).await;
                        seen.push(Seen {
                            status: a.status,
                            source: a.source().to_owned(),
                        });
                        i += 7;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    seen
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;

        let victim = *cluster
            .masters()
            .iter()
            .find(|p| **p != cluster.ports()[0])
            .expect("a master");
        cluster.kill(victim);
        let killed = Instant::now();
        let promoted = poll(Duration::from_secs(15), async || {
            let masters = cluster.masters();
            let ok = cluster
                .cluster_cmd(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok");
            (ok && masters.len() == 3 && !masters.contains(&victim)).then(Instant::now)
        })
        .await
        .expect("no replica was promoted");
        let back = poll(Duration::from_secs(10), async || {
            (tier_status(&d).await["status"] == "connected").then(Instant::now)
        })
        .await
        .unwrap_or_else(|| panic!("the tier never came back:\n{}", d.logs()));
        let after = back.saturating_duration_since(promoted);
        assert!(
            after <= Duration::from_secs(3),
            "tier back {after:?} after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart(victim);
        let rejoined = poll(Duration::from_secs(10), async || {
            let role = cluster.cmd(victim, &["ROLE"]);
            role.starts_with("slave").then_some(())
        })
        .await;
        assert!(rejoined.is_some(), "{victim} did not rejoin as a replica");
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let mut seen = Vec::new();
        for task in load {
            seen.extend(task.await.expect("load task"));
        }
        let failed = seen.iter().filter(|s| s.status != 200).count();
        let from_tier = seen.iter().filter(|s| s.source == TIER).count();
        eprintln!(
            "failover: {} requests, {failed} failed, {from_tier} from the cluster; \
             promotion {:?} after the kill, tier back {after:?} after it",
            seen.len(),
            promoted - killed
        );
        assert_eq!(failed, 0, "{}", d.logs());
        assert!(from_tier > 0);
        assert_eq!(
            ask_ok(&d, &messages[1]).await.source(),
            TIER,
            "not served from the cluster after the failover"
        );
    });
}

/// Two daemons on the cluster: an invalidate on one reaches the other's memory tier,
/// and still does after the node the subscriptions listen on is killed.
#[test]
fn invalidations_run_over_the_cluster() {
    let mut cluster = TestCluster::shared();
    run(async {
        let member = || {
            Daemon::start(&config(
                &[memory(300), redis_cluster_tier(&cluster.urls(), 50, 300)],
                &sample_origin(),
            ))
        };
        let group = [member(), member()];
        let subscribed = async |d: &Daemon| {
            poll(Duration::from_secs(10), async || {
                (status(d).await["invalidation"]["subscribed"] == true).then_some(())
            })
            .await
            .is_some()
        };
        let invalidated_everywhere = async |message: &str| {
            for d in &group {
                ask_ok(d, message).await;
                assert_eq!(ask_ok(d, message).await.source(), "memory");
            }
            let body = json!({ "message": message });
            let (code, v) = group[0]
                .post_json(INVALIDATE, &body, Some(ADMIN_TOKEN))
                .await;
            assert_eq!(code, 200, "{v}");
            poll(Duration::from_secs(2), async || {
                (ask_ok(&group[1], message).await.source() != "memory").then_some(())
            })
            .await
            .is_some()
        };
        for d in &group {
            assert!(subscribed(d).await, "{}", d.logs());
        }
        assert!(invalidated_everywhere("cluster broadcast").await);

        // The subscriptions listen on the first seed node: kill it.
        let first = cluster.ports()[0];
        cluster.kill(first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for d in &group {
            assert!(subscribed(d).await, "no new subscription:\n{}", d.logs());
        }
        assert!(
            invalidated_everywhere("after the node died").await,
            "{}",
            group[1].logs()
        );
        cluster.restart(first);
    });
}
