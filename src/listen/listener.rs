//! [`Listener`]: the accept-and-run loop behind [`listen`](crate::ListenExt::listen) and
//! [`spawn_listen`](crate::ListenExt::spawn_listen).

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use futures_util::task::noop_waker_ref;
use pin_project_lite::pin_project;

use super::conn::Conns;
use super::connection::{panic_message, ConnectionEnd, Tracked};
use super::lifecycle::Life;
use super::link::Lender;
use super::mode::sealed::{Pool, Sealed};
use super::mode::{InTask, Mode, Spawned};
use super::shutdown::GracefulShutdown;
use super::stats::{ListenShared, Stats};
use crate::task::NoteWake;

/// Accepts one `poll` takes before yielding to the runtime, so an always-ready stream cannot
/// starve other tasks.
const ACCEPT_BUDGET: usize = 64;

/// Accepted connections a full listener holds until a slot frees. It polls its stream while
/// full so that the stream can end (`take_until(signal)` closes the port even when full): once
/// the first connection is in hand, it polls again only when the stream itself asks to be, which
/// an accept stream does not do after handing out a connection, so this is one in practice.
const HOLD_LIMIT: usize = 4;

/// Panics in a row from the accept stream, with no item and no `Pending` between them, after
/// which the stream is taken to be broken (a generator that panics on every poll once it has
/// panicked) and its panic is let through, instead of catching it forever in a busy loop. High,
/// because every accepted socket of a reset storm may make a handler's `peer_addr().unwrap()`
/// panic.
const STREAM_PANIC_LIMIT: u32 = 10_000;

/// The future of [`listen`](crate::ListenExt::listen): connections run inside its own task.
///
/// # Examples
///
/// A server built in one place and run in another:
///
/// ```
/// use std::future::Future;
/// use std::time::Duration;
/// use futures_util::{stream, Stream, StreamExt};
/// use staunch::{listen::Listen, ListenExt};
///
/// fn server(requests: Vec<u64>) -> Listen<impl Stream<Item = impl Future<Output = ()>>> {
///     let serve = |secs| tokio::time::sleep(Duration::from_secs(secs));
///     let server = stream::iter(requests).map(serve).listen(100);
///     server.connection_time_limit(Duration::from_secs(30))
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let server = server(vec![1, 60]);
/// assert_eq!(server.time_limit(), Some(Duration::from_secs(30)));
/// let stats = server.stats();
/// server.await;
/// assert_eq!((stats.snapshot().finished, stats.snapshot().timed_out), (1, 1));
/// # }
/// ```
pub type Listen<S> = Listener<S, InTask>;

/// The future of [`spawn_listen`](crate::ListenExt::spawn_listen): each connection runs as its
/// own tokio task.
///
/// # Examples
///
/// Boxed, a server's type is short to name, say for a struct field:
///
/// ```
/// use std::time::Duration;
/// use futures_util::future::{BoxFuture, FutureExt};
/// use futures_util::stream::{self, BoxStream, StreamExt};
/// use staunch::{listen::SpawnListen, ListenExt};
///
/// struct App {
///     server: SpawnListen<BoxStream<'static, BoxFuture<'static, ()>>>,
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let serve = |secs| tokio::time::sleep(Duration::from_secs(secs)).boxed();
/// let app = App { server: stream::iter([1, 2, 3]).map(serve).boxed().spawn_listen(10) };
/// let stats = app.server.stats();
/// app.server.await;
/// assert_eq!(stats.snapshot().finished, 3);
/// # }
/// ```
pub type SpawnListen<S> = Listener<S, Spawned>;

