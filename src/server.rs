//! The HTTP/1.1 accept loop, ours rather than warp's so the daemon controls what warp's
//! does not: a cap on open connections (refused at accept beyond it), a header-read
//! timeout that really fires and a send timeout for clients that stop reading
//! (`timeouts.rs`: one sweeper, no timer per request), and a graceful drain that closes
//! idle keep-alive connections at once instead of waiting on them.

mod timeouts;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub send_timeout: Duration,
}

/// Accepts and serves connections until `stop` resolves, then stops accepting (the
/// listener closes) and hands back the handle that drains the open connections.
pub async fn accept_until<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = crate::http::Reply,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    let graceful = GracefulShutdown::new();
    let timeout = timeouts::Timeouts::start(limits.header_read_timeout, limits.send_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connection_rejected();
            tracing::debug!("connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watch = timeout.watch();
        let service = timeouts::Watched {
            inner: service.clone(),
            watch: Arc::clone(&watch),
        };
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let open = Open::new(Arc::clone(&metrics), slot);
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(open);
        });
        timeout.enforce(&watch, task.abort_handle());
    }
    drop(listener);
    graceful
}

/// An open connection's slot and gauge, given back however its task ends (the header
/// timeout aborts it).
struct Open {
    metrics: Arc<Metrics>,
    _slot: OwnedSemaphorePermit,
}

impl Open {
    fn new(metrics: Arc<Metrics>, slot: OwnedSemaphorePermit) -> Self {
        metrics.connection_opened();
        Self {
            metrics,
            _slot: slot,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}
