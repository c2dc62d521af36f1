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
    let mut usec = 0;
    if std::env::var_os("NOTIFY_SOCKET").is_none() || !sd_notify::watchdog_enabled(false, &mut usec)
    {
        return;
    }
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}