pin_project! {
    /// Future for the [`listen`](crate::ListenExt::listen) and
    /// [`spawn_listen`](crate::ListenExt::spawn_listen) methods; `M` is where connection futures
    /// run ([`InTask`] or [`Spawned`]).
    ///
    /// It starts connections from the accept stream while fewer than `max_connections` are in
    /// flight, and resolves once the stream has ended and every connection has finished. While
    /// full it holds at most one accepted connection for the next free slot, so that the stream
    /// is still polled and can end (`take_until(signal)` closes the port at once, full or not).
    ///
    /// - [`InTask`] ([`Listen`]): connection futures are polled inside this future's task, so they
    ///   need not be `Send` and it works on a current-thread runtime. Dropping it drops every
    ///   connection still in flight.
    /// - [`Spawned`] ([`SpawnListen`]): every connection future is spawned as its own tokio task,
    ///   so connections run on every worker thread while this future keeps the count and polls
    ///   the accept stream. It must be polled inside a tokio runtime. Dropping it aborts every
    ///   connection task still running.
    ///
    /// Either way the stats still add up after a drop: connections cut by it count as
    /// cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::{sleep, timeout, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // Five one-second connections, at most two at a time.
    /// let one_second = |_| async { sleep(Duration::from_secs(1)).await };
    /// let server = stream::iter(0..5).map(one_second).listen(2);
    /// let stats = server.stats();
    /// let start = Instant::now();
    /// server.await;
    /// let s = stats.snapshot();
    /// assert_eq!((s.connections, s.peak_active), (5, 2));
    /// assert_eq!(start.elapsed(), Duration::from_secs(3));
    ///
    /// // Dropped while a connection runs, it counts that one as cancelled.
    /// let server = stream::iter([60]).map(|secs| sleep(Duration::from_secs(secs))).listen(2);
    /// let stats = server.stats();
    /// assert!(timeout(Duration::from_secs(1), server).await.is_err());
    /// assert_eq!((stats.snapshot().connections, stats.snapshot().cancelled), (1, 1));
    /// # }
    /// ```
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Listener<S, M>
    where
        S: Stream,
        M: Mode<S::Item>,
    {
        #[pin]
        stream: Option<S>,
        pool: <M as Sealed<S::Item>>::Pool,
        conns: Arc<Conns>,
        link: Lender,
        max_connections: usize,
        time_limit: Option<Duration>,
        // Panics in a row from the accept stream (see `STREAM_PANIC_LIMIT`).
        stream_panics: u32,
        // Connections accepted while full, started first when a slot frees (see `HOLD_LIMIT`).
        held: VecDeque<S::Item>,
        // The waker the stream gets while the listener is full, made on the first need.
        full_waker: Option<(Arc<NoteWake>, Waker)>,
    }
}

