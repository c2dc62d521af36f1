//! Warming: a `[warm] file` read at start-up (with `/readyz` held until it is done),
//! the admin route `POST /codette/cache/warm`, and the `codette-cache warm` tool. One
//! list format: JSON lines or plain messages; a bad line is named by its number.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::client::{ask_body, stats, u, wait_ready};
use crate::common::{ADMIN_TOKEN, API_KEY, Daemon, Postgrest, TestPostgres, toml_str};
use crate::{config, memory, run, supabase};

const LIST: &str = "how to use reverb in mixing\n\
    {\"message\": \"audio analysis\", \"filename\": \"effect_chain.ts\"}\n\
    \n\
    {\"message\": \"compression techniques\", \"session_id\": \"s-1\"}\n";

fn requests() -> Vec<Value> {
    vec![
        serde_json::json!({"message": "how to use reverb in mixing"}),
        serde_json::json!({"message": "audio analysis", "filename": "effect_chain.ts"}),
        serde_json::json!({"message": "compression techniques"}),
    ]
}

async fn all_hits(d: &Daemon) {
    for request in requests() {
        let answer = ask_body(d, &request).await;
        assert_eq!(
            answer.source(),
            "memory",
            "{request} not warmed\n{}",
            d.logs()
        );
    }
}

/// The start-up list (with one bad line, logged and skipped) is warmed before
/// `/readyz` says ready; every request in it is then a memory hit.
#[test]
fn the_start_up_list_is_warm_before_ready() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        rest.set_delay(Duration::from_millis(500));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warm.jsonl");
        std::fs::write(&file, format!("{LIST}{{\"message\": 7}}\n")).unwrap();
        let warm = format!(
            "[warm]\nfile = {}\nconcurrency = 1\nready_after = true\n\n",
            toml_str(&file.display().to_string())
        );
        let d = Daemon::start(&format!(
            "{}{warm}",
            config(&[memory(300)], &supabase(&rest))
        ));
        let (code, body) = d.get_json("/readyz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body["reasons"].to_string().contains("warming"), "{body}");
        let ready = wait_ready(&d, Duration::from_secs(10)).await;
        assert!(ready, "never ready:\n{}", d.logs());
        assert_eq!(rest.calls(), 3);
        all_hits(&d).await;
        assert!(d.logs().contains("line 5"), "{}", d.logs());
        let metrics = d.get_text("/metrics").await.1;
        assert!(
            metrics.contains(r#"codette_cache_refreshes_total{reason="warm"} 3"#),
            "{metrics}"
        );
        // Warming is not traffic: the original's counters saw only the three hits.
        assert_eq!(u(&stats(&d).await["metrics"]["hits"]), 3);
    });
}

/// `POST /codette/cache/warm` needs the token, refuses a list with a bad line (naming
/// it) or no line, and answers with what it did.
#[test]
fn the_admin_route_warms_a_list() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config(&[memory(300)], &supabase(&rest)));
        let post = async |body: &str, token: Option<&str>| {
            let mut request = d
                .client()
                .post(d.url("/codette/cache/warm"))
                .body(body.to_owned());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let code = response.status().as_u16();
            (code, response.json::<Value>().await.unwrap())
        };
        assert_eq!(post(LIST, None).await.0, 401);
        let (code, body) = post("reverb\n{\"message\": \"\"}\n", Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_line");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("line 2:"),
            "{body}"
        );
        let (code, body) = post("\n\n", Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (code, &body["error"]["code"]),
            (400, &Value::from("invalid_body"))
        );
        assert_eq!(rest.calls(), 0, "a refused list reached the origin");

        let (code, body) = post(LIST, Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (body["requests"].as_u64(), body["fetched"].as_u64()),
            (Some(3), Some(3))
        );
        let (_, body) = post(LIST, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (body["cached"].as_u64(), body["failed"].as_u64()),
            (Some(3), Some(0))
        );
        all_hits(&d).await;
    });
}

/// `codette-cache warm --from FILE` through a running daemon: counts, then all cached;
/// a bad line is an error naming the file and line, and nothing is sent.
#[test]
fn the_warm_tool_goes_through_the_daemon() {
    run(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let d = Daemon::start(&config(&[memory(300)], &supabase(&rest)));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list.jsonl");
        let warm = |list: &str| {
            std::fs::write(&file, list).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_codette-cache"))
                .args(["warm", "--from"])
                .arg(&file)
                .args(["--url", &d.url(""), "--concurrency", "2"])
                .output()
                .expect("run codette-cache warm");
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        };
        let (code, stdout, stderr) = warm(LIST);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stdout.trim(),
            "3 requests: 0 already cached, 3 fetched, 0 failed"
        );
        let (_, stdout, _) = warm(LIST);
        assert_eq!(
            stdout.trim(),
            "3 requests: 3 already cached, 0 fetched, 0 failed"
        );
        all_hits(&d).await;

        let calls = rest.calls();
        let (code, _, stderr) = warm("reverb\nnot json {\n{\"message\": [1]}\n");
        assert_eq!(code, Some(1));
        assert!(
            stderr.contains("list.jsonl") && stderr.contains("line 3"),
            "{stderr}"
        );
        assert_eq!(rest.calls(), calls, "a refused list reached the daemon");
    });
}
