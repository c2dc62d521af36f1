//! The real Supabase client libraries, driven from Rust: supabase-js (Node) and
//! supabase-py, pinned in tests/clients and installed by .ci/run. Each call runs
//! tests/clients/rpc.mjs or rpc.py, which does what an app does
//! (`createClient(url, key).rpc(fn, args)`) and prints one JSON line that becomes a
//! [`ClientResult`].
//!
//! ```ignore
//! let r = rpc(Client::Node, &rest.url(), &anon_key(), Some(&user_token("user-a")), "my_notes", &json!({}), false);
//! assert_eq!(r.status, 200);
//! let r = Rpc::new(&url, &anon_key(), "fail_always").raw_headers().run(Client::Python);
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::common::postgrest::{Postgrest, anon_key, user_token};
use crate::common::{API_KEY, TestPostgres};

/// How long one client script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Which client library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// `@supabase/supabase-js` under Node.
    Node,
    /// `supabase` (supabase-py) in tests/clients/.venv.
    Python,
}

impl Client {
    pub const ALL: [Client; 2] = [Client::Node, Client::Python];

    pub fn name(self) -> &'static str {
        match self {
            Client::Node => "supabase-js",
            Client::Python => "supabase-py",
        }
    }
}

/// What a client's `rpc` gave back.
#[derive(Clone, Debug)]
pub struct ClientResult {
    /// `data` (null on error).
    pub data: Value,
    /// `error` as the library reported it: `{code, message, details, hint}`, or None.
    pub error: Option<Value>,
    /// The HTTP status of the RPC response (0 if the library never got one).
    pub status: u16,
    /// The RPC response's headers (lower-case names), with `raw_headers()`.
    pub headers: Option<Map<String, Value>>,
    /// The headers the library sent (lower-case names), with `raw_headers()`.
    pub request_headers: Option<Map<String, Value>>,
    /// Set when `--email` sign-in failed: `{message, status}`.
    pub sign_in_error: Option<Value>,
    /// The whole JSON line.
    pub raw: Value,
}

impl ClientResult {
    /// The error's `code` (PostgREST's `PGRST…` or the SQLSTATE), if any.
    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref()?.get("code")?.as_str()
    }

    /// A response header (with `raw_headers()`), by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name)?.as_str()
    }

    /// A request header the library sent (with `raw_headers()`), by lower-case name.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers.as_ref()?.get(name)?.as_str()
    }
}

/// One RPC call to make through a client library.
#[derive(Clone, Debug)]
pub struct Rpc {
    url: String,
    key: String,
    function: String,
    args: Value,
    token: Option<String>,
    token_header: bool,
    sign_in: Option<(String, String)>,
    get: bool,
    single: bool,
    raw_headers: bool,
}

impl Rpc {
    /// `createClient(url, key).rpc(function, {})`.
    pub fn new(url: &str, key: &str, function: &str) -> Rpc {
        Rpc {
            url: url.to_string(),
            key: key.to_string(),
            function: function.to_string(),
            args: json!({}),
            token: None,
            token_header: false,
            sign_in: None,
            get: false,
            single: false,
            raw_headers: false,
        }
    }

    /// The named arguments (a JSON object).
    pub fn args(mut self, args: &Value) -> Rpc {
        self.args = args.clone();
        self
    }

    /// Calls as a signed-in user with this access token (supabase-js: the `accessToken`
    /// option; supabase-py: the `Authorization` header option).
    pub fn token(mut self, token: &str) -> Rpc {
        self.token = Some(token.to_string());
        self
    }

    /// supabase-js: give the token through `global.headers.Authorization` instead.
    pub fn token_as_header(mut self) -> Rpc {
        self.token_header = true;
        self
    }

    /// Signs in with `auth.signInWithPassword` / `sign_in_with_password` first.
    pub fn sign_in(mut self, email: &str, password: &str) -> Rpc {
        self.sign_in = Some((email.to_string(), password.to_string()));
        self
    }

    /// `rpc(fn, args, { get: true })`: GET with the arguments in the query string.
    pub fn get(mut self) -> Rpc {
        self.get = true;
        self
    }

    /// `.single()`: `Accept: application/vnd.pgrst.object+json`.
    pub fn single(mut self) -> Rpc {
        self.single = true;
        self
    }