impl<S, M> Listener<S, M>
where
    S: Stream,
    M: Mode<S::Item>,
{
    #[track_caller]
    pub(crate) fn new(stream: S, max_connections: usize) -> Self {
        Self::with_conns(max_connections, |_| stream)
    }

    /// A listener over the stream `make` builds with the listener's connection handles.
    #[track_caller]
    pub(crate) fn with_conns(max_connections: usize, make: impl FnOnce(&Arc<Conns>) -> S) -> Self {
        assert!(
            max_connections > 0,
            "{}: max_connections must be at least 1 (0 would never accept a connection)",
            M::METHOD
        );
        let shared = Arc::new(ListenShared::default());
        let conns = Arc::new(Conns::new(shared.clone()));
        Listener {
            stream: Some(make(&conns)),
            link: Lender::new(shared.clone()),
            pool: <M as Sealed<S::Item>>::Pool::new(shared),
            conns,
            max_connections,
            time_limit: None,
            stream_panics: 0,
            held: VecDeque::new(),
            full_waker: None,
        }
    }

    /// Cancel any connection future that runs longer than `limit` (counted as timed out), so
    /// slow or stalled clients cannot hold every slot forever (Slowloris).
    ///
    /// # Panics
    ///
    /// Panics if `limit` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let server = stream::iter([1u64, 60])
    ///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
    ///     .listen(10)
    ///     .connection_time_limit(Duration::from_secs(30));
    /// let stats = server.stats();
    /// server.await;
    /// assert_eq!((stats.snapshot().finished, stats.snapshot().timed_out), (1, 1));
    /// # }
    /// ```
    #[track_caller]
    pub fn connection_time_limit(mut self, limit: Duration) -> Self {
        assert!(
            !limit.is_zero(),
            "connection_time_limit: the limit must be greater than zero"
        );
        self.time_limit = Some(limit);
        self
    }

    /// Stop accepting when `signal` completes and drain the connections: the port closes at
    /// once, the [`Conn`](super::Conn) handles of [`serve`](crate::ListenExt::serve) fire so
    /// that connections can finish what they are doing and close, and the future resolves with
    /// a [`ShutdownReport`](super::ShutdownReport) when the last has ended. Any future is a
    /// signal: `tokio::signal::ctrl_c()`, a `CancellationToken::cancelled_owned()`, a oneshot
    /// receiver. Set a deadline with [`grace`](GracefulShutdown::grace) (without one, it waits
    /// for every connection), and see [`GracefulShutdown`] for the phases and their settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let server = stream::iter([20u64, 120])
    ///     .chain(stream::pending()) // a listener that never ends by itself
    ///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
    ///     .spawn_listen(10)
    ///     .with_graceful_shutdown(token.clone().cancelled_owned())
    ///     .grace(Duration::from_secs(30));
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     token.cancel();
    /// });
    /// // At 10 s the signal comes; the 20 s connection ends within the 30 s grace period, the
    /// // 120 s one is cut at 40 s.
    /// let report = server.await;
    /// assert_eq!((report.ended, report.cancelled), (1, 1));
    /// # }
    /// ```
    pub fn with_graceful_shutdown<F>(self, signal: F) -> GracefulShutdown<Self, F>
    where
        F: Future,
    {
        GracefulShutdown::new(self, signal)
    }

    /// A handle to the listener's counters, including those of every `sleep_on_error` stream it
    /// polls.
    pub fn stats(&self) -> Stats {
        Stats::listen(self.pool.shared().clone())
    }

    /// The concurrency limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The per-connection time limit, if one was set.
    pub fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    /// The listener's counters and observers.
    pub(super) fn shared(&self) -> &Arc<ListenShared> {
        self.pool.shared()
    }

    /// The handles of this listener's connections.
    pub(crate) fn conns(&self) -> &Arc<Conns> {
        &self.conns
    }

    /// The accept stream, or `None` once it has ended (it is dropped at once then).
    pub fn get_ref(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// The pinned accept stream, or `None` once it has ended.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Option<Pin<&mut S>> {
        self.project().stream.as_pin_mut()
    }

    /// Drop the accept stream (closing the listening socket) and let connections drain. First take
    /// up to `backlog` connections the stream yields at once, without waiting (clients queued in
    /// the kernel's backlog, which closing the socket would reset): they are held and started as
    /// slots free. Returns how many were taken.
    pub(crate) fn stop_accepting(self: Pin<&mut Self>, backlog: usize) -> u64 {
        let mut this = self.project();
        let Some(mut stream) = this.stream.as_mut().as_pin_mut() else {
            return 0;
        };
        let (held, link, shared) = (&mut *this.held, &mut *this.link, this.pool.shared());
        // Outside tokio's cooperative budget: it would make the stream return `Pending` after
        // 128 accepts in this task's turn, backlog or not, and the rest be reset by the close.
        // `backlog` bounds the burst instead.
        let mut take = pin!(tokio::task::unconstrained(poll_fn(|cx| {
            let mut taken = 0;
            while taken < backlog {
                match link.lend(|| catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll_next(cx))))
                {
                    Ok(Poll::Ready(Some(connection))) => {
                        held.push_back(connection);
                        taken += 1;
                    }
                    Ok(Poll::Ready(None) | Poll::Pending) => break,
                    Err(payload) => {
                        stream_panicked(shared, &*payload);
                        break;
                    }
                }
            }
            Poll::Ready(taken)
        })));
        // A no-op waker: the stream is dropped below, so nothing waits for it to wake.
        let Poll::Ready(taken) = take
            .as_mut()
            .poll(&mut Context::from_waker(noop_waker_ref()))
        else {
            unreachable!("the backlog is taken in one poll")
        };
        this.stream.set(None);
        log_event!(
            info,
            active = this.pool.len(),
            taken_from_backlog = taken,
            "listener: stopped accepting, draining connections"
        );
        taken as u64
    }

    /// Cancel every connection still running, and those accepted but not yet started.
    pub(crate) fn cancel_all(self: Pin<&mut Self>) {
        let this = self.project();
        for _ in this.held.drain(..) {
            this.pool.shared().started();
            if let Some(mut life) = Life::start(this.pool.shared()) {
                life.end(ConnectionEnd::Cancelled);
            }
            ConnectionEnd::Cancelled.record(this.pool.shared());
        }
        this.pool.cancel_all();
    }
}

