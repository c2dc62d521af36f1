//! `Postgrest`: a small PostgREST-shaped HTTP gateway (warp, on its own tokio runtime in
//! a background thread) in front of a TestPostgres, behaving like PostgREST behind
//! Supabase's API gateway:
//!
//! - `POST|GET|HEAD /rest/v1/rpc/{function}`: named arguments from the JSON body or the
//!   query string, resolved against `pg_proc` like PostgREST's schema cache (overloads,
//!   defaults, argument types through `json_to_record`), run in one transaction that is
//!   read-only for GET and for STABLE/IMMUTABLE functions, with `role` and
//!   `request.jwt.claims` set locally exactly as PostgREST sets them, so `auth.uid()` and
//!   row-level security see the caller. `Prefer: tx=rollback`, `Accept:
//!   application/vnd.pgrst.object+json`, PostgREST's error bodies and status codes.
//! - `GET|HEAD /rest/v1/{table}?select=...`: a table read (simple `select`, `col=eq.v`
//!   filters, `order`, `limit`, `offset`) with `Content-Range`.
//! - `GET /rest/v1/`: the root a health check asks.
//! - `/auth/v1/`: `GET health`, `POST token?grant_type=password|refresh_token`,
//!   `GET user`, `POST logout`: GoTrue-shaped, issuing real HS256 tokens.
//!
//! Credentials: `apikey` must be the plain test key given to `start` or a JWT signed with
//! [`JWT_SECRET`] whose role is `anon` or `service_role`. `Authorization: Bearer` with the
//! plain key runs as the superuser (what the tests before JWTs relied on); with a JWT it
//! is verified (HS256, `exp`) and its `role` claim (default `anon`) is used; without it,
//! an `apikey` JWT stands in (as Supabase's gateway does). Faults are injected on demand
//! (delay, error status, malformed or huge bodies), RPC calls are counted per function,
//! and every request is recorded.
//!
//! Layout: `tokens` (JWTs), `auth` (who is calling; `/auth/v1/`), `rpc` (resolving a
//! call), `call` (running it in a transaction), `tables` (table reads), `reply`
//! (PostgREST's answers and content negotiation).
// A refusal is the response itself, returned early through `Result`'s `Err`.
#![allow(clippy::result_large_err)]

mod auth;
mod call;
mod reply;
mod rpc;
mod tables;
mod tokens;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response};

use super::postgres::TestPostgres;
use auth::{auth, authenticate, kong_error, strip_bearer};
use reply::{error, reply, unavailable};
use rpc::rpc;
use tables::read_table;

pub use auth::{ANON_ROLE, USER_PASSWORD};
pub use tokens::{
    JWT_SECRET, anon_key, email_for_sub, service_role_key, sign_jwt, sign_jwt_with, sub_for_email,
    unix_now, user_token, user_token_expiring, verify_jwt,
};

/// The API key the config helpers give both the gateway and the daemon.
pub const API_KEY: &str = "test-anon-key";

/// How many requests `requests()` keeps (the most recent).
const LOG_LIMIT: usize = 10_000;

/// One request as the gateway saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token after `Bearer ` in `Authorization`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(strip_bearer)
    }
}

#[derive(Default)]
struct Faults {
    delay_us: AtomicU64,
    fail_status: AtomicU16,
    malformed: AtomicBool,
    huge_body: AtomicUsize,
    calls: AtomicU64,
    calls_by_function: Mutex<HashMap<String, u64>>,
    last: Mutex<Option<RecordedRequest>>,
    log: Mutex<VecDeque<RecordedRequest>>,
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
    /// Serves `pg` on a free port; `api_key` is the plain key accepted besides JWTs.
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

    /// `http://127.0.0.1:P` (the Supabase URL to give the daemon or a client).
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

    /// RPC calls to `function` received so far (authorised or not).
    pub fn calls_to(&self, function: &str) -> u64 {
        lock(&self.faults.calls_by_function)
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    /// The most recent RPC request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.faults.last).clone()
    }

    /// Every request received (RPC, table, root, auth, unknown paths), oldest first; the
    /// most recent 10,000.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.faults.log).iter().cloned().collect()
    }

    /// The recorded requests whose path starts with `prefix` (e.g. `/auth/v1/`).
    pub fn requests_under(&self, prefix: &str) -> Vec<RecordedRequest> {
        lock(&self.faults.log)
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    let path = path.as_str();
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body: String::from_utf8_lossy(&body).into(),
    };
    {
        let mut log = lock(&state.faults.log);
        if log.len() >= LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(recorded.clone());
    }
    if matches!(path, "/rest/v1" | "/rest/v1/") {
        return Ok(root(&state, &headers).await);
    }
    if let Some(function) = path.strip_prefix("/rest/v1/rpc/") {
        return Ok(rpc(&state, function, method, query, &headers, &body, recorded).await);
    }
    if let Some(table) = path.strip_prefix("/rest/v1/") {
        return Ok(read_table(&state, table, method, query, &headers).await);
    }
    if let Some(rest) = path.strip_prefix("/auth/v1/") {
        return Ok(auth(&state, rest, method, &query, &headers, &body));
    }
    if let Some(object) = path.strip_prefix("/storage/v1/object/") {
        return Ok(storage(object, method, &query, &body));
    }
    Ok(kong_error(404, "no Route matched with those values"))
}

/// A storage stand-in for pass-through tests of large bodies: `POST` answers the size
/// and SHA-256 of what it received; `GET …?bytes=N` sends N bytes of a known pattern
/// (`pattern_bytes`).
fn storage(
    object: &str,
    method: Method,
    query: &[(String, String)],
    body: &bytes::Bytes,
) -> Response<String> {
    use sha2::Digest;
    if method == Method::POST {
        let digest = Sha256::digest(body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let answer = json!({"Key": object, "size": body.len(), "sha256": hex});
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(answer.to_string())
            .expect("response");
    }
    let n = query
        .iter()
        .find(|(k, _)| k == "bytes")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .body(pattern_bytes(n))
        .expect("response")
}

/// `n` bytes of a repeating ASCII pattern.
pub fn pattern_bytes(n: usize) -> String {
    (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

/// `GET /rest/v1/`, PostgREST's root (what a health check asks): 401 for a wrong key,
/// the injected fail status, 503 when the database does not answer, else 200. Not counted
/// in `calls()` and not delayed.
async fn root(state: &State, headers: &HeaderMap) -> Response<String> {
    if let Err(denied) = authenticate(state, headers) {
        return denied;
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
    lock(&state.pool).push(client);
    reply(
        200,
        json!({"swagger": "2.0", "info": {"title": "PostgREST API"}}).to_string(),
    )
}

async fn checkout(state: &State) -> Result<Client, tokio_postgres::Error> {
    loop {
        let pooled = lock(&state.pool).pop();
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
