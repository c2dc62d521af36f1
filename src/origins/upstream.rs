//! The proxy's origin: a client's RPC call forwarded to the Supabase project as the
//! client made it (its own `apikey` and `Authorization`, so row-level security sees the
//! caller), the answer kept whole in an [`Envelope`]: status, the headers to replay,
//! the body. Every status is an answer here, relayed verbatim; whether it is stored is
//! the chain's judgement (`Envelope::storable_for`). Only a call that brings no answer
//! (timeout, connection error, a body over the limit) is an [`OriginError`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName};
use warp::http::uri::PathAndQuery;

use super::OriginError;
use crate::envelope::{self, Envelope};

/// One RPC call to forward.
#[derive(Debug, Clone)]
pub struct RpcCall {
    /// The function, as in the path (`get_codette_context`).
    pub function: Arc<str>,
    /// GET or POST (a HEAD is asked as GET).
    pub post: bool,
    /// The path and query as the client sent them (shared with the request, not
    /// copied: a hit never reads them); only the query is sent on.
    pub target: Option<PathAndQuery>,
    /// The client's request headers, as they came ([`sent_on`] picks what is sent).
    pub headers: HeaderMap,
    /// The POST body.
    pub body: Bytes,
}

impl RpcCall {
    /// The original function's prompt and filename, when this calls it with readable
    /// arguments (`input_prompt` a string; `optionally_filename` a string, null or
    /// absent): what its answer depends on, for the tags a purge finds it by.
    pub fn original_request(&self) -> Option<(String, Option<String>)> {
        if *self.function != *crate::names::ORIGINAL_FUNCTION {
            return None;
        }
        if self.post {
            #[derive(serde::Deserialize)]
            struct Args {
                input_prompt: String,
                #[serde(default)]
                optionally_filename: Option<String>,
            }
            let args: Args = serde_json::from_slice(&self.body).ok()?;
            return Some((args.input_prompt, args.optionally_filename));
        }
        let (mut prompt, mut filename) = (None, None);
        let query = self.target.as_ref().and_then(PathAndQuery::query);
        for pair in crate::form::pairs(query.unwrap_or("")) {
            let (name, value) = pair.ok()?;
            match name.as_ref() {
                "input_prompt" => prompt = Some(value.into_owned()),
                "optionally_filename" => filename = Some(value.into_owned()),
                _ => {}
            }
        }
        Some((prompt?, filename))
    }
}

/// The forwarding client.
pub struct UpstreamOrigin {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl UpstreamOrigin {
    /// # Errors
    /// [`OriginError::Unreachable`] when the HTTP client cannot be built.
    pub fn new(
        base: &str,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, OriginError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect is the client's to follow, with its own credentials.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OriginError::Unreachable(e.to_string()))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
            max_response_bytes,
        })
    }

    /// Forwards `call`; any status is an answer.
    pub async fn forward(&self, call: &RpcCall) -> Result<Bytes, OriginError> {
        let mut url = format!("{}/rest/v1/rpc/{}", self.base, call.function);
        if let Some(query) = call.target.as_ref().and_then(PathAndQuery::query) {
            url.push('?');
            url.push_str(query);
        }
        let request = if call.post {
            self.client.post(url).body(call.body.clone())
        } else {
            self.client.get(url)
        };
        let response = request
            .headers(sent_on(&call.headers))
            .send()
            .await
            .map_err(|e| unreachable(e, self.timeout))?;
        let status = response.status().as_u16();
        let headers = kept_headers(response.headers());
        let body = super::supabase::read_limited(response, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                Some(e) => unreachable(e, self.timeout),
                None => OriginError::TooLarge {
                    limit: self.max_response_bytes,
                },
            })?;
        Ok(Envelope {
            status,
            headers,
            body,
        }
        .encode())
    }

    /// Reachable: any answer but a gateway error (the root asks for a key, so a 401 is
    /// expected and fine).
    pub async fn health(&self) -> Result<(), OriginError> {
        let response = self
            .client
            .get(format!("{}/rest/v1/", self.base))
            .send()
            .await
            .map_err(|e| unreachable(e, self.timeout))?;
        let status = response.status().as_u16();
        if (502..=504).contains(&status) {
            return Err(OriginError::Status {
                status,
                message: "the upstream's gateway failed".into(),
            });
        }
        Ok(())
    }
}

