//! `Postgrest`: a small PostgREST-shaped HTTP gateway (warp, on its own tokio runtime in
//! a background thread) that runs `POST|GET /rest/v1/rpc/{function}` on a TestPostgres,
//! answers `GET /rest/v1/` (the root a health check asks) by the same rules, checks the
//! Supabase-style `apikey` + `Authorization: Bearer` headers, and injects faults on
//! demand (delay, error status, malformed or huge bodies).

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response};

use super::postgres::TestPostgres;

/// The API key the config helpers give both the gateway and the daemon.
pub const API_KEY: &str = "test-anon-key";

/// One request as the gateway saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct Faults {
    delay_us: AtomicU64,
    fail_status: AtomicU16,
    malformed: AtomicBool,
    huge_body: AtomicUsize,
    calls: AtomicU64,
    last: Mutex<Option<RecordedRequest>>,
}

struct State {
    pg_conn: String,
    api_key: String,
    faults: Arc<Faults>,
    pool: Mutex<Vec<Client>>,
}

/// A running gateway; drop shuts it down (in-flight requests are dropped).
pub struct Postgrest {
    port: u16,
    faults: Arc<Faults>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Postgrest {
    /// Serves the RPC of `pg` on a free port, accepting only `api_key`.
    pub fn start(pg: &TestPostgres, api_key: &str) -> Postgrest {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind gateway");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let faults = Arc::new(Faults::default());
        let state = Arc::new(State {
            pg_conn: format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
                pg.port()
            ),
            api_key: api_key.to_string(),
            faults: faults.clone(),
            pool: Mutex::new(Vec::new()),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("postgrest-{port}"))
            .spawn(move || serve(listener, state, rx))
            .expect("spawn gateway thread");
        Postgrest {
            port,
            faults,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:P` (the Supabase URL to give the daemon).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits this long before answering each RPC call.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.faults.delay_us.store(us, Ordering::SeqCst);
    }

    /// Answers every authorised RPC call with this status and a PostgREST error body.
    pub fn set_fail_status(&self, status: Option<u16>) {
        self.faults
            .fail_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Answers 200 with a body that is not JSON.
    pub fn set_malformed(&self, on: bool) {
        self.faults.malformed.store(on, Ordering::SeqCst);
    }

    /// Answers 200 with a valid context JSON of about this many bytes.
    pub fn set_huge_body(&self, bytes: Option<usize>) {
        self.faults
            .huge_body
            .store(bytes.unwrap_or(0), Ordering::SeqCst);
    }

    /// RPC calls received so far (every request under /rest/v1/rpc/, authorised or not).
    pub fn calls(&self) -> u64 {
        self.faults.calls.load(Ordering::SeqCst)
    }

    /// The most recent RPC request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.faults
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Postgrest {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, state: Arc<State>, shutdown: oneshot::Receiver<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("gateway runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let routes = warp::any()
            .map(move || state.clone())
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::query::<Vec<(String, String)>>())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and_then(handle);
        tokio::select! {
            _ = warp::serve(routes).incoming(listener).run() => {}
            _ = shutdown => {}
        }
    });
    // Dropping the runtime here aborts connections still in flight.
}

async fn handle(
    state: Arc<State>,
    method: Method,
    path: warp::path::FullPath,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response<String>, Infallible> {
    if matches!(path.as_str(), "/rest/v1" | "/rest/v1/") {
        return Ok(root(&state, &headers).await);
    }
    let Some(function) = path.as_str().strip_prefix("/rest/v1/rpc/") else {
        return Ok(error(
            404,
            "PGRST125",
            "Invalid path specified in request URL",
        ));
    };
    let faults = &state.faults;
    faults.calls.fetch_add(1, Ordering::SeqCst);
    *faults.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(RecordedRequest {
        method: method.to_string(),
        path: path.as_str().to_string(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body: String::from_utf8_lossy(&body).into(),
    });
    let delay = faults.delay_us.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    if !authorised(&headers, &state.api_key) {
        return Ok(error(401, "PGRST301", "JWT invalid or missing API key"));
    }
    match faults.fail_status.load(Ordering::SeqCst) {
        0 => {}
        status => return Ok(error(status, "PGRST000", "injected failure")),
    }
    if faults.malformed.load(Ordering::SeqCst) {
        return Ok(reply(200, "{\"snippets\": [ this is not json".to_string()));
    }
    match faults.huge_body.load(Ordering::SeqCst) {
        0 => {}
        bytes => return Ok(reply(200, huge_body(bytes))),
    }
    let args = match method {
        Method::GET => query
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect::<Vec<_>>(),
        Method::POST => match post_args(&body) {
            Some(args) => args,
            None => return Ok(error(400, "PGRST102", "Empty or invalid json")),
        },
        _ => return Ok(error(405, "PGRST117", "Unsupported HTTP method")),
    };
    Ok(call(&state, function, args).await)
}

/// `GET /rest/v1/`, PostgREST's root (what a health check asks): 401 for a wrong key,
/// the injected fail status, 503 when the database does not answer, else 200. Not counted
/// in `calls()` and not delayed.
async fn root(state: &State, headers: &HeaderMap) -> Response<String> {
    if !authorised(headers, &state.api_key) {
        return error(401, "PGRST301", "JWT invalid or missing API key");
    }
    match state.faults.fail_status.load(Ordering::SeqCst) {
        0 => {}
        status => return error(status, "PGRST000", "injected failure"),
    }
    let client = match checkout(state).await {
        Ok(client) => client,
        Err(e) => return unavailable(&e),
    };
    if let Err(e) = client.simple_query("SELECT 1").await {
        return unavailable(&e);
    }
    state
        .pool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(client);
    reply(
        200,
        json!({"swagger": "2.0", "info": {"title": "PostgREST API"}}).to_string(),
    )
}

fn authorised(headers: &HeaderMap, key: &str) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    get("apikey") == Some(key) && get("authorization") == Some(&format!("Bearer {key}"))
}

/// The named parameters of a POST body: a JSON object whose values become text.
fn post_args(body: &[u8]) -> Option<Vec<(String, Option<String>)>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Vec::new());
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let text = |v: Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    };
    Some(map.into_iter().map(|(k, v)| (k, text(v))).collect())
}

/// Runs `SELECT public."f"("arg" => $1::text, ...)::text` and shapes the answer.
async fn call(
    state: &State,
    function: &str,
    args: Vec<(String, Option<String>)>,
) -> Response<String> {
    let not_found = || {
        error(
            404,
            "PGRST202",
            &format!("Could not find the function public.{function} in the schema cache"),
        )
    };
    if !is_ident(function) {
        return not_found();
    }
    if let Some((bad, _)) = args.iter().find(|(k, _)| !is_ident(k)) {
        return error(400, "PGRST100", &format!("invalid parameter name {bad:?}"));
    }
    let named: Vec<String> = (1..=args.len())
        .zip(&args)
        .map(|(i, (name, _))| format!("\"{name}\" => ${i}::text"))
        .collect();
    let sql = format!("SELECT public.\"{function}\"({})::text", named.join(", "));
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        args.iter().map(|(_, v)| v as _).collect();
    let client = match checkout(state).await {
        Ok(client) => client,
        Err(e) => return unavailable(&e),
    };
    match client.query_one(&sql, &params).await {
        Ok(row) => {
            let value: Option<String> = row.get(0);
            state
                .pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(client);
            reply(200, value.unwrap_or_else(|| "null".to_string()))
        }
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == "42883" => not_found(),
            Some(db)
                if db.code().code().starts_with("08") || db.code().code().starts_with("57P0") =>
            {
                unavailable(&e)
            }
            Some(db) => {
                state
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(client);
                let body = json!({
                    "code": db.code().code(), "message": db.message(),
                    "details": db.detail(), "hint": db.hint(),
                });
                reply(500, body.to_string())
            }
            None => unavailable(&e),
        },
    }
}

async fn checkout(state: &State) -> Result<Client, tokio_postgres::Error> {
    loop {
        let pooled = state.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(client) if client.is_closed() => continue,
            Some(client) => return Ok(client),
            None => break,
        }
    }
    let (client, connection) = tokio_postgres::connect(&state.pg_conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn huge_body(bytes: usize) -> String {
    let head = r#"{"snippets":[{"filename":"huge.txt","snippet":""#;
    let tail = r#""}],"file":null,"chat_history":[]}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

fn unavailable(e: &tokio_postgres::Error) -> Response<String> {
    let body = json!({
        "code": "PGRST000",
        "message": "Could not connect to the database",
        "details": e.to_string(),
        "hint": null,
    });
    reply(503, body.to_string())
}

fn error(status: u16, code: &str, message: &str) -> Response<String> {
    let body = json!({"code": code, "message": message, "details": null, "hint": null});
    reply(status, body.to_string())
}

fn reply(status: u16, body: String) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .expect("response")
}
