//! Property tests: the warp filter driven in-process with `warp::test`, no socket.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use serde_json::{Value, json};

use crate::common::toml_str;
use crate::raw_http::{is_context_key, key_of, percent_encode};

// ---------------------------------------------------------------------------------------
// Property tests: the warp filter in-process, no socket
// ---------------------------------------------------------------------------------------

const PROP_TOKEN: &str = "prop-admin-token";

/// The service of a memory-only daemon with the sample origin (what a connection is
/// served by: the fast GET path and warp's routes), on `rt`.
fn prop_routes(rt: &tokio::runtime::Runtime) -> impl PropService {
    let toml = format!(
        "[[tiers]]\ntype = \"memory\"\n\n[origin]\ntype = \"sample\"\n\n[admin]\ntoken = {}\n",
        toml_str(PROP_TOKEN)
    );
    let config = codette_cache::config::Config::from_toml(&toml).expect("prop config");
    assert_eq!(config.tiers.len(), 1, "memory tier only");
    let _guard = rt.enter();
    let metrics = Arc::new(codette_cache::metrics::Metrics::new());
    let state = codette_cache::app::build_state(config, metrics).expect("build_state");
    codette_cache::http::service(Arc::new(state))
}

/// The daemon's hyper service, for in-process requests with a plain body.
trait PropService:
    hyper::service::Service<
        warp::http::Request<http_body_util::Full<bytes::Bytes>>,
        Response = codette_cache::http::Reply,
        Error = std::convert::Infallible,
    >
{
}

impl<S> PropService for S where
    S: hyper::service::Service<
            warp::http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = codette_cache::http::Reply,
            Error = std::convert::Infallible,
        >
{
}

/// One request for the property tests.
#[derive(Debug, Clone)]
struct Probe {
    method: &'static str,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
    /// The message and filename, when the request carries them as sent.
    known: Option<(String, Option<String>)>,
}

/// Failing inputs are saved, and replayed first on every later run, in
/// `proptest-regressions/hostile.txt` (commit it when it appears); the cargo test's
/// working directory is the crate root.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/hostile.txt",
        ))),
        ..ProptestConfig::default()
    })
}

fn query_token() -> impl Strategy<Value = String> {
    let fixed = proptest::sample::select(vec![
        "message",
        "filename",
        "=",
        "&",
        "+",
        "%00",
        "%FF",
        "%",
        "%zz",
        "%F0%9F%8E%B8",
        "%E2%82",
        "%0D%0A",
        "*",
        "context:",
        "%3D",
        "%26",
        ";",
        "message=",
        "&filename=",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => fixed,
        2 => "[A-Za-z0-9._~-]{1,12}",
        1 => "%[0-9A-Fa-f]{2}",
    ]
}

fn json_token() -> impl Strategy<Value = Vec<u8>> {
    let fixed = proptest::sample::select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b"\"message\"",
        b"\"filename\"",
        b":",
        b",",
        b"\"",
        b"null",
        b"true",
        b"42",
        b"1e999",
        b"-0",
        b"\\u0000",
        b"\\ud800",
        b"\\ud83c\\udfb8",
        b"\\",
        b"\0",
        b"\xff",
        b"\xc3",
        b" ",
        b"\n",
    ])
    .prop_map(<[u8]>::to_vec);
    prop_oneof![
        4 => fixed,
        1 => any::<String>().prop_map(|s| serde_json::to_vec(&s).unwrap()),
        1 => "[a-z ]{0,10}".prop_map(String::into_bytes),
    ]
}

/// A message and filename: arbitrary, plus the edges of the limits.
fn message_and_filename() -> impl Strategy<Value = (String, Option<String>)> {
    let message = prop_oneof![
        6 => any::<String>(),
        1 => (8_185usize..8_200).prop_map(|n| "a".repeat(n)),
        1 => (2_040usize..2_060).prop_map(|n| "\u{1f3b8}".repeat(n / 4 + 1)),
    ];
    let filename = prop_oneof![
        4 => proptest::option::of(any::<String>()),
        1 => (1_020usize..1_030).prop_map(|n| Some("f".repeat(n))),
    ];
    (message, filename)
}

