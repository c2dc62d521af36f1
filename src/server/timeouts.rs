//! The header-read and send timeouts, without a timer per request. hyper's header
//! timeout arms a tokio timer for every request head and drops it once the head is
//! read: about 0.5 µs of the ~9 µs of CPU a memory hit costs (6 %, measured A/B). Here
//! a connection only stamps a coarse clock, and one sweeper task closes the connections
//! past a timeout:
//! - header read: stamped when the connection starts waiting for a head (when it opens,
//!   and when its previous response's body is done). The rule is hyper's: the time
//!   allowed for a request head, counted from when the connection starts waiting for it
//!   (so an idle keep-alive connection is closed after it too).
//! - send: stamped when the response body hands hyper a frame, cleared when hyper asks
//!   for the next one. hyper asks as long as its write buffer has room, so a stamp that
//!   stays is a client that stopped reading (nginx's `send_timeout`: between two
//!   successive writes, not for the whole response). A body that is slow to produce
//!   its next frame (an event stream between events, a slow upstream) is not timed out.
//!
//! A request being served, or a response the client keeps reading, is never timed out,
//! however long it takes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::task::AbortHandle;

/// `since_ms` of a connection serving a request.
const BUSY: u64 = u64::MAX;
/// `handed_ms` of a connection whose body has no frame waiting to be written.
const TAKEN: u64 = u64::MAX;

/// What the connections and the sweeper share.
struct Shared {
    timeout_ms: u64,
    send_timeout_ms: u64,
    /// Milliseconds since `start`, as of the sweeper's last tick.
    now_ms: AtomicU64,
    start: Instant,
    /// Every open connection; ended ones are pruned by the sweeper.
    conns: Mutex<Vec<(Weak<Watch>, AbortHandle)>>,
}

/// The timeouts of one listener's connections.
pub struct Timeouts {
    shared: Arc<Shared>,
}

impl Timeouts {
    /// Starts the sweeper, which runs while any connection (or this) is alive.
    pub fn start(timeout: Duration, send_timeout: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let shared = Arc::new(Shared {
            timeout_ms: ms(timeout),
            send_timeout_ms: ms(send_timeout),
            now_ms: AtomicU64::new(0),
            start: Instant::now(),
            conns: Mutex::new(Vec::new()),
        });
        // An eighth of the timeout, so a connection is closed at most 12 % late.
        let tick = (timeout.min(send_timeout) / 8)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::spawn(sweep(Arc::downgrade(&shared), tick));
        Self { shared }
    }

    /// A new connection's watch, waiting for its first head from now.
    pub fn watch(&self) -> Arc<Watch> {
        let now = self.shared.now();
        self.shared.now_ms.store(now, Ordering::Relaxed);
        Arc::new(Watch {
            shared: Arc::clone(&self.shared),
            since_ms: AtomicU64::new(now),
            handed_ms: AtomicU64::new(TAKEN),
        })
    }

    /// Puts `watch`'s connection, served by the task `abort` stops, under the timeout.
    pub fn enforce(&self, watch: &Arc<Watch>, abort: AbortHandle) {
        self.shared
            .conns
            .lock()
            .push((Arc::downgrade(watch), abort));
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Closes the connections past the timeout, every `tick`, until nothing refers to the
/// listener's state any more.
async fn sweep(shared: Weak<Shared>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.now();
        shared.now_ms.store(now, Ordering::Relaxed);
        shared.conns.lock().retain(|(watch, abort)| {
            let Some(watch) = watch.upgrade() else {
                return false;
            };
            let since = watch.since_ms.load(Ordering::Relaxed);
            let handed = watch.handed_ms.load(Ordering::Relaxed);
            let why = if since != BUSY && now.saturating_sub(since) > shared.timeout_ms {
                "no request head within header_read_timeout_ms"
            } else if handed != TAKEN && now.saturating_sub(handed) > shared.send_timeout_ms {
                "the client read none of the response within send_timeout_ms"
            } else {
                return true;
            };
            tracing::debug!("connection closed: {why}");
            abort.abort();
            false
        });
    }
}

/// One connection's state: since when it has waited for a request head, or busy; since
/// when its response's last frame has waited for hyper to want the next.
pub struct Watch {
    shared: Arc<Shared>,
    since_ms: AtomicU64,
    handed_ms: AtomicU64,
}

impl Watch {
    fn busy(&self) {
        self.since_ms.store(BUSY, Ordering::Relaxed);
    }

    fn waiting(&self) {
        let now = self.shared.now_ms.load(Ordering::Relaxed);
        self.handed_ms.store(TAKEN, Ordering::Relaxed);
        self.since_ms.store(now, Ordering::Relaxed);
    }

