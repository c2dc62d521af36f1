//! The real client libraries, unmodified except the URL: supabase-js and supabase-py
//! pointed at the daemon instead of the project. Their answers are the gateway's, the
//! second call is a hit (`Cache-Status`), and users keep their own answers.

use serde_json::json;

use crate::clients::{Client, Rpc};
use crate::common::postgrest::{anon_key, user_token};
use crate::daemon::setup;

const REVERB: &str = "how to use reverb in mixing";

/// `rpc("get_codette_context", …)` through the daemon: the gateway's data, a miss then
/// a hit, by POST and by GET; each client library's first call is the only one that
/// reaches the gateway for its arguments.
#[test]
fn clients_are_served_from_the_cache() {
    let s = setup(false);
    for (i, client) in Client::ALL.into_iter().enumerate() {
        let args = json!({"input_prompt": format!("{REVERB} {i}"), "optionally_filename": "effect_chain.ts"});
        let direct = Rpc::new(&s.rest.url(), &anon_key(), "get_codette_context")
            .args(&args)
            .run(client);
        assert_eq!(direct.status, 200, "{:?}", direct.raw);
        let calls = s.rest.calls_to("get_codette_context");
        let via = |get: bool| {
            let mut call = Rpc::new(&s.daemon.url(""), &anon_key(), "get_codette_context")
                .args(&args)
                .raw_headers();
            if get {
                call = call.get();
            }
            call.run(client)
        };
        let first = via(false);
        let what = client.name();
        assert_eq!(
            (first.status, &first.error),
            (200, &None),
            "{what}: {:?}",
            first.raw
        );
        assert_eq!(first.data, direct.data, "{what}");
        assert_eq!(
            first.header("cache-status"),
            Some("codette-cache; fwd=uri-miss; stored"),
            "{what}"
        );
        for get in [false, true] {
            let again = via(get);
            assert_eq!(again.data, direct.data, "{what} get={get}");
            let status = again.header("cache-status").unwrap_or_default();
            assert!(
                status.starts_with("codette-cache; hit; ttl="),
                "{what} get={get}: {status}"
            );
        }
        assert_eq!(s.rest.calls_to("get_codette_context"), calls + 1, "{what}");
    }
}

/// Two users through either client: their own notes, from the cache the second time.
#[test]
fn clients_keep_users_apart() {
    let s = setup(false);
    for client in Client::ALL {
        for round in 0..2 {
            for user in ["user-a", "user-b"] {
                let r = Rpc::new(&s.daemon.url(""), &anon_key(), "my_notes")
                    .token(&user_token(user))
                    .raw_headers()
                    .run(client);
                let what = format!("{} {user} round {round}", client.name());
                assert_eq!(r.status, 200, "{what}: {:?}", r.raw);
                assert_eq!(r.data["uid"], user, "{what}");
                let notes = r.data["notes"].as_array().expect("notes");
                assert!(
                    notes
                        .iter()
                        .all(|n| n.as_str().unwrap().starts_with(&format!("{user}:"))),
                    "{what}: {notes:?}"
                );
                let status = r.header("cache-status").unwrap_or_default().to_owned();
                if round == 1 {
                    assert!(status.starts_with("codette-cache; hit"), "{what}: {status}");
                } else if client == Client::Node {
                    assert_eq!(status, "codette-cache; fwd=uri-miss; stored", "{what}");
                }
            }
        }
    }
}
