//! systemd notifications: READY=1 once the listener is bound and the chain built,
//! RELOADING=1 / READY=1 around a reload, STOPPING=1 when draining, WATCHDOG=1 at half
//! of `WatchdogSec` from the runtime (so a wedged runtime gets the daemon restarted).
//! Everything is a no-op when `NOTIFY_SOCKET` is unset (not run under systemd).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// systemd wants the monotonic time with RELOADING=1 (Type=notify-reload needs it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Spawns the watchdog pinger if systemd asked for one; the task ends with the runtime.
pub fn spawn_watchdog() {
    let Some(usec) = watchdog_usec() else { return };
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

/// `WATCHDOG_USEC` when the watchdog is for this process. As libsystemd's
/// `sd_watchdog_enabled`: an absent `WATCHDOG_PID` means the main process, i.e. us
/// (sd-notify's own check insists on it being set).
fn watchdog_usec() -> Option<u64> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse() != Ok(std::process::id()) => None,
        _ => (usec > 0).then_some(usec),
    }
}
