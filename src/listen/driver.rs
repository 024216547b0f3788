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
use tokio::task::JoinSet;

use super::connection::{ConnectionOutput, Ending, Tracked};
use super::stats::{with_polling_listener, ListenShared};

/// Accepts one `poll` takes before yielding to the runtime, so an always-ready stream cannot
/// starve other tasks.
const ACCEPT_BUDGET: usize = 64;

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
        self.poll_join_next(cx).map(|done| {
            done.map(|result| match result {
                Ok(ending) => ending,
                // Panics are caught inside `Tracked`; a join error here means the task was aborted.
                Err(e) if e.is_panic() => Ending::Panicked,
                Err(_) => Ending::Cancelled,
            })
        })
    }

    fn cancel_all(&mut self) -> usize {
        self.abort_all();
        0
    }
}

pin_project! {
    pub(crate) struct Driver<S, P> {
        #[pin]
        stream: Option<S>,
        pool: P,
        max_connections: usize,
        time_limit: Option<Duration>,
        shared: Arc<ListenShared>,
        link_settled: bool,
    }
}

impl<S, P> Driver<S, P>
where
    S: Stream,
    P: Pool<S::Item>,
{
    #[track_caller]
    pub(crate) fn new(stream: S, pool: P, max_connections: usize, method: &str) -> Self {
        assert!(
            max_connections > 0,
            "{method}: max_connections must be at least 1 (0 would never accept a connection)"
        );
        Driver {
            stream: Some(stream),
            pool,
            max_connections,
            time_limit: None,
            shared: Arc::default(),
            link_settled: false,
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
        &self.shared
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub(crate) fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.pool.len()
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
                active = this.pool.len(),
                "listener: stopped accepting, draining connections"
            );
        }
    }

    /// Cancel every connection still running.
    pub(crate) fn cancel_all(self: Pin<&mut Self>) {
        let this = self.project();
        let dropped = this.pool.cancel_all();
        for _ in 0..dropped {
            Ending::Cancelled.record(this.shared);
        }
    }

    /// Accept and run connections until the stream has ended and every connection has finished.
    pub(crate) fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let mut accepted = 0;
        loop {
            while let Poll::Ready(Some(ending)) = this.pool.poll_ending(cx) {
                ending.record(this.shared);
            }
            let Some(stream) = this.stream.as_mut().as_pin_mut() else {
                return if this.pool.len() == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            };
            if this.pool.len() >= *this.max_connections {
                // Full: leave new clients in the kernel backlog; a connection ending wakes us.
                return Poll::Pending;
            }
            if accepted >= ACCEPT_BUDGET {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let next = if *this.link_settled {
                stream.poll_next(cx)
            } else {
                // Until the first item, let a `sleep_on_error` inside the stream find us.
                with_polling_listener(this.shared, || stream.poll_next(cx))
            };
            match next {
                Poll::Ready(Some(connection)) => {
                    *this.link_settled = true;
                    accepted += 1;
                    let active = this.shared.started();
                    log_event!(trace, active, "connection accepted");
                    let _ = active;
                    this.pool.push(Tracked::new(connection, *this.time_limit));
                }
                Poll::Ready(None) => {
                    *this.link_settled = true;
                    this.stream.set(None);
                    log_event!(
                        info,
                        active = this.pool.len(),
                        "listener: accept stream ended, draining connections"
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
