//! systemd integration without systemd: the daemon talks to a NOTIFY_SOCKET this test
//! owns, and the messages must arrive in the order systemd expects.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{Daemon, config_memory_only_sample};

/// Collects notification datagrams until `done` says so or the deadline passes.
fn collect(socket: &UnixDatagram, seen: &mut Vec<String>, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !done(seen) && Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            seen.extend(text.lines().map(str::to_owned));
        }
    }
}

fn position(seen: &[String], what: &str, after: usize) -> Option<usize> {
    seen.iter()
        .skip(after)
        .position(|m| m == what)
        .map(|i| i + after)
}

/// READY after bind, WATCHDOG pings, RELOADING then READY around SIGHUP, STOPPING on SIGTERM.
#[test]
fn notifications_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut daemon = Daemon::start_with_env(
        &config_memory_only_sample(),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = Vec::new();
    collect(&socket, &mut seen, |s| {
        s.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2
    });
    let ready = position(&seen, "READY=1", 0).expect("READY=1 sent");
    let watchdog = position(&seen, "WATCHDOG=1", 0).expect("WATCHDOG=1 sent");
    assert!(ready < watchdog || ready == 0, "{seen:?}");

    daemon.signal("HUP");
    let from = seen.len();
    collect(&socket, &mut seen, |s| {
        position(s, "READY=1", from).is_some()
    });
    let reloading = position(&seen, "RELOADING=1", from).expect("RELOADING=1 on SIGHUP");
    let ready_again = position(&seen, "READY=1", reloading).expect("READY=1 after reload");
    assert!(reloading < ready_again);

    daemon.signal("TERM");
    let from = seen.len();
    collect(&socket, &mut seen, |s| {
        position(s, "STOPPING=1", from).is_some()
    });
    assert!(position(&seen, "STOPPING=1", from).is_some(), "{seen:?}");
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
}
