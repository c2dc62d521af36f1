//! Both client libraries against the gateway directly, no daemon: what a raw POST gets,
//! each user's own notes, signing in, invalid tokens, PostgREST's error shapes,
//! `.single()` and VOLATILE functions. What the daemon must then serve the same way.

use serde_json::{Value, json};

use crate::clients::{Client, ClientResult, Rpc, rpc};
use crate::common::postgrest::{Postgrest, anon_key, user_token};
use crate::common::{API_KEY, TestPostgres};

const REVERB: &str = "how to use reverb in mixing";

fn start() -> (TestPostgres, Postgrest) {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    (pg, rest)
}

/// A plain POST to the gateway with the anon key: what the clients must match.
fn raw_post(rest: &Postgrest, function: &str, args: &Value) -> (u16, Value) {
    let key = anon_key();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/rest/v1/rpc/{function}", rest.url()))
        .header("apikey", &key)
        .bearer_auth(&key)
        .json(args)
        .send()
        .expect("raw post");
    let status = response.status().as_u16();
    (status, response.json().expect("json body"))
}

/// Both clients, POST and GET, get exactly what a raw POST gets, each call reaching the
/// gateway once; the anon key is sent as both `apikey` and the bearer.
#[test]
fn clients_get_the_same_context_as_a_raw_post() {
    let (_pg, rest) = start();
    let args = json!({"input_prompt": REVERB, "optionally_filename": "effect_chain.ts"});
    let (status, expected) = raw_post(&rest, "get_codette_context", &args);
    assert_eq!(status, 200, "{expected}");
    assert!(!expected["snippets"].as_array().unwrap().is_empty());
    assert_eq!(expected["file"]["filename"], "effect_chain.ts");

    let mut calls = rest.calls_to("get_codette_context");
    for client in Client::ALL {
        for get in [false, true] {
            let mut call = Rpc::new(&rest.url(), &anon_key(), "get_codette_context")
                .args(&args)
                .raw_headers();
            if get {
                call = call.get();
            }
            let r = call.run(client);
            let what = format!("{} get={get}", client.name());
            assert_eq!((r.status, &r.error), (200, &None), "{what}: {:?}", r.raw);
            assert_eq!(r.data, expected, "{what}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{what}"
            );
            assert_eq!(r.request_header("apikey"), Some(anon_key().as_str()));
            assert_eq!(
                r.request_header("authorization"),
                Some(format!("Bearer {}", anon_key()).as_str()),
                "{what}"
            );
            calls += 1;
            assert_eq!(rest.calls_to("get_codette_context"), calls, "{what}");
            let last = rest.last_request().unwrap();
            assert_eq!(last.method, if get { "GET" } else { "POST" }, "{what}");
        }
    }
}

/// Two signed-in users calling `my_notes` through either client each get their own
/// notes (row-level security on `auth.uid()`), and the anon key gets none.
#[test]
fn each_user_gets_their_own_notes() {
    let (_pg, rest) = start();
    let notes = |r: &ClientResult| -> Vec<String> {
        r.data["notes"]
            .as_array()
            .unwrap_or_else(|| panic!("no notes in {:?}", r.raw))
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    for client in Client::ALL {
        let a = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&user_token("user-a")),
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(a.status, 200, "{:?}", a.raw);
        assert_eq!(a.data["uid"], "user-a");
        let a_notes = notes(&a);
        assert_eq!(a_notes.len(), 2, "{a_notes:?}");
        assert!(
            a_notes.iter().all(|n| n.starts_with("user-a:")),
            "{a_notes:?}"
        );

        let b = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&user_token("user-b")),
            "my_notes",
            &json!({}),
            true,
        );
        assert_eq!((b.status, &b.data["uid"]), (200, &json!("user-b")));
        assert_eq!(notes(&b), ["user-b: sidechain the bass to the kick"]);

        let anon = rpc(
            client,
            &rest.url(),
            &anon_key(),
            None,
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(anon.status, 200, "{:?}", anon.raw);
        assert_eq!(anon.data, json!({"uid": null, "notes": []}));
    }
    let sent = rest.last_request().unwrap();
    assert_eq!(sent.bearer(), Some(anon_key().as_str()));
    // supabase-js's other way of passing a token: a global Authorization header.
    let header = Rpc::new(&rest.url(), &anon_key(), "my_notes")
        .token(&user_token("user-b"))
        .token_as_header()
        .node();
    assert_eq!(header.data["uid"], "user-b", "{:?}", header.raw);
}

