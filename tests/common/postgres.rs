//! `TestPostgres`: a private PostgreSQL on a free loopback port, loaded with
//! `tests/sql/schema.sql`. `initdb` runs once into a template kept under the cargo target
//! dir; each instance copies it, so starting one is cheap. As root, the server runs as the
//! `postgres` user through `setpriv` (which execs, so the child pid is the postmaster).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use super::ports::free_port;
use super::process::{
    descendants, is_root, log_stdio, read_log, run_ok, send_signal, terminate, wait_until,
};
use super::tls::make_certificates;

/// The schema and seed data every instance starts with.
pub const SCHEMA_SQL: &str = include_str!("../sql/schema.sql");

/// A postgres child process owned by one test.
pub struct TestPostgres {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    paused: bool,
    /// Serving TLS with a certificate of its own test CA (`start_tls`).
    tls: bool,
}

impl TestPostgres {
    /// Copies the template cluster, starts postgres on a free port, loads the schema.
    pub fn start() -> TestPostgres {
        Self::start_with(false)
    }

    /// As `start`, with `ssl = on`: the server's certificate names `localhost` and
    /// `127.0.0.1` and is signed by a CA made for this instance ([`Self::root_cert`]).
    pub fn start_tls() -> TestPostgres {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> TestPostgres {
        let template = template_dir();
        let dir = tempfile::Builder::new()
            .prefix("codette-pg-")
            .tempdir()
            .expect("tempdir");
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(template)
                .arg(dir.path().join("data")),
        );
        std::fs::create_dir(dir.path().join("sock")).expect("mkdir sock");
        if tls {
            make_certificates(&dir.path().join("tls"));
        }
        chown_to_postgres(dir.path());
        let mut pg = TestPostgres {
            port: free_port(),
            dir,
            child: None,
            paused: false,
            tls,
        };
        pg.spawn();
        pg.psql(&["-1", "-f", "-"], Some(SCHEMA_SQL));
        pg
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:P/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The PEM file of the CA that signed a `start_tls` server's certificate.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs SQL through psql; returns the rows unaligned (`|`-separated), one a line.
    pub fn execute(&self, sql: &str) -> String {
        self.psql(&["-t", "-A", "-c", sql], None)
    }

    /// Fast shutdown (SIGINT: sessions are ended), SIGKILL after 5 s. No-op when stopped.
    pub fn stop(&mut self) {
        if self.paused {
            self.resume();
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, "INT", Duration::from_secs(5));
        }
    }

    /// Starts the server again on the same port and data (the schema is already there).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is still running");
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGSTOPs the postmaster and all its backends: connections stay open, nothing answers.
    pub fn pause(&mut self) {
        let pid = self.child.as_ref().expect("postgres is not running").id();
        assert!(send_signal(&[pid], "STOP"), "kill -STOP");
        send_signal(&descendants(pid), "STOP");
        self.paused = true;
    }

    /// Undoes `pause` with SIGCONT.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            send_signal(&descendants(pid), "CONT");
            send_signal(&[pid], "CONT");
        }
        self.paused = false;
    }

    /// The server's own log.
    pub fn logs(&self) -> String {
        read_log(&self.dir.path().join("postgres.log"))
    }

    fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let sock = self.dir.path().join("sock");
        let (out, err) = log_stdio(&self.dir.path().join("postgres.log"));
        let mut cmd = as_postgres(&bin_dir().join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&sock)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=60"]);
        if self.tls {
            let tls = self.dir.path().join("tls");
            cmd.args(["-c", "ssl=on", "-c"])
                .arg(format!(
                    "ssl_cert_file={}",
                    tls.join("server.pem").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", tls.join("server.key").display()));
        }
        cmd.current_dir(&data)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.child = Some(cmd.spawn().expect("spawn postgres"));
        let port = self.port.to_string();
        let ready = wait_until(Duration::from_secs(30), || {
            let exited = matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || pg_isready(&port)
        });
        if !ready || !pg_isready(&port) {
            self.stop();
            panic!("postgres did not start on {port}:\n{}", self.logs());
        }
    }

    fn psql(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(bin_dir().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("psql stdin");
            pipe.write_all(input.as_bytes()).expect("write to psql");
        }
        let out = child.wait_with_output().expect("wait for psql");
        assert!(
            out.status.success(),
            "psql {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/lib/postgresql/<newest>/bin`.
pub fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let version = |p: &PathBuf| -> Vec<u32> {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.split('.').filter_map(|n| n.parse().ok()).collect()
        };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("bin/postgres").is_file())
            .collect();
        dirs.sort_by_key(version);
        let newest = dirs
            .pop()
            .expect("no /usr/lib/postgresql/*/bin/postgres: install postgresql");
        newest.join("bin")
    })
}

/// The initdb'd template cluster, made once and reused by later test processes.
fn template_dir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let major = bin_dir()
            .parent()
            .and_then(|p| p.file_name())
            .expect("version dir");
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let template = root.join(format!("pg-template-{}", major.to_string_lossy()));
        if template.join("PG_VERSION").is_file() {
            return template;
        }
        // initdb runs as `postgres`, which may not reach the target dir: work in /tmp,
        // then copy in as the current user and rename into place atomically.
        let work = tempfile::Builder::new()
            .prefix("codette-pg-initdb-")
            .tempdir()
            .expect("tempdir");
        let data = work.path().join("data");
        chown_to_postgres(work.path());
        run_ok(
            as_postgres(&bin_dir().join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C", "-D"])
                .arg(&data)
                .current_dir(work.path()),
        );
        std::fs::create_dir_all(&root).expect("mkdir target tmp");
        let staging = root.join(format!("pg-template.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        run_ok(Command::new("cp").arg("-a").arg(&data).arg(&staging));
        if std::fs::rename(&staging, &template).is_err() {
            // Another test process won the race; use its template.
            let _ = std::fs::remove_dir_all(&staging);
        }
        assert!(template.join("PG_VERSION").is_file(), "template missing");
        template
    })
}

/// A command for `program` that runs as `postgres` when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path),
        );
    }
}

fn pg_isready(port: &str) -> bool {
    Command::new(bin_dir().join("pg_isready"))
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-t",
            "1",
        ])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
