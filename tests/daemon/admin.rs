//! Admin routes: forbidden without a configured token; clear and invalidate need it.

use std::time::Duration;

use serde_json::json;

use crate::client::{ask_ok, original_key, redis_keys, redis_value, stats, u, wait_redis_state};
use crate::common::{
    ADMIN_TOKEN, Daemon, TestRedis, admin_section, cache_section, log_section, redis_tier,
    sample_origin,
};
use crate::{CLEAR, INVALIDATE, REVERB, config, memory, run};

// ---------------------------------------------------------------------------------------
// 11. Admin routes
// ---------------------------------------------------------------------------------------

/// With no admin token configured, clear and invalidate are 403 (even with a bearer) and the cache is untouched.
#[test]
fn admin_routes_are_forbidden_without_a_configured_token() {
    run(async {
        let text = [
            log_section("info"),
            cache_section(300),
            memory(300),
            sample_origin(),
            admin_section(""),
        ]
        .concat();
        let d = Daemon::start(&text);
        ask_ok(&d, REVERB).await;
        let body = json!({ "message": REVERB });
        for bearer in [None, Some("anything"), Some("")] {
            let (status, v) = d.post_json(CLEAR, &json!({}), bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (403, &json!("admin_disabled")),
                "{v}"
            );
            let (status, v) = d.post_json(INVALIDATE, &body, bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (403, &json!("admin_disabled")),
                "{v}"
            );
        }
        assert_eq!(u(&stats(&d).await["entries"]), 1);
        assert_eq!(ask_ok(&d, REVERB).await.source(), "memory");
    });
}

/// Clear and invalidate answer 401 without the right bearer token; with it, clear empties memory and the `context:*` keys of Redis (other keys survive), invalidate removes one key from both tiers.
#[test]
fn clear_and_invalidate_need_the_token_and_reach_both_tiers() {
    run(async {
        let redis = TestRedis::start();
        let d = Daemon::start(&config(
            &[memory(300), redis_tier(&redis.url(), 250, 300)],
            &sample_origin(),
        ));
        assert!(wait_redis_state(&d, "connected", Duration::from_secs(2)).await);
        let messages = ["reverb on vocals", "drum bus compression", "stereo imaging"];
        let keys: Vec<String> = messages.iter().map(|m| original_key(m, None)).collect();
        for (m, k) in messages.iter().zip(&keys) {
            assert_eq!(ask_ok(&d, m).await.source(), "origin");
            redis_value(&redis, k).await;
        }
        assert_eq!(redis.cmd(&["SET", "session:keep", "not ours"]), "OK");

        for bearer in [None, Some("wrong-token"), Some("")] {
            let (status, v) = d.post_json(CLEAR, &json!({}), bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (401, &json!("unauthorized")),
                "{v}"
            );
        }
        let basic = d
            .client()
            .post(d.url(CLEAR))
            .basic_auth("admin", Some(ADMIN_TOKEN));
        assert_eq!(basic.send().await.unwrap().status().as_u16(), 401);
        assert_eq!(
            redis_keys(&redis, "context:*").len(),
            3,
            "cleared without the token"
        );
        assert_eq!(u(&stats(&d).await["entries"]), 3);

        let (status, v) = d.post_json(CLEAR, &json!({}), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "cleared", "{v}");
        assert_eq!(v["removed"], 6, "3 in memory + 3 in Redis: {v}");
        assert!(v["timestamp"].is_string(), "{v}");
        assert_eq!(redis_keys(&redis, "context:*"), Vec::<String>::new());
        assert_eq!(redis.cmd(&["GET", "session:keep"]), "not ours");
        assert_eq!(u(&stats(&d).await["entries"]), 0);
        assert_eq!(ask_ok(&d, messages[0]).await.source(), "origin");
        assert_eq!(ask_ok(&d, messages[1]).await.source(), "origin");
        redis_value(&redis, &keys[0]).await;
        redis_value(&redis, &keys[1]).await;

        let body = json!({ "message": messages[0] });
        for bearer in [None, Some("wrong-token")] {
            let (status, v) = d.post_json(INVALIDATE, &body, bearer).await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (401, &json!("unauthorized")),
                "{v}"
            );
        }
        assert_eq!(redis_keys(&redis, "context:*").len(), 2);
        let (status, v) = d.post_json(INVALIDATE, &body, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["status"], &v["key"]),
            (&json!("invalidated"), &json!(keys[0])),
            "{v}"
        );
        assert_eq!(redis.cmd(&["GET", &keys[0]]), "", "still in Redis");
        assert_eq!(redis_keys(&redis, "context:*"), vec![keys[1].clone()]);
        assert_eq!(
            ask_ok(&d, messages[0]).await.source(),
            "origin",
            "still in memory"
        );
        assert_eq!(
            ask_ok(&d, messages[1]).await.source(),
            "memory",
            "the other key went too"
        );
    });
}
