//! Tests of the integration-test harness itself (tests/common): the Redis, PostgreSQL and
//! PostgREST-shaped gateway it starts. The daemon is not exercised here.

mod common;

use std::time::{Duration, Instant};

use common::{API_KEY, Postgrest, TestPostgres, TestRedis};
use serde_json::{Value, json};

const REVERB: &str = "how to use reverb in mixing";

fn rpc_url(rest: &Postgrest, function: &str) -> String {
    format!("{}/rest/v1/rpc/{function}", rest.url())
}

async fn rpc(rest: &Postgrest, key: &str, body: Value) -> (u16, String, Value) {
    let resp = reqwest::Client::new()
        .post(rpc_url(rest, "get_codette_context"))
        .header("apikey", key)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("rpc");
    let status = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    (status, content_type, resp.json().await.expect("json body"))
}

fn assert_context_shape(v: &Value) {
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["chat_history", "file", "snippets"], "{v}");
}

/// Redis answers PING after start, not after stop, and again after start_again on the same port.
#[test]
fn redis_starts_stops_and_starts_again_on_the_same_port() {
    let mut redis = TestRedis::start();
    let port = redis.port();
    assert!(redis.ping());
    assert_eq!(redis.cmd(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cmd(&["GET", "k"]), "v");
    redis.stop();
    assert!(!redis.ping());
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert!(redis.ping());
    assert_eq!(redis.cmd(&["GET", "k"]), "", "nothing is persisted");
}

/// A paused Redis does not answer; a resumed one does.
#[test]
fn redis_pause_and_resume() {
    let redis = TestRedis::start();
    redis.pause();
    assert!(!redis.ping());
    redis.resume();
    assert!(redis.ping());
}

/// The SQL function returns exactly the 3 keys with non-empty snippets for the reverb prompt.
#[test]
fn postgres_function_returns_snippets_for_reverb() {
    let started = Instant::now();
    let pg = TestPostgres::start();
    eprintln!("TestPostgres::start took {:?}", started.elapsed());
    let out = pg.execute(&format!(
        "SELECT public.get_codette_context('{REVERB}', NULL)"
    ));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_context_shape(&v);
    assert!(!v["snippets"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["file"], Value::Null);
    assert_eq!(v["chat_history"], json!([]));
}

/// Each of the tester's five prompts finds snippets, and an unrelated prompt finds none.
#[test]
fn postgres_seed_covers_the_tester_prompts() {
    let pg = TestPostgres::start();
    for prompt in [
        REVERB,
        "compression techniques for vocals",
        "EQ strategies for drums",
        "mixing orchestral instruments",
        "audio production workflow",
        "audio analysis",
    ] {
        let n = pg.execute(&format!(
            "SELECT jsonb_array_length(public.get_codette_context('{prompt}')->'snippets')"
        ));
        assert_ne!(n, "0", "no snippets for {prompt:?}");
    }
    let none = pg.execute("SELECT public.get_codette_context('quantum chromodynamics')::text");
    let v: Value = serde_json::from_str(&none).unwrap();
    assert_eq!(v, json!({"snippets": [], "file": null, "chat_history": []}));
}

/// The `file` object is returned for `effect_chain.ts`, and chat history for a UUID in the prompt.
#[test]
fn postgres_function_returns_file_and_chat_history() {
    let pg = TestPostgres::start();
    let out = pg.execute("SELECT public.get_codette_context('audio analysis', 'effect_chain.ts')");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_context_shape(&v);
    assert_eq!(v["file"]["filename"], "effect_chain.ts");
    for key in ["id", "file_type", "storage_path", "uploaded_at"] {
        assert!(!v["file"][key].is_null(), "file.{key} missing: {v}");
    }
    let prompt = "history for 3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f please";
    let out = pg.execute(&format!("SELECT public.get_codette_context('{prompt}')"));
    let v: Value = serde_json::from_str(&out).unwrap();
    let history = v["chat_history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{v}");
    assert!(history[0]["updated_at"].as_str() > history[1]["updated_at"].as_str());
}

/// PostgreSQL stops, starts again with its data, and can be paused and resumed.
#[test]
fn postgres_restart_keeps_data() {
    let mut pg = TestPostgres::start();
    pg.execute("INSERT INTO public.codette VALUES ('x.md', 'zanzibar marker')");
    pg.restart();
    assert_eq!(
        pg.execute("SELECT count(*) FROM public.codette WHERE \"FileName\" = 'x.md'"),
        "1"
    );
    pg.pause();
    pg.resume();
    assert_eq!(pg.execute("SELECT 1"), "1");
}

/// The gateway answers 200 with the function's JSON for the right key (POST and GET).
#[tokio::test]
async fn postgrest_serves_the_rpc_with_the_right_key() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let (status, content_type, v) = rpc(
        &rest,
        API_KEY,
        json!({"input_prompt": REVERB, "optionally_filename": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_context_shape(&v);
    assert!(!v["snippets"].as_array().unwrap().is_empty());
    let expected = pg.execute(&format!(
        "SELECT public.get_codette_context('{REVERB}', NULL)"
    ));
    assert_eq!(v, serde_json::from_str::<Value>(&expected).unwrap());

    let resp = reqwest::Client::new()
        .get(rpc_url(&rest, "get_codette_context"))
        .query(&[
            ("input_prompt", "audio analysis"),
            ("optionally_filename", "effect_chain.ts"),
        ])
        .header("apikey", API_KEY)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["file"]["filename"], "effect_chain.ts");
    assert_eq!(rest.calls(), 2);
    let last = rest.last_request().unwrap();
    assert_eq!(last.method, "GET");
}

/// The gateway answers 401 PGRST301 for a wrong key and 404 for an unknown function.
#[tokio::test]
async fn postgrest_rejects_wrong_key_and_unknown_function() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let (status, _, v) = rpc(&rest, "wrong-key", json!({"input_prompt": REVERB})).await;
    assert_eq!(status, 401);
    assert_eq!(v["code"], "PGRST301");
    assert!(v.get("hint").is_some() && v.get("details").is_some());

    let only_apikey = reqwest::Client::new()
        .post(rpc_url(&rest, "get_codette_context"))
        .header("apikey", API_KEY)
        .json(&json!({"input_prompt": REVERB}))
        .send()
        .await
        .unwrap();
    assert_eq!(only_apikey.status(), 401, "Authorization is required too");

    let unknown = reqwest::Client::new()
        .post(rpc_url(&rest, "no_such_function"))
        .header("apikey", API_KEY)
        .bearer_auth(API_KEY)
        .json(&json!({"input_prompt": REVERB}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let v: Value = unknown.json().await.unwrap();
    assert_eq!(v["code"], "PGRST202");
    assert_eq!(rest.calls(), 3);
}

/// Fault controls: fail status, delay, malformed and huge bodies, and the call counter.
#[tokio::test]
async fn postgrest_fault_controls() {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let body = json!({"input_prompt": REVERB});

    rest.set_fail_status(Some(503));
    let (status, _, v) = rpc(&rest, API_KEY, body.clone()).await;
    assert_eq!(status, 503);
    assert!(v["code"].is_string() && v.get("message").is_some());
    rest.set_fail_status(None);

    rest.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    let (status, _, _) = rpc(&rest, API_KEY, body.clone()).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    rest.set_delay(Duration::ZERO);

    rest.set_huge_body(Some(1 << 20));
    let (status, _, v) = rpc(&rest, API_KEY, body.clone()).await;
    assert_eq!(status, 200);
    assert!(v.to_string().len() >= 1 << 20);
    assert_context_shape(&v);
    rest.set_huge_body(None);

    rest.set_malformed(true);
    let resp = reqwest::Client::new()
        .post(rpc_url(&rest, "get_codette_context"))
        .header("apikey", API_KEY)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());
    assert_eq!(rest.calls(), 4);
}

/// With its database stopped the gateway answers 503 PostgREST-shaped, and recovers after.
#[tokio::test]
async fn postgrest_reports_database_down() {
    let mut pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    let body = json!({"input_prompt": REVERB});
    assert_eq!(rpc(&rest, API_KEY, body.clone()).await.0, 200);
    pg.stop();
    let (status, _, v) = rpc(&rest, API_KEY, body.clone()).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], "PGRST000");
    pg.start_again();
    assert_eq!(rpc(&rest, API_KEY, body).await.0, 200);
}