fn probe() -> impl Strategy<Value = Probe> {
    let get = proptest::collection::vec(query_token(), 0..12).prop_map(|t| Probe {
        method: "GET",
        path: format!("/codette/context?{}", t.concat()),
        authorization: None,
        body: Vec::new(),
        known: None,
    });
    let post = proptest::collection::vec(json_token(), 0..16).prop_map(|t| Probe {
        method: "POST",
        path: "/codette/context".into(),
        authorization: None,
        body: t.concat(),
        known: None,
    });
    let known_post = (message_and_filename(), any::<bool>()).prop_map(|((m, f), extra)| {
        let mut v = json!({ "message": m });
        if let Some(f) = &f {
            v["filename"] = json!(f);
        }
        if extra {
            v["session_id"] = json!("s-1");
            v["daw_context"] = json!({"bpm": 120, "tracks": [1, 2]});
        }
        Probe {
            method: "POST",
            path: "/codette/context".into(),
            authorization: None,
            body: serde_json::to_vec(&v).unwrap(),
            known: Some((m, f)),
        }
    });
    let known_get = message_and_filename().prop_map(|(m, f)| {
        let mut path = format!("/codette/context?message={}", percent_encode(&m));
        if let Some(f) = &f {
            path.push_str(&format!("&filename={}", percent_encode(f)));
        }
        Probe {
            method: "GET",
            path,
            authorization: None,
            body: Vec::new(),
            known: Some((m, f)),
        }
    });
    let anything = (
        proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        proptest::sample::select(vec![
            "/codette/context",
            "/codette/cache/clear",
            "/codette/cache/invalidate",
            "/codette/cache/stats",
            "/codette/cache/metrics",
            "/codette/analytics/dashboard",
            "/codette/cache/status",
            "/codette/context/extra",
            "/codette//context",
            "/healthz",
            "/metrics",
            "/",
        ]),
        proptest::option::of(proptest::sample::select(vec![
            format!("Bearer {PROP_TOKEN}"),
            "Bearer nope".to_owned(),
            PROP_TOKEN.to_owned(),
        ])),
        proptest::collection::vec(json_token(), 0..8),
    )
        .prop_map(|(method, path, authorization, body)| Probe {
            method,
            path: path.into(),
            authorization,
            body: body.concat(),
            known: None,
        });
    prop_oneof![
        3 => get,
        3 => post,
        2 => known_post,
        2 => known_get,
        2 => anything,
    ]
}

/// Whether the daemon must accept this message and filename.
fn acceptable(message: &str, filename: Option<&str>) -> bool {
    !message.trim().is_empty()
        && message.len() <= 8 * 1024
        && !message.contains('\0')
        && filename.is_none_or(|f| f.len() <= 1024 && !f.contains('\0'))
}

/// Sends one probe through the service; `None` when its path is not a valid URI.
async fn send(service: &impl PropService, p: &Probe) -> Option<warp::http::Response<bytes::Bytes>> {
    let uri = warp::http::Uri::try_from(p.path.as_str()).ok()?;
    let mut req = warp::http::Request::builder().method(p.method).uri(uri);
    if let Some(auth) = &p.authorization {
        req = req.header("authorization", auth.as_str());
    }
    if !p.body.is_empty() {
        req = req.header("content-length", p.body.len());
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(p.body.clone()));
    let response = service
        .call(req.body(body).ok()?)
        .await
        .unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    Some(warp::http::Response::from_parts(parts, bytes))
}

