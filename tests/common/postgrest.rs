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
// A refusal is the response itself, returned early through `Result`'s `Err`.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response};

use super::postgres::TestPostgres;

/// The API key the config helpers give both the gateway and the daemon.
pub const API_KEY: &str = "test-anon-key";

/// The HS256 secret the gateway verifies JWTs with (a Supabase project's JWT secret).
pub const JWT_SECRET: &str = "codette-test-jwt-secret-with-at-least-32-characters";

/// The password `/auth/v1/token?grant_type=password` accepts for every email.
pub const USER_PASSWORD: &str = "test-password";

/// The role a JWT without a `role` claim runs as (PostgREST's `db-anon-role`).
pub const ANON_ROLE: &str = "anon";

/// How many requests `requests()` keeps (the most recent).
const LOG_LIMIT: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

// ---------------------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 JWT of `claims`, signed with [`JWT_SECRET`].
pub fn sign_jwt(claims: &Value) -> String {
    sign_jwt_with(claims, JWT_SECRET)
}

/// An HS256 JWT of `claims`, signed with `secret` (a wrong secret makes a forged token).
pub fn sign_jwt_with(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac(secret, &input));
    format!("{input}.{signature}")
}

/// The project's anon key: role `anon`, no `sub`, expiring in 2100.
pub fn anon_key() -> String {
    sign_jwt(&json!({
        "iss": "supabase", "ref": "codette-test", "role": "anon",
        "iat": 1_700_000_000u64, "exp": 4_102_444_800u64,
    }))
}

/// The project's service-role key: role `service_role` (bypasses row-level security).
pub fn service_role_key() -> String {
    sign_jwt(&json!({
        "iss": "supabase", "ref": "codette-test", "role": "service_role",
        "iat": 1_700_000_000u64, "exp": 4_102_444_800u64,
    }))
}

/// A signed-in user's access token: role `authenticated`, this `sub`, expiring in an hour.
pub fn user_token(sub: &str) -> String {
    user_token_expiring(sub, unix_now() + 3600)
}

/// `user_token` with this `exp` (a past one makes an expired token).
pub fn user_token_expiring(sub: &str, exp: u64) -> String {
    sign_jwt(&user_claims(sub, exp))
}

fn user_claims(sub: &str, exp: u64) -> Value {
    json!({
        "iss": "http://127.0.0.1/auth/v1", "sub": sub, "aud": "authenticated",
        "exp": exp, "iat": exp.saturating_sub(3600), "email": email_for_sub(sub),
        "phone": "", "role": "authenticated", "aal": "aal1", "is_anonymous": false,
        "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
        "session_id": format!("session-{sub}"),
    })
}

/// The `sub` `/auth/v1/token` gives an email: its local part (`user-a@example.com` →
/// `user-a`), so signing in as `user-a@…` reads user-a's notes.
pub fn sub_for_email(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_string()
}

/// The email `user_token(sub)` carries: `{sub}@example.com`.
pub fn email_for_sub(sub: &str) -> String {
    format!("{sub}@example.com")
}

/// The claims of a token signed with [`JWT_SECRET`], or PostgREST's message for why not
/// (`JWT expired`, `JWSError JWSInvalidSignature`, ...).
pub fn verify_jwt(token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(format!(
            "JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got {})",
            parts.len()
        ));
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("JWSError (CompactDecodeError Invalid base64: {e})"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JWSError (JSONDecodeError {e})"))
    };
    let header = decode(header)?;
    if header["alg"] != "HS256" {
        return Err("JWSError JWSInvalidSignature".into());
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "JWSError JWSInvalidSignature".to_string())?;
    let mut mac = HmacSha256::new_from_slice(JWT_SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return Err("JWSError JWSInvalidSignature".into());
    }
    let claims = decode(payload)?;
    if !claims.is_object() {
        return Err("JWTClaimsSetDecodeError \"claims are not an object\"".into());
    }
    // PostgREST allows 30 s of clock skew.
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_u64().ok_or("JWTClaimsSetDecodeError \"exp\"")?;
        if unix_now() > exp + 30 {
            return Err("JWT expired".into());
        }
    }
    Ok(claims)
}

fn hmac(secret: &str, input: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
}

// ---------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Who is calling
// ---------------------------------------------------------------------------------------

/// Whom a request runs as.
#[derive(Clone, Debug)]
enum Caller {
    /// The plain test key: the connection's superuser, no role switch (the old behaviour).
    Superuser,
    /// A verified JWT: its role and claims.
    Jwt { role: String, claims: Value },
}

