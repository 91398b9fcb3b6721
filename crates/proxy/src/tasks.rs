//! Task bookkeeping: the proxy-wide shutdown signal and the tracker that lets shutdown
//! wait for every connection task, including those still draining on listeners a
//! reconfigure removed.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The proxy-wide shutdown signal: signalled once, when the proxy shuts down or is
/// dropped, and watched by every connection task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug, Default)]
struct ShutdownInner {
    signalled: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn signal(&self) {
        self.0.signalled.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Resolves once the signal is given. Cheap to poll again: a connection task polls
    /// it each time it is woken, which is several times per request, so the waiter is
    /// registered once and later polls only read a flag, unless the task's waker
    /// changed.
    pub async fn signalled(&self) {
        let mut notified = pin!(self.0.notify.notified());
        let mut registered: Option<Waker> = None;
        poll_fn(|context| {
            if self.0.signalled.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if registered
                .as_ref()
                .is_some_and(|waker| waker.will_wake(context.waker()))
            {
                return Poll::Pending;
            }
            if notified.as_mut().poll(context).is_ready() {
                return Poll::Ready(());
            }
            registered = Some(context.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

/// Counts live connection tasks so shutdown can wait for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    live: AtomicUsize,
    idle: Notify,
}

#[derive(Debug)]
struct TrackerToken(Arc<TrackerInner>);

impl Drop for TrackerToken {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    fn token(&self) -> TrackerToken {
        self.0.live.fetch_add(1, Ordering::AcqRel);
        TrackerToken(Arc::clone(&self.0))
    }

    pub fn live(&self) -> usize {
        self.0.live.load(Ordering::Acquire)
    }

    /// Waits until no tracked task is left.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs one connection until it ends or the proxy shuts down.
    pub fn spawn_connection<F>(&self, shutdown: &Shutdown, connection: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _token = token;
            tokio::select! {
                () = connection => {}
                () = shutdown.signalled() => {}
            }
        })
    }
}

/// Aborts a task when dropped (health checkers, UDP sessions), so a dropped proxy
/// leaves nothing running.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    pub fn new(handle: JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(Some(handle))
    }

    /// Whether the task has ended (on its own or aborted).
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Aborts the task and waits until it is gone.
    pub async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::DEADLINE;

    #[tokio::test]
    async fn shutdown_ends_tracked_connections_and_idle_waits_for_them() {
        let shutdown = Shutdown::default();
        let tracker = Tracker::default();
        tracker.idle().await;
        let first = tracker.spawn_connection(&shutdown, std::future::pending());
        // A connection woken over and over polls the signal each time; it still ends.
        let busy = tracker.spawn_connection(&shutdown, async {
            loop {
                tokio::task::yield_now().await;
            }
        });
        let second = tracker.spawn_connection(&shutdown, async {});
        second.await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(tracker.live(), 2);
        shutdown.signal();
        tokio::time::timeout(DEADLINE, tracker.idle())
            .await
            .unwrap();
        first.await.unwrap();
        busy.await.unwrap();

        // After the signal, a new connection ends at once, as does a new wait.
        let late = tracker.spawn_connection(&shutdown, std::future::pending());
        tokio::time::timeout(DEADLINE, late).await.unwrap().unwrap();
        tokio::time::timeout(DEADLINE, shutdown.signalled())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn abort_on_drop_stops_the_task() {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<()>(1);
        let task = AbortOnDrop::new(tokio::spawn(async move {
            let _sender = sender;
            std::future::pending::<()>().await;
        }));
        task.stop().await;
        assert!(
            receiver.recv().await.is_none(),
            "the task dropped its sender"
        );
    }
}
