//! What a proxied RPC answer depends on, canonicalised into its key; or why the call
//! is forwarded without the cache. The key covers the method, the schema profile, the
//! function, the arguments (GET query or POST JSON object, key order and whitespace
//! aside), the response-shaping parts (`Accept`, the `Prefer` tokens that shape a read,
//! `Range`, `select`/`order`/`limit`/`offset` and, for POST, the filters in the query),
//! and the caller as far as the function's [`Scope`] says (in `user` scope, all of the
//! token's claims but its times).
//!
//! Canonicalising never merges two calls PostgREST could answer differently; where it
//! cannot tell, the call is forwarded instead:
//! - GET and POST are keyed apart: a GET parameter that is not an argument is a
//!   filter, while the same name in a POST body is an unknown argument (an error).
//! - A parameter without `=` (PostgREST drops it) is forwarded, as is a repeated one
//!   (PostgREST takes the first `select` but the last `limit`).
//! - `Accept` is kept whole, `q` values and order included; only a lone `*/*` or
//!   `application/json` is the same as none.
//! - `Prefer` tokens are compared exactly (PostgREST's are case-sensitive); a
//!   preference given twice is forwarded.
//! - JSON arguments are keyed by their compact text, unless a number in the body is not
//!   an integer (`19.990` and `19.99` parse to one `f64` but are different `numeric`s):
//!   then by the body's exact text. An object naming an argument twice is forwarded.
//!
//! For `get_codette_context` in shared scope, a plain call (arguments `input_prompt` and
//! `optionally_filename` as text, nothing shaping the answer) is the original's request
//! and uses the original keys (`context:<md5>`), shared with `/codette/context`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use warp::http::{HeaderMap, Method};

use super::canonical::{Entries, accept, prefer, value_has_fraction};
use super::{Identity, Scope};
use crate::chain::Chain;
use crate::key::Key;
use crate::origins::ContextRequest;

/// Query parameters that shape the answer rather than name an argument (PostgREST's).
const SHAPING: &[&str] = &[
    "select",
    "order",
    "limit",
    "offset",
    "columns",
    "on_conflict",
];

/// What to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Served through the cache under `key`.
    Cached(Key),
    /// The original function's request: served by the `/codette/context` chain.
    Original(Arc<Original>),
    /// Forwarded, not stored; why, for the logs.
    Bypass(&'static str),
}

/// The original function's request, and its key once derived. The plan memo keeps a
/// hot call's plan, so the key (an MD5) is derived once, not on every hit. It is kept
/// with what it also depends on, the chain's namespace and its reloadable `normalize`:
/// under another setting it is derived afresh.
#[derive(Debug)]
pub struct Original {
    pub request: Arc<ContextRequest>,
    key: OnceLock<(Box<str>, bool, Key)>,
}

impl Original {
    pub fn new(request: ContextRequest) -> Self {
        Self {
            request: Arc::new(request),
            key: OnceLock::new(),
        }
    }

    /// The key `chain` files this request under now.
    pub fn key_in(&self, chain: &Chain) -> Key {
        let normalize = chain.normalizes();
        match self.key.get() {
            Some((namespace, n, key)) if *n == normalize && **namespace == *chain.namespace() => {
                key.clone()
            }
            _ => {
                let request = &self.request;
                let key = chain.key_for(&request.message, request.filename.as_deref());
                // The first setting seen is kept; a later one derives each time.
                let _ = self
                    .key
                    .set((chain.namespace().into(), normalize, key.clone()));
                key
            }
        }
    }
}

/// The same request is the same plan, whatever key was derived for it so far.
impl PartialEq for Original {
    fn eq(&self, other: &Self) -> bool {
        self.request == other.request
    }
}

impl Eq for Original {}

/// A call's parts, as the client sent them.
pub struct Call<'a> {
    pub function: &'a str,
    pub method: &'a Method,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// An argument's value, typed as far as the key needs.
#[derive(Serialize, PartialEq, Eq)]
enum Arg<'a> {
    /// A GET parameter or a POST string.
    Text(Cow<'a, str>),
    /// Any other JSON value, compact.
    Json(String),
}

/// Everything the key covers.
#[derive(Serialize)]
struct Preimage<'a> {
    method: &'static str,
    profile: &'a str,
    function: &'a str,
    args: BTreeMap<Cow<'a, str>, Arg<'a>>,
    accept: Cow<'a, str>,
    prefer: Vec<&'a str>,
    range: &'a str,
    shaping: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The body as sent, when its numbers do not all survive parsing.
    exact_body: &'a str,
    scope: &'static str,
    role: &'a str,
    sub: &'a str,
    claims: &'a str,
}

/// Plans `call` for a function cached in `scope` (`Auto` is resolved at start-up), for
/// a verified caller. `original` bounds an original request's prompt, as on
/// `/codette/context` (its `max_message_bytes`); `None` when the `/codette/context`
/// chain does not ask the same upstream, so its entries cannot stand in.
pub fn plan(call: &Call, scope: Scope, identity: &Identity, original: Option<usize>) -> Plan {
    match preimage(call, scope, identity) {
        Ok(p) => {
            let request = original.and_then(|limit| original_request(call, scope, &p, limit));
            if let Some(request) = request {
                return Plan::Original(Arc::new(Original::new(request)));
            }
            // Purges find the original function's answers by its prompt and filename
            // (`chain/call.rs`): a call of it that does not say them is not kept.
            if call.function == Key::ORIGINAL_FUNCTION && !names_the_prompt(&p) {
                return Plan::Bypass("arguments");
            }
            let mut preimage = Vec::with_capacity(256);
            match serde_json::to_writer(&mut preimage, &p) {
                Ok(()) => Plan::Cached(Key::rpc(call.function, &preimage)),
                Err(_) => Plan::Bypass("arguments"),
            }
        }
        Err(why) => Plan::Bypass(why),
    }
}

