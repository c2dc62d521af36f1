//! Several daemons on one Redis form a group: an invalidate or clear on one reaches the
//! memory tier of every other, and a lost subscription empties the memory tier.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::ask_ok;
use crate::common::{ADMIN_TOKEN, Daemon, TestRedis, redis_tier, sample_origin};
use crate::{CLEAR, INVALIDATE, STATUS, config, memory, poll, run};

fn group_member(redis: &TestRedis) -> Daemon {
    Daemon::start(&config(
        &[memory(300), redis_tier(&redis.url(), 250, 300)],
        &sample_origin(),
    ))
}

async fn status(d: &Daemon) -> Value {
    d.get_json(STATUS).await.1
}

/// Whether `d` reports `subscribed == want` within `within`.
async fn reaches_subscribed(d: &Daemon, want: bool, within: Duration) -> bool {
    poll(within, async || {
        (status(d).await["invalidation"]["subscribed"] == want).then_some(())
    })
    .await
    .is_some()
}

async fn wait_subscribed(d: &Daemon) {
    let live = reaches_subscribed(d, true, Duration::from_secs(5)).await;
    assert!(live, "never subscribed:\n{}", d.logs());
}

/// A subscribed group member whose memory tier holds the answer to `message`.
async fn member_holding(redis: &TestRedis, message: &str) -> Daemon {
    let d = group_member(redis);
    wait_subscribed(&d).await;
    ask_ok(&d, message).await;
    assert_eq!(ask_ok(&d, message).await.source(), "memory");
    d
}

/// Three daemons: an invalidate or a clear on the first is applied to the others' memory
/// tiers, no daemon serves the old entry 50 ms after the admin call returned, and at 200
/// invalidations/s under hits the lag stays under 50 ms at p99.
#[test]
fn invalidations_reach_every_instance() {
    run(async {
        let redis = TestRedis::start();
        let group: Vec<Daemon> = (0..3).map(|_| group_member(&redis)).collect();
        for d in &group {
            wait_subscribed(d).await;
        }
        let ids: Vec<Value> = futures_util::future::join_all(group.iter().map(status))
            .await
            .into_iter()
            .map(|s| s["instance_id"].clone())
            .collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );

        let message = "reverb across the group";
        for d in &group {
            ask_ok(d, message).await;
            assert_eq!(ask_ok(d, message).await.source(), "memory");
        }
        let body = json!({ "message": message });
        let (code, _) = group[0]
            .post_json(INVALIDATE, &body, Some(ADMIN_TOKEN))
            .await;
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for d in &group {
            assert_ne!(
                ask_ok(d, message).await.source(),
                "memory",
                "old entry served"
            );
        }

        // 200 invalidations in about a second while the others serve hits.
        let hot = "hot question";
        for d in &group[1..] {
            ask_ok(d, hot).await;
        }
        let hits = async {
            let started = Instant::now();
            let mut served = 0;
            while started.elapsed() < Duration::from_millis(1_200) {
                for d in &group[1..] {
                    assert_eq!(ask_ok(d, hot).await.status, 200);
                    served += 1;
                }
            }
            served
        };
        let invalidations = async {
            let started = Instant::now();
            for i in 0..200u64 {
                let body = json!({ "message": format!("churn {i}") });
                let (code, _) = group[0]
                    .post_json(INVALIDATE, &body, Some(ADMIN_TOKEN))
                    .await;
                assert_eq!(code, 200);
                let due = started + Duration::from_millis(5 * (i + 1));
                tokio::time::sleep_until(due.into()).await;
            }
        };
        let (served, ()) = tokio::join!(hits, invalidations);
        let applied = poll(Duration::from_secs(2), async || {
            let all = futures_util::future::join_all(group[1..].iter().map(status)).await;
            all.iter()
                .all(|s| s["invalidation"]["received"].as_u64() >= Some(201))
                .then_some(all)
        })
        .await
        .expect("not every invalidation arrived");
        for s in &applied {
            let lag = &s["invalidation"]["lag"];
            println!("invalidation lag at 200/s with {served} hits served: {lag}");
            assert!(lag["p99_ms"].as_f64().unwrap() < 50.0, "{lag}");
        }

        // A clear empties every memory tier too.
        for d in &group[1..] {
            assert_eq!(ask_ok(d, hot).await.source(), "memory");
        }
        let (code, _) = group[0]
            .post_json(CLEAR, &json!({}), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for d in &group[1..] {
            assert_ne!(ask_ok(d, hot).await.source(), "memory");
        }
    });
}

