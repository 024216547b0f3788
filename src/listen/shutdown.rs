use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::{sleep, Sleep};

use futures_core::Stream;

use super::listener::Listener;
use super::mode::Mode;
use super::stats::{Stats, StatsSnapshot};
use crate::sockopt::BACKLOG;

pin_project! {
    /// Future for the [`with_graceful_shutdown`](Listener::with_graceful_shutdown) method of a
    /// [`Listener`], and its settings.
    ///
    /// Until `signal` completes, it runs the listener as usual. Then, in phases, each counted in
    /// the [`ShutdownReport`]:
    ///
    /// 1. **Grace accept** (only with [`grace_accept`](GracefulShutdown::grace_accept)): the
    ///    listener keeps accepting for a while, so clients that have not yet heard of the
    ///    shutdown (a load balancer still sending, a DNS change under way) are served, and told
    ///    to close after their request.
    /// 2. **Refuse**: the accept stream is dropped (the listening socket closes, so new clients
    ///    are refused instead of waiting in the backlog). Clients already queued in the kernel's
    ///    backlog would be reset by the close: first the connections the stream has ready are
    ///    taken and served like the others (see [`take_backlog`](GracefulShutdown::take_backlog)).
    /// 3. **Drain**: in-flight connections get the grace period to finish
    ///    ([`grace`](GracefulShutdown::grace); without one, as long as they take). The
    ///    [`Conn`](super::Conn) handle of every connection of [`serve`](crate::ListenExt::serve)
    ///    fires at the signal (or at its moment of the
    ///    [`close_spread`](GracefulShutdown::close_spread)), so connections can finish at once
    ///    instead of at the deadline.
    /// 4. **Cancel**: when the grace period runs out, every connection still running is
    ///    cancelled.
    ///
    /// If the accept stream ends on its own first, it waits for the connections with no deadline
    /// until the signal comes, which then starts the grace period.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::{sleep, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // Connections of 1 s, 5 s and an hour; the signal at 2 s, with 10 s of grace.
    /// let start = Instant::now();
    /// let report = stream::iter([1, 5, 3600])
    ///     .chain(stream::pending())
    ///     .map(|secs| sleep(Duration::from_secs(secs)))
    ///     .listen(10)
    ///     .with_graceful_shutdown(sleep(Duration::from_secs(2)))
    ///     .grace(Duration::from_secs(10))
    ///     .await;
    /// assert!(report.signalled);
    /// assert_eq!(report.open_at_refuse, 2); // the 1 s one had finished
    /// assert_eq!(report.ended, 1); // the 5 s one, within the grace period
    /// assert_eq!(report.cancelled, 1); // the hour-long one, cut at 12 s
    /// assert_eq!(start.elapsed(), Duration::from_secs(12));
    /// # }
    /// ```
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct GracefulShutdown<L, F> {
        #[pin]
        listener: L,
        #[pin]
        signal: Option<F>,
        // The end of the current phase: of the grace-accept window, then of the grace period.
        #[pin]
        timer: Option<Sleep>,
        phase: Phase,
        grace: Option<Duration>,
        // A grace given with the signal, which replaces `grace` (one accept loop per core).
        late_grace: Option<watch::Receiver<Option<Duration>>>,
        grace_accept: Option<Duration>,
        close_spread: Duration,
        // The most connections taken from the backlog at refuse.
        backlog: usize,
        backlog_taken: u64,
        at_signal: Option<StatsSnapshot>,
        at_refuse: Option<StatsSnapshot>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the signal (and just after it, until the port is closed).
    Running,
    /// After the signal, still accepting until `timer`.
    GraceAccept,
    /// The port is closed; connections end until `timer` (if any).
    Draining,
    /// The grace period ran out and the rest were cancelled.
    Cancelled,
}

/// How a [`GracefulShutdown`] ended.
///
/// # Examples
///
/// An accept stream that ends before the signal:
///
/// ```
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::ListenExt;
/// use tokio::time::{sleep, Instant};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let start = Instant::now();
/// let report = stream::iter([1, 2])
///     .map(|secs| sleep(Duration::from_secs(secs)))
///     .listen(10)
///     .with_graceful_shutdown(sleep(Duration::from_secs(60)))
///     .await;
/// assert!(!report.signalled);
/// assert_eq!((report.ended, report.cancelled, report.stats.finished), (0, 0, 2));
/// assert_eq!(start.elapsed(), Duration::from_secs(2)); // no wait for the signal
/// let stopped = "stopped: the accept stream ended and every connection finished; totals: ";
/// assert!(report.to_string().starts_with(stopped));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// `true` if the signal came; `false` if the accept stream ended and every connection
    /// finished before it.
    pub signalled: bool,
    /// Phase 1: connections accepted after the signal, during the
    /// [`grace_accept`](GracefulShutdown::grace_accept) window.
    pub grace_accepted: u64,
    /// Phase 2: connections running when the port closed.
    pub open_at_refuse: u64,
    /// Phase 2: connections taken from the kernel's backlog as the port closed (see
    /// [`take_backlog`](GracefulShutdown::take_backlog)); they are then counted in `ended` or
    /// `cancelled` like the others.
    pub backlog_taken: u64,
    /// Phase 3: connections that ended on their own after the signal (finished, failed,
    /// panicked or timed out), before the grace period ran out. Not to be confused with
    /// [`StatsSnapshot::finished`], which counts only connections that ended with `Ok` or `()`.
    pub ended: u64,
    /// Phase 4: connections still running when the grace period ran out, and so cancelled.
    pub cancelled: u64,
    /// The listener's counters at the end.
    pub stats: StatsSnapshot,
}

