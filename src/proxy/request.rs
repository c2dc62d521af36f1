//! What a proxied RPC answer depends on, canonicalised into its key; or why the call
//! is forwarded without the cache. The key covers the schema profile, the function,
//! the arguments (GET query or POST JSON object, key order and whitespace aside), the
//! response-shaping parts (normalised `Accept`, the `Prefer` tokens that shape a read,
//! `Range`, `select`/`order`/`limit`/`offset` and, for POST, the filters in the query),
//! and the caller as far as the function's [`Scope`] says.
//!
//! GET arguments are text, so a POST string argument and the same GET parameter share
//! a key. Other JSON values (numbers, booleans, null, arrays, objects) are keyed by
//! their JSON text and type, apart from any GET parameter: for a `json`/`jsonb`
//! parameter PostgREST gives `?n=1` and `{"n": "1"}` different answers, and we cannot
//! tell the parameter types apart here.
//!
//! For `get_codette_context` in shared scope, a plain call (arguments `input_prompt` and
//! `optionally_filename` as text, nothing shaping the answer) is the original's request
//! and uses the original keys (`context:<md5>`), shared with `/codette/context`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use warp::http::{HeaderMap, Method};

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
    profile: &'a str,
    function: &'a str,
    args: BTreeMap<Cow<'a, str>, Arg<'a>>,
    accept: Cow<'a, str>,
    prefer: Vec<String>,
    range: &'a str,
    shaping: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    scope: &'static str,
    role: &'a str,
    sub: &'a str,
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
    let mut args = BTreeMap::new();
    let mut shaping = Vec::new();
    for pair in crate::form::pairs(call.query.unwrap_or("")) {
        let (name, value) = pair.map_err(|()| "query not UTF-8")?;
        if get && !SHAPING.contains(&name.as_ref()) {
            if args.insert(name, Arg::Text(value)).is_some() {
                return Err("repeated parameter");
            }
        } else {
            shaping.push((name, value));
        }
    }
    shaping.sort();
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
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(body).map_err(|_| "body")?;
            for (name, value) in object {
                let arg = match value {
                    serde_json::Value::String(s) => Arg::Text(s.into()),
                    other => Arg::Json(other.to_string()),
                };
                args.insert(name.into(), arg);
            }
        }
    }
    let (role, sub) = match scope {
        Scope::Shared => ("", ""),
        Scope::Role => (identity.role.as_str(), ""),
        // `Auto` is resolved at start-up; were it not, the narrowest scope is safe.
        Scope::User | Scope::Auto => (
            identity.role.as_str(),
            identity.sub.as_deref().unwrap_or(""),
        ),
    };
    Ok(Preimage {
        profile,
        function: call.function,
        args,
        accept,
        prefer,
        range,
        shaping,
        scope: scope.as_str(),
        role,
        sub,
    })
}

/// The media types PostgREST answers an RPC in, normalised; any other is forwarded.
fn accept(value: &str) -> Result<Cow<'static, str>, &'static str> {
    if matches!(value, "" | "*/*" | "application/json") {
        return Ok(Cow::Borrowed("json"));
    }
    let mut kinds = Vec::new();
    for item in value.split(',').filter(|i| !i.trim().is_empty()) {
        let mut parts = item.split(';').map(|p| p.trim().to_ascii_lowercase());
        let kind = match parts.next().as_deref() {
            Some("*/*" | "application/*" | "application/json") => "json",
            Some("application/vnd.pgrst.object+json" | "application/vnd.pgrst.object") => "object",
            Some("text/csv") => "csv",
            Some("text/plain") => "text",
            _ => return Err("accept"),
        };
        let params: Vec<String> = parts.filter(|p| !p.starts_with("q=")).collect();
        kinds.push(if params.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind};{}", params.join(";"))
        });
    }
    Ok(match kinds.as_slice() {
        [] => Cow::Borrowed("json"),
        _ => Cow::Owned(kinds.join(",")),
    })
}

/// The `Prefer` tokens that shape a read; any other (`tx=`, `return=`, `params=`, …)
/// asks for something a cached answer would not give, so the call is forwarded.
fn prefer(value: &str) -> Result<Vec<String>, &'static str> {
    let mut tokens = Vec::new();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let lower = token.to_ascii_lowercase();
        let shaping = matches!(
            lower.as_str(),
            "count=exact"
                | "count=planned"
                | "count=estimated"
                | "handling=strict"
                | "handling=lenient"
        ) || lower.starts_with("timezone=");
        if !shaping {
            return Err("prefer");
        }
        tokens.push(lower);
    }
    tokens.sort();
    tokens.dedup();
    Ok(tokens)
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