impl Caller {
    /// PostgREST's "authenticated": a JWT whose role is not the anon role.
    fn authenticated(&self) -> bool {
        match self {
            Caller::Superuser => true,
            Caller::Jwt { role, .. } => role != ANON_ROLE,
        }
    }
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller of a `/rest/v1/` request, or the 401 to answer.
fn authenticate(state: &State, headers: &HeaderMap) -> Result<Caller, Response<String>> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorised = |message: &str| {
        let mut response = error(401, "PGRST301", message);
        let challenge = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        if let Ok(value) = challenge.parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
        response
    };
    // The API gateway's check: the plain key, or the project's anon / service-role JWT.
    let apikey_jwt = match get("apikey") {
        Some(key) if key == state.api_key => None,
        Some(key) if looks_like_jwt(key) => match verify_jwt(key) {
            Ok(claims) if matches!(claims["role"].as_str(), Some("anon" | "service_role")) => {
                Some(key)
            }
            _ => return Err(unauthorised("Invalid API key")),
        },
        Some(_) => return Err(unauthorised("JWT invalid or missing API key")),
        None => return Err(unauthorised("No API key found in request")),
    };
    let token = match get("authorization") {
        Some(value) => match strip_bearer(value) {
            Some(token) => token,
            None => return Err(unauthorised("JWT invalid or missing API key")),
        },
        // Supabase's gateway sends an apikey JWT on as the bearer; a plain key is not one.
        None => match apikey_jwt {
            Some(key) => key,
            None => return Err(unauthorised("JWT invalid or missing API key")),
        },
    };
    if token == state.api_key {
        return Ok(Caller::Superuser);
    }
    match verify_jwt(token) {
        Ok(claims) => {
            let role = claims
                .get("role")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .unwrap_or(ANON_ROLE)
                .to_string();
            Ok(Caller::Jwt { role, claims })
        }
        Err(message) => Err(unauthorised(&message)),
    }
}

// ---------------------------------------------------------------------------------------
// /rest/v1/
// ---------------------------------------------------------------------------------------

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

/// What `Accept` asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wanted {
    Json,
    Object,
}

const OBJECT_TYPE: &str = "application/vnd.pgrst.object+json";

fn wanted(headers: &HeaderMap) -> Result<Wanted, Response<String>> {
    let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return Ok(Wanted::Json);
    };
    for media in accept.split(',') {
        let media = media.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "" | "*/*" | "application/*" | "application/json" => return Ok(Wanted::Json),
            OBJECT_TYPE => return Ok(Wanted::Object),
            _ => {}
        }
    }
    Err(error(
        406,
        "PGRST107",
        &format!("None of these media types are available: {accept}"),
    ))
}

/// `Accept-Profile` / `Content-Profile`: only `public` is exposed.
fn check_profile(headers: &HeaderMap) -> Result<(), Response<String>> {
    for name in ["accept-profile", "content-profile"] {
        if let Some(schema) = headers.get(name).and_then(|v| v.to_str().ok())
            && schema != "public"
        {
            return Err(error(
                406,
                "PGRST106",
                "The schema must be one of the following: public",
            ));
        }
    }
    Ok(())
}

fn prefers_rollback(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "tx=rollback")
}