/// `CLIENT KILL TYPE pubsub`: each daemon empties its memory tier (messages may have been
/// lost), says it is unsubscribed, and subscribes again by itself.
#[test]
fn a_lost_subscription_empties_the_memory_tier() {
    run(async {
        let redis = TestRedis::start();
        let message = "kept until the link drops";
        let d = member_holding(&redis, message).await;

        let killed = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert_eq!(killed, "1", "one subscriber connection");
        let back = reaches_subscribed(&d, true, Duration::from_secs(5)).await;
        assert!(back, "did not subscribe again:\n{}", d.logs());
        assert!(d.logs().contains("invalidation subscription lost"));
        let after = ask_ok(&d, message).await;
        assert_ne!(
            after.source(),
            "memory",
            "served an entry from before the gap"
        );
        let metrics = d.client().get(d.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(text.contains("codette_cache_invalidation_subscription_losses_total 1"));
    });
}

/// A Redis that hangs (SIGSTOP) ends no connection, yet delivers no message: the
/// heartbeat notices within seconds, the memory tier is emptied and the daemon says it
/// is unsubscribed, then subscribes again once Redis answers.
#[test]
fn a_hung_subscription_is_noticed() {
    run(async {
        let redis = TestRedis::start();
        let message = "kept until the server hangs";
        let d = member_holding(&redis, message).await;

        redis.pause();
        let noticed = reaches_subscribed(&d, false, Duration::from_secs(6)).await;
        let after = ask_ok(&d, message).await;
        redis.resume();
        assert!(noticed, "a hung server went unnoticed:\n{}", d.logs());
        assert_ne!(
            after.source(),
            "memory",
            "served an entry that no invalidation could reach"
        );
        wait_subscribed(&d).await;
        assert!(d.logs().contains("stopped answering PING"), "{}", d.logs());
    });
}

/// A member that cannot resubscribe (its Redis user lost the channel) while Redis
/// answers: what it caches meanwhile and another member invalidates is not served from
/// its memory tier (the message never reaches it), because it reads Redis instead,
/// where the invalidation did reach, until it hears again.
#[test]
fn a_member_that_cannot_hear_reads_only_redis() {
    run(async {
        let redis = TestRedis::start();
        let acl = |rules: &[&str]| {
            let args = [&["ACL", "SETUSER", "deaf"][..], rules].concat();
            assert_eq!(redis.cmd(&args), "OK");
        };
        acl(&["on", ">pw", "~*", "&*", "+@all"]);
        let url = format!("redis://deaf:pw@127.0.0.1:{}/0", redis.port());
        let deaf = Daemon::start(&config(
            &[memory(300), redis_tier(&url, 250, 300)],
            &sample_origin(),
        ));
        let other = group_member(&redis);
        wait_subscribed(&deaf).await;
        wait_subscribed(&other).await;

        // Redis drops the subscriber of a user that loses the channel; resubscribing fails.
        acl(&["resetchannels"]);
        redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub", "USER", "deaf"]);
        let lost = reaches_subscribed(&deaf, false, Duration::from_secs(5)).await;
        assert!(lost, "still subscribed:\n{}", deaf.logs());
        // redis-rs takes the refused SUBSCRIBE for a success: only the probe tells.
        let warned = poll(Duration::from_secs(5), async || {
            deaf.logs()
                .contains("invalidation subscribe failed")
                .then_some(())
        })
        .await;
        assert!(warned.is_some(), "{}", deaf.logs());
        assert_eq!(status(&deaf).await["invalidation"]["subscribed"], false);
        let message = "cached while it could not hear";
        assert_eq!(ask_ok(&deaf, message).await.source(), "origin");
        let (code, _) = other
            .post_json(
                INVALIDATE,
                &json!({ "message": message }),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(code, 200);
        assert_eq!(
            ask_ok(&deaf, message).await.source(),
            "origin",
            "served an entry another instance had invalidated"
        );
        assert_eq!(ask_ok(&deaf, message).await.source(), "redis");
        assert_eq!(status(&deaf).await["invalidation"]["subscribed"], false);

        // Hearing again, it empties its memory tier and serves from it once more.
        acl(&["allchannels"]);
        wait_subscribed(&deaf).await;
        ask_ok(&deaf, message).await;
        assert_eq!(ask_ok(&deaf, message).await.source(), "memory");
    });
}
