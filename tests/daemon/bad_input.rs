//! Bad input: JSON errors for bad requests, and the daemon keeps serving.

use serde_json::json;

use crate::client::{Answer, ask_get, ask_ok, stats, u};
use crate::common::{Daemon, sample_origin};
use crate::{CONTEXT, REVERB, STATS, config, memory, run};

// ---------------------------------------------------------------------------------------
// 10. Bad input
// ---------------------------------------------------------------------------------------

/// Every bad request gets `{"error": {"code", "message"}}` with the right status (400/404/405/413), and the daemon serves normally afterwards.
#[test]
fn bad_requests_get_json_errors_and_the_daemon_keeps_serving() {
    run(async {
        let d = Daemon::start(&config(&[memory(300)], &sample_origin()));
        let c = d.client();
        let url = d.url(CONTEXT);
        let json_post = |body: String| {
            c.post(&url)
                .header("content-type", "application/json")
                .body(body)
        };
        let cases = [
            (
                "malformed JSON",
                json_post(r#"{"message": "reverb""#.into()),
                400,
                "invalid_body",
            ),
            (
                "missing message",
                c.post(&url).json(&json!({"filename": "a.ts"})),
                400,
                "invalid_body",
            ),
            (
                "non-string message",
                c.post(&url).json(&json!({"message": 42})),
                400,
                "invalid_body",
            ),
            (
                "message over 8 KiB",
                c.post(&url)
                    .json(&json!({"message": "a".repeat(8 * 1024 + 1)})),
                413,
                "payload_too_large",
            ),
            (
                "body over 64 KiB",
                c.post(&url)
                    .json(&json!({"message": "reverb", "pad": "x".repeat(70_000)})),
                413,
                "payload_too_large",
            ),
            (
                "unknown route",
                c.get(d.url("/codette/nothing-here")),
                404,
                "not_found",
            ),
            (
                "wrong method",
                c.put(&url).json(&json!({"message": "reverb"})),
                405,
                "method_not_allowed",
            ),
            (
                "POST to a GET route",
                c.post(d.url(STATS)),
                405,
                "method_not_allowed",
            ),
            (
                "empty message",
                c.post(&url).json(&json!({"message": ""})),
                400,
                "empty_message",
            ),
            (
                "blank message",
                c.post(&url).json(&json!({"message": " \t\n"})),
                400,
                "empty_message",
            ),
            (
                "NUL in message",
                c.post(&url).json(&json!({"message": "rev\u{0}erb"})),
                400,
                "nul_character",
            ),
            (
                "NUL in a GET message",
                c.get(&url).query(&[("message", "a\u{0}b")]),
                400,
                "nul_character",
            ),
            ("GET without message", c.get(&url), 400, "invalid_query"),
        ];
        for (what, request, status, code) in cases {
            let resp = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let content_type = resp.headers().get("content-type").cloned();
            let connection = resp.headers().get("connection").cloned();
            let a = Answer::from(resp).await;
            if status == 413 {
                // The body may be left unread: the client must not reuse the connection.
                assert_eq!(
                    connection.as_ref().and_then(|v| v.to_str().ok()),
                    Some("close"),
                    "{what}"
                );
            }
            assert_eq!(
                (a.status, a.error_code()),
                (status, code),
                "{what}: {}",
                a.text
            );
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{what}"
            );
            let message = a.body["error"]["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{what}: no message: {}", a.text);
        }
        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        assert_eq!(ask_get(&d, REVERB, None).await.source(), "memory");
        assert_eq!(d.get_json("/healthz").await.0, 200);
        assert_eq!(
            u(&stats(&d).await["metrics"]["total_requests"]),
            2,
            "bad requests counted"
        );
        assert!(!d.logs().contains("panicked"), "{}", d.logs());
    });
}