async fn rpc(
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
struct Function {
    /// Input arguments: name, type (as `format_type` spells it), has a default.
    args: Vec<(String, String, bool)>,
    returns_set: bool,
    volatile: bool,
}

impl Function {
    /// Whether a call with exactly these argument names can be made.
    fn accepts(&self, names: &[&String]) -> bool {
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
async fn functions(client: &Client, name: &str) -> Result<Vec<Function>, tokio_postgres::Error> {
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

/// One RPC call, run as PostgREST runs it.
struct Call<'a> {
    function: &'a str,
    args: Map<String, Value>,
    read_only_method: bool,
    wanted: Wanted,
    rollback: bool,
    caller: Caller,
    method: &'a str,
    path: String,
    headers: &'a HeaderMap,
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

    async fn run(self, state: &State) -> Response<String> {
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
async fn in_transaction(
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
async fn finish(state: &State, client: Client, commit: bool) -> bool {
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
async fn failed(
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

/// `application/vnd.pgrst.object+json` on a set: its one row, else 406 PGRST116.
fn single_object(body: &str, count: i64) -> Result<String, Response<String>> {
    if count == 1
        && let Ok(Value::Array(mut rows)) = serde_json::from_str::<Value>(body)
        && rows.len() == 1
    {
        return Ok(rows.remove(0).to_string());
    }
    Err(pgrst_error(
        406,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
        Some(&format!("The result contains {count} rows")),
        None,
    ))
}

fn content_range(offset: i64, count: i64) -> String {
    if count == 0 {
        "*/*".to_string()
    } else {
        format!("{offset}-{}/*", offset + count - 1)
    }
}

/// `GET /rest/v1/{table}?select=a,b&col=eq.v&order=a.desc&limit=n&offset=m`, run like an
/// RPC (role, claims, read-only transaction), so row-level security applies.
async fn read_table(
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

// ---------------------------------------------------------------------------------------
// /auth/v1/ (GoTrue-shaped)
// ---------------------------------------------------------------------------------------

fn auth(
    state: &State,
    rest: &str,
    method: Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Response<String> {
    // The API gateway's key check comes first.
    match headers.get("apikey").and_then(|v| v.to_str().ok()) {
        None => return kong_error(401, "No API key found in request"),
        Some(key) if key == state.api_key => {}
        Some(key) => match verify_jwt(key) {
            Ok(claims) if matches!(claims["role"].as_str(), Some("anon" | "service_role")) => {}
            _ => return kong_error(401, "Invalid authentication credentials"),
        },
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest.trim_end_matches('/')) {
        (Method::GET, "health") => auth_reply(
            200,
            json!({
                "version": "v2.170.0", "name": "GoTrue",
                "description": "GoTrue is a user registration and authentication API",
            }),
        ),
        (Method::POST, "token") => match param("grant_type") {
            Some("password") => {
                let email = body["email"].as_str().unwrap_or("");
                let password = body["password"].as_str().unwrap_or("");
                if !email.contains('@') || password != USER_PASSWORD {
                    return gotrue_error(400, "invalid_credentials", "Invalid login credentials");
                }
                auth_reply(200, session(email))
            }
            Some("refresh_token") => {
                let email = body["refresh_token"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("refresh."))
                    .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                match email {
                    Some(email) => auth_reply(200, session(&email)),
                    None => gotrue_error(
                        400,
                        "refresh_token_not_found",
                        "Invalid Refresh Token: Refresh Token Not Found",
                    ),
                }
            }
            _ => gotrue_error(
                400,
                "unsupported_grant_type",
                "unsupported_grant_type: only password and refresh_token are supported here",
            ),
        },
        (Method::GET, "user") => {
            let Some(token) = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(strip_bearer)
            else {
                return gotrue_error(
                    401,
                    "no_authorization",
                    "This endpoint requires a Bearer token",
                );
            };
            match verify_jwt(token) {
                Ok(claims) if claims["sub"].is_string() => {
                    let sub = claims["sub"].as_str().unwrap_or_default();
                    let email = claims["email"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| email_for_sub(sub));
                    auth_reply(200, user_json(sub, &email))
                }
                Ok(_) => gotrue_error(403, "bad_jwt", "invalid claim: missing sub claim"),
                Err(e) => gotrue_error(403, "bad_jwt", &format!("invalid JWT: {e}")),
            }
        }
        (Method::POST, "logout") => Response::builder()
            .status(204)
            .body(String::new())
            .expect("response"),
        _ => gotrue_error(404, "not_found", "Not Found"),
    }
}

fn user_json(sub: &str, email: &str) -> Value {
    json!({
        "id": sub, "aud": "authenticated", "role": "authenticated", "email": email,
        "email_confirmed_at": "2024-01-01T00:00:00Z", "phone": "",
        "confirmed_at": "2024-01-01T00:00:00Z", "last_sign_in_at": "2024-01-01T00:00:00Z",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {}, "identities": [],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "is_anonymous": false,
    })
}

/// A GoTrue session for `email`: a real access token for `sub_for_email(email)`.
fn session(email: &str) -> Value {
    let sub = sub_for_email(email);
    let exp = unix_now() + 3600;
    let mut claims = user_claims(&sub, exp);
    claims["email"] = json!(email);
    json!({
        "access_token": sign_jwt(&claims), "token_type": "bearer",
        "expires_in": 3600, "expires_at": exp,
        "refresh_token": format!("refresh.{}", URL_SAFE_NO_PAD.encode(email)),
        "user": user_json(&sub, email),
    })
}

fn auth_reply(status: u16, body: Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .expect("response")
}

fn gotrue_error(status: u16, error_code: &str, msg: &str) -> Response<String> {
    auth_reply(
        status,
        json!({"code": status, "error_code": error_code, "msg": msg}),
    )
}

/// What Supabase's API gateway (Kong) answers itself.
fn kong_error(status: u16, message: &str) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({ "message": message }).to_string())
        .expect("response")
}

// ---------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------

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

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A double-quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn huge_body(bytes: usize) -> String {
    let head = r#"{"snippets":[{"filename":"huge.txt","snippet":""#;
    let tail = r#""}],"file":null,"chat_history":[]}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

fn unavailable(e: &tokio_postgres::Error) -> Response<String> {
    unavailable_text(&e.to_string())
}

fn unavailable_text(details: &str) -> Response<String> {
    pgrst_error(
        503,
        "PGRST000",
        "Could not connect to the database",
        Some(details),
        None,
    )
}

fn error(status: u16, code: &str, message: &str) -> Response<String> {
    pgrst_error(status, code, message, None, None)
}

fn pgrst_error(
    status: u16,
    code: &str,
    message: &str,
    details: Option<&str>,
    hint: Option<&str>,
) -> Response<String> {
    let body = json!({"code": code, "message": message, "details": details, "hint": hint});
    reply(status, body.to_string())
}

fn reply(status: u16, body: String) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .expect("response")
}

fn reply_object(body: String) -> Response<String> {
    Response::builder()
        .status(200)
        .header("content-type", format!("{OBJECT_TYPE}; charset=utf-8"))
        .body(body)
        .expect("response")
}

fn set_header(response: &mut Response<String>, name: &'static str, value: &str) {
    if let Ok(value) = value.parse() {
        response.headers_mut().insert(name, value);
    }
}