impl<S, M> Future for Listener<S, M>
where
    S: Stream,
    M: Mode<S::Item>,
{
    type Output = ();

    /// Accept and run connections until the stream has ended and every connection has finished.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let mut accepted = 0;
        loop {
            let _ = this.pool.poll_endings(cx);
            let full = this.pool.len() >= *this.max_connections;
            if !full {
                if let Some(connection) = this.held.pop_front() {
                    start(this.pool, this.conns, connection, *this.time_limit);
                    continue;
                }
            }
            let Some(mut stream) = this.stream.as_mut().as_pin_mut() else {
                return if this.pool.len() == 0 && this.held.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            };
            // Full: new clients wait in the kernel backlog and a connection ending wakes us. The
            // stream is still polled (with a waker that notes its own wake-ups) so that it can
            // end, but only while nothing is in hand or when it asked to be.
            let full_waker = if full {
                let (wake, waker) = this.full_waker.get_or_insert_with(NoteWake::new);
                let asked = wake.take(cx.waker());
                if this.held.len() >= HOLD_LIMIT || !(this.held.is_empty() || asked) {
                    return Poll::Pending;
                }
                Some(waker.clone())
            } else {
                None
            };
            if accepted >= ACCEPT_BUDGET {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Any `sleep_on_error` inside the stream (behind `map`, `select`, ...) finds us. A
            // panic in the synchronous part of the `map` closure happens here, not in the
            // connection future: catch it too, and count it as a connection that panicked.
            let link = &mut *this.link;
            let mut poll_stream = |cx: &mut Context<'_>| {
                link.lend(|| catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll_next(cx))))
            };
            let polled = match &full_waker {
                Some(waker) => poll_stream(&mut Context::from_waker(waker)),
                None => poll_stream(cx),
            };
            let polled = match polled {
                Ok(polled) => polled,
                Err(payload) => {
                    accepted += 1;
                    *this.stream_panics += 1;
                    if *this.stream_panics >= STREAM_PANIC_LIMIT {
                        resume_unwind(payload);
                    }
                    stream_panicked(this.pool.shared(), &*payload);
                    continue;
                }
            };
            *this.stream_panics = 0;
            match polled {
                Poll::Ready(Some(connection)) if full => {
                    accepted += 1;
                    log_event!(trace, "connection accepted while full, held");
                    this.held.push_back(connection);
                }
                Poll::Ready(Some(connection)) => {
                    accepted += 1;
                    start(this.pool, this.conns, connection, *this.time_limit);
                }
                Poll::Ready(None) => {
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

/// Log and count a panic from the accept stream as a connection that panicked.
fn stream_panicked(shared: &Arc<ListenShared>, payload: &(dyn std::any::Any + Send)) {
    let message = panic_message(payload);
    log_event!(
        error,
        panic = message,
        "accept stream panicked (in the `map` closure?); counted as a connection that \
         panicked, the listener goes on"
    );
    let _ = message;
    shared.started();
    if let Some(mut life) = Life::start(shared) {
        life.end(ConnectionEnd::Panicked);
    }
    ConnectionEnd::Panicked.record(shared);
}

fn start<P: Pool>(
    pool: &mut P,
    conns: &Conns,
    connection: P::Connection,
    time_limit: Option<Duration>,
) {
    let active = pool.shared().started();
    log_event!(trace, active, "connection accepted");
    let _ = active;
    let life = Life::start(pool.shared());
    pool.push(Tracked::new(connection, time_limit, life));
    if let Some(reclaim) = conns.reclaim.get() {
        reclaim.arrived();
    }
}

impl<S, M> fmt::Debug for Listener<S, M>
where
    S: Stream + fmt::Debug,
    M: Mode<S::Item>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(M::NAME)
            .field("stream", &self.stream)
            .field("max_connections", &self.max_connections)
            .field("time_limit", &self.time_limit)
            .field("active", &self.pool.len())
            .field("accepting", &self.stream.is_some())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}
