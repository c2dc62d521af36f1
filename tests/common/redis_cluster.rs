//! `TestCluster`: one real Redis Cluster (3 masters, 3 replicas, `cluster-node-timeout`
//! 1000 ms so a failover takes a few seconds) on free loopback ports, started the first
//! time a test asks for it and shared by every cluster test of the process, one test at
//! a time (`TestCluster::shared` hands out a lock). A test that kills a node restarts it
//! before it returns; the next one waits until the cluster is whole again.
//!
//! A static is never dropped, so a watchdog shell started with the nodes kills them and
//! removes their directory once this test process is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::ports::free_port;
use super::process::{log_stdio, read_log, run_ok, wait_until};

/// The cluster bus listens on the client port + 10000.
const BUS_OFFSET: u16 = 10_000;

pub struct TestCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl TestCluster {
    /// The process's cluster, started on first use, waited on until whole.
    pub fn shared() -> MutexGuard<'static, TestCluster> {
        static CLUSTER: OnceLock<Mutex<TestCluster>> = OnceLock::new();
        let mut cluster = CLUSTER
            .get_or_init(|| Mutex::new(TestCluster::start()))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cluster.heal();
        cluster
    }

    fn start() -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("codette-cluster-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let ports: Vec<u16> = (0..6).map(|_| free_cluster_port()).collect();
        let mut cluster = TestCluster {
            dir,
            children: ports.iter().map(|_| None).collect(),
            ports,
        };
        cluster.watchdog();
        for i in 0..cluster.ports.len() {
            cluster.spawn(i);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        run_ok(
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&nodes)
                .args(["--cluster-replicas", "1", "--cluster-yes"]),
        );
        assert!(
            cluster.wait_whole(Duration::from_secs(30)),
            "the cluster never became whole:\n{}",
            cluster.cmd(cluster.ports[0], &["CLUSTER", "NODES"])
        );
        cluster
    }

    /// Kills the nodes and removes the directory when this process ends.
    // The watchdog outlives this process by design: nothing here may wait for it.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             for f in {dir}/*.pid; do kill -9 \"$(cat \"$f\")\" 2>/dev/null; done; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the cluster watchdog");
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(self.ports[i].to_string())
    }

    fn spawn(&mut self, i: usize) {
        let port = self.ports[i];
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        let (out, err) = log_stdio(&dir.join("redis.log"));
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--pidfile")
            .arg(self.dir.join(format!("{port}.pid")))
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn redis-server (is redis-server installed?)");
        self.children[i] = Some(child);
        assert!(
            wait_until(Duration::from_secs(15), || self.answers(port)),
            "cluster node {port} did not start:\n{}",
            read_log(&dir.join("redis.log"))
        );
    }

    /// Seed URLs of every node, `redis://127.0.0.1:P`.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `redis-cli -p port <args>`: stdout without the trailing newline ("" on failure).
    pub fn cmd(&self, port: u16, args: &[&str]) -> String {
        cli(port, false, args)
    }

    /// `redis-cli -c` (follows MOVED) through any running node.
    pub fn cluster_cmd(&self, args: &[&str]) -> String {
        let port = self.running_port();
        cli(port, true, args)
    }

    fn running_port(&self) -> u16 {
        self.ports
            .iter()
            .zip(&self.children)
            .find(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .expect("no node is running")
    }

    fn answers(&self, port: u16) -> bool {
        self.cmd(port, &["PING"]) == "PONG"
    }

    /// Ports of the running masters, from `CLUSTER NODES`.
    pub fn masters(&self) -> Vec<u16> {
        let nodes = self.cmd(self.running_port(), &["CLUSTER", "NODES"]);
        let mut masters: Vec<u16> = nodes
            .lines()
            .filter(|l| {
                let flags = l.split_whitespace().nth(2).unwrap_or("");
                flags.contains("master") && !flags.contains("fail")
            })
            .filter_map(|l| {
                let addr = l.split_whitespace().nth(1)?;
                addr.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect();
        masters.sort_unstable();
        masters
    }

    /// `context:*` keys on one node (SCAN, as an operator would).
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cmd(port, &["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again; it rejoins the cluster from its nodes.conf.
    pub fn restart(&mut self, port: u16) {
        let i = self.index(port);
        assert!(self.children[i].is_none(), "node {port} is running");
        self.spawn(i);
    }

    fn index(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|p| *p == port)
            .expect("a node's port")
    }

    /// Restarts any node a failed test left down, then waits until the cluster is whole.
    fn heal(&mut self) {
        for i in 0..self.ports.len() {
            let exited = match self.children[i].as_mut() {
                Some(child) => matches!(child.try_wait(), Ok(Some(_))),
                None => true,
            };
            if exited {
                self.children[i] = None;
                self.spawn(i);
            }
        }
        assert!(
            self.wait_whole(Duration::from_secs(30)),
            "the cluster is not whole:\n{}",
            self.cmd(self.running_port(), &["CLUSTER", "NODES"])
        );
    }

    /// Whole: every node says `cluster_state:ok`, there are 3 masters, and every replica's
    /// link to its master is up (no failover can happen before that).
    pub fn wait_whole(&self, limit: Duration) -> bool {
        wait_until(limit, || {
            let all_ok = self.ports.iter().all(|&p| {
                self.cmd(p, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
            let masters = self.masters();
            all_ok
                && masters.len() == 3
                && self
                    .ports
                    .iter()
                    .filter(|p| !masters.contains(p))
                    .all(|&p| {
                        self.cmd(p, &["INFO", "replication"])
                            .contains("master_link_status:up")
                    })
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn cli(port: u16, follow: bool, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if follow {
        command.arg("-c");
    }
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// A free port whose bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= u16::MAX - BUS_OFFSET
            && std::net::TcpListener::bind(("127.0.0.1", port + BUS_OFFSET)).is_ok()
        {
            return port;
        }
    }
}
