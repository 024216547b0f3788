//! The accept-and-run loop shared by [`Listen`](crate::Listen) and
//! [`SpawnListen`](crate::SpawnListen); they differ only in where connection futures run (the
//! [`Pool`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use pin_project_lite::pin_project;
use tokio::task::{JoinError, JoinSet};

use super::connection::{ConnectionOutput, Ending, Tracked};
use super::stats::{with_polling_listener, ListenShared};

/// Accepts one `poll` takes before yielding to the runtime, so an always-ready stream cannot
/// starve other tasks.
const ACCEPT_BUDGET: usize = 64;

/// What a pool must do when the listener is dropped with connections in flight: count them, so
/// the stats still add up (`connections == active + every ending`).
pub(crate) trait Settle {
    /// Record every connection still held as it ends with the pool: finished if it already
    /// finished, cancelled otherwise.
    fn settle(&mut self, shared: &ListenShared);
}

impl<F> Settle for FuturesUnordered<Tracked<F>> {
    fn settle(&mut self, shared: &ListenShared) {
        // Futures that completed were removed when polled: the rest are cut.
        for _ in 0..self.len() {
            Ending::Cancelled.record(shared);
        }
    }
}

impl Settle for JoinSet<Ending> {
    fn settle(&mut self, shared: &ListenShared) {
        while let Some(done) = self.try_join_next() {
            ending_of(done).record(shared);
        }
        // Dropping the set aborts the rest.
        for _ in 0..self.len() {
            Ending::Cancelled.record(shared);
        }
    }
}

/// A pool that settles its accounts when dropped.
pub(crate) struct Accounted<P: Settle> {
    pool: P,
    shared: Arc<ListenShared>,
}

impl<P: Settle> Drop for Accounted<P> {
    fn drop(&mut self) {
        self.pool.settle(&self.shared);
    }
}

/// Where connection futures run.
pub(crate) trait Pool<F> {
    fn len(&self) -> usize;
    fn push(&mut self, future: Tracked<F>);
    /// The next connection that ended; `Ready(None)` when there are none.
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ending>>;
    /// Cancel every connection; returns how many were dropped at once (the rest report
    /// [`Ending::Cancelled`] through `poll_ending`).
    fn cancel_all(&mut self) -> usize;
}

/// Connection futures polled inside the listener's own task.
pub(crate) type LocalPool<F> = FuturesUnordered<Tracked<F>>;

impl<F> Pool<F> for LocalPool<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    fn len(&self) -> usize {
        FuturesUnordered::len(self)
    }

    fn push(&mut self, future: Tracked<F>) {
        FuturesUnordered::push(self, future);
    }

    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ending>> {
        self.poll_next_unpin(cx)
    }

    fn cancel_all(&mut self) -> usize {
        let n = FuturesUnordered::len(self);
        self.clear();
        n
    }
}

/// Connection futures spawned onto the tokio runtime.
pub(crate) type SpawnPool = JoinSet<Ending>;

impl<F> Pool<F> for SpawnPool
where
    F: Future + Send + 'static,
    F::Output: ConnectionOutput,
{
    fn len(&self) -> usize {
        JoinSet::len(self)
    }

    fn push(&mut self, future: Tracked<F>) {
        self.spawn(future);
    }

    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ending>> {
        self.poll_join_next(cx).map(|done| done.map(ending_of))
    }

    fn cancel_all(&mut self) -> usize {
        self.abort_all();
        0
    }
}

fn ending_of(joined: Result<Ending, JoinError>) -> Ending {
    match joined {
        Ok(ending) => ending,
        // Panics are caught inside `Tracked`; a join error here means the task was aborted.
        Err(e) if e.is_panic() => Ending::Panicked,
        Err(_) => Ending::Cancelled,
    }
}

pin_project! {
    pub(crate) struct Driver<S, P: Settle> {
        #[pin]
        stream: Option<S>,
        pool: Accounted<P>,
        max_connections: usize,
        time_limit: Option<Duration>,
    }
}

impl<S, P> Driver<S, P>
where
    S: Stream,
    P: Pool<S::Item> + Settle,
{
    #[track_caller]
    pub(crate) fn new(stream: S, pool: P, max_connections: usize, method: &str) -> Self {
        assert!(
            max_connections > 0,
            "{method}: max_connections must be at least 1 (0 would never accept a connection)"
        );
        Driver {
            stream: Some(stream),
            pool: Accounted {
                pool,
                shared: Arc::default(),
            },
            max_connections,
            time_limit: None,
        }
    }

    #[track_caller]
    pub(crate) fn set_time_limit(&mut self, limit: Duration) {
        assert!(
            !limit.is_zero(),
            "connection_time_limit: the limit must be greater than zero"
        );
        self.time_limit = Some(limit);
    }

    pub(crate) fn shared(&self) -> &Arc<ListenShared> {
        &self.pool.shared
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub(crate) fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.pool.pool.len()
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.stream.is_some()
    }

    pub(crate) fn stream(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    pub(crate) fn stream_pin_mut(self: Pin<&mut Self>) -> Option<Pin<&mut S>> {
        self.project().stream.as_pin_mut()
    }

    /// Drop the accept stream (closing the listening socket) and let connections drain.
    pub(crate) fn stop_accepting(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.stream.is_some() {
            this.stream.set(None);
            log_event!(
                info,
                active = this.pool.pool.len(),
                "listener: stopped accepting, draining connections"
            );
        }
    }

    /// Cancel every connection still running.
    pub(crate) fn cancel_all(self: Pin<&mut Self>) {
        let this = self.project();
        let dropped = this.pool.pool.cancel_all();
        for _ in 0..dropped {
            Ending::Cancelled.record(&this.pool.shared);
        }
    }

    /// Accept and run connections until the stream has ended and every connection has finished.
    pub(crate) fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let mut accepted = 0;
        loop {
            while let Poll::Ready(Some(ending)) = this.pool.pool.poll_ending(cx) {
                ending.record(&this.pool.shared);
            }
            let Some(stream) = this.stream.as_mut().as_pin_mut() else {
                return if this.pool.pool.len() == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            };
            if this.pool.pool.len() >= *this.max_connections {
                // Full: leave new clients in the kernel backlog; a connection ending wakes us.
                return Poll::Pending;
            }
            if accepted >= ACCEPT_BUDGET {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Let any `sleep_on_error` inside the stream (behind `map`, `select`, ...) find us.
            let next = with_polling_listener(&this.pool.shared, || stream.poll_next(cx));
            match next {
                Poll::Ready(Some(connection)) => {
                    accepted += 1;
                    let active = this.pool.shared.started();
                    log_event!(trace, active, "connection accepted");
                    let _ = active;
                    this.pool
                        .pool
                        .push(Tracked::new(connection, *this.time_limit));
                }
                Poll::Ready(None) => {
                    this.stream.set(None);
                    log_event!(
                        info,
                        active = this.pool.pool.len(),
                        "listener: accept stream ended, draining connections"
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
