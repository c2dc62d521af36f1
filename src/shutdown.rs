//! Signals mapped to intents: SIGTERM/SIGINT drain and stop, SIGQUIT stops at once,
//! SIGHUP reloads the config. The app reads intents from a channel, so tests (and the
//! bench) can drive it the same way without sending real signals.

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stop accepting, finish in-flight requests, exit 0 (a second one means `Quit`).
    Shutdown,
    /// Exit now.
    Quit,
    /// Re-read the config file.
    Reload,
}

/// Starts listening for signals.
///
/// # Errors
/// When the handlers cannot be registered.
pub fn signals() -> std::io::Result<mpsc::Receiver<Intent>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            let intent = match signal {
                SIGHUP => Intent::Reload,
                SIGQUIT => Intent::Quit,
                _ => Intent::Shutdown,
            };
            if tx.send(intent).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