    /// The body gave hyper a frame (`true`), or hyper asked for one and none was ready.
    fn handed(&self, frame: bool) {
        let at = if frame {
            self.shared.now_ms.load(Ordering::Relaxed)
        } else {
            TAKEN
        };
        self.handed_ms.store(at, Ordering::Relaxed);
    }
}

/// A connection's service: busy from a request's head to the end of its response body.
pub struct Watched<S> {
    pub inner: S,
    pub watch: Arc<Watch>,
}

impl<S, B> hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Watched<S>
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        >,
    S::Future: Unpin,
{
    type Response = hyper::Response<Tracked<B>>;
    type Error = Infallible;
    type Future = Finish<S::Future>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.watch.busy();
        Finish {
            inner: self.inner.call(request),
            watch: Some(Arc::clone(&self.watch)),
        }
    }
}

/// The service's answer, its body tracked.
pub struct Finish<F> {
    inner: F,
    watch: Option<Arc<Watch>>,
}

impl<F, B> Future for Finish<F>
where
    F: Future<Output = Result<hyper::Response<B>, Infallible>> + Unpin,
{
    type Output = Result<hyper::Response<Tracked<B>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(response) = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        let watch = self.watch.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, watch })))
    }
}

/// A response body that starts the wait for the next head once it is done (sent, or
/// dropped unsent: a HEAD answer, a connection gone).
pub struct Tracked<B> {
    body: B,
    watch: Option<Arc<Watch>>,
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.waiting();
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Some(watch) = &self.watch {
            watch.handed(matches!(polled, Poll::Ready(Some(Ok(_)))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection waiting past the timeout is aborted; one that is busy, however
    /// long, or that started waiting again lately, is not.
    #[tokio::test]
    async fn only_waiting_connections_time_out() {
        let timeout = Timeouts::start(Duration::from_millis(80), Duration::from_secs(60));
        let idle = timeout.watch();
        let busy = timeout.watch();
        let fresh = timeout.watch();
        busy.busy();
        let spawn = || tokio::spawn(std::future::pending::<()>());
        let tasks = [spawn(), spawn(), spawn()];
        for (watch, task) in [&idle, &busy, &fresh].into_iter().zip(&tasks) {
            timeout.enforce(watch, task.abort_handle());
        }
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            fresh.waiting();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(tasks[0].is_finished(), "idle for 230 ms, timeout 80 ms");
        assert!(!tasks[1].is_finished(), "busy");
        assert!(!tasks[2].is_finished(), "waited 25 ms at a time");
        // Ended connections leave the list.
        drop((idle, busy, fresh));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(timeout.shared.conns.lock().is_empty());
    }

    /// A response whose last frame hyper has not come back for is closed after the send
    /// timeout; one whose body has nothing to give yet (an event stream between events)
    /// or whose frames are taken as they come is not.
    #[tokio::test]
    async fn responses_nobody_reads_time_out() {
        use futures_util::{FutureExt, StreamExt};
        use http_body_util::{BodyExt, StreamBody};

        type Frames = StreamBody<
            futures_util::stream::BoxStream<'static, Result<Frame<bytes::Bytes>, Infallible>>,
        >;
        let timeout = Timeouts::start(Duration::from_secs(60), Duration::from_millis(80));
        let tracked = |frames: Frames| {
            let watch = timeout.watch();
            watch.busy();
            let task = tokio::spawn(std::future::pending::<()>());
            timeout.enforce(&watch, task.abort_handle());
            let body = Tracked {
                body: frames,
                watch: Some(watch),
            };
            (body, task)
        };
        let endless = || -> Frames {
            let frame = || Ok(Frame::data(bytes::Bytes::from_static(b"data: x\n\n")));
            StreamBody::new(StreamExt::boxed(futures_util::stream::repeat_with(frame)))
        };
        let (mut unread, unread_task) = tracked(endless());
        let (mut read, read_task) = tracked(endless());
        let (mut quiet, quiet_task) = tracked(StreamBody::new(StreamExt::boxed(
            futures_util::stream::pending(),
        )));
        assert!(unread.frame().await.is_some());
        assert!(quiet.frame().now_or_never().is_none());
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            assert!(read.frame().await.is_some());
        }
        assert!(
            unread_task.is_finished(),
            "a frame untaken for 250 ms, timeout 80 ms"
        );
        assert!(!read_task.is_finished(), "frames taken every 25 ms");
        assert!(!quiet_task.is_finished(), "nothing to send");
    }
}