impl ShutdownReport {
    /// Add another loop's report to this one: counts summed, `signalled` only if both were.
    /// `stats` is left as it is (merge the handles with [`Stats::merged`] instead).
    #[allow(dead_code)] // used by `per_core`, which exists only where `SO_REUSEPORT` does
    pub(crate) fn merge(&mut self, other: &ShutdownReport) {
        self.signalled &= other.signalled;
        self.grace_accepted += other.grace_accepted;
        self.open_at_refuse += other.open_at_refuse;
        self.backlog_taken += other.backlog_taken;
        self.ended += other.ended;
        self.cancelled += other.cancelled;
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.signalled {
            write!(
                f,
                "shutdown: {} ended and {} cancelled after the signal ({} open when the port closed",
                self.ended, self.cancelled, self.open_at_refuse
            )?;
            if self.grace_accepted > 0 {
                write!(f, ", {} accepted in the grace window", self.grace_accepted)?;
            }
            if self.backlog_taken > 0 {
                write!(f, ", {} taken from the backlog", self.backlog_taken)?;
            }
            f.write_str("); ")?;
        } else {
            f.write_str("stopped: the accept stream ended and every connection finished; ")?;
        }
        write!(f, "totals: {}", self.stats)
    }
}

impl<S, M, F> GracefulShutdown<Listener<S, M>, F>
where
    S: Stream,
    M: Mode<S::Item>,
    F: Future,
{
    pub(crate) fn new(listener: Listener<S, M>, signal: F) -> Self {
        GracefulShutdown {
            listener,
            signal: Some(signal),
            timer: None,
            phase: Phase::Running,
            grace: None,
            late_grace: None,
            grace_accept: None,
            close_spread: Duration::ZERO,
            backlog: BACKLOG as usize,
            backlog_taken: 0,
            at_signal: None,
            at_refuse: None,
        }
    }

    /// Give the connections `grace` to finish after the port closes (phase 3), then cancel the
    /// rest (phase 4). Without it, the shutdown waits for every connection, however long it
    /// takes. A zero grace cancels every connection as the port closes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::sleep;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = tokio::time::Instant::now();
    /// let slow = || stream::iter([3600u64]).chain(stream::pending());
    /// let run = |secs| sleep(Duration::from_secs(secs));
    ///
    /// // No grace: the connection runs its whole hour.
    /// let report = slow()
    ///     .map(run)
    ///     .listen(10)
    ///     .with_graceful_shutdown(sleep(Duration::from_secs(1)))
    ///     .await;
    /// assert_eq!((report.ended, report.cancelled), (1, 0));
    /// assert_eq!(start.elapsed(), Duration::from_secs(3600));
    ///
    /// // A 10 s grace: cut 10 s after the signal.
    /// let start = tokio::time::Instant::now();
    /// let report = slow()
    ///     .map(run)
    ///     .listen(10)
    ///     .with_graceful_shutdown(sleep(Duration::from_secs(1)))
    ///     .grace(Duration::from_secs(10))
    ///     .await;
    /// assert_eq!((report.ended, report.cancelled), (0, 1));
    /// assert_eq!(start.elapsed(), Duration::from_secs(11));
    /// # }
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Take the grace period from `late` when the signal comes, if it holds one by then (one
    /// accept loop per core, where it is only known at the shutdown).
    #[allow(dead_code)] // used by `per_core`, which exists only where `SO_REUSEPORT` does
    pub(crate) fn late_grace(mut self, late: watch::Receiver<Option<Duration>>) -> Self {
        self.late_grace = Some(late);
        self
    }

    /// Spread the connections' closes evenly over `window` after the signal, instead of every
    /// connection closing (and every client reconnecting elsewhere) at once, as HAProxy's
    /// `close-spread-time` does: each connection's [`Conn`](super::Conn) fires at its own
    /// moment in the window. Keep it shorter than the [`grace`](GracefulShutdown::grace). A
    /// zero window, the default, fires every handle at the signal.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::{sleep, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let (closed, at) = std::sync::mpsc::channel();
    /// let report = stream::iter(0..100)
    ///     .chain(stream::pending())
    ///     .serve(100, move |_, conn| {
    ///         let closed = closed.clone();
    ///         async move {
    ///             conn.draining().await;
    ///             closed.send(start.elapsed()).unwrap();
    ///         }
    ///     })
    ///     .with_graceful_shutdown(sleep(Duration::from_secs(1)))
    ///     .close_spread(Duration::from_secs(10))
    ///     .await;
    /// assert_eq!(report.ended, 100);
    /// let at: Vec<Duration> = at.try_iter().collect();
    /// // Between the signal at 1 s and the end of the window at 11 s, about 10 a second.
    /// assert!(at.iter().all(|t| *t >= Duration::from_secs(1) && *t < Duration::from_secs(11)));
    /// let first_second = at.iter().filter(|t| **t < Duration::from_secs(2)).count();
    /// assert!((7..=13).contains(&first_second), "{first_second}");
    /// # }
    /// ```
    pub fn close_spread(mut self, window: Duration) -> Self {
        self.close_spread = window;
        self
    }

    /// Keep accepting for `window` after the signal before closing the port (phase 1): clients
    /// that connect meanwhile are served, and their [`Conn`](super::Conn) (already fired)
    /// tells them to close after their request. The grace period starts when the port closes. A zero window
    /// closes the port at once, as without this call.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::sleep;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // A client a second; each one's connection lasts until its handle tells it to close.
    /// let clients = stream::unfold((), |()| async {
    ///     sleep(Duration::from_secs(1)).await;
    ///     Some(((), ()))
    /// });
    /// let report = clients
    ///     .serve(100, |(), conn| async move { conn.draining().await })
    ///     .with_graceful_shutdown(sleep(Duration::from_millis(5500)))
    ///     .grace(Duration::from_secs(30))
    ///     .grace_accept(Duration::from_secs(3))
    ///     .await;
    /// // The clients of 6 s, 7 s and 8 s were still accepted; the port closed at 8.5 s.
    /// assert_eq!(report.grace_accepted, 3);
    /// assert_eq!((report.ended, report.cancelled), (8, 0));
    /// # }
    /// ```
    pub fn grace_accept(mut self, window: Duration) -> Self {
        self.grace_accept = Some(window).filter(|w| !w.is_zero());
        self
    }

    /// Take at most `max` connections from the kernel's backlog as the port closes (phase 2);
    /// the default is 1024, the backlog of [`bind`](super::bind), and zero takes none.
    ///
    /// Closing a listening socket resets every client still queued in its backlog (on Linux:
    /// the client's handshake completed, it may have sent its request, and it reads
    /// `ECONNRESET`). So before it drops the stream, the shutdown polls it until it has no
    /// connection ready, up to `max`, without waiting: what the kernel had queued and the
    /// runtime had seen arrive. Those connections are held and started as slots free, like
    /// connections accepted while full; their [`Conn`](super::Conn) has already fired, so each
    /// can serve the request it sent and close, or close at once with a FIN. They are counted in
    /// [`ShutdownReport::backlog_taken`], and are cut with the rest at the end of the grace
    /// period if they have not finished.
    ///
    /// The bound is not about slots (a full listener frees them as the drain ends its
    /// connections; until then each taken connection holds only its socket) but about time: a
    /// stream that always has an item ready (a flood of new clients racing the close) cannot
    /// keep the port open. Clients beyond it are reset by the close, as they would be with zero.
    ///
    /// A queued client has often sent its request already: a handler that closes at once on a
    /// started drain drops it unanswered. With hyper, poll the connection before its
    /// `graceful_shutdown` (`biased;` in `tokio::select!`, the connection first): a request
    /// already received is then answered with `Connection: close` (measured with hyper 1.x: the
    /// client gets its response, instead of an EOF with none when `graceful_shutdown` comes
    /// first).
    ///
    /// # Examples
    ///
    /// A scripted stream stands in for a listening socket: ten clients queued at once, one
    /// slot, one second each, and the signal at 0.5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::{sleep, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let report = stream::iter(0..10)
    ///     .map(|_| async { sleep(Duration::from_secs(1)).await })
    ///     .listen(1)
    ///     .with_graceful_shutdown(sleep(Duration::from_millis(500)))
    ///     .grace(Duration::from_secs(30))
    ///     .take_backlog(3) // the other five are dropped (a socket resets them)
    ///     .await;
    /// // The one running, the one held while full, and the three taken are served in turn.
    /// assert_eq!(report.backlog_taken, 3);
    /// assert_eq!((report.stats.connections, report.ended, report.cancelled), (5, 5, 0));
    /// assert_eq!(start.elapsed(), Duration::from_secs(5));
    /// # }
    /// ```
    pub fn take_backlog(mut self, max: usize) -> Self {
        self.backlog = max;
        self
    }

    /// The grace period; `None` waits for every connection with no deadline.
    pub fn grace_period(&self) -> Option<Duration> {
        self.grace
    }

    /// The listener's counters.
    pub fn stats(&self) -> Stats {
        self.listener.stats()
    }

    /// The listener.
    pub fn get_ref(&self) -> &Listener<S, M> {
        &self.listener
    }
}

impl<S, M, F> Future for GracefulShutdown<Listener<S, M>, F>
where
    S: Stream,
    M: Mode<S::Item>,
    F: Future,
{
    type Output = ShutdownReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        let mut this = self.project();
        if let Some(signal) = this.signal.as_mut().as_pin_mut() {
            if signal.poll(cx).is_ready() {
                this.signal.set(None);
                let stats = this.listener.stats();
                *this.at_signal = Some(stats.snapshot());
                if let Some(late) = this.late_grace.as_ref().and_then(|late| *late.borrow()) {
                    *this.grace = Some(late);
                }
                this.listener.conns().start(*this.close_spread);
                log_event!(
                    info,
                    active = stats.active(),
                    grace_accept_ms = this.grace_accept.map(|w| w.as_millis() as u64),
                    grace_ms = this.grace.map(|g| g.as_millis() as u64),
                    "graceful shutdown: signal received"
                );
                // Without a grace-accept window, the port is closed just below.
                if let Some(window) = *this.grace_accept {
                    *this.phase = Phase::GraceAccept;
                    this.timer.set(Some(sleep(window)));
                }
            }
        }
        loop {
            let accepting = this.listener.as_ref().get_ref().get_ref().is_some();
            // Phase 2: refuse, once the signal came and any grace-accept window is over (or
            // the stream ended on its own).
            if this.at_signal.is_some()
                && this.at_refuse.is_none()
                && (*this.phase != Phase::GraceAccept || !accepting)
            {
                let stats = this.listener.stats();
                *this.at_refuse = Some(stats.snapshot());
                *this.backlog_taken = this.listener.as_mut().stop_accepting(*this.backlog);
                *this.phase = Phase::Draining;
                log_event!(
                    info,
                    active = stats.active(),
                    "graceful shutdown: port closed, draining"
                );
                this.timer.set(this.grace.map(sleep));
            }
            if this.listener.as_mut().poll(cx).is_ready() {
                let report = report(
                    this.listener.stats().snapshot(),
                    *this.at_signal,
                    *this.at_refuse,
                    *this.backlog_taken,
                );
                log_event!(
                    info,
                    grace_accepted = report.grace_accepted,
                    ended = report.ended,
                    cancelled = report.cancelled,
                    "graceful shutdown: done"
                );
                return Poll::Ready(report);
            }
            let Some(timer) = this.timer.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            ready!(timer.poll(cx));
            this.timer.set(None);
            match *this.phase {
                Phase::GraceAccept => *this.phase = Phase::Draining, // refused above
                Phase::Draining => {
                    log_event!(
                        warn,
                        active = this.listener.stats().active(),
                        "graceful shutdown: grace period over, cancelling the remaining connections"
                    );
                    *this.phase = Phase::Cancelled;
                    this.listener.as_mut().cancel_all();
                }
                Phase::Running | Phase::Cancelled => {}
            }
        }
    }
}

fn report(
    end: StatsSnapshot,
    at_signal: Option<StatsSnapshot>,
    at_refuse: Option<StatsSnapshot>,
    backlog_taken: u64,
) -> ShutdownReport {
    let start = at_signal.unwrap_or(end);
    let refuse = at_refuse.unwrap_or(end);
    let ended = |s: &StatsSnapshot| s.finished + s.failed + s.panicked + s.timed_out;
    ShutdownReport {
        signalled: at_signal.is_some(),
        grace_accepted: refuse.connections - start.connections,
        open_at_refuse: if at_refuse.is_some() {
            refuse.active as u64
        } else {
            0
        },
        backlog_taken,
        ended: ended(&end) - ended(&start),
        cancelled: end.cancelled - start.cancelled,
        stats: end,
    }
}

impl<L: fmt::Debug, F> fmt::Debug for GracefulShutdown<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulShutdown")
            .field("listener", &self.listener)
            .field("signalled", &self.signal.is_none())
            .field("phase", &self.phase)
            .field("grace", &self.grace)
            .field("grace_accept", &self.grace_accept)
            .field("close_spread", &self.close_spread)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}
