//! Admin routes: disabled without a token, and the token (from env or file) enforced.

use crate::common::{Daemon, toml_str};
use crate::conformance::GET_ROUTES;
use crate::raw_http::{
    Response, assert_context, assert_error, assert_still_serving, call, find, get, key_of,
    percent_encode, request,
};
use crate::short_timeout_config;

// ---------------------------------------------------------------------------------------
// Admin routes
// ---------------------------------------------------------------------------------------

pub(crate) fn admin(port: u16, path: &str, bearer: Option<&str>, body: &[u8]) -> Response {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    call(port, &request("POST", path, &headers, Some(body)))
}

fn admin_raw_auth(port: u16, path: &str, authorization: &str) -> Response {
    call(
        port,
        &request(
            "POST",
            path,
            &[("Authorization", authorization)],
            Some(br#"{"message": "reverb"}"#),
        ),
    )
}

/// Read-only routes answer without any token.
#[track_caller]
fn assert_read_routes_open(port: u16) {
    for path in GET_ROUTES {
        let response = get(port, path);
        assert_eq!(response.status, 200, "{path}: {}", response.raw());
        if path.starts_with("/codette/context") {
            assert_context(&response);
        } else if *path == "/dashboard" {
            assert!(response.raw().contains("<!doctype html>"), "{path}");
        } else if *path != "/metrics" {
            response.json();
        }
    }
}

/// With no token configured, admin routes are 403 "admin routes disabled", whatever is sent.
#[test]
fn admin_routes_are_disabled_without_a_token() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for path in [
        "/codette/cache/clear",
        "/codette/cache/invalidate",
        "/codette/cache/warm",
    ] {
        for bearer in [None, Some(""), Some("anything")] {
            let response = admin(port, path, bearer, br#"{"message": "reverb"}"#);
            let message = assert_error(&response, 403, "admin_disabled");
            assert!(message.contains("admin routes disabled"), "{message}");
        }
    }
    assert_read_routes_open(port);
    assert_still_serving(&mut daemon);
}

/// Checks a daemon whose admin token is `token`: 401 for every wrong form, 200 for it.
fn assert_admin_token_enforced(daemon: &mut Daemon, token: &str) {
    let port = daemon.port();
    for path in [
        "/codette/cache/clear",
        "/codette/cache/invalidate",
        "/codette/cache/warm",
    ] {
        let body = br#"{"message": "reverb"}"#;
        let wrong_tokens = [
            "wrong".to_owned(),
            format!("{token}x"),
            token[..token.len() - 1].to_owned(),
            format!(" {token}"),
            String::new(),
        ];
        for wrong in &wrong_tokens {
            assert_error(&admin(port, path, Some(wrong), body), 401, "unauthorized");
        }
        assert_error(&admin(port, path, None, body), 401, "unauthorized");
        for auth in [
            token.to_owned(),
            format!("Basic {token}"),
            format!("Token {token}"),
        ] {
            assert_error(&admin_raw_auth(port, path, &auth), 401, "unauthorized");
        }
    }
    // Auth is checked before the body: a bad body without the token is still a 401.
    assert_error(
        &admin(port, "/codette/cache/invalidate", None, b"{not json"),
        401,
        "unauthorized",
    );
    assert_error(
        &admin(port, "/codette/cache/invalidate", Some(token), b"{not json"),
        400,
        "invalid_body",
    );

    // The right token works: fill, invalidate one key, clear.
    let hit = |m: &str| {
        assert_context(&get(
            port,
            &format!("/codette/context?message={}", percent_encode(m)),
        ))["cache"]["hit"]
            .clone()
    };
    hit("reverb");
    hit("compression");
    assert_eq!(hit("reverb"), true);
    let response = admin(
        port,
        "/codette/cache/invalidate",
        Some(token),
        br#"{"message": "reverb"}"#,
    );
    assert_eq!(response.status, 200, "{}", response.raw());
    let v = response.json();
    assert_eq!(v["status"], "invalidated");
    assert_eq!(v["key"], key_of("reverb", None));
    assert_eq!(hit("reverb"), false, "invalidated key still cached");
    assert_eq!(hit("compression"), true, "invalidate removed another key");
    let response = admin(port, "/codette/cache/clear", Some(token), b"");
    assert_eq!(response.status, 200, "{}", response.raw());
    assert_eq!(response.json()["status"], "cleared");
    assert_eq!(hit("compression"), false, "clear left a key");
    // By keys and by tags: `user:<prompt>` reaches the entry of that prompt.
    hit("reverb");
    hit("compression");
    let keys = format!(r#"{{"keys": ["{}"]}}"#, key_of("compression", None));
    let response = admin(
        port,
        "/codette/cache/invalidate",
        Some(token),
        keys.as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.raw());
    assert_eq!(response.json()["keys"][0], key_of("compression", None));
    assert_eq!(hit("compression"), false, "invalidated key still cached");
    assert_eq!(hit("reverb"), true);
    let tags = br#"{"tags": ["user:reverb"]}"#;
    let response = admin(port, "/codette/cache/invalidate", Some(token), tags);
    assert_eq!(response.status, 200, "{}", response.raw());
    assert_eq!(response.json()["tags"][0], "user:reverb");
    assert_eq!(hit("reverb"), false, "purged tag still cached");
    assert_eq!(
        hit("compression"),
        true,
        "a tag purge removed another entry"
    );
    let many = format!(r#"{{"tags": [{}]}}"#, vec![r#""user:x""#; 1_001].join(","));
    for body in [
        &br#"{}"#[..],
        br#"{"tags": []}"#,
        br#"{"tags": ["group:1"]}"#,
        br#"{"tags": ["user:"]}"#,
        br#"{"tags": "user:a"}"#,
        br#"{"keys": ["session:1"]}"#,
        br#"{"message": "reverb", "tags": ["snippets"]}"#,
        br#"{"filename": "a.wav", "keys": []}"#,
        many.as_bytes(),
    ] {
        let response = admin(port, "/codette/cache/invalidate", Some(token), body);
        assert_error(&response, 400, "invalid_body");
        assert!(
            response.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{}",
            response.raw()
        );
    }
    assert_eq!(hit("compression"), true, "a refused body purged something");
    // A header that is not text is a 400, not a pass.
    let mut bad = request(
        "POST",
        "/codette/cache/clear",
        &[],
        Some(br#"{"message": "reverb"}"#),
    );
    let at = find(&bad, b"\r\n").expect("request line") + 2;
    bad.splice(
        at..at,
        b"Authorization: Bearer \xff\xfe\r\n".iter().copied(),
    );
    assert_error(&call(port, &bad), 400, "invalid_header");
    // GET on an admin route is not a way round the token.
    assert_error(
        &get(port, "/codette/cache/clear"),
        405,
        "method_not_allowed",
    );
    assert_read_routes_open(port);
    assert_still_serving(daemon);
}

/// The token from `CODETTE_CACHE_ADMIN__TOKEN`: wrong or missing is 401, right is 200.
#[test]
fn admin_token_from_env_is_enforced() {
    let token = "env-admin-token-5d1e";
    let mut daemon = Daemon::start_with_env(
        &short_timeout_config(),
        &[("CODETTE_CACHE_ADMIN__TOKEN", token)],
    );
    assert_admin_token_enforced(&mut daemon, token);
}

/// The token from `[admin] token_file` (trimmed): wrong or missing is 401, right is 200.
#[test]
fn admin_token_from_file_is_enforced() {
    let token = "file-admin-token-8c2a";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin-token");
    std::fs::write(&path, format!("  {token}\n")).expect("write token file");
    let config = format!(
        "{}[admin]\ntoken_file = {}\n",
        short_timeout_config(),
        toml_str(path.to_str().expect("utf-8 path"))
    );
    let mut daemon = Daemon::start(&config);
    assert_admin_token_enforced(&mut daemon, token);
}
