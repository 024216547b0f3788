use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

use futures_core::Stream;

use super::listener::Listener;
use super::mode::Mode;
use super::stats::{Stats, StatsSnapshot};

pin_project! {
    /// Future for the [`with_graceful_shutdown`](Listener::with_graceful_shutdown) and
    /// [`with_graceful_drain`](Listener::with_graceful_drain) methods of a [`Listener`].
    ///
    /// 1. Until `signal` completes, it runs the listener as usual.
    /// 2. When it does, the accept stream is dropped at once (the listening socket closes, so
    ///    new clients are refused instead of waiting in the backlog) and in-flight connections get
    ///    the grace period to finish (with `with_graceful_drain`, as long as they take).
    /// 3. When the grace period runs out, every connection still running is cancelled.
    ///
    /// It resolves to a [`ShutdownReport`] saying how many connections finished during the grace
    /// period and how many were cut. If the accept stream ends on its own first, it waits for the
    /// connections with no deadline until the signal comes, which then starts the grace period.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct GracefulShutdown<L, F> {
        #[pin]
        listener: L,
        #[pin]
        signal: Option<F>,
        #[pin]
        deadline: Option<Sleep>,
        grace: Option<Duration>,
        at_signal: Option<StatsSnapshot>,
    }
}

/// How a [`GracefulShutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// `true` if the signal came; `false` if the accept stream ended and every connection
    /// finished before it.
    pub signalled: bool,
    /// Connections that ended on their own after the signal (finished, failed, panicked or
    /// timed out), within the grace period. Not to be confused with
    /// [`StatsSnapshot::finished`], which counts only connections that ended with `Ok` or `()`.
    pub ended: u64,
    /// Connections still running when the grace period ran out, and so cancelled.
    pub cancelled: u64,
    /// The listener's counters at the end.
    pub stats: StatsSnapshot,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.signalled {
            write!(
                f,
                "shutdown: {} ended and {} cancelled after the signal; ",
                self.ended, self.cancelled
            )?;
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
    pub(crate) fn new(listener: Listener<S, M>, signal: F, grace: Option<Duration>) -> Self {
        GracefulShutdown {
            listener,
            signal: Some(signal),
            deadline: None,
            grace,
            at_signal: None,
        }
    }

    /// The grace period; `None` waits for every connection with no deadline.
    pub fn grace(&self) -> Option<Duration> {
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

    /// Cancel every connection still running now, as the end of the grace period does.
    #[allow(dead_code)] // used by `per_core`, which exists only where `SO_REUSEPORT` does
    pub(crate) fn cancel_all(self: Pin<&mut Self>) {
        self.project().listener.cancel_all();
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
                log_event!(
                    info,
                    active = stats.active(),
                    grace_ms = this.grace.map(|g| g.as_millis() as u64),
                    "graceful shutdown: stop accepting, draining"
                );
                this.listener.as_mut().stop_accepting();
                if let Some(grace) = *this.grace {
                    this.deadline.set(Some(sleep(grace)));
                }
            }
        }
        loop {
            if this.listener.as_mut().poll(cx).is_ready() {
                let end = this.listener.stats().snapshot();
                let start = this.at_signal.unwrap_or(end);
                let cut = end.cancelled - start.cancelled;
                let ended = |s: &StatsSnapshot| s.finished + s.failed + s.panicked + s.timed_out;
                let report = ShutdownReport {
                    signalled: this.at_signal.is_some(),
                    ended: ended(&end) - ended(&start),
                    cancelled: cut,
                    stats: end,
                };
                log_event!(
                    info,
                    ended = report.ended,
                    cancelled = report.cancelled,
                    "graceful shutdown: done"
                );
                return Poll::Ready(report);
            }
            let Some(deadline) = this.deadline.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            ready!(deadline.poll(cx));
            this.deadline.set(None);
            log_event!(
                warn,
                active = this.listener.stats().active(),
                "graceful shutdown: grace period over, cancelling the remaining connections"
            );
            this.listener.as_mut().cancel_all();
        }
    }
}

impl<L: fmt::Debug, F> fmt::Debug for GracefulShutdown<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulShutdown")
            .field("listener", &self.listener)
            .field("signalled", &self.signal.is_none())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}
