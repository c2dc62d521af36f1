//! Raw-HTTP requests to the PostgREST-shaped test gateway (no client library), shared
//! by `gateway_auth` and `gateway_rest`: the gateway behaves like PostgREST with JWTs.

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

use crate::common::postgrest::{Postgrest, anon_key};
use crate::common::{API_KEY, TestPostgres};

pub fn start() -> (TestPostgres, Postgrest) {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    (pg, rest)
}

/// A request with `apikey` = the anon key and, when given, `Authorization: Bearer token`.
pub fn request(method: &str, url: String, token: Option<&str>) -> RequestBuilder {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut builder = Client::new()
        .request(method, url)
        .header("apikey", anon_key());
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    builder
}

pub fn rpc(rest: &Postgrest, function: &str, token: Option<&str>) -> RequestBuilder {
    request(
        "POST",
        format!("{}/rest/v1/rpc/{function}", rest.url()),
        token,
    )
}

pub fn body(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
