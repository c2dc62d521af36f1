//! Single flight: concurrent misses for one key share one origin call. The leader's
//! call runs in its own task, so it finishes (and fills the tiers) even if every client
//! waiting on it disconnects; its result, value or error, reaches every waiter, and the
//! key is released when the task ends, however it ends, so no key stays stuck. An error,
//! or an answer that will not be stored, releases the key before it is published: a
//! request that comes after it starts a new call instead of joining the finished one.
//! Nor does a request join a flight that a purge has overtaken (the caller's `joinable`
//! says, from the flight's fence ticket): it starts its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::fence::Ticket;
use crate::key::Key;
use crate::origins::OriginError;
use bytes::Bytes;

/// What every waiter of one flight receives.
pub type FlightResult = Result<Bytes, Arc<OriginError>>;

type Waiting = Shared<BoxFuture<'static, FlightResult>>;

/// The flights in the air, by key, each with its own id.
#[derive(Default)]
pub struct Flights {
    inflight: Mutex<HashMap<Key, (u64, Ticket, Waiting)>>,
    next_id: AtomicU64,
}

/// Whether this request started the flight or joined one.
pub enum Role {
    Leader,
    Waiter,
}

impl Flights {
    /// Joins the flight for `key` if `joinable` accepts its ticket, else starts one
    /// with `work` (whose reads began at `ticket`). `work` gets a sender to publish its
    /// result as soon as it has one (so waiters need not wait for its back-fill), and
    /// runs to the end in its own task.
    pub fn join<F, Fut>(
        self: &Arc<Self>,
        key: &Key,
        ticket: Ticket,
        joinable: impl FnOnce(Ticket) -> bool,
        work: F,
    ) -> (Role, Waiting)
    where
        F: FnOnce(Publisher) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut inflight = self.inflight.lock();
        if let Some((_, started, waiting)) = inflight.get(key) {
            if joinable(*started) {
                return (Role::Waiter, waiting.clone());
            }
        }
        let (tx, rx) = oneshot::channel();
        let waiting: Waiting = rx
            .map(|r| r.unwrap_or_else(|_| Err(Arc::new(OriginError::Aborted))))
            .boxed()
            .shared();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        inflight.insert(key.clone(), (id, ticket, waiting.clone()));
        drop(inflight);

        let release = Release {
            flights: Arc::clone(self),
            key: key.clone(),
            id,
        };
        let publisher = Publisher {
            tx,
            release: Release {
                flights: Arc::clone(self),
                key: key.clone(),
                id,
            },
        };
        let fut = work(publisher);
        tokio::spawn(async move {
            let _release = release;
            fut.await;
        });
        (Role::Leader, waiting)
    }

    /// Flights in the air now.
    pub fn len(&self) -> usize {
        self.inflight.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Publishes a flight's result to its waiters.
pub struct Publisher {
    tx: oneshot::Sender<FlightResult>,
    release: Release,
}

impl Publisher {
    /// Sends the result; an error first releases the key (errors are never shared
    /// with requests that arrive after them).
    ///
    /// # Errors
    /// The result back when no one is waiting any more.
    pub fn send(self, result: FlightResult) -> Result<(), FlightResult> {
        if result.is_err() {
            self.release.release();
        }
        self.tx.send(result)
    }

    /// Releases the key now: for an answer that will not be stored, so a request that
    /// comes after it calls the origin again.
    pub fn release(&self) {
        self.release.release();
    }
}

/// Removes the key when the flight's task ends, even by panic.
struct Release {
    flights: Arc<Flights>,
    key: Key,
    id: u64,
}

impl Release {
    /// Removes the key if it is still this flight's (a later flight keeps its own).
    fn release(&self) {
        let mut inflight = self.flights.inflight.lock();
        if inflight
            .get(&self.key)
            .is_some_and(|(id, _, _)| *id == self.id)
        {
            inflight.remove(&self.key);
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::chain::fence::Fence;

    fn ticket() -> Ticket {
        Fence::default().ticket()
    }

    /// 100 concurrent joins run the work once and all see its value.
    #[tokio::test]
    async fn concurrent_joins_share_one_call() {
        let flights = Arc::new(Flights::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = Key::derive("m", None, false);
        let mut waits = Vec::new();
        for _ in 0..100 {
            let calls = Arc::clone(&calls);
            let (_, w) = flights.join(
                &key,
                ticket(),
                |_| true,
                move |tx| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send(Ok(Bytes::from_static(b"{}")));
                },
            );
            waits.push(w);
        }
        for w in waits {
            assert_eq!(w.await.unwrap(), Bytes::from_static(b"{}"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(flights.is_empty());
    }

    /// A flight whose task dies without answering releases its key with an error.
    #[tokio::test]
    async fn a_dead_flight_is_not_stuck() {
        let flights = Arc::new(Flights::default());
        let key = Key::derive("m", None, false);
        let (_, w) = flights.join(&key, ticket(), |_| true, |tx| async move { drop(tx) });
        assert!(matches!(*w.await.unwrap_err(), OriginError::Aborted));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (role, _) = flights.join(
            &key,
            ticket(),
            |_| true,
            |tx| async move {
                let _ = tx.send(Ok(Bytes::new()));
            },
        );
        assert!(matches!(role, Role::Leader));
    }

    /// A request arriving after a flight's error was answered starts a new call even
    /// while the failed task is still running, and that task's end leaves it in place.
    #[tokio::test]
    async fn an_error_is_not_shared_with_later_requests() {
        let flights = Arc::new(Flights::default());
        let key = Key::derive("m", None, false);
        let (finish, finished) = oneshot::channel::<()>();
        let (_, w) = flights.join(
            &key,
            ticket(),
            |_| true,
            |tx| async move {
                let _ = tx.send(Err(Arc::new(OriginError::Aborted)));
                let _ = finished.await;
            },
        );
        assert!(w.await.is_err());
        let (role, w) = flights.join(
            &key,
            ticket(),
            |_| true,
            |tx| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Ok(Bytes::from_static(b"{}")));
            },
        );
        assert!(matches!(role, Role::Leader), "joined the failed flight");
        let _ = finish.send(());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (role, _) = flights.join(&key, ticket(), |_| true, |_| async {});
        assert!(
            matches!(role, Role::Waiter),
            "the old task released the new flight"
        );
        // Still in the air, but overtaken by a purge: not joined.
        let (role, _) = flights.join(&key, ticket(), |_| false, |_| async {});
        assert!(
            matches!(role, Role::Leader),
            "joined a flight a purge overtook"
        );
        assert_eq!(w.await.unwrap(), Bytes::from_static(b"{}"));
    }
}