    /// Reports the response's and request's headers too.
    pub fn raw_headers(mut self) -> Rpc {
        self.raw_headers = true;
        self
    }

    /// Runs the call through `client`; panics with the script's output if it fails.
    pub fn run(&self, client: Client) -> ClientResult {
        let dir = clients_dir();
        let mut cmd = match client {
            Client::Node => {
                assert!(
                    dir.join("node_modules/@supabase/supabase-js/package.json")
                        .is_file(),
                    "supabase-js is not installed: run .ci/run or \
                     `npm ci --prefix tests/clients`"
                );
                let mut cmd = Command::new("node");
                cmd.arg(dir.join("rpc.mjs"));
                cmd
            }
            Client::Python => {
                let python = dir.join(".venv/bin/python");
                assert!(
                    python.is_file(),
                    "supabase-py is not installed: run .ci/run (it makes tests/clients/.venv \
                     from tests/clients/requirements.txt)"
                );
                let mut cmd = Command::new(python);
                cmd.arg(dir.join("rpc.py"));
                cmd
            }
        };
        cmd.args(["--url", &self.url, "--key", &self.key])
            .args(["--function", &self.function])
            .args(["--args", &self.args.to_string()]);
        if let Some(token) = &self.token {
            cmd.args(["--token", token]);
            if self.token_header && client == Client::Node {
                cmd.arg("--token-header");
            }
        }
        if let Some((email, password)) = &self.sign_in {
            cmd.args(["--email", email, "--password", password]);
        }
        for (on, flag) in [
            (self.get, "--get"),
            (self.single, "--single"),
            (self.raw_headers, "--raw-headers"),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
        let (ok, stdout, stderr) = run_bounded(&mut cmd, &dir);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'));
        let parsed = line.and_then(|l| serde_json::from_str::<Value>(l).ok());
        let Some(raw) = parsed.filter(|_| ok) else {
            panic!(
                "{} rpc {} failed (ok: {ok})\nstdout:\n{stdout}\nstderr:\n{stderr}",
                client.name(),
                self.function
            );
        };
        let object = |name: &str| raw.get(name).and_then(Value::as_object).cloned();
        let present = |name: &str| raw.get(name).filter(|v| !v.is_null()).cloned();
        ClientResult {
            data: raw.get("data").cloned().unwrap_or(Value::Null),
            error: present("error"),
            status: raw
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            headers: object("headers"),
            request_headers: object("request_headers"),
            sign_in_error: present("sign_in_error"),
            raw,
        }
    }

    /// `run(Client::Node)`.
    pub fn node(&self) -> ClientResult {
        self.run(Client::Node)
    }

    /// `run(Client::Python)`.
    pub fn python(&self) -> ClientResult {
        self.run(Client::Python)
    }
}

/// One `rpc(function, args)` by `client` (supabase-js or supabase-py), with the user
/// token if any, as GET when `get`.
pub fn rpc(
    client: Client,
    url: &str,
    key: &str,
    token: Option<&str>,
    function: &str,
    args: &Value,
    get: bool,
) -> ClientResult {
    let mut call = Rpc::new(url, key, function).args(args);
    if let Some(token) = token {
        call = call.token(token);
    }
    if get {
        call = call.get();
    }
    call.run(client)
}

/// tests/clients in the source tree.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs `cmd` in `dir` for at most SCRIPT_LIMIT: (exited 0, stdout, stderr).
fn run_bounded(cmd: &mut Command, dir: &Path) -> (bool, String, String) {
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes on threads so a chatty script cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        match child.try_wait().expect("wait for client script") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {SCRIPT_LIMIT:?})"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

// ---------------------------------------------------------------------------------------
// The clients against the gateway directly
// ---------------------------------------------------------------------------------------

const REVERB: &str = "how to use reverb in mixing";

fn start() -> (TestPostgres, Postgrest) {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    (pg, rest)
}

/// A plain POST to the gateway with the anon key: what the clients must match.
fn raw_post(rest: &Postgrest, function: &str, args: &Value) -> (u16, Value) {
    let key = anon_key();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/rest/v1/rpc/{function}", rest.url()))
        .header("apikey", &key)
        .bearer_auth(&key)
        .json(args)
        .send()
        .expect("raw post");
    let status = response.status().as_u16();
    (status, response.json().expect("json body"))
}

/// Both clients, POST and GET, get exactly what a raw POST gets, each call reaching the
/// gateway once; the anon key is sent as both `apikey` and the bearer.
#[test]
fn clients_get_the_same_context_as_a_raw_post() {
    let (_pg, rest) = start();
    let args = json!({"input_prompt": REVERB, "optionally_filename": "effect_chain.ts"});
    let (status, expected) = raw_post(&rest, "get_codette_context", &args);
    assert_eq!(status, 200, "{expected}");
    assert!(!expected["snippets"].as_array().unwrap().is_empty());
    assert_eq!(expected["file"]["filename"], "effect_chain.ts");

    let mut calls = rest.calls_to("get_codette_context");
    for client in Client::ALL {
        for get in [false, true] {
            let mut call = Rpc::new(&rest.url(), &anon_key(), "get_codette_context")
                .args(&args)
                .raw_headers();
            if get {
                call = call.get();
            }
            let r = call.run(client);
            let what = format!("{} get={get}", client.name());
            assert_eq!((r.status, &r.error), (200, &None), "{what}: {:?}", r.raw);
            assert_eq!(r.data, expected, "{what}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{what}"
            );
            assert_eq!(r.request_header("apikey"), Some(anon_key().as_str()));
            assert_eq!(
                r.request_header("authorization"),
                Some(format!("Bearer {}", anon_key()).as_str()),
                "{what}"
            );
            calls += 1;
            assert_eq!(rest.calls_to("get_codette_context"), calls, "{what}");
            let last = rest.last_request().unwrap();
            assert_eq!(last.method, if get { "GET" } else { "POST" }, "{what}");
        }
    }
}

/// Two signed-in users calling `my_notes` through either client each get their own
/// notes (row-level security on `auth.uid()`), and the anon key gets none.
#[test]
fn each_user_gets_their_own_notes() {
    let (_pg, rest) = start();
    let notes = |r: &ClientResult| -> Vec<String> {
        r.data["notes"]
            .as_array()
            .unwrap_or_else(|| panic!("no notes in {:?}", r.raw))
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    for client in Client::ALL {
        let a = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&user_token("user-a")),
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(a.status, 200, "{:?}", a.raw);
        assert_eq!(a.data["uid"], "user-a");
        let a_notes = notes(&a);
        assert_eq!(a_notes.len(), 2, "{a_notes:?}");
        assert!(
            a_notes.iter().all(|n| n.starts_with("user-a:")),
            "{a_notes:?}"
        );

        let b = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&user_token("user-b")),
            "my_notes",
            &json!({}),
            true,
        );
        assert_eq!((b.status, &b.data["uid"]), (200, &json!("user-b")));
        assert_eq!(notes(&b), ["user-b: sidechain the bass to the kick"]);

