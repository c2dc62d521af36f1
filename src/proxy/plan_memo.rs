//! A memo, per worker thread, of the plans of `GET`/`HEAD` calls ([`request::plan`]):
//! building the key's preimage (headers, query, arguments), serialising and hashing it
//! were a third of a proxied hit's instructions. A plan is a pure function of what
//! the memo's key holds: the method, the function, the query, the four headers `plan`
//! reads for a GET (kept only when each has at most one value), the scope, the caller's
//! role and user, and the original's limit, each length-prefixed, so two different
//! calls never share a memo key. A `POST` (a body) is planned each time.

use std::cell::RefCell;

use warp::http::{HeaderName, Method, header};

use super::request::{self, Call, Plan};
use super::{Identity, Scope};
use crate::memo::Memo;

/// The headers [`request::plan`] reads for a `GET`.
const READ: [HeaderName; 4] = [
    header::ACCEPT,
    HeaderName::from_static("prefer"),
    header::RANGE,
    HeaderName::from_static("accept-profile"),
];

thread_local! {
    static MEMO: RefCell<Memo<Plan>> = const { RefCell::new(Memo::new()) };
}

/// [`request::plan`], from this thread's memo when the same call came before.
pub fn plan(call: &Call, scope: Scope, identity: &Identity, original: Option<usize>) -> Plan {
    match memo_key(call, scope, identity, original) {
        Some(key) => {
            let hash = Memo::<Plan>::hash(&key);
            if let Some(plan) = MEMO.with_borrow(|m| m.get(hash, &key, |_| true)) {
                return plan;
            }
            let plan = request::plan(call, scope, identity, original);
            MEMO.with_borrow_mut(|m| m.put(hash, &key, plan.clone()));
            plan
        }
        None => request::plan(call, scope, identity, original),
    }
}

/// Everything the plan of a `GET`/`HEAD` depends on; `None` for other methods and for
/// a read header given twice.
fn memo_key(
    call: &Call,
    scope: Scope,
    identity: &Identity,
    original: Option<usize>,
) -> Option<Vec<u8>> {
    if *call.method != Method::GET && *call.method != Method::HEAD {
        return None;
    }
    let mut key = Vec::with_capacity(256);
    field(&mut key, Some(call.method.as_str().as_bytes()));
    field(&mut key, Some(call.function.as_bytes()));
    field(&mut key, call.query.map(str::as_bytes));
    for name in &READ {
        let mut values = call.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (value, None) => field(&mut key, value.map(|v| v.as_bytes())),
            (Some(_), Some(_)) | (None, Some(_)) => return None,
        }
    }
    field(&mut key, Some(scope.as_str().as_bytes()));
    field(&mut key, Some(identity.role.as_bytes()));
    field(&mut key, identity.sub.as_deref().map(str::as_bytes));
    field(
        &mut key,
        original.map(|l| l.to_le_bytes()).as_ref().map(|l| &l[..]),
    );
    Some(key)
}

/// Appends one field: absent, or present with its length.
fn field(key: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => key.push(0),
        Some(v) => {
            key.push(1);
            key.extend_from_slice(&(v.len() as u64).to_le_bytes());
            key.extend_from_slice(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::{HeaderMap, HeaderValue};

    fn call<'a>(method: &'a Method, query: Option<&'a str>, headers: &'a HeaderMap) -> Call<'a> {
        Call {
            function: "f",
            method,
            query,
            headers,
            body: b"",
        }
    }

    /// Each part the plan reads changes the memo key; the same call gives the same key
    /// and the same plan as planning it afresh.
    #[test]
    fn every_input_of_a_plan_is_in_its_key() {
        let user = |sub: Option<&str>| Identity {
            role: "authenticated".into(),
            sub: sub.map(Into::into),
        };
        let (get, head) = (Method::GET, Method::HEAD);
        let none = HeaderMap::new();
        let base = memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::User,
            &user(Some("u1")),
            None,
        );
        let mut keys = vec![base.clone()];
        keys.push(memo_key(
            &call(&head, Some("a=1"), &none),
            Scope::User,
            &user(Some("u1")),
            None,
        ));
        keys.push(memo_key(
            &call(&get, Some("a=2"), &none),
            Scope::User,
            &user(Some("u1")),
            None,
        ));
        keys.push(memo_key(
            &call(&get, None, &none),
            Scope::User,
            &user(Some("u1")),
            None,
        ));
        keys.push(memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::Role,
            &user(Some("u1")),
            None,
        ));
        keys.push(memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::User,
            &user(Some("u2")),
            None,
        ));
        keys.push(memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::User,
            &user(None),
            None,
        ));
        keys.push(memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::User,
            &user(Some("u1")),
            Some(10),
        ));
        for name in &READ {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_static("x"));
            keys.push(memo_key(
                &call(&get, Some("a=1"), &headers),
                Scope::User,
                &user(Some("u1")),
                None,
            ));
        }
        // A value moving between fields is still another key.
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_static("a=1"));
        keys.push(memo_key(
            &call(&get, None, &headers),
            Scope::User,
            &user(Some("u1")),
            None,
        ));
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert!(keys.iter().all(Option::is_some));
        let again = memo_key(
            &call(&get, Some("a=1"), &none),
            Scope::User,
            &user(Some("u1")),
            None,
        );
        assert_eq!(again, base);

        // A POST and a header given twice are planned afresh, not kept.
        let post = Method::POST;
        assert!(memo_key(&call(&post, None, &none), Scope::User, &user(None), None).is_none());
        let mut twice = HeaderMap::new();
        twice.append(header::ACCEPT, HeaderValue::from_static("a"));
        twice.append(header::ACCEPT, HeaderValue::from_static("b"));
        assert!(memo_key(&call(&get, None, &twice), Scope::User, &user(None), None).is_none());
    }

    /// The memo gives what planning afresh gives, for users apart and for repeats.
    #[test]
    fn a_kept_plan_is_the_fresh_plan() {
        let get = Method::GET;
        let none = HeaderMap::new();
        for round in 0..2 {
            for sub in ["u1", "u2"] {
                let who = Identity {
                    role: "authenticated".into(),
                    sub: Some(sub.into()),
                };
                let c = call(&get, Some("n=1"), &none);
                assert_eq!(
                    plan(&c, Scope::User, &who, None),
                    request::plan(&c, Scope::User, &who, None),
                    "round {round}, {sub}"
                );
            }
        }
    }
}
