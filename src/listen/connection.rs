use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

use super::stats::ListenShared;
use crate::overload::RejectReason;

/// The output of a connection future that [`listen`](crate::ListenExt::listen) and
/// [`spawn_listen`](crate::ListenExt::spawn_listen) accept: `()`, or a `Result` whose error can be
/// displayed (`io::Error`, `Box<dyn Error + Send + Sync>`, `anyhow::Error`, hyper's errors, ...).
/// Errors are logged and counted as failed; they never stop the listener.
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

/// How one connection future ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Finished,
    Failed,
    Panicked,
    TimedOut,
    Cancelled,
}

impl Ending {
    /// Count the ending and mark the connection's slot free.
    pub(crate) fn record(self, shared: &ListenShared) {
        let counter: &AtomicU64 = match self {
            Ending::Finished => &shared.finished,
            Ending::Failed => &shared.failed,
            Ending::Panicked => &shared.panicked,
            Ending::TimedOut => &shared.timed_out,
            Ending::Cancelled => &shared.cancelled,
        };
        shared.ended(counter);
        let reason = match self {
            Ending::TimedOut => RejectReason::TimeLimit,
            Ending::Cancelled => RejectReason::Shutdown,
            _ => return,
        };
        // Logged where it was cut; counted by reason too, and seen by the hook.
        shared.rejections.record(reason, None);
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
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(future: F, limit: Option<Duration>) -> Self {
        Tracked {
            future,
            deadline: limit.map(|limit| Box::pin(sleep(limit))),
            limit,
        }
    }
}

impl<F> Future for Tracked<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Output = Ending;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ending> {
        let this = self.project();
        let future = this.future;
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
                return Poll::Ready(Ending::Panicked);
            }
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                log_event!(
                    info,
                    limit_ms = this.limit.unwrap_or_default().as_millis() as u64,
                    "connection cancelled: it ran past its time limit"
                );
                return Poll::Ready(Ending::TimedOut);
            }
        }
        Poll::Pending
    }
}

fn ending_of<O: ConnectionOutput>(output: O) -> Ending {
    match output.failure() {
        None => Ending::Finished,
        Some(error) => {
            // Per-client failures (resets, bad requests) are routine on a public server: debug
            // level, and counted in `Stats::failed`.
            log_event!(debug, error = %NoPanic(error), "connection failed");
            let _ = error;
            Ending::Failed
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
