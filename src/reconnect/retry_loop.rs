use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::builder::DEFAULT_STABLE_AFTER;
use super::policy::{default_policy, DynPolicy};
use super::{BoxFuture, Connect, Failure, RetryContext, RetryOutcome, RetryReason, SessionEnd};

type DelayFn<E> = Box<dyn FnMut(&RetryContext<'_, E>) -> Option<Duration> + Send>;

/// A connect-then-run retry loop (the job of schmoozer): connect, run a session on the new
/// connection, and when the session fails or asks to reconnect (or connecting fails), wait and
/// start over. It stops when a session is done, on a permanent error, when the backoff policy
/// ends, or on cancellation, and the [`RetryOutcome`] says which.
///
/// The backoff starts over only after a session stayed up for the
/// [stable period](RetryLoop::stable_after) (10 s by default): a server that accepts and drops at
/// once gets ever longer delays, not one connection per `min` delay.
///
/// Defaults: exponential backoff from 100 ms to 10 s with ±10 % jitter and no limit, no connect
/// timeout, every connect error retryable except `InvalidInput`, `PermissionDenied` and
/// `Unsupported` ([`is_retryable_connect_error`](super::is_retryable_connect_error)). These are
/// also [`Reconnecting`](super::Reconnecting)'s defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{RetryLoop, RetryOutcome, SessionEnd};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut sessions = 0;
/// // In-memory connections whose peer has already hung up.
/// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
///     .policy(Constant::new(Duration::from_secs(1)).take(5))
///     .on_delay(|ctx| {
///         println!("attempt {} ({:?}), waiting {:?}", ctx.attempt(), ctx.reason(), ctx.proposed_delay());
///         Some(ctx.proposed_delay())
///     })
///     .run(|mut conn| {
///         sessions += 1;
///         let n = sessions;
///         async move {
///             let mut buf = [0; 16];
///             match conn.read(&mut buf).await {
///                 Err(_) => SessionEnd::Retry("read failed"),
///                 // The peer closed: ask for a new connection, and stop after the third.
///                 Ok(_) if n < 3 => SessionEnd::Reconnect,
///                 Ok(_) => SessionEnd::Done(n),
///             }
///         }
///     })
///     .await;
/// assert!(matches!(outcome, RetryOutcome::Done(3)));
/// # }
/// ```
#[must_use = "call .run(session) and await it"]
pub struct RetryLoop<C, E> {
    connector: C,
    policy: Box<dyn DynPolicy>,
    connect_timeout: Option<Duration>,
    stable_after: Duration,
    retry_connect_if: fn(&io::Error) -> bool,
    on_delay: Option<DelayFn<E>>,
    cancel: Option<BoxFuture<()>>,
    _error: PhantomData<fn() -> E>,
}

impl<C: Connect, E> RetryLoop<C, E> {
    /// A loop over `connector` with the defaults.
    pub fn new(connector: C) -> Self {
        RetryLoop {
            connector,
            policy: default_policy(),
            connect_timeout: None,
            stable_after: DEFAULT_STABLE_AFTER,
            retry_connect_if: super::is_retryable_connect_error,
            on_delay: None,
            cancel: None,
            _error: PhantomData,
        }
    }

    /// The delays between attempts: any `Iterator<Item = Duration> + Clone`; when it ends, the
    /// loop gives up.
    pub fn policy<P>(mut self, policy: P) -> Self
    where
        P: Iterator<Item = Duration> + Clone + Send + 'static,
    {
        self.policy = Box::new(policy);
        self
    }

    /// Fail a connection attempt that takes longer than `timeout` (with `TimedOut`, retryable).
    ///
    /// # Panics
    ///
    /// Panics if `timeout` is zero: no attempt that has to wait for the network could succeed.
    #[track_caller]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "RetryLoop::connect_timeout: the timeout must be greater than zero"
        );
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a session must stay up before the backoff (and the attempt count) start over
    /// (10 s by default, as for [`Builder::stable_after`](super::Builder::stable_after)).
    pub fn stable_after(mut self, period: Duration) -> Self {
        self.stable_after = period;
        self
    }

    /// Which connect errors are worth retrying; others end the loop with
    /// [`RetryOutcome::Fatal`]. The default is
    /// [`is_retryable_connect_error`](super::is_retryable_connect_error), the same as
    /// [`Builder::retry_connect_if`](super::Builder::retry_connect_if)'s.
    pub fn retry_connect_if(mut self, retryable: fn(&io::Error) -> bool) -> Self {
        self.retry_connect_if = retryable;
        self
    }

    /// Called before each wait with the [`RetryContext`] (attempt, reason, elapsed time, error,
    /// the policy's proposed delay); returns the delay to use, or `None` to give up. A zero delay
    /// still goes through tokio's timer (about 1 ms); it is not a busy loop, but it is no backoff
    /// either.
    pub fn on_delay<F>(mut self, callback: F) -> Self
    where
        F: FnMut(&RetryContext<'_, E>) -> Option<Duration> + Send + 'static,
    {
        self.on_delay = Some(Box::new(callback));
        self
    }

    /// Stop once `signal` completes, whatever the loop is doing (connecting, running a session,
    /// waiting): the session future is dropped and the loop returns
    /// [`RetryOutcome::Cancelled`].
    pub fn cancel_on<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.cancel = Some(Box::pin(signal));
        self
    }

    /// Run the loop: `session` is called with each new connection.
    pub async fn run<T, S, Fut>(mut self, mut session: S) -> RetryOutcome<T, E>
    where
        S: FnMut(C::Io) -> Fut,
        Fut: Future<Output = SessionEnd<T, E>>,
    {
        let start = Instant::now();
        let mut policy = self.policy.fresh();
        let mut attempt: u32 = 0;
        let mut last_error: Option<Failure<E>> = None;
        loop {
            log_event!(
                debug,
                attempt = attempt + 1,
                "staunch::reconnect::RetryLoop: connecting"
            );
            let connect = self.connector.connect();
            let connect_timeout = self.connect_timeout;
            let connected = race(&mut self.cancel, async move {
                match connect_timeout {
                    Some(limit) => match tokio::time::timeout(limit, connect).await {
                        Ok(result) => result,
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connect timed out after {limit:?}"),
                        )),
                    },
                    None => connect.await,
                }
            })
            .await;
            // (why, how long the session ran, whether this failure has an error of its own)
            let (reason, uptime, has_error) = match connected {
                None => return RetryOutcome::Cancelled { last_error },
                Some(Err(e)) if !(self.retry_connect_if)(&e) => {
                    return RetryOutcome::Fatal(Failure::Connect(e));
                }
                Some(Err(e)) => {
                    log_event!(debug, error = %e, "staunch::reconnect::RetryLoop: connect failed");
                    last_error = Some(Failure::Connect(e));
                    (RetryReason::ConnectFailed, None, true)
                }
                Some(Ok(io)) => {
                    log_event!(
                        info,
                        "staunch::reconnect::RetryLoop: connected, running session"
                    );
                    let began = Instant::now();
                    let end = race(&mut self.cancel, session(io)).await;
                    let uptime = began.elapsed();
                    if uptime >= self.stable_after {
                        policy = self.policy.fresh();
                        attempt = 0;
                    }
                    let has_error = match end {
                        None => return RetryOutcome::Cancelled { last_error },
                        Some(SessionEnd::Done(value)) => return RetryOutcome::Done(value),
                        Some(SessionEnd::Fatal(e)) => {
                            return RetryOutcome::Fatal(Failure::Session(e));
                        }
                        Some(SessionEnd::Retry(e)) => {
                            last_error = Some(Failure::Session(e));
                            true
                        }
                        Some(SessionEnd::Reconnect) => false,
                    };
                    log_event!(
                        debug,
                        ?uptime,
                        "staunch::reconnect::RetryLoop: session ended"
                    );
                    (RetryReason::SessionEnded, Some(uptime), has_error)
                }
            };
            attempt = attempt.saturating_add(1);
            let Some(proposed) = policy.next_delay() else {
                return RetryOutcome::GaveUp {
                    attempts: attempt,
                    last_error,
                };
            };
            let delay = match self.on_delay.as_mut() {
                Some(callback) => callback(&RetryContext {
                    attempt,
                    reason,
                    elapsed: start.elapsed(),
                    error: last_error.as_ref().filter(|_| has_error),
                    proposed,
                    session_uptime: uptime,
                }),
                None => Some(proposed),
            };
            let Some(delay) = delay else {
                return RetryOutcome::GaveUp {
                    attempts: attempt,
                    last_error,
                };
            };
            log_event!(
                debug,
                ?delay,
                attempt,
                "staunch::reconnect::RetryLoop: waiting"
            );
            if race(&mut self.cancel, tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return RetryOutcome::Cancelled { last_error };
            }
        }
    }
}

/// Resolve `fut`, or `None` if the cancellation signal completes first.
async fn race<F: Future>(cancel: &mut Option<BoxFuture<()>>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Some(signal) = cancel.as_mut() {
            if signal.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

impl<C: fmt::Debug, E> fmt::Debug for RetryLoop<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLoop")
            .field("connector", &self.connector)
            .field("connect_timeout", &self.connect_timeout)
            .field("stable_after", &self.stable_after)
            .field("on_delay", &self.on_delay.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}