fn preimage<'a>(
    call: &'a Call,
    scope: Scope,
    identity: &'a Identity,
) -> Result<Preimage<'a>, &'static str> {
    let get = *call.method == Method::GET || *call.method == Method::HEAD;
    if !get && *call.method != Method::POST {
        return Err("method");
    }
    let header = |name: &str| -> Result<Option<&'a str>, &'static str> {
        let mut values = call.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(|v| Some(v.trim())).map_err(|_| "header"),
            (Some(_), Some(_)) => Err("header"),
        }
    };
    let accept = accept(header("accept")?.unwrap_or(""))?;
    let prefer = prefer(header("prefer")?.unwrap_or(""))?;
    let range = header("range")?.unwrap_or("");
    let profile = header(if get {
        "accept-profile"
    } else {
        "content-profile"
    })?
    .unwrap_or("");
    let query = call.query.unwrap_or("");
    if query.split('&').any(|p| !p.is_empty() && !p.contains('=')) {
        return Err("parameter without a value");
    }
    let mut args = BTreeMap::new();
    let mut shaping = Vec::new();
    for pair in crate::form::pairs(query) {
        let (name, value) = pair.map_err(|()| "query not UTF-8")?;
        if get && !SHAPING.contains(&name.as_ref()) {
            if args.insert(name, Arg::Text(value)).is_some() {
                return Err("repeated parameter");
            }
        } else {
            if SHAPING.contains(&name.as_ref()) && shaping.iter().any(|(n, _)| *n == name) {
                return Err("repeated parameter");
            }
            shaping.push((name, value));
        }
    }
    // Filters (a POST's other parameters) all apply, in any order.
    shaping.sort();
    let mut exact_body = "";
    if !get {
        let json = header("content-type")?.map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        if json.as_deref().is_some_and(|t| t != "application/json") {
            return Err("content type");
        }
        let body = std::str::from_utf8(call.body).map_err(|_| "body")?;
        if !body.trim().is_empty() {
            let Entries(entries) = serde_json::from_str(body).map_err(|_| "body")?;
            for (name, value) in entries {
                if value_has_fraction(&value) {
                    exact_body = body;
                }
                let arg = match value {
                    serde_json::Value::String(s) => Arg::Text(s.into()),
                    other => Arg::Json(other.to_string()),
                };
                if args.insert(name.into(), arg).is_some() {
                    return Err("repeated argument");
                }
            }
        }
    }
    let (role, sub, claims) = match scope {
        Scope::Shared => ("", "", ""),
        Scope::Role => (identity.role.as_str(), "", ""),
        // `Auto` is resolved at start-up; were it not, the narrowest scope is safe.
        Scope::User | Scope::Auto => (
            identity.role.as_str(),
            identity.sub.as_deref().unwrap_or(""),
            identity.claims.as_str(),
        ),
    };
    Ok(Preimage {
        method: if get { "get" } else { "post" },
        profile,
        function: call.function,
        args,
        accept,
        prefer,
        range,
        shaping,
        exact_body,
        scope: scope.as_str(),
        role,
        sub,
        claims,
    })
}

/// Whether the original function's arguments say its prompt (text) and filename (text,
/// null or absent), as `RpcCall::original_request` reads them.
fn names_the_prompt(p: &Preimage) -> bool {
    matches!(p.args.get("input_prompt"), Some(Arg::Text(_)))
        && match p.args.get("optionally_filename") {
            None | Some(Arg::Text(_)) => true,
            Some(Arg::Json(j)) => j == "null",
        }
}

/// The original's request, when `call` is a plain call of its function in shared scope.
fn original_request(
    call: &Call,
    scope: Scope,
    p: &Preimage,
    max_message_bytes: usize,
) -> Option<ContextRequest> {
    let plain = call.function == Key::ORIGINAL_FUNCTION
        && scope == Scope::Shared
        && matches!(p.profile, "" | "public")
        && p.accept == "json"
        && p.prefer.is_empty()
        && p.range.is_empty()
        && p.shaping.is_empty()
        && p.args
            .keys()
            .all(|k| k == "input_prompt" || k == "optionally_filename");
    if !plain {
        return None;
    }
    let text = |name: &str| match p.args.get(name) {
        Some(Arg::Text(t)) => Some(Some(t.to_string())),
        Some(Arg::Json(j)) if j == "null" => Some(None),
        None => Some(None),
        Some(Arg::Json(_)) => None,
    };
    let request = ContextRequest {
        message: text("input_prompt")??,
        filename: text("optionally_filename")?,
    };
    // A prompt `/codette/context` would refuse is the upstream's to answer.
    ContextRequest::check(
        &request.message,
        request.filename.as_deref(),
        max_message_bytes,
    )
    .ok()
    .map(|()| request)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "request_merge_tests.rs"]
mod merge_tests;
