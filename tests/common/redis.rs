//! `TestRedis`: a private redis-server on a free loopback port, with stop/start, pause
//! (SIGSTOP) and a `redis-cli` shortcut. Nothing is persisted; drop kills it. Variants
//! require a password (`start_with_password`) or speak only TLS (`start_tls`, with a
//! throw-away CA and server certificate made by the `openssl` CLI).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::ports::free_port;
use super::process::{log_stdio, read_log, run_ok, send_signal, wait_until};
use super::tls::make_certificates;

/// A redis-server child process owned by one test.
pub struct TestRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    mode: Mode,
}

/// How the server is reached.
enum Mode {
    Plain,
    Password(String),
    /// TLS only (`--port 0`); the certificates are in the server's dir.
    Tls,
}

impl TestRedis {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> TestRedis {
        TestRedis::start_mode(Mode::Plain)
    }

    /// Like `start`, with `--requirepass password`.
    pub fn start_with_password(password: &str) -> TestRedis {
        TestRedis::start_mode(Mode::Password(password.to_owned()))
    }

    /// A TLS-only server (`--tls-port`, no client certificates) whose certificate, for
    /// IP 127.0.0.1, is signed by a fresh CA: trust `ca_file()` to reach it.
    pub fn start_tls() -> TestRedis {
        TestRedis::start_mode(Mode::Tls)
    }

    fn start_mode(mode: Mode) -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("codette-redis-")
            .tempdir()
            .expect("tempdir");
        if matches!(mode, Mode::Tls) {
            make_certificates(dir.path());
        }
        let mut redis = TestRedis {
            port: free_port(),
            dir,
            child: None,
            mode,
        };
        redis.spawn();
        redis
    }

    /// The CA certificate (PEM) of a `start_tls` server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:P/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server and waits for it; a no-op when it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is still running");
        self.spawn();
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing is answered.
    pub fn pause(&self) {
        assert!(send_signal(&[self.running_pid()], "STOP"), "kill -STOP");
    }

    /// Undoes `pause` with SIGCONT.
    pub fn resume(&self) {
        assert!(send_signal(&[self.running_pid()], "CONT"), "kill -CONT");
    }

    /// Runs `redis-cli -p P <args>` and returns its stdout without the trailing newline.
    pub fn cmd(&self, args: &[&str]) -> String {
        let out = run_ok(self.cli().args(args));
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    /// True when the server answers PING (within 200 ms when plain).
    pub fn ping(&self) -> bool {
        match self.mode {
            Mode::Plain => ping(self.port),
            _ => self
                .cli()
                .arg("PING")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"PONG")),
        }
    }

    /// `redis-cli` pointed at this server, with its password or TLS settings.
    fn cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        cli.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        match &self.mode {
            Mode::Plain => {}
            Mode::Password(password) => {
                cli.args(["--no-auth-warning", "-a", password]);
            }
            Mode::Tls => {
                cli.arg("--tls").arg("--cacert").arg(self.ca_file());
            }
        }
        cli
    }

    /// The server's own log (stdout and stderr).
    pub fn logs(&self) -> String {
        read_log(&self.dir.path().join("redis.log"))
    }

    fn running_pid(&self) -> u32 {
        self.pid().expect("redis is not running")
    }

    fn spawn(&mut self) {
        let (out, err) = log_stdio(&self.dir.path().join("redis.log"));
        let port = self.port.to_string();
        let mut server = Command::new("redis-server");
        server.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]);
        match &self.mode {
            Mode::Plain => server.args(["--port", &port]),
            Mode::Password(password) => server.args(["--port", &port, "--requirepass", password]),
            Mode::Tls => {
                let file = |name: &str| self.dir.path().join(name);
                server
                    .args([
                        "--port",
                        "0",
                        "--tls-port",
                        &port,
                        "--tls-auth-clients",
                        "no",
                    ])
                    .arg("--tls-cert-file")
                    .arg(file("server.pem"))
                    .arg("--tls-key-file")
                    .arg(file("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(file("ca.pem"))
            }
        };
        let child = server
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn redis-server (is redis-server installed?)");
        self.child = Some(child);
        let port = self.port;
        let ready = wait_until(Duration::from_secs(15), || {
            let exited = matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || self.ping()
        });
        if !ready || !self.ping() {
            self.stop();
            panic!("redis-server did not start on {port}:\n{}", self.logs());
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_millis(200);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut buf = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
