//! Tests of `request.rs`: which calls share a key, which do not, which are forwarded.

use super::*;

pub(super) fn plan_of(
    method: Method,
    query: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
    scope: Scope,
    who: (&str, Option<&str>),
) -> Plan {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            warp::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let identity = Identity {
        role: who.0.into(),
        sub: who.1.map(Into::into),
        claims: String::new(),
    };
    let call = Call {
        function: "my_notes",
        method: &method,
        query,
        headers: &map,
        body: body.as_bytes(),
    };
    plan(&call, scope, &identity, Some(8192))
}

pub(super) const USER_A: (&str, Option<&str>) = ("authenticated", Some("user-a"));
const USER_B: (&str, Option<&str>) = ("authenticated", Some("user-b"));

pub(super) fn key(p: Plan) -> Key {
    match p {
        Plan::Cached(k) => k,
        other => panic!("not cached: {other:?}"),
    }
}

/// POST bodies of one call share a key whatever their member order and whitespace, as
/// GET queries do whatever their order; a GET and a POST do not (a GET parameter that is
/// not an argument is a filter, the same name in a POST body an error).
#[test]
fn calls_share_a_key_within_a_method() {
    let json = [("content-type", "application/json")];
    let post = key(plan_of(
        Method::POST,
        None,
        &json,
        r#"{"b": "2", "a": "x y"}"#,
        Scope::User,
        USER_A,
    ));
    let post2 = key(plan_of(
        Method::POST,
        None,
        &json,
        "{\"a\":\"x y\",\n \"b\":\"2\"}",
        Scope::User,
        USER_A,
    ));
    let get = key(plan_of(
        Method::GET,
        Some("a=x+y&b=2"),
        &[],
        "",
        Scope::User,
        USER_A,
    ));
    let head = key(plan_of(
        Method::HEAD,
        Some("b=2&a=x%20y"),
        &[],
        "",
        Scope::User,
        USER_A,
    ));
    assert_eq!(post, post2);
    assert_ne!(post, get);
    assert_eq!(get, head);
    // Pinned: every instance of a group shares keys, whatever its version, so a change
    // to how they are computed must show here. Changed on 2026-12-04 (the method, the
    // claims and the exact body joined the key): a group upgraded one instance at a
    // time misses across versions meanwhile, and never shares an entry between them.
    assert_eq!(
        get.as_str(),
        "context:rpc:my_notes:01f61f50d0ec903f7dd88551c04b45f1"
    );
    // A number is not the string of its digits (a jsonb parameter tells them apart).
    let number = key(plan_of(
        Method::POST,
        None,
        &json,
        r#"{"b": 2, "a": "x y"}"#,
        Scope::User,
        USER_A,
    ));
    assert_ne!(number, post);
}

/// The scope decides whose calls share a key.
#[test]
fn scope_separates_callers() {
    let of = |scope, who| key(plan_of(Method::GET, Some("a=1"), &[], "", scope, who));
    assert_ne!(of(Scope::User, USER_A), of(Scope::User, USER_B));
    assert_eq!(of(Scope::Role, USER_A), of(Scope::Role, USER_B));
    assert_ne!(of(Scope::Role, USER_A), of(Scope::Role, ("anon", None)));
    assert_eq!(of(Scope::Shared, USER_A), of(Scope::Shared, ("anon", None)));
    assert_ne!(of(Scope::Shared, USER_A), of(Scope::Role, USER_A));
}

