use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

pub(crate) use super::lifecycle::ConnectionEnd;
use super::lifecycle::Life;
use super::stats::ListenShared;
use crate::overload::RejectReason;

/// The output of a connection future that [`listen`](crate::ListenExt::listen) and
/// [`spawn_listen`](crate::ListenExt::spawn_listen) accept: `()`, or a `Result` whose error can be
/// displayed (`io::Error`, `Box<dyn Error + Send + Sync>`, `anyhow::Error`, hyper's errors, ...).
/// Errors are logged and counted as failed; they never stop the listener.
///
/// # Examples
///
/// An outcome type of your own:
///
/// ```
/// use std::fmt;
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::ConnectionOutput, ListenExt};
///
/// enum Outcome {
///     Served,
///     Refused(&'static str),
/// }
///
/// impl ConnectionOutput for Outcome {
///     fn failure(&self) -> Option<&dyn fmt::Display> {
///         match self {
///             Outcome::Served => None,
///             Outcome::Refused(why) => Some(why),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let outcomes = [Outcome::Served, Outcome::Refused("no Host header"), Outcome::Served];
/// let server = stream::iter(outcomes).map(std::future::ready).listen(10);
/// let stats = server.stats();
/// server.await;
/// assert_eq!((stats.snapshot().finished, stats.snapshot().failed), (2, 1));
/// # }
/// ```
pub trait ConnectionOutput {
    /// The error to log, if the connection failed.
    fn failure(&self) -> Option<&dyn fmt::Display>;
}

impl ConnectionOutput for () {
    fn failure(&self) -> Option<&dyn fmt::Display> {
        None
    }
}

impl<T, E: fmt::Display> ConnectionOutput for Result<T, E> {
    fn failure(&self) -> Option<&dyn fmt::Display> {
        self.as_ref().err().map(|e| e as &dyn fmt::Display)
    }
}

impl ConnectionEnd {
    /// Count the ending and mark the connection's slot free.
    pub(crate) fn record(self, shared: &ListenShared) {
        let counter: &AtomicU64 = match self {
            ConnectionEnd::Finished => &shared.finished,
            ConnectionEnd::Failed => &shared.failed,
            ConnectionEnd::Panicked => &shared.panicked,
            ConnectionEnd::TimedOut => &shared.timed_out,
            ConnectionEnd::Cancelled => &shared.cancelled,
        };
        shared.ended(counter);
        let reason = match self {
            ConnectionEnd::TimedOut => RejectReason::TimeLimit,
            ConnectionEnd::Cancelled => RejectReason::Shutdown,
            _ => return,
        };
        // Logged where it was cut and counted above (the snapshot reads it by reason from the
        // ending counter); the hook and the metrics see it.
        shared.rejections.notify(reason, None);
    }
}

pin_project! {
    /// A connection future with panic isolation and an optional time limit; it logs how it ended.
    pub(crate) struct Tracked<F> {
        #[pin]
        future: F,
        // Boxed: a `Sleep` is 112 bytes, and inline it would grow every connection's task even
        // when no time limit is set.
        deadline: Option<Pin<Box<Sleep>>>,
        limit: Option<Duration>,
        // Boxed, and only when someone watches the listener's connections.
        life: Option<Box<Life>>,
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(future: F, limit: Option<Duration>, life: Option<Box<Life>>) -> Self {
        Tracked {
            future,
            deadline: limit.map(|limit| Box::pin(sleep(limit))),
            limit,
            life,
        }
    }
}

impl<F> Future for Tracked<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Output = ConnectionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ConnectionEnd> {
        let this = self.project();
        let end = ready!(poll_tracked(this.future, this.deadline, *this.limit, cx));
        if let Some(mut life) = this.life.take() {
            life.end(end);
        }
        Poll::Ready(end)
    }
}

/// Poll the connection future, catching a panic, and its time limit.
fn poll_tracked<F>(
    future: Pin<&mut F>,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    limit: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<ConnectionEnd>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    // The output is judged and dropped inside too: both run user code.
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx).map(ending_of))) {
        Ok(Poll::Ready(ending)) => return Poll::Ready(ending),
        Ok(Poll::Pending) => {}
        Err(payload) => {
            let message = panic_message(&*payload);
            log_event!(
                error,
                panic = message,
                "connection panicked; the listener goes on"
            );
            let _ = message;
            return Poll::Ready(ConnectionEnd::Panicked);
        }
    }
    if let Some(deadline) = deadline.as_mut() {
        if deadline.as_mut().poll(cx).is_ready() {
            log_event!(
                info,
                limit_ms = limit.unwrap_or_default().as_millis() as u64,
                "connection cancelled: it ran past its time limit"
            );
            let _ = limit;
            return Poll::Ready(ConnectionEnd::TimedOut);
        }
    }
    Poll::Pending
}

fn ending_of<O: ConnectionOutput>(output: O) -> ConnectionEnd {
    match output.failure() {
        None => ConnectionEnd::Finished,
        Some(error) => {
            // Per-client failures (resets, bad requests) are routine on a public server: debug
            // level, and counted in `Stats::failed`.
            log_event!(debug, error = %NoPanic(error), "connection failed");
            let _ = error;
            ConnectionEnd::Failed
        }
    }
}

/// Displays `T`, or a placeholder if its `Display` panics: logging a failure that is already
/// counted must not take the listener down with it (and only when logging is on).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))] // used by log events only
pub(crate) struct NoPanic<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for NoPanic<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match catch_unwind(AssertUnwindSafe(|| self.0.fmt(f))) {
            Ok(result) => result,
            Err(_) => f.write_str("<its Display panicked>"),
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}
