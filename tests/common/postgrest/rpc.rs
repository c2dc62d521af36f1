//! `/rest/v1/rpc/{function}`: counting, faults and credentials, then the arguments and
//! the overloads `pg_proc` offers, resolved like PostgREST's schema cache.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::Client;
use tokio_postgres::types::Type;
use warp::http::{HeaderMap, Method, Response};

use super::auth::authenticate;
use super::call::Call;
use super::reply::{check_profile, error, reply, wanted};
use super::{RecordedRequest, State, lock};

fn prefers_rollback(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "tx=rollback")
}

pub(super) async fn rpc(
    state: &State,
    function: &str,
    method: Method,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &[u8],
    recorded: RecordedRequest,
) -> Response<String> {
    let faults = &state.faults;
    faults.calls.fetch_add(1, Ordering::SeqCst);
    *lock(&faults.calls_by_function)
        .entry(function.to_string())
        .or_default() += 1;
    *lock(&faults.last) = Some(recorded);
    let delay = faults.delay_us.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    let caller = match authenticate(state, headers) {
        Ok(caller) => caller,
        Err(denied) => return denied,
    };
    match faults.fail_status.load(Ordering::SeqCst) {
        0 => {}
        status => return error(status, "PGRST000", "injected failure"),
    }
    if faults.malformed.load(Ordering::SeqCst) {
        return reply(200, "{\"snippets\": [ this is not json".to_string());
    }
    match faults.huge_body.load(Ordering::SeqCst) {
        0 => {}
        bytes => return reply(200, huge_body(bytes)),
    }
    if let Err(refused) = check_profile(headers) {
        return refused;
    }
    let wanted = match wanted(headers) {
        Ok(wanted) => wanted,
        Err(refused) => return refused,
    };
    let (args, read_only_method) = match method {
        Method::GET | Method::HEAD => (
            query
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
            true,
        ),
        Method::POST => match post_args(body) {
            Some(args) => (args, false),
            None => return error(400, "PGRST102", "Empty or invalid json"),
        },
        _ => return error(405, "PGRST117", "Unsupported HTTP method"),
    };
    let call = Call {
        function,
        args,
        read_only_method,
        wanted,
        rollback: prefers_rollback(headers),
        caller,
        method: method.as_str(),
        path: format!("/rpc/{function}"),
        headers,
    };
    call.run(state).await
}

/// The named arguments of a POST body: a JSON object (an empty body is no arguments).
fn post_args(body: &[u8]) -> Option<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A function of `public` as `pg_proc` describes it.
#[derive(Debug)]
pub(super) struct Function {
    /// Input arguments: name, type (as `format_type` spells it), has a default.
    pub(super) args: Vec<(String, String, bool)>,
    pub(super) returns_set: bool,
    pub(super) volatile: bool,
}

impl Function {
    /// Whether a call with exactly these argument names can be made.
    pub(super) fn accepts(&self, names: &[&String]) -> bool {
        names
            .iter()
            .all(|n| self.args.iter().any(|(a, _, _)| a == *n))
            && self
                .args
                .iter()
                .all(|(a, _, default)| *default || names.contains(&a))
    }
}

const INTROSPECT: &str = "\
SELECT coalesce(p.proargnames, '{}'::text[]),
       coalesce(p.proargmodes::text[], '{}'::text[]),
       ARRAY(SELECT format_type(t.oid, NULL)
             FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS t(oid, i) ORDER BY t.i),
       p.pronargdefaults::int4, p.proretset, p.provolatile = 'v'
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname = $1 AND p.prokind = 'f'";

/// The overloads of `public.{name}`.
pub(super) async fn functions(
    client: &Client,
    name: &str,
) -> Result<Vec<Function>, tokio_postgres::Error> {
    let rows = client
        .query_typed(INTROSPECT, &[(&name, Type::TEXT)])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let names: Vec<String> = row.get(0);
            let modes: Vec<String> = row.get(1);
            let types: Vec<String> = row.get(2);
            let defaults = usize::try_from(row.get::<_, i32>(3)).unwrap_or(0);
            // proargnames covers every argument when modes are given (OUT ones too).
            let input_names: Vec<String> = if modes.is_empty() {
                names
                    .into_iter()
                    .chain(std::iter::repeat(String::new()))
                    .take(types.len())
                    .collect()
            } else {
                names
                    .into_iter()
                    .chain(std::iter::repeat(String::new()))
                    .zip(&modes)
                    .filter(|(_, m)| matches!(m.as_str(), "i" | "b" | "v"))
                    .map(|(n, _)| n)
                    .collect()
            };
            let first_default = types.len().saturating_sub(defaults);
            Function {
                args: input_names
                    .into_iter()
                    .zip(types)
                    .enumerate()
                    .map(|(i, (n, t))| (n, t, i >= first_default))
                    .collect(),
                returns_set: row.get(4),
                volatile: row.get(5),
            }
        })
        .collect())
}

fn huge_body(bytes: usize) -> String {
    let head = r#"{"snippets":[{"filename":"huge.txt","snippet":""#;
    let tail = r#""}],"file":null,"chat_history":[]}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}
