//! Answers follow the data: with `sql/invalidation.sql` installed and the daemons
//! LISTENing, a change to a row purges, on every daemon and in Redis, exactly the
//! answers that depended on it. Lost links (the Redis subscription, the LISTEN session,
//! a database restart) never leave an answer older than a change.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Answer, ask_body, original_key};
use crate::common::{Daemon, TestPostgres, TestRedis, postgres_origin, redis_tier, toml_str};
use crate::{STATUS, config, memory, poll, run};

const INVALIDATION_SQL: &str = include_str!("../../sql/invalidation.sql");
const USER_A: &str = "7a1e0c52-1111-4a4a-8a8a-0000000000aa";
const USER_B: &str = "7b2e0c52-2222-4b4b-8b8b-0000000000bb";
const FILE: &str = "mixing_notes.md";

fn database() -> TestPostgres {
    let pg = TestPostgres::start();
    pg.execute(INVALIDATION_SQL);
    for user in [USER_A, USER_B] {
        insert_chat(&pg, user, "first");
    }
    pg
}

fn insert_chat(pg: &TestPostgres, user: &str, content: &str) {
    pg.execute(&format!(
        "INSERT INTO public.chat_history (id, user_id, messages, updated_at) \
         VALUES (gen_random_uuid(), '{user}', '[{{\"content\": \"{content}\"}}]', now())"
    ));
}

/// Memory, Redis, PostgreSQL as origin, LISTENing on it.
fn member(redis: &TestRedis, pg: &TestPostgres) -> Daemon {
    let listen = format!("[invalidation.postgres]\nurl = {}\n\n", toml_str(&pg.url()));
    member_with(redis, pg, &listen)
}

/// The same, hearing database changes only through the broadcast of a member that
/// listens.
fn broadcast_only_member(redis: &TestRedis, pg: &TestPostgres) -> Daemon {
    member_with(redis, pg, "")
}

fn member_with(redis: &TestRedis, pg: &TestPostgres, listen: &str) -> Daemon {
    let origin = postgres_origin(&pg.url(), 2, 2_000);
    Daemon::start(&format!(
        "{}{listen}",
        config(&[memory(300), redis_tier(&redis.url(), 250, 300)], &origin)
    ))
}

/// Waits for the broadcast subscription and, when configured, the LISTEN.
async fn wait_listening(d: &Daemon) {
    let live = poll(Duration::from_secs(10), async || {
        let invalidation = &d.get_json(STATUS).await.1["invalidation"];
        let postgres = &invalidation["postgres"];
        (invalidation["subscribed"] == true
            && (postgres.is_null() || postgres["subscribed"] == true))
            .then_some(())
    });
    assert!(live.await.is_some(), "not listening:\n{}", d.logs());
}

async fn ask_for(d: &Daemon, message: &str, filename: Option<&str>) -> Answer {
    let answer = ask_body(d, &json!({ "message": message, "filename": filename })).await;
    assert_eq!(answer.status, 200, "{answer:?}\n{}", d.logs());
    answer
}

/// Fills `message`'s entry on every daemon (and Redis), checking each now hits memory.
async fn fill(group: &[Daemon], message: &str, filename: Option<&str>) {
    for d in group {
        ask_for(d, message, filename).await;
        assert_eq!(ask_for(d, message, filename).await.source(), "memory");
    }
}

/// Asks every daemon until each answer shows `changed`; gives the slowest wait.
async fn until_all_see(
    group: &[Daemon],
    message: &str,
    filename: Option<&str>,
    changed: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    for d in group {
        let seen = poll(Duration::from_secs(1), async || {
            changed(ask_for(d, message, filename).await.context()).then_some(())
        });
        assert!(
            seen.await.is_some(),
            "{message:?} still old after 1 s:\n{}",
            d.logs()
        );
    }
    started.elapsed()
}