/// Signing in with a password through the client's auth (the gateway's /auth/v1/token)
/// and then calling the RPC runs as that user; a wrong password leaves the anon key.
#[test]
fn sign_in_then_rpc_runs_as_the_user() {
    use crate::common::postgrest::USER_PASSWORD;
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .sign_in("user-b@example.com", USER_PASSWORD)
            .raw_headers()
            .run(client);
        assert_eq!(r.sign_in_error, None, "{}: {:?}", client.name(), r.raw);
        assert_eq!(r.data["uid"], "user-b", "{}: {:?}", client.name(), r.raw);
        let bearer = r.request_header("authorization").unwrap();
        assert_ne!(
            bearer,
            format!("Bearer {}", anon_key()),
            "{}",
            client.name()
        );

        let wrong = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .sign_in("user-b@example.com", "wrong-password")
            .run(client);
        assert!(wrong.sign_in_error.is_some(), "{:?}", wrong.raw);
        assert_eq!(wrong.data["uid"], Value::Null, "{:?}", wrong.raw);
    }
    let token_calls = rest.requests_under("/auth/v1/token");
    assert_eq!(token_calls.len(), 4);
    assert!(
        token_calls
            .iter()
            .all(|r| r.query == [("grant_type".to_string(), "password".to_string())])
    );
}

/// A forged or expired token gets 401 PGRST301 through both clients (the key is valid).
#[test]
fn an_invalid_token_is_a_401() {
    use crate::common::postgrest::{sign_jwt_with, unix_now, user_token_expiring};
    let (_pg, rest) = start();
    let forged = sign_jwt_with(
        &json!({"sub": "user-a", "role": "authenticated", "exp": unix_now() + 3600}),
        "not-the-project-secret-not-the-project-secret",
    );
    let expired = user_token_expiring("user-a", unix_now() - 600);
    for client in Client::ALL {
        for (what, token) in [
            ("forged", forged.as_str()),
            ("expired", expired.as_str()),
            ("garbage", "not-a-jwt"),
        ] {
            let r = rpc(
                client,
                &rest.url(),
                &anon_key(),
                Some(token),
                "my_notes",
                &json!({}),
                false,
            );
            let label = format!("{} {what}", client.name());
            assert_eq!(r.status, 401, "{label}: {:?}", r.raw);
            assert_eq!(r.error_code(), Some("PGRST301"), "{label}: {:?}", r.raw);
            assert_eq!(r.data, Value::Null, "{label}");
        }
        let r = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&expired),
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(r.error.as_ref().unwrap()["message"], "JWT expired");
    }
}

/// A function's own error reaches the client as PostgREST shapes it (400, SQLSTATE,
/// details, hint), and an unknown function as 404 PGRST202.
#[test]
fn function_errors_reach_the_client_as_postgrest_shapes_them() {
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "fail_always")
            .token(&user_token("user-a"))
            .run(client);
        assert_eq!(r.status, 400, "{:?}", r.raw);
        assert_eq!(
            r.error,
            Some(json!({
                "code": "P0001", "message": "fail_always always fails",
                "details": "called on purpose by a test", "hint": "do not call fail_always",
            })),
            "{}",
            client.name()
        );
        let r = Rpc::new(&rest.url(), &anon_key(), "no_such_function").run(client);
        assert_eq!((r.status, r.error_code()), (404, Some("PGRST202")));
    }
    assert_eq!(rest.calls_to("fail_always"), 2);
    assert_eq!(rest.calls_to("no_such_function"), 2);
}

/// `.single()` asks for `application/vnd.pgrst.object+json`; a VOLATILE function answers
/// differently each call.
#[test]
fn single_and_volatile_calls() {
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .token(&user_token("user-a"))
            .single()
            .raw_headers()
            .run(client);
        assert_eq!((r.status, &r.data["uid"]), (200, &json!("user-a")));
        assert_eq!(
            r.request_header("accept"),
            Some("application/vnd.pgrst.object+json")
        );
        let first = Rpc::new(&rest.url(), &anon_key(), "random_pick").run(client);
        let second = Rpc::new(&rest.url(), &anon_key(), "random_pick").run(client);
        assert!(first.data["pick"].is_f64(), "{:?}", first.raw);
        assert_ne!(first.data, second.data);
    }
    let node = Rpc::new(&rest.url(), &anon_key(), "random_pick").node();
    let python = Rpc::new(&rest.url(), &anon_key(), "random_pick").python();
    assert_ne!(node.data, python.data);
    assert_eq!(rest.calls_to("random_pick"), 6);
}