/// 200 with a well-formed answer (and the key the original derives), or a JSON 4xx.
fn check(p: &Probe, response: &warp::http::Response<bytes::Bytes>) -> Result<(), TestCaseError> {
    let status = response.status().as_u16();
    let body = response.body();
    let text = || String::from_utf8_lossy(body).into_owned();
    if let Some((m, f)) = &p.known {
        let ok = acceptable(m, f.as_deref().filter(|f| !f.is_empty()));
        prop_assert_eq!(
            status == 200,
            ok,
            "status {} for {:?}: {}",
            status,
            p,
            text()
        );
    }
    match status {
        200 if p.path == "/metrics" => {}
        200 => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("200 not JSON ({e}): {}", text())))?;
            if p.path.starts_with("/codette/context") {
                let key = v["cache"]["key"].as_str().unwrap_or_default();
                prop_assert!(is_context_key(key), "key {:?} in {}", key, v);
                prop_assert!(v.get("context").is_some(), "{}", v);
                if let Some((m, f)) = &p.known {
                    prop_assert_eq!(key, key_of(m, f.as_deref()));
                }
            }
        }
        // The context routes take GET and POST: a bad query or body is never "wrong method"
        // or "no such route".
        404 | 405
            if matches!(p.method, "GET" | "POST")
                && (p.path == "/codette/context" || p.path.starts_with("/codette/context?")) =>
        {
            prop_assert!(false, "{} for {:?}: {}", status, p, text());
        }
        400..=499 => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| TestCaseError::fail(format!("{status} not JSON ({e}): {}", text())))?;
            let code = v["error"]["code"].as_str().unwrap_or_default();
            let message = v["error"]["message"].as_str().unwrap_or_default();
            prop_assert!(!code.is_empty() && !message.is_empty(), "{} {}", status, v);
            prop_assert_eq!(
                response.headers().get("content-type").map(|h| h.as_bytes()),
                Some(&b"application/json"[..])
            );
        }
        _ => prop_assert!(false, "status {} for {:?}: {}", status, p, text()),
    }
    Ok(())
}

/// Arbitrary requests through the filter: never a panic, always 200 (md5 key) or a JSON 4xx.
#[test]
fn prop_any_request_is_answered_200_or_json_4xx() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    let result = runner(256).run(&probe(), |p| match rt.block_on(send(&routes, &p)) {
        Some(response) => check(&p, &response),
        None => Ok(()),
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Any acceptable message: GET and POST answer 200 under the original's md5 key.
#[test]
fn prop_get_and_post_derive_the_same_md5_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    let strategy = (any::<String>(), proptest::option::of(any::<String>()))
        .prop_filter("acceptable", |(m, f)| acceptable(m, f.as_deref()));
    let result = runner(128).run(&strategy, |(m, f)| {
        let mut path = format!("/codette/context?message={}", percent_encode(&m));
        if let Some(f) = &f {
            path.push_str(&format!("&filename={}", percent_encode(f)));
        }
        let body = serde_json::to_vec(&json!({"message": m, "filename": f})).unwrap();
        let mut keys = Vec::new();
        for (method, path, body) in [
            ("GET", path, Vec::new()),
            ("POST", "/codette/context".into(), body),
        ] {
            let p = Probe {
                method,
                path,
                authorization: None,
                body,
                known: Some((m.clone(), f.clone())),
            };
            let response = rt.block_on(send(&routes, &p)).expect("valid URI");
            check(&p, &response)?;
            let v: Value = serde_json::from_slice(response.body()).unwrap();
            keys.push(v["cache"]["key"].as_str().unwrap_or_default().to_owned());
        }
        prop_assert_eq!(&keys[0], &keys[1]);
        prop_assert_eq!(&keys[0], &key_of(&m, f.as_deref()));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Regression (proptest): GET with a missing/bad query was 405 (POST route won); now 400 invalid_query.
#[test]
fn regression_get_with_a_bad_query_is_400_not_405() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let routes = prop_routes(&rt);
    for path in [
        "/codette/context?",
        "/codette/context",
        "/codette/context?filename=a.ts",
        "/codette/context?message=a&message=b",
    ] {
        let p = Probe {
            method: "GET",
            path: path.into(),
            authorization: None,
            body: Vec::new(),
            known: None,
        };
        let response = rt.block_on(send(&routes, &p)).expect("valid URI");
        let v: Value = serde_json::from_slice(response.body()).expect("JSON");
        assert_eq!(response.status(), 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{path}: {v}");
    }
}
