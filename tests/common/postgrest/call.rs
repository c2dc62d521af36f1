//! One RPC call run as PostgREST runs it, and the transaction plumbing table reads
//! share: role and claims set locally, COMMIT or ROLLBACK, SQLSTATE to HTTP status.

use serde_json::{Map, Value};
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use warp::http::{HeaderMap, Response};

use super::auth::Caller;
use super::reply::{
    Wanted, content_range, pgrst_error, reply, reply_object, set_header, single_object,
    unavailable, unavailable_text,
};
use super::rpc::{Function, functions};
use super::{State, checkout, lock};

/// One RPC call, run as PostgREST runs it.
pub(super) struct Call<'a> {
    pub(super) function: &'a str,
    pub(super) args: Map<String, Value>,
    pub(super) read_only_method: bool,
    pub(super) wanted: Wanted,
    pub(super) rollback: bool,
    pub(super) caller: Caller,
    pub(super) method: &'a str,
    pub(super) path: String,
    pub(super) headers: &'a HeaderMap,
}

impl Call<'_> {
    fn not_found(&self) -> Response<String> {
        let f = self.function;
        let names: Vec<&str> = self.args.keys().map(String::as_str).collect();
        let (message, details) = if names.is_empty() {
            (
                format!(
                    "Could not find the function public.{f} without parameters in the schema cache"
                ),
                format!(
                    "Searched for the function public.{f} without parameters or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."
                ),
            )
        } else {
            let list = names.join(", ");
            (
                format!("Could not find the function public.{f}({list}) in the schema cache"),
                format!(
                    "Searched for the function public.{f} with parameters {list} or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."
                ),
            )
        };
        pgrst_error(404, "PGRST202", &message, Some(&details), None)
    }

    pub(super) async fn run(self, state: &State) -> Response<String> {
        if !is_ident(self.function) {
            return self.not_found();
        }
        let mut client = match checkout(state).await {
            Ok(client) => client,
            Err(e) => return unavailable(&e),
        };
        let overloads = match functions(&client, self.function).await {
            Ok(found) => found,
            Err(e) => return failed(state, client, &e, &self.caller).await,
        };
        let names: Vec<&String> = self.args.keys().collect();
        let candidates: Vec<&Function> = overloads.iter().filter(|f| f.accepts(&names)).collect();
        let function = match candidates[..] {
            [one] => one,
            [] => {
                lock(&state.pool).push(client);
                return self.not_found();
            }
            _ => {
                lock(&state.pool).push(client);
                return pgrst_error(
                    300,
                    "PGRST203",
                    &format!(
                        "Could not choose the best candidate function between: public.{}",
                        self.function
                    ),
                    None,
                    Some(
                        "Try renaming the parameters or the function itself in the database so function overloading can be resolved",
                    ),
                );
            }
        };

        // SELECT ... FROM json_to_record($1::json) AS _args("a" type, ...): PostgREST's way
        // of giving each argument its declared type.
        let typed: Vec<(&String, &String)> = function
            .args
            .iter()
            .filter(|(n, _, _)| self.args.contains_key(n))
            .map(|(n, t, _)| (n, t))
            .collect();
        let call = format!(
            "public.{}({})",
            quote(self.function),
            typed
                .iter()
                .map(|(n, _)| format!("{0} => _args.{0}", quote(n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let from_args = if typed.is_empty() {
            String::new()
        } else {
            format!(
                " FROM json_to_record($1::json) AS _args({})",
                typed
                    .iter()
                    .map(|(n, t)| format!("{} {t}", quote(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let sql = if function.returns_set {
            let joined = if typed.is_empty() {
                format!(" FROM {call} AS _r")
            } else {
                format!("{from_args}, LATERAL {call} AS _r")
            };
            format!("SELECT coalesce(json_agg(_r), '[]')::text, count(*){joined}")
        } else {
            format!("SELECT to_json({call})::text, 1::int8{from_args}")
        };
        let args_json = Value::Object(self.args.clone()).to_string();
        let params: Vec<(&(dyn ToSql + Sync), Type)> = if typed.is_empty() {
            Vec::new()
        } else {
            vec![(&args_json, Type::TEXT)]
        };
        let read_only = self.read_only_method || !function.volatile;
        let outcome = in_transaction(
            &mut client,
            read_only,
            &self.caller,
            self.method,
            &self.path,
            self.headers,
            &sql,
            &params,
        )
        .await;
        let rows = match outcome {
            Ok(rows) => rows,
            Err(e) => {
                if e.as_db_error().map(|d| d.code().code()) == Some("42883") {
                    finish(state, client, false).await;
                    return self.not_found();
                }
                return failed(state, client, &e, &self.caller).await;
            }
        };
        if !finish(state, client, !self.rollback).await {
            return unavailable_text("the transaction did not end");
        }
        let (body, count) = rows
            .first()
            .map(|row| (row.get::<_, Option<String>>(0), row.get::<_, i64>(1)))
            .unwrap_or((None, 0));
        let body = body.unwrap_or_else(|| "null".to_string());
        let mut response = match (self.wanted, function.returns_set) {
            (Wanted::Object, true) => match single_object(&body, count) {
                Ok(body) => reply_object(body),
                Err(refused) => return refused,
            },
            (Wanted::Object, false) => reply_object(body),
            (Wanted::Json, _) => reply(200, body),
        };
        if function.returns_set {
            set_header(&mut response, "content-range", &content_range(0, count));
        }
        if self.rollback {
            set_header(&mut response, "preference-applied", "tx=rollback");
        }
        response
    }
}

/// BEGIN; set the role and request settings locally; run `sql`, pipelined in one round
/// trip. The transaction is left open for `finish`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn in_transaction(
    client: &mut Client,
    read_only: bool,
    caller: &Caller,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let begin = if read_only {
        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
    } else {
        "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
    };
    let request_headers = Value::Object(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.to_str().ok()?.into()))))
            .collect(),
    )
    .to_string();
    let (role, claims) = match caller {
        // The old behaviour: the connection's superuser, no claims.
        Caller::Superuser => (None, String::new()),
        Caller::Jwt { role, claims } => (Some(role.clone()), claims.to_string()),
    };
    // What PostgREST runs before the query (set_config('role', ...) is SET LOCAL ROLE).
    let setup = "SELECT set_config('search_path', 'public', true), \
                 set_config('role', coalesce($1, current_user), true), \
                 set_config('request.jwt.claims', $2, true), \
                 set_config('request.method', $3, true), \
                 set_config('request.path', $4, true), \
                 set_config('request.headers', $5, true), \
                 set_config('request.cookies', '{}', true)";
    let setup_params: [(&(dyn ToSql + Sync), Type); 5] = [
        (&role, Type::TEXT),
        (&claims, Type::TEXT),
        (&method, Type::TEXT),
        (&path, Type::TEXT),
        (&request_headers, Type::TEXT),
    ];
    let client = &*client;
    let (_, _, rows) = tokio::try_join!(
        client.batch_execute(begin),
        client.query_typed(setup, &setup_params),
        client.query_typed(sql, params),
    )?;
    Ok(rows)
}

/// COMMIT (or ROLLBACK) and give the connection back; false when that failed.
pub(super) async fn finish(state: &State, client: Client, commit: bool) -> bool {
    let end = if commit { "COMMIT" } else { "ROLLBACK" };
    match client.batch_execute(end).await {
        Ok(()) => {
            lock(&state.pool).push(client);
            true
        }
        Err(_) => false,
    }
}

/// The answer to a failed query: 503 when the database is gone, else PostgREST's status
/// for the SQLSTATE and its error body. The connection is rolled back and pooled again.
pub(super) async fn failed(
    state: &State,
    client: Client,
    e: &tokio_postgres::Error,
    caller: &Caller,
) -> Response<String> {
    let Some(db) = e.as_db_error() else {
        return unavailable(e);
    };
    let code = db.code().code();
    if code.starts_with("08") || code.starts_with("57P0") {
        return unavailable(e);
    }
    let response = pgrst_error(
        pg_status(code, caller.authenticated()),
        code,
        db.message(),
        db.detail(),
        db.hint(),
    );
    if client.batch_execute("ROLLBACK").await.is_ok() {
        lock(&state.pool).push(client);
    }
    response
}

/// PostgREST's HTTP status for a SQLSTATE.
fn pg_status(code: &str, authenticated: bool) -> u16 {
    match code {
        "23503" | "23505" => 409,
        "25006" => 405,
        "42883" | "42P01" => 404,
        "42P17" => 500,
        "42501" if authenticated => 403,
        "42501" => 401,
        "P0001" => 400,
        _ if code.starts_with("PT") => code[2..].parse().unwrap_or(500),
        _ => match &code[..code.len().min(2)] {
            "08" | "53" => 503,
            "0L" | "0P" | "28" => 403,
            "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0"
            | "HV" | "P0" | "XX" => 500,
            _ => 400,
        },
    }
}

pub(super) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A double-quoted SQL identifier.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
