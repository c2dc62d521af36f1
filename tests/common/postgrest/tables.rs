//! `GET|HEAD /rest/v1/{table}`: a simple `select`, `eq` filters, `order`, `limit` and
//! `offset`, read in a read-only transaction as the caller, with `Content-Range`.

use tokio_postgres::types::{ToSql, Type};
use warp::http::{HeaderMap, Method, Response};

use super::State;
use super::auth::authenticate;
use super::call::{failed, finish, in_transaction, is_ident, quote};
use super::checkout;
use super::reply::{
    Wanted, check_profile, content_range, error, pgrst_error, reply, reply_object, set_header,
    single_object, unavailable, unavailable_text, wanted,
};

/// `GET /rest/v1/{table}?select=a,b&col=eq.v&order=a.desc&limit=n&offset=m`, run like an
/// RPC (role, claims, read-only transaction), so row-level security applies.
pub(super) async fn read_table(
    state: &State,
    table: &str,
    method: Method,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Response<String> {
    if !is_ident(table) {
        return error(404, "PGRST125", "Invalid path specified in request URL");
    }
    let caller = match authenticate(state, headers) {
        Ok(caller) => caller,
        Err(denied) => return denied,
    };
    if !matches!(method, Method::GET | Method::HEAD) {
        return error(405, "PGRST117", "Unsupported HTTP method");
    }
    if let Err(refused) = check_profile(headers) {
        return refused;
    }
    let wanted = match wanted(headers) {
        Ok(wanted) => wanted,
        Err(refused) => return refused,
    };
    let mut columns = "*".to_string();
    let mut filters: Vec<String> = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let mut order = String::new();
    let mut limit = String::new();
    let mut offset = 0i64;
    let bad = |what: &str| error(400, "PGRST100", &format!("failed to parse {what}"));
    for (key, value) in query {
        match key.as_str() {
            "select" => {
                if value.trim() != "*" {
                    let names: Vec<&str> = value.split(',').map(str::trim).collect();
                    if names.iter().any(|n| n.is_empty() || n.contains('"')) {
                        return bad("select");
                    }
                    columns = names
                        .iter()
                        .map(|n| quote(n))
                        .collect::<Vec<_>>()
                        .join(", ");
                }
            }
            "order" => {
                let mut terms = Vec::new();
                for term in value.split(',') {
                    let (col, dir) = match term.rsplit_once('.') {
                        Some((c, "asc")) => (c, "ASC"),
                        Some((c, "desc")) => (c, "DESC"),
                        _ => (term, "ASC"),
                    };
                    if col.is_empty() || col.contains('"') {
                        return bad("order");
                    }
                    terms.push(format!("{} {dir}", quote(col)));
                }
                order = format!(" ORDER BY {}", terms.join(", "));
            }
            "limit" => match value.parse::<u64>() {
                Ok(n) => limit = format!(" LIMIT {n}"),
                Err(_) => return bad("limit"),
            },
            "offset" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => offset = n,
                _ => return bad("offset"),
            },
            column => match value.split_once('.') {
                Some(("eq", v)) if !column.contains('"') => {
                    values.push(v.to_string());
                    filters.push(format!("{}::text = ${}", quote(column), values.len()));
                }
                _ => return bad(&format!("filter {column}={value}")),
            },
        }
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    let sql = format!(
        "SELECT coalesce(json_agg(_t), '[]')::text, count(*) FROM \
         (SELECT {columns} FROM public.{}{filter}{order}{limit} OFFSET {offset}) _t",
        quote(table)
    );
    let params: Vec<(&(dyn ToSql + Sync), Type)> = values
        .iter()
        .map(|v| (v as &(dyn ToSql + Sync), Type::TEXT))
        .collect();
    let mut client = match checkout(state).await {
        Ok(client) => client,
        Err(e) => return unavailable(&e),
    };
    let path = format!("/{table}");
    let outcome = in_transaction(
        &mut client,
        true,
        &caller,
        method.as_str(),
        &path,
        headers,
        &sql,
        &params,
    )
    .await;
    let rows = match outcome {
        Ok(rows) => rows,
        Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("42P01") => {
            finish(state, client, false).await;
            return pgrst_error(
                404,
                "PGRST205",
                &format!("Could not find the table 'public.{table}' in the schema cache"),
                None,
                None,
            );
        }
        Err(e) => return failed(state, client, &e, &caller).await,
    };
    if !finish(state, client, true).await {
        return unavailable_text("the transaction did not end");
    }
    let (body, count) = rows
        .first()
        .map(|row| (row.get::<_, Option<String>>(0), row.get::<_, i64>(1)))
        .unwrap_or((None, 0));
    let body = body.unwrap_or_else(|| "[]".to_string());
    let mut response = match wanted {
        Wanted::Object => match single_object(&body, count) {
            Ok(body) => reply_object(body),
            Err(refused) => return refused,
        },
        Wanted::Json => reply(200, body),
    };
    set_header(
        &mut response,
        "content-range",
        &content_range(offset, count),
    );
    response
}