fn chat_mentions(context: &Value, content: &str) -> bool {
    context["chat_history"].to_string().contains(content)
}

/// A chat message for user A purges A's answers on every daemon, in memory and Redis,
/// and leaves B's a hit; a `codette_files` update purges the answers naming that file;
/// a `codette` insert purges everything (any full-text result may change). The third
/// daemon does not listen: the listeners' broadcast carries the purges to it.
#[test]
fn database_changes_purge_what_depended_on_them() {
    run(async {
        let (pg, redis) = (database(), TestRedis::start());
        let group = vec![
            member(&redis, &pg),
            member(&redis, &pg),
            broadcast_only_member(&redis, &pg),
        ];
        for d in &group {
            wait_listening(d).await;
        }
        fill(&group, USER_A, None).await;
        fill(&group, USER_B, None).await;
        fill(&group, "mixing", Some(FILE)).await;

        insert_chat(&pg, USER_A, "second");
        let waited = until_all_see(&group, USER_A, None, |c| chat_mentions(c, "second")).await;
        println!("chat_history insert seen by all daemons within {waited:?}");
        let stored = redis.cmd(&["GET", &original_key(USER_A, None)]);
        assert!(
            stored.trim().is_empty() || stored.contains("second"),
            "Redis kept A's old answer: {stored}"
        );
        for d in &group {
            let b = ask_for(d, USER_B, None).await;
            assert_eq!(b.source(), "memory", "B's answer was purged too");
            assert_eq!(ask_for(d, "mixing", Some(FILE)).await.source(), "memory");
        }

        pg.execute(&format!(
            "UPDATE public.codette_files SET file_type = 'notes' WHERE filename = '{FILE}'"
        ));
        let waited = until_all_see(&group, "mixing", Some(FILE), |c| {
            c["file"]["file_type"] == "notes"
        })
        .await;
        println!("codette_files update seen by all daemons within {waited:?}");
        for d in &group {
            assert_eq!(ask_for(d, USER_B, None).await.source(), "memory");
        }

        pg.execute(
            "INSERT INTO public.codette (\"FileName\", \"ContentSnippet\") \
             VALUES ('new.md', 'Mixing with fresh ears after a break')",
        );
        let waited = until_all_see(&group, "mixing", Some(FILE), |c| {
            c["snippets"].to_string().contains("fresh ears")
        })
        .await;
        println!("codette insert seen by all daemons within {waited:?}");

        // A listener may hear a change first through another's broadcast: its own
        // notification (counted as it is applied) can land just after the answers show it.
        counts_at_least(&group[1], &["invalidation", "postgres", "received"], 3).await;
        counts_at_least(&group[2], &["invalidation", "received"], 3).await;
        let (_, status) = group[2].get_json(STATUS).await;
        assert!(status["invalidation"]["postgres"].is_null());
        let metrics = group[1].get_text("/metrics").await.1;
        assert!(
            metrics.contains(r#"codette_cache_invalidations_total{op="tags",source="database"}"#),
            "{metrics}"
        );
    });
}

/// Waits up to 2 s for the status figure at `path` to reach `n`.
async fn counts_at_least(d: &Daemon, path: &[&str], n: u64) {
    let figure = async || {
        let status = d.get_json(STATUS).await.1;
        path.iter().fold(&status, |v, p| &v[*p]).as_u64()
    };
    let reached = poll(Duration::from_secs(2), async || {
        (figure().await >= Some(n)).then_some(())
    });
    assert!(
        reached.await.is_some(),
        "{path:?} = {:?} < {n}",
        figure().await
    );
}

/// Ends `d`'s LISTEN session and, in the same statement, adds a chat message for
/// user A (so it lands in the gap); waits until `d` listens again.
async fn cut_off(pg: &TestPostgres, d: &Daemon, content: &str) {
    let instance = d.get_json(STATUS).await.1["instance_id"].clone();
    let losses = d.logs().matches("database LISTEN connection lost").count();
    pg.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'codette-cache {}'; \
         INSERT INTO public.chat_history (id, user_id, messages, updated_at) \
         VALUES (gen_random_uuid(), '{USER_A}', '[{{\"content\": \"{content}\"}}]', now())",
        instance.as_str().unwrap()
    ));
    let noticed = poll(Duration::from_secs(5), async || {
        (d.logs().matches("database LISTEN connection lost").count() > losses).then_some(())
    });
    assert!(noticed.await.is_some(), "loss not noticed:\n{}", d.logs());
    wait_listening(d).await;
}