        let anon = rpc(
            client,
            &rest.url(),
            &anon_key(),
            None,
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(anon.status, 200, "{:?}", anon.raw);
        assert_eq!(anon.data, json!({"uid": null, "notes": []}));
    }
    let sent = rest.last_request().unwrap();
    assert_eq!(sent.bearer(), Some(anon_key().as_str()));
    // supabase-js's other way of passing a token: a global Authorization header.
    let header = Rpc::new(&rest.url(), &anon_key(), "my_notes")
        .token(&user_token("user-b"))
        .token_as_header()
        .node();
    assert_eq!(header.data["uid"], "user-b", "{:?}", header.raw);
}

/// Signing in with a password through the client's auth (the gateway's /auth/v1/token)
/// and then calling the RPC runs as that user; a wrong password leaves the anon key.
#[test]
fn sign_in_then_rpc_runs_as_the_user() {
    use crate::common::postgrest::USER_PASSWORD;
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .sign_in("user-b@example.com", USER_PASSWORD)
            .raw_headers()
            .run(client);
        assert_eq!(r.sign_in_error, None, "{}: {:?}", client.name(), r.raw);
        assert_eq!(r.data["uid"], "user-b", "{}: {:?}", client.name(), r.raw);
        let bearer = r.request_header("authorization").unwrap();
        assert_ne!(
            bearer,
            format!("Bearer {}", anon_key()),
            "{}",
            client.name()
        );

        let wrong = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .sign_in("user-b@example.com", "wrong-password")
            .run(client);
        assert!(wrong.sign_in_error.is_some(), "{:?}", wrong.raw);
        assert_eq!(wrong.data["uid"], Value::Null, "{:?}", wrong.raw);
    }
    let token_calls = rest.requests_under("/auth/v1/token");
    assert_eq!(token_calls.len(), 4);
    assert!(
        token_calls
            .iter()
            .all(|r| r.query == [("grant_type".to_string(), "password".to_string())])
    );
}

