//! Tests of `request.rs` and `canonical.rs`: calls PostgREST may answer differently
//! are keyed apart or forwarded, never merged.

use super::tests::{USER_A, key, plan_of};
use super::*;

/// Calls PostgREST may answer differently never share a key: they are keyed apart or
/// forwarded.
#[test]
fn different_calls_are_never_merged() {
    let get = |query: &str, headers: &[(&str, &str)]| {
        plan_of(Method::GET, Some(query), headers, "", Scope::Shared, USER_A)
    };
    let post = |body: &str| {
        plan_of(
            Method::POST,
            None,
            &[("content-type", "application/json")],
            body,
            Scope::Shared,
            USER_A,
        )
    };
    // `Accept` is ranked by q, then specificity, then order: all of it counts.
    for (a, b) in [
        (
            "text/csv;q=0.1, application/json",
            "text/csv, application/json;q=0.1",
        ),
        ("*/*, text/csv", "application/json, text/csv"),
        ("text/csv, application/json", "application/json, text/csv"),
    ] {
        assert_ne!(
            key(get("a=1", &[("accept", a)])),
            key(get("a=1", &[("accept", b)])),
            "{a} / {b}"
        );
    }
    // `Prefer` is case-sensitive, and a preference given twice is PostgREST's to rank.
    assert_ne!(
        key(get("a=1", &[("prefer", "timezone=Asia/Tokyo")])),
        key(get("a=1", &[("prefer", "timezone=asia/tokyo")]))
    );
    assert_eq!(
        key(get("a=1", &[("prefer", "count=exact, timezone=UTC")])),
        key(get("a=1", &[("prefer", "timezone=UTC,count=exact")]))
    );
    for prefer in ["COUNT=EXACT", "count=planned, count=exact"] {
        assert_eq!(
            get("a=1", &[("prefer", prefer)]),
            Plan::Bypass("prefer"),
            "{prefer}"
        );
    }
    // A parameter without `=` is dropped by PostgREST; `select` and `limit` given twice
    // are resolved first-wins and last-wins.
    assert_eq!(get("a", &[]), Plan::Bypass("parameter without a value"));
    assert_eq!(get("a=1&b", &[]), Plan::Bypass("parameter without a value"));
    for q in ["a=1&select=x&select=y", "a=1&limit=1&limit=2"] {
        assert_eq!(get(q, &[]), Plan::Bypass("repeated parameter"), "{q}");
    }
    // A number that is not an integer is keyed by its text: `numeric` keeps the scale.
    assert_ne!(key(post(r#"{"n": 19.990}"#)), key(post(r#"{"n": 19.99}"#)));
    assert_ne!(key(post(r#"{"n": [1.0]}"#)), key(post(r#"{"n": [1]}"#)));
    assert_eq!(
        key(post(r#"{"n": 7, "a": "x"}"#)),
        key(post(r#"{"a":"x","n":7}"#))
    );
    assert_eq!(
        post(r#"{"n": 1, "n": 2}"#),
        Plan::Bypass("repeated argument")
    );
}

/// In `user` scope, a token's other claims (MFA level, metadata) are part of the key.
#[test]
fn user_scope_keys_on_the_claims() {
    let with = |claims: &str| {
        let identity = Identity {
            role: "authenticated".into(),
            sub: Some("user-a".into()),
            claims: claims.into(),
        };
        let (method, headers) = (Method::GET, HeaderMap::new());
        let call = Call {
            function: "my_notes",
            method: &method,
            query: Some("a=1"),
            headers: &headers,
            body: b"",
        };
        (
            key(plan(&call, Scope::User, &identity, None)),
            key(plan(&call, Scope::Role, &identity, None)),
        )
    };
    let (aal1, role1) = with("0123456789abcdef0123456789abcdef");
    let (aal2, role2) = with("fedcba9876543210fedcba9876543210");
    assert_ne!(aal1, aal2);
    assert_eq!(role1, role2, "role scope: the role alone");
}

/// Two queries that differ only in bytes that are not UTF-8 must not share a key (a lossy
/// decoding made both `\u{FFFD}`): such a call is forwarded. Empty pairs do not count.
#[test]
fn queries_that_are_not_utf8_are_forwarded() {
    let get = |query| plan_of(Method::GET, Some(query), &[], "", Scope::User, USER_A);
    for query in ["a=%FF", "a=%FE", "%C3=1"] {
        assert!(
            matches!(get(query), Plan::Bypass("query not UTF-8")),
            "{query}"
        );
    }
    assert_eq!(key(get("a=x+y&&b=2&")), key(get("a=x+y&b=2")));
}
