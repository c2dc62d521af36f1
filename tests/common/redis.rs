//! `TestRedis`: a private redis-server on a free loopback port, with stop/start, pause
//! (SIGSTOP) and a `redis-cli` shortcut. Nothing is persisted; drop kills it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::ports::free_port;
use super::process::{log_stdio, read_log, send_signal, wait_until};

/// A redis-server child process owned by one test.
pub struct TestRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("codette-redis-")
            .tempdir()
            .expect("tempdir");
        let mut redis = TestRedis {
            port: free_port(),
            dir,
            child: None,
        };
        redis.spawn();
        redis
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
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    /// True when the server answers PING within 200 ms.
    pub fn ping(&self) -> bool {
        ping(self.port)
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
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
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
            exited || ping(port)
        });
        if !ready || !ping(port) {
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