/// A forged or expired token gets 401 PGRST301 through both clients (the key is valid).
#[test]
fn an_invalid_token_is_a_401() {
    use crate::common::postgrest::{sign_jwt_with, unix_now, user_token_expiring};
    let (_pg, rest) = start();
    let forged = sign_jwt_with(
        &json!({"sub": "user-a", "role": "authenticated", "exp": unix_now() + 3600}),
        "not-the-project-secret-not-the-project-secret",
    );
    let expired = user_token_expiring("user-a", unix_now() - 600);
    for client in Client::ALL {
        for (what, token) in [
            ("forged", forged.as_str()),
            ("expired", expired.as_str()),
            ("garbage", "not-a-jwt"),
        ] {
            let r = rpc(
                client,
                &rest.url(),
                &anon_key(),
                Some(token),
                "my_notes",
                &json!({}),
                false,
            );
            let label = format!("{} {what}", client.name());
            assert_eq!(r.status, 401, "{label}: {:?}", r.raw);
            assert_eq!(r.error_code(), Some("PGRST301"), "{label}: {:?}", r.raw);
            assert_eq!(r.data, Value::Null, "{label}");
        }
        let r = rpc(
            client,
            &rest.url(),
            &anon_key(),
            Some(&expired),
            "my_notes",
            &json!({}),
            false,
        );
        assert_eq!(r.error.as_ref().unwrap()["message"], "JWT expired");
    }
}

/// A function's own error reaches the client as PostgREST shapes it (400, SQLSTATE,
/// details, hint), and an unknown function as 404 PGRST202.
#[test]
fn function_errors_reach_the_client_as_postgrest_shapes_them() {
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "fail_always")
            .token(&user_token("user-a"))
            .run(client);
        assert_eq!(r.status, 400, "{:?}", r.raw);
        assert_eq!(
            r.error,
            Some(json!({
                "code": "P0001", "message": "fail_always always fails",
                "details": "called on purpose by a test", "hint": "do not call fail_always",
            })),
            "{}",
            client.name()
        );
        let r = Rpc::new(&rest.url(), &anon_key(), "no_such_function").run(client);
        assert_eq!((r.status, r.error_code()), (404, Some("PGRST202")));
    }
    assert_eq!(rest.calls_to("fail_always"), 2);
    assert_eq!(rest.calls_to("no_such_function"), 2);
}

/// `.single()` asks for `application/vnd.pgrst.object+json`; a VOLATILE function answers
/// differently each call.
#[test]
fn single_and_volatile_calls() {
    let (_pg, rest) = start();
    for client in Client::ALL {
        let r = Rpc::new(&rest.url(), &anon_key(), "my_notes")
            .token(&user_token("user-a"))
            .single()
            .raw_headers()
            .run(client);
        assert_eq!((r.status, &r.data["uid"]), (200, &json!("user-a")));
        assert_eq!(
            r.request_header("accept"),
            Some("application/vnd.pgrst.object+json")
        );
        let first = Rpc::new(&rest.url(), &anon_key(), "random_pick").run(client);
        let second = Rpc::new(&rest.url(), &anon_key(), "random_pick").run(client);
        assert!(first.data["pick"].is_f64(), "{:?}", first.raw);
        assert_ne!(first.data, second.data);
    }
    let node = Rpc::new(&rest.url(), &anon_key(), "random_pick").node();
    let python = Rpc::new(&rest.url(), &anon_key(), "random_pick").python();
    assert_ne!(node.data, python.data);
    assert_eq!(rest.calls_to("random_pick"), 6);
}