/// Changes made while a daemon does not listen (its session killed, the database
/// restarted) are not served stale: it empties every tier after the gap and listens
/// again. A daemon starting while another listens keeps Redis warm.
#[test]
fn lost_links_leave_no_stale_answers() {
    run(async {
        let (mut pg, redis) = (database(), TestRedis::start());
        let one = member(&redis, &pg);
        wait_listening(&one).await;
        let group = std::slice::from_ref(&one);
        fill(group, USER_A, None).await;

        // The session dies and a change lands before it is back: no one saw it.
        cut_off(&pg, &one, "during the gap").await;
        until_all_see(group, USER_A, None, |c| chat_mentions(c, "during the gap")).await;
        assert!(one.logs().contains("database LISTEN connection lost"));

        // Redis pub/sub killed, then the database restarted: both come back.
        fill(group, USER_A, None).await;
        redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        let losses = one
            .logs()
            .matches("database LISTEN connection lost")
            .count();
        pg.restart();
        let noticed = poll(Duration::from_secs(5), async || {
            (one.logs()
                .matches("database LISTEN connection lost")
                .count()
                > losses)
                .then_some(())
        });
        assert!(
            noticed.await.is_some(),
            "restart not noticed:\n{}",
            one.logs()
        );
        wait_listening(&one).await;
        insert_chat(&pg, USER_A, "after the restart");
        until_all_see(group, USER_A, None, |c| {
            chat_mentions(c, "after the restart")
        })
        .await;

        // A second daemon that starts while the first listens keeps Redis (B's entry);
        // a lost session empties it, since no one can say the gap was covered.
        fill(group, USER_B, None).await;
        let b_key = original_key(USER_B, None);
        assert!(!redis.cmd(&["GET", &b_key]).trim().is_empty());
        let two = member(&redis, &pg);
        wait_listening(&two).await;
        assert!(
            !redis.cmd(&["GET", &b_key]).trim().is_empty(),
            "a covered start emptied Redis:\n{}",
            two.logs()
        );
        cut_off(&pg, &one, "covered").await;
        let both = [one, two];
        until_all_see(&both, USER_A, None, |c| chat_mentions(c, "covered")).await;
        assert!(redis.cmd(&["GET", &b_key]).trim().is_empty());
        let losses = both[0].get_text("/metrics").await.1;
        assert!(
            !losses.contains("codette_cache_invalidation_subscription_losses_total 0"),
            "{losses}"
        );
    });
}

/// A listener of another group (the same database and channel, another Redis) does not
/// cover a start: it keeps its own Redis current, not this one's, so the instance that
/// starts empties its Redis as if no one had listened.
#[test]
fn another_groups_listener_does_not_cover_a_start() {
    run(async {
        let (pg, redis) = (database(), TestRedis::start());
        let one = member(&redis, &pg);
        wait_listening(&one).await;
        let other = TestRedis::start();
        let key = original_key(USER_B, None);
        other.cmd(&[
            "SET",
            &key,
            r#"{"snippets":[],"file":null,"chat_history":[]}"#,
        ]);
        let two = member(&other, &pg);
        wait_listening(&two).await;
        assert!(
            other.cmd(&["GET", &key]).trim().is_empty(),
            "another group's listener covered this start:\n{}",
            two.logs()
        );
        drop(one);
    });
}
