//! A memo, per worker thread, of the plans of `GET`/`HEAD` calls ([`request::plan`]):
//! building the key's preimage (headers, query, arguments), serialising and hashing it
//! were a third of a proxied hit's instructions. A plan is a pure function of what
//! the memo's key holds: the method, the function, the query, the four headers `plan`
//! reads for a GET (kept only when each has at most one value), the scope, the caller's
//! role, user and claims digest, and the original's limit, each length-prefixed, so two different
//! calls never share a memo key. A `POST` (a body) is planned each time.

use std::cell::RefCell;

use warp::http::{HeaderName, Method, header};

use super::request::{self, Call, Plan};
use super::{Identity, Scope};
use crate::memo::{self, Memo};

/// The headers [`request::plan`] reads for a `GET`.
const READ: [HeaderName; 4] = [
    header::ACCEPT,
    HeaderName::from_static("prefer"),
    header::RANGE,
    HeaderName::from_static("accept-profile"),
];

thread_local! {
    static MEMO: RefCell<Memo<Plan>> = const { RefCell::new(Memo::new()) };
    /// The memo key is written here, so a hit allocates nothing for it.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// [`request::plan`], from this thread's memo when the same call came before.
pub fn plan(call: &Call, scope: Scope, identity: &Identity, original: Option<usize>) -> Plan {
    KEY.with_borrow_mut(|key| {
        // Whatever one huge call grew it to is not kept.
        key.clear();
        key.shrink_to(4 * memo::LONGEST);
        if !memo_key(call, scope, identity, original, key) {
            return request::plan(call, scope, identity, original);
        }
        let hash = memo::hash(key);
        if let Some(plan) = MEMO.with_borrow(|m| m.get(hash, key, |_| true)) {
            return plan;
        }
        let plan = request::plan(call, scope, identity, original);
        MEMO.with_borrow_mut(|m| m.put(hash, key, plan.clone()));
        plan
    })
}

/// Writes into `key` everything the plan of a `GET`/`HEAD` depends on; `false` for
/// other methods and for a read header given twice.
fn memo_key(
    call: &Call,
    scope: Scope,
    identity: &Identity,
    original: Option<usize>,
    key: &mut Vec<u8>,
) -> bool {
    if *call.method != Method::GET && *call.method != Method::HEAD {
        return false;
    }
    field(key, Some(call.method.as_str().as_bytes()));
    field(key, Some(call.function.as_bytes()));
    field(key, call.query.map(str::as_bytes));
    for name in &READ {
        let mut values = call.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (value, None) => field(key, value.map(|v| v.as_bytes())),
            (Some(_), Some(_)) | (None, Some(_)) => return false,
        }
    }
    field(key, Some(scope.as_str().as_bytes()));
    field(key, Some(identity.role.as_bytes()));
    field(key, identity.sub.as_deref().map(str::as_bytes));
    field(key, Some(identity.claims.as_bytes()));
    field(
        key,
        original.map(|l| l.to_le_bytes()).as_ref().map(|l| &l[..]),
    );
    true
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

    /// One variant of a call: which part differs from the base call.
    struct Variant<'a> {
        method: &'a Method,
        query: Option<&'a str>,
        headers: HeaderMap,
        scope: Scope,
        sub: Option<&'a str>,
        limit: Option<usize>,
    }

    impl Variant<'_> {
        fn key(&self) -> Option<Vec<u8>> {
            let who = Identity {
                role: "authenticated".into(),
                sub: self.sub.map(Into::into),
                claims: String::new(),
            };
            let c = call(self.method, self.query, &self.headers);
            let mut key = Vec::new();
            memo_key(&c, self.scope, &who, self.limit, &mut key).then_some(key)
        }
    }

    /// Each part the plan reads changes the memo key; the same call gives the same key.
    /// A POST and a header given twice are not kept.
    #[test]
    fn every_input_of_a_plan_is_in_its_key() {
        let (get, head, post) = (Method::GET, Method::HEAD, Method::POST);
        let base = || Variant {
            method: &get,
            query: Some("a=1"),
            headers: HeaderMap::new(),
            scope: Scope::User,
            sub: Some("u1"),
            limit: None,
        };
        let with = |name: &HeaderName, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.append(name.clone(), HeaderValue::from_static(value));
            headers
        };
        let mut variants = vec![
            base(),
            Variant {
                method: &head,
                ..base()
            },
            Variant {
                query: Some("a=2"),
                ..base()
            },
            Variant {
                query: None,
                ..base()
            },
            Variant {
                scope: Scope::Role,
                ..base()
            },
            Variant {
                sub: Some("u2"),
                ..base()
            },
            Variant {
                sub: None,
                ..base()
            },
            Variant {
                limit: Some(10),
                ..base()
            },
            // A value moving between fields is still another key.
            Variant {
                query: None,
                headers: with(&header::RANGE, "a=1"),
                ..base()
            },
        ];
        variants.extend(READ.iter().map(|n| Variant {
            headers: with(n, "x"),
            ..base()
        }));
        let keys: Vec<_> = variants.iter().map(Variant::key).collect();
        assert!(keys.iter().all(Option::is_some));
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(base().key(), keys[0]);

        assert!(
            Variant {
                method: &post,
                ..base()
            }
            .key()
            .is_none()
        );
        let mut twice = with(&header::ACCEPT, "a");
        twice.append(header::ACCEPT, HeaderValue::from_static("b"));
        assert!(
            Variant {
                headers: twice,
                ..base()
            }
            .key()
            .is_none()
        );
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
                    claims: String::new(),
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