/// What shapes the answer is in the key; what asks for more than a read is forwarded.
#[test]
fn shaping_parts_and_bypasses() {
    let base = key(plan_of(
        Method::GET,
        Some("a=1"),
        &[],
        "",
        Scope::Shared,
        USER_A,
    ));
    for (query, headers) in [
        ("a=1&select=x", vec![]),
        ("a=1&limit=1", vec![]),
        ("a=1", vec![("accept", "application/vnd.pgrst.object+json")]),
        ("a=1", vec![("prefer", "count=exact")]),
        ("a=1", vec![("range", "0-9")]),
        ("a=1", vec![("accept-profile", "private")]),
    ] {
        assert_ne!(
            key(plan_of(
                Method::GET,
                Some(query),
                &headers,
                "",
                Scope::Shared,
                USER_A
            )),
            base
        );
    }
    for accept in ["*/*", "application/json"] {
        assert_eq!(
            key(plan_of(
                Method::GET,
                Some("a=1"),
                &[("accept", accept)],
                "",
                Scope::Shared,
                USER_A
            )),
            base
        );
    }
    for (method, headers, body, why) in [
        (
            Method::POST,
            vec![("prefer", "tx=rollback")],
            "{}",
            "prefer",
        ),
        (
            Method::POST,
            vec![("prefer", "return=minimal")],
            "{}",
            "prefer",
        ),
        (
            Method::GET,
            vec![("accept", "application/octet-stream")],
            "",
            "accept",
        ),
        (
            Method::POST,
            vec![("content-type", "text/plain")],
            "hi",
            "content type",
        ),
        (Method::POST, vec![], "[1, 2]", "body"),
        (Method::POST, vec![], "{not json", "body"),
        (Method::PATCH, vec![], "{}", "method"),
    ] {
        assert_eq!(
            plan_of(method, None, &headers, body, Scope::Shared, USER_A),
            Plan::Bypass(why)
        );
    }
    assert_eq!(
        plan_of(Method::GET, Some("a=1&a=2"), &[], "", Scope::Shared, USER_A),
        Plan::Bypass("repeated parameter")
    );
}

/// The original function's plain call is the original request, with its keys.
#[test]
fn the_original_function_keeps_its_keys() {
    let identity = Identity {
        role: "anon".into(),
        sub: None,
        claims: String::new(),
    };
    let headers = HeaderMap::new();
    let call = |query, scope| {
        plan(
            &Call {
                function: "get_codette_context",
                method: &Method::GET,
                query: Some(query),
                headers: &headers,
                body: b"",
            },
            scope,
            &identity,
            Some(8192),
        )
    };
    assert_eq!(
        call("input_prompt=how+to+use+reverb", Scope::Shared),
        Plan::Original(std::sync::Arc::new(Original::new(ContextRequest {
            message: "how to use reverb".into(),
            filename: None
        })))
    );
    assert_eq!(
        call("input_prompt=a&optionally_filename=f.ts", Scope::Shared),
        Plan::Original(std::sync::Arc::new(Original::new(ContextRequest {
            message: "a".into(),
            filename: Some("f.ts".into())
        })))
    );
    assert!(matches!(
        call("input_prompt=a", Scope::User),
        Plan::Cached(_)
    ));
    assert!(matches!(
        call("input_prompt=a&select=snippets", Scope::Shared),
        Plan::Cached(_)
    ));
    assert!(matches!(
        call("input_prompt=a&extra=1", Scope::Shared),
        Plan::Cached(_)
    ));
    assert!(matches!(
        call("input_prompt=+", Scope::Shared),
        Plan::Cached(_)
    ));
}

/// An original call's key is derived once and then reused, but only under the chain
/// and `normalize` setting it was derived for: a reload that flips `normalize`, or
/// another namespace, gets the key that chain derives now.
#[test]
fn an_original_calls_key_follows_its_chain() {
    use crate::chain::{Chain, Policy};
    use crate::metrics::Metrics;
    use crate::origins::{BreakerSettings, Origin, SampleConfig, SampleOrigin};
    let chain = |namespace: &str| {
        let origin = Origin::Sample(SampleOrigin::new(&SampleConfig::default()).unwrap());
        let breaker = BreakerSettings {
            failures: 5,
            open_for: std::time::Duration::from_secs(2),
        };
        let metrics = std::sync::Arc::new(Metrics::new());
        Chain::new(
            namespace.into(),
            vec![],
            origin,
            breaker,
            metrics,
            Policy::default(),
        )
    };
    let original = Original::new(ContextRequest {
        message: "How to  use REVERB".into(),
        filename: Some("Mix.md".into()),
    });
    let main = chain(Key::PREFIX);
    let expected = |c: &Chain| c.key_for("How to  use REVERB", Some("Mix.md"));
    assert_eq!(original.key_in(&main), expected(&main));
    assert_eq!(original.key_in(&main), expected(&main));
    main.set_policy(Policy {
        normalize: true,
        ..Policy::default()
    });
    assert_ne!(
        expected(&main),
        chain(Key::PREFIX).key_for("How to  use REVERB", Some("Mix.md"))
    );
    assert_eq!(original.key_in(&main), expected(&main));
    let other = chain("context:v2:");
    assert_eq!(original.key_in(&other), expected(&other));
}
