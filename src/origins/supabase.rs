//! The Supabase origin: the PostgREST RPC over HTTP, exactly as the original called it:
//! `POST {url}/rest/v1/rpc/{function}` with `apikey` and `Authorization: Bearer` headers
//! and JSON named parameters. Connections are pooled by one reqwest client; the whole
//! call, body included, is bounded in time and size.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{ContextOrigin, ContextRequest, OriginError, is_plain_identifier};
use crate::secret::Secret;

/// Bytes of an error body read to find PostgREST's `message`.
const ERROR_BODY_LIMIT: usize = 4 * 1024;

/// `[origin] type = "supabase"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupabaseConfig {
    /// The project URL, e.g. `https://xyz.supabase.co` (env `VITE_SUPABASE_URL` too).
    #[serde(default)]
    pub url: String,
    /// The key sent as `apikey` and bearer token (env `VITE_SUPABASE_ANON_KEY`).
    #[serde(default)]
    pub api_key: Secret,
    /// A file holding the key (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The RPC to call.
    #[serde(default = "default_function")]
    pub function: String,
    /// Limit for the whole call, body included (504 past it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest answer accepted (an error above it, not an out-of-memory).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Consecutive timeouts or connection errors that open the circuit breaker (0: never).
    #[serde(default = "super::breaker::default_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call.
    #[serde(default = "super::breaker::default_open_ms")]
    pub breaker_open_ms: u64,
    /// A path (e.g. `/rest/v1/`) the half-open breaker GETs before letting a call through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
}

fn default_function() -> String {
    "get_codette_context".into()
}

pub(super) fn default_timeout_ms() -> u64 {
    2_000
}

pub(super) fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

impl SupabaseConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!(
                "url {:?} must start with http:// or https:// (set it or VITE_SUPABASE_URL)",
                self.url
            ));
        } else if reqwest::Url::parse(&self.url).is_err() {
            problems.push(format!("url {:?} is not a valid URL", self.url));
        }
        if self.api_key.is_empty() {
            problems.push(
                "api_key is empty: set CODETTE_CACHE_ORIGIN__API_KEY, api_key_file or VITE_SUPABASE_ANON_KEY"
                    .into(),
            );
        }
        if !is_plain_identifier(&self.function) {
            problems.push(format!(
                "function {:?} is not a plain identifier",
                self.function
            ));
        }
        if self
            .health_path
            .as_deref()
            .is_some_and(|p| !p.starts_with('/'))
        {
            problems.push("health_path must start with / (e.g. \"/rest/v1/\")".into());
        }
        if self.timeout_ms == 0 || self.max_response_bytes == 0 {
            problems.push("timeout_ms and max_response_bytes must be > 0".into());
        }
        problems
    }
}

/// The Supabase origin.
pub struct SupabaseOrigin {
    client: reqwest::Client,
    rpc_url: String,
    health_url: String,
    probes_health: bool,
    api_key: Secret,
    timeout: Duration,
    max_response_bytes: usize,
}

#[derive(Serialize)]
struct RpcParams<'a> {
    input_prompt: &'a str,
    optionally_filename: Option<&'a str>,
}

impl SupabaseOrigin {
    /// # Errors
    /// [`OriginError::Unreachable`] when the HTTP client cannot be built.
    pub fn new(config: &SupabaseConfig) -> Result<Self, OriginError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("codette-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OriginError::Unreachable(e.to_string()))?;
        let base = config.url.trim_end_matches('/');
        Ok(Self {
            client,
            rpc_url: format!("{base}/rest/v1/rpc/{}", config.function),
            health_url: format!(
                "{base}/{}",
                config
                    .health_path
                    .as_deref()
                    .unwrap_or("/rest/v1/")
                    .trim_start_matches('/')
            ),
            probes_health: config.health_path.is_some(),
            api_key: config.api_key.clone(),
            timeout,
            max_response_bytes: config.max_response_bytes,
        })
    }

    fn classify(&self, e: reqwest::Error) -> OriginError {
        classify(e, self.timeout)
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("apikey", self.api_key.expose())
            .bearer_auth(self.api_key.expose())
    }
}

/// A failed call's error, with `timeout` being the call's limit.
pub(super) fn classify(e: reqwest::Error, timeout: Duration) -> OriginError {
    if e.is_timeout() {
        OriginError::Timeout(timeout)
    } else {
        // reqwest's own text is only "error sending request": add its causes (e.g.
        // "tcp connect error: Connection refused"), which carry no URL or key.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        OriginError::Unreachable(text)
    }
}

/// Reads a body up to `limit` bytes; `Err(None)` when it is larger.
pub(super) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, Option<reqwest::Error>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(None);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > limit {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// PostgREST's error `message`, or the start of whatever the body was.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct PostgrestError {
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<PostgrestError>(body) {
        Ok(PostgrestError { message: Some(m) }) => m,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(200).collect()
}

impl ContextOrigin for SupabaseOrigin {
    async fn fetch(&self, request: &ContextRequest) -> Result<Bytes, OriginError> {
        let params = RpcParams {
            input_prompt: &request.message,
            optionally_filename: request.filename.as_deref(),
        };
        let response = self
            .authorised(self.client.post(&self.rpc_url))
            .json(&params)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(response, ERROR_BODY_LIMIT)
                .await
                .unwrap_or_default();
            return Err(OriginError::Status {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        read_limited(response, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                Some(e) => self.classify(e),
                None => OriginError::TooLarge {
                    limit: self.max_response_bytes,
                },
            })
    }

    async fn health(&self) -> Result<(), OriginError> {
        let response = self
            .authorised(self.client.get(&self.health_url))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        // 401/403 means our key is refused: every call would fail.
        if status.is_server_error() || status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(OriginError::Status {
                status: status.as_u16(),
                message: "health check refused".into(),
            });
        }
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "Fresh Supabase RPC call"
    }

    fn probes_health(&self) -> bool {
        self.probes_health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgREST error bodies give their message; anything else is cut short.
    #[test]
    fn error_messages_are_extracted() {
        assert_eq!(
            error_message(br#"{"code":"PGRST202","message":"no such function","details":null}"#),
            "no such function"
        );
        assert_eq!(error_message(&[b'x'; 500]).len(), 200);
    }
}