/// A failed send's error (no URL or key in it).
pub fn unreachable(e: reqwest::Error, timeout: Duration) -> OriginError {
    super::supabase::classify(e, timeout)
}

/// The response headers an envelope keeps, in order.
fn kept_headers(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                envelope::kept(name.as_str())?,
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect()
}

/// Request headers that are the connection's, not the call's (RFC 9110 §7.6.1), plus
/// those the forwarding sets itself.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The header names `Connection` lists, lowercased.
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// Removes the headers `Connection` names: they are for this hop and are not sent on
/// (RFC 9110, 7.6.1), so a cached call must not be keyed on them either, or a caller
/// could file the answer to one request under another's key.
pub fn drop_connection_named(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
}

/// `headers` without hop-by-hop ones, and without those named in `Connection`.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named = connection_named(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !named.iter().any(|n| n == name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// What a cached call sends upstream: the end-to-end headers without
/// `Accept-Encoding`, so a stored body is one every client can read. Worked out on a
/// miss only; a hit never forwards.
fn sent_on(headers: &HeaderMap) -> HeaderMap {
    let mut out = end_to_end(headers);
    out.remove(reqwest::header::ACCEPT_ENCODING);
    out
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    /// The original function's prompt and filename are read from a POST body or a GET
    /// query; other functions, and arguments that do not say them, give none.
    #[test]
    fn original_requests_are_read_from_either_method() {
        let call = |function: &str, post: bool, target: &str, body: &str| RpcCall {
            function: function.into(),
            post,
            target: Some(target.parse().unwrap()),
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        };
        let rpc = "/rest/v1/rpc/get_codette_context";
        let p = |s: &str| s.to_owned();
        for (c, expected) in [
            (
                call(
                    "get_codette_context",
                    true,
                    rpc,
                    r#"{"input_prompt":"reverb"}"#,
                ),
                Some((p("reverb"), None)),
            ),
            (
                call(
                    "get_codette_context",
                    true,
                    rpc,
                    r#"{"input_prompt":"a b","optionally_filename":"x.ts","extra":1}"#,
                ),
                Some((p("a b"), Some(p("x.ts")))),
            ),
            (
                call(
                    "get_codette_context",
                    true,
                    rpc,
                    r#"{"input_prompt":"a","optionally_filename":null}"#,
                ),
                Some((p("a"), None)),
            ),
            (
                call(
                    "get_codette_context",
                    false,
                    &format!("{rpc}?input_prompt=a%20b&optionally_filename=x.ts&select=snippets"),
                    "",
                ),
                Some((p("a b"), Some(p("x.ts")))),
            ),
            (
                call("get_codette_context", true, rpc, r#"{"input_prompt":42}"#),
                None,
            ),
            (
                call(
                    "get_codette_context",
                    false,
                    &format!("{rpc}?optionally_filename=x.ts"),
                    "",
                ),
                None,
            ),
            (
                call(
                    "my_notes",
                    true,
                    "/rest/v1/rpc/my_notes",
                    r#"{"input_prompt":"a"}"#,
                ),
                None,
            ),
        ] {
            assert_eq!(c.original_request(), expected, "{:?}", c.body);
        }
    }

    /// What `Connection` names is gone before the call is keyed: the key and the call
    /// sent on see the same headers.
    #[test]
    fn connection_named_headers_are_dropped_before_keying() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Accept-Profile,, authorization"),
        );
        headers.insert("accept-profile", HeaderValue::from_static("api"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("accept", HeaderValue::from_static("text/csv"));
        drop_connection_named(&mut headers);
        assert!(headers.get("accept-profile").is_none());
        assert!(headers.get("authorization").is_none());
        assert_eq!(headers.get("accept").unwrap(), "text/csv");
        assert_eq!(end_to_end(&headers).len(), 1);
    }

    /// The connection's headers, and those `Connection` names, are not sent on.
    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("host", HeaderValue::from_static("a"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("apikey", HeaderValue::from_static("k"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        let kept = end_to_end(&headers);
        let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["apikey", "authorization"]);
        headers.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let sent = sent_on(&headers);
        let names: Vec<&str> = sent.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["apikey", "authorization"]);
    }
}
