use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

use super::stats::{Stats, StatsSnapshot};

pub(crate) mod sealed {
    use std::pin::Pin;

    use crate::Stats;

    /// What [`GracefulShutdown`](crate::GracefulShutdown) needs of a listener.
    #[allow(unreachable_pub)] // sealed: public in a private module on purpose
    pub trait Sealed: std::future::Future<Output = ()> {
        fn stop_accepting(self: Pin<&mut Self>);
        fn cancel_all(self: Pin<&mut Self>);
        fn stats(&self) -> Stats;
    }
}

/// A listener that [`GracefulShutdown`] can drive: [`Listen`](crate::Listen) and
/// [`SpawnListen`](crate::SpawnListen). Sealed.
pub trait Drain: sealed::Sealed {}

pin_project! {
    /// Future for the `with_graceful_shutdown` method of [`Listen`](crate::Listen) and
    /// [`SpawnListen`](crate::SpawnListen).
    ///
    /// 1. Until `signal` completes, it runs the listener as usual.
    /// 2. When it does, the accept stream is dropped at once (the listening socket closes, so
    ///    new clients are refused instead of waiting in the backlog) and in-flight connections get
    ///    `grace` to finish.
    /// 3. When the grace period runs out, every connection still running is cancelled.
    ///
    /// A `grace` of [`Duration::MAX`] means no deadline: drain until the last connection ends.
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
        grace: Duration,
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
    /// timed out), within the grace period.
    pub finished: u64,
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
                "shutdown: {} finished and {} cancelled after the signal; ",
                self.finished, self.cancelled
            )?;
        } else {
            f.write_str("stopped: the accept stream ended and every connection finished; ")?;
        }
        write!(f, "totals: {}", self.stats)
    }
}

impl<L: Drain, F: Future> GracefulShutdown<L, F> {
    pub(crate) fn new(listener: L, signal: F, grace: Duration) -> Self {
        GracefulShutdown {
            listener,
            signal: Some(signal),
            deadline: None,
            grace,
            at_signal: None,
        }
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The listener's counters.
    pub fn stats(&self) -> Stats {
        self.listener.stats()
    }

    /// The listener.
    pub fn get_ref(&self) -> &L {
        &self.listener
    }
}

impl<L: Drain, F: Future> Future for GracefulShutdown<L, F> {
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
                    grace_ms = this.grace.as_millis() as u64,
                    "graceful shutdown: stop accepting, draining"
                );
                this.listener.as_mut().stop_accepting();
                if *this.grace < Duration::MAX {
                    this.deadline.set(Some(sleep(*this.grace)));
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
                    finished: ended(&end) - ended(&start),
                    cancelled: cut,
                    stats: end,
                };
                log_event!(
                    info,
                    finished = report.finished,
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
