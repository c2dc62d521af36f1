//! `Daemon`: the `codette-cache` binary under test, started with `serve --config <file>`
//! on a free loopback port with a clean environment, logs captured to a file, and small
//! HTTP helpers. Drop SIGKILLs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::ports::free_port;
use super::process::{log_stdio, read_log, send_signal, wait_timeout};

/// Environment variables never inherited by the daemon (prefixes and exact names).
const CLEARED_PREFIXES: &[&str] = &["CODETTE_CACHE_", "REDIS_", "VITE_SUPABASE_", "SUPABASE_"];
const CLEARED_NAMES: &[&str] = &[
    "NOTIFY_SOCKET",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running daemon owned by one test.
pub struct Daemon {
    port: u16,
    dir: TempDir,
    child: Child,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts the daemon with this config and waits until `/healthz` answers 200.
    pub fn start(config_toml: &str) -> Daemon {
        Daemon::start_with_env(config_toml, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Daemon {
        let (dir, port, mut child) = spawn(config_toml, env);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "daemon exited with {status} before it was healthy:\n{}",
                    logs_of(&dir)
                );
            }
            if http_status(port, "/healthz") == Some(200) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "daemon not healthy after {START_TIMEOUT:?}:\n{}",
                    logs_of(&dir)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Daemon {
            port,
            dir,
            child,
            client,
        }
    }

    /// Starts the daemon with a config it must reject; returns its exit status and logs.
    pub fn start_expect_failure(config_toml: &str) -> (ExitStatus, String) {
        let (dir, port, mut child) = spawn(config_toml, &[]);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status, logs_of(&dir));
            }
            let healthy = http_status(port, "/healthz") == Some(200);
            if healthy || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let what = if healthy {
                    "became healthy"
                } else {
                    "kept running"
                };
                panic!(
                    "daemon {what} with a config it should reject:\n{}",
                    logs_of(&dir)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:P{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the daemon was started with (`--config`); rewrite it, then
    /// `signal("HUP")`, to test a reload.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Runs `kill -<name> <pid>`, e.g. `signal("TERM")`, `signal("HUP")`.
    pub fn signal(&self, name: &str) {
        assert!(send_signal(&[self.pid()], name), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        logs_of(&self.dir)
    }

    /// The daemon's reqwest client (one per daemon: reqwest clients are tied to a runtime).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GET; the body as JSON (or as a JSON string when it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, parse(text))
    }

    /// GET; the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.logs()));
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("read body"))
    }

    /// POST a JSON body, with `Authorization: Bearer <token>` when given.
    pub async fn post_json(&self, path: &str, body: &Value, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.logs()));
        let status = resp.status().as_u16();
        (status, parse(resp.text().await.expect("read body")))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config_toml: &str, env: &[(&str, &str)]) -> (TempDir, u16, Child) {
    let dir = tempfile::Builder::new()
        .prefix("codette-daemon-")
        .tempdir()
        .expect("tempdir");
    let config: PathBuf = dir.path().join("config.toml");
    std::fs::write(&config, config_toml).expect("write config");
    // A test may pin the port (a restart on the same address), else a free one.
    let port = env
        .iter()
        .find(|(k, _)| *k == "CODETTE_CACHE_SERVER__LISTEN")
        .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(free_port);
    let (out, err) = log_stdio(&dir.path().join("daemon.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codette-cache"));
    cmd.arg("serve").arg("--config").arg(&config);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if CLEARED_PREFIXES.iter().any(|p| name.starts_with(p)) || CLEARED_NAMES.contains(&&*name) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CODETTE_CACHE_SERVER__LISTEN", format!("127.0.0.1:{port}"));
    cmd.envs(env.iter().copied());
    let child = cmd
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn codette-cache");
    (dir, port, child)
}

fn logs_of(dir: &TempDir) -> String {
    read_log(&dir.path().join("daemon.log"))
}

fn parse(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The status code of `GET path` over a plain socket (no runtime needed), if any.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}
