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
