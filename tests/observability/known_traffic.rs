//! Known traffic: 8 distinct messages, then 42 repeats cycling over them, through memory
//! + Redis + the gateway; what the dashboards and `/metrics` tests read afterwards.

use std::time::Duration;

use serde_json::Value;

use crate::MESSAGES;
use crate::readings::{ask, ask_text, prometheus_text, sample, wait_for};
use crate::stack::Stack;

/// Origin delay of the known traffic: every miss must take at least this long.
pub(crate) const ORIGIN_DELAY: Duration = Duration::from_millis(50);
/// Length of `context:<md5>`, the key the memory tier stores.
pub(crate) const KEY_LEN: usize = 40;

/// The length of the context bytes as the daemon stored them (`{"context":<bytes>,"cache":...}`).
fn stored_body_len(response: &str) -> usize {
    let rest = response
        .strip_prefix(r#"{"context":"#)
        .expect("response starts with the context");
    rest.rfind(r#","cache":{"#)
        .expect("response has a cache object")
}

/// Starts memory + Redis + gateway (origin delay 50 ms) and drives the known traffic;
/// returns the stack and the bytes of each stored context body.
pub(crate) async fn known_traffic() -> (Stack, Vec<usize>) {
    let stack = Stack::dual("").await;
    stack.rest.set_delay(ORIGIN_DELAY);
    let d = &stack.daemon;
    let mut bodies = Vec::new();
    for message in MESSAGES {
        let (code, text) = ask_text(d, message).await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["cache"]["source"], "origin", "{v}");
        bodies.push(stored_body_len(&text));
    }
    for i in 0..42 {
        let v = ask(d, MESSAGES[i % MESSAGES.len()]).await;
        assert_eq!(v["cache"]["source"], "memory", "repeat {i}: {v}");
    }
    assert_eq!(
        stack.rest.calls(),
        8,
        "one origin call per distinct message"
    );
    // The Redis back-fill runs after each miss's response: wait for all 8 puts.
    wait_for(Duration::from_secs(2), "8 Redis puts", async || {
        let text = prometheus_text(d).await;
        let puts = r#"codette_cache_tier_operation_duration_seconds_count{op="put",tier="redis"}"#;
        (sample(&text, puts) == Some(8.0)).then_some(())
    })
    .await;
    (stack, bodies)
}
