use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::Instant;

use super::now;
use super::retry::{settle, Next, Outage, RetryConfig};
use super::{Connect, GaveUp, GiveUpCause, Reason, ReconnectHandle};

/// A connect-then-run retry loop (the job of schmoozer): connect, run a session on the new
/// connection, and when the session fails or asks to reconnect (or connecting fails), wait and
/// start over. It stops when a session is done, on a permanent error, when the backoff policy
/// ends, or on cancellation, and the [`RetryOutcome`] says which.
///
/// The backoff starts over only after a session stayed up for the
/// [stable period](RetryLoop::stable_after) (10 s by default): a server that accepts and drops at
/// once gets ever longer delays, not one connection per `min` delay.
///
/// It is built on the same retry core as [`Reconnecting`](super::Reconnecting): the settings
/// that decide when to retry have the same names, meanings and defaults as
/// [`Builder`](super::Builder)'s (exponential backoff from 100 ms to 10 s with ±10 % jitter and no
/// limit, no connect timeout, a 10 s stable period, every connect error retried except those
/// [`is_retryable_connect_error`](super::is_retryable_connect_error) rejects), an attempt is one
/// connection attempt, and the [`on_disconnect`](Self::on_disconnect) hook has the same shape.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{Decision, RetryLoop, RetryOutcome, SessionEnd};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut sessions = 0;
/// // In-memory connections whose peer has already hung up.
/// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
///     .policy(Constant::new(Duration::from_secs(1)).take(5))
///     .on_disconnect(|ctx, _connector| {
///         println!("attempt {} ({:?}), waiting {:?}", ctx.attempt(), ctx.reason(), ctx.next_delay());
///         Box::pin(async { Decision::Retry })
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
pub struct RetryLoop<C> {
    pub(super) connector: C,
    pub(super) retry: RetryConfig<C>,
}

/// How a session run by a [`RetryLoop`] ended.
///
/// # Examples
///
/// A session that finds it cannot work with this server stops the loop:
///
/// ```
/// use staunch::reconnect::{GiveUpCause, RetryLoop, RetryOutcome, SessionEnd};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
///     .run(|_conn| async { SessionEnd::<(), _>::Fatal("unsupported protocol version") })
///     .await;
/// let RetryOutcome::GaveUp { gave_up, session_error } = outcome else { panic!("not done") };
/// assert_eq!(gave_up.cause(), GiveUpCause::Fatal);
/// assert_eq!(gave_up.attempts(), 1);
/// assert_eq!(session_error, Some("unsupported protocol version"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd<T, E> {
    /// Finished for good: the loop returns [`RetryOutcome::Done`].
    Done(T),
    /// The session asks for a new connection (the server said goodbye, say); no error.
    Reconnect,
    /// A retryable failure: wait, reconnect and run a new session.
    Retry(E),
    /// A permanent failure: the loop gives up ([`GiveUpCause::Fatal`]).
    Fatal(E),
}

/// How a [`RetryLoop`] ended.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{GiveUpCause, Reason, RetryLoop, RetryOutcome, SessionEnd};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
///     .policy(Constant::new(Duration::from_secs(1)).take(2))
///     .run(|_conn| async { SessionEnd::<(), _>::Retry("server busy") })
///     .await;
/// match outcome {
///     RetryOutcome::Done(()) => unreachable!("no session finished"),
///     RetryOutcome::GaveUp { gave_up, session_error } => {
///         assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
///         assert_eq!(gave_up.attempts(), 3);
///         assert!(matches!(gave_up.last_reason(), Some(Reason::SessionEnded)));
///         assert_eq!(session_error, Some("server busy"));
///     }
///     _ => unreachable!(),
/// }
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the outcome says whether the loop finished or gave up, and why"]
#[non_exhaustive]
pub enum RetryOutcome<T, E> {
    /// A session returned [`SessionEnd::Done`].
    Done(T),
    /// The loop stopped for good: see [`GaveUp::cause`] (the policy ended, the hook gave up,
    /// cancelled, or a permanent failure: a connect error that
    /// [`retry_connect_if`](RetryLoop::retry_connect_if) rejects, or [`SessionEnd::Fatal`]).
    GaveUp {
        /// Why, after how many attempts, and the last failure
        /// ([`Reason::SessionEnded`] when a session ended last).
        gave_up: GaveUp,
        /// The error of the last session, if it ended with [`SessionEnd::Retry`] or
        /// [`SessionEnd::Fatal`] and no connection attempt failed after it.
        session_error: Option<E>,
    },
}

impl<C: Connect> RetryLoop<C> {
    retry_setters! {
        "RetryLoop";
        /// The delays between attempts: any `Iterator<Item = Duration> + Clone`; when it ends, the
        /// loop gives up. As [`Builder::policy`](super::Builder::policy).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GiveUpCause, RetryLoop, RetryOutcome, SessionEnd};
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let start = Instant::now();
        /// let outcome = RetryLoop::new(refuse)
        ///     .policy(Constant::new(Duration::from_secs(1)).take(2))
        ///     .run(|_conn| async { SessionEnd::<(), ()>::Done(()) })
        ///     .await;
        /// let RetryOutcome::GaveUp { gave_up, .. } = outcome else { panic!("connected") };
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::PolicyExhausted, 3));
        /// assert_eq!(start.elapsed(), Duration::from_secs(2));
        /// # }
        /// ```
        policy;
        /// Fail a connection attempt that takes longer than `timeout`
        /// ([`Reason::ConnectTimeout`], retried). As
        /// [`Builder::connect_timeout`](super::Builder::connect_timeout).
        ///
        /// # Panics
        ///
        /// Panics if `timeout` is zero: no attempt that has to wait for the network could succeed.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{Reason, RetryLoop, RetryOutcome, SessionEnd};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let outcome = RetryLoop::new(hang)
        ///     .connect_timeout(Duration::from_secs(3))
        ///     .policy(std::iter::empty())
        ///     .run(|_conn| async { SessionEnd::<(), ()>::Done(()) })
        ///     .await;
        /// let RetryOutcome::GaveUp { gave_up, .. } = outcome else { panic!("connected") };
        /// assert!(matches!(gave_up.last_reason(), Some(Reason::ConnectTimeout(_))));
        /// # }
        /// ```
        connect_timeout;
        /// Give each connection attempt until the next retry is due, and at least `min`, as
        /// [`Builder::connect_timeout_until_next_retry`](super::Builder::connect_timeout_until_next_retry)
        /// does (gRPC's connection backoff semantics). Replaces
        /// [`connect_timeout`](Self::connect_timeout).
        ///
        /// # Panics
        ///
        /// Panics if `min` is zero.
        ///
        /// # Examples
        ///
        /// An attempt that hangs may run until the retry is due (10 s here), then the retry comes
        /// at once; the last attempt, with no retry after it, gets `min`:
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{RetryLoop, RetryOutcome, SessionEnd};
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let start = Instant::now();
        /// let outcome = RetryLoop::new(hang)
        ///     .policy(Constant::new(Duration::from_secs(10)).take(1))
        ///     .connect_timeout_until_next_retry(Duration::from_secs(1))
        ///     .run(|_conn| async { SessionEnd::<(), ()>::Done(()) })
        ///     .await;
        /// assert!(matches!(outcome, RetryOutcome::GaveUp { .. }));
        /// assert_eq!(start.elapsed(), Duration::from_secs(10 + 1));
        /// # }
        /// ```
        connect_timeout_until_next_retry;
        /// How long a session must stay up before the backoff (and the attempt count) start over
        /// (10 s by default). As [`Builder::stable_after`](super::Builder::stable_after).
        ///
        /// # Examples
        ///
        /// With `Duration::ZERO`, every session counts as stable: each reconnect waits the
        /// policy's first delay, not ever longer ones.
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Exponential;
        /// use staunch::reconnect::{RetryLoop, RetryOutcome, SessionEnd};
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let backoff = Exponential::builder().min(Duration::from_secs(1)).build().unwrap();
        /// let mut sessions = 0;
        /// let start = Instant::now();
        /// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
        ///     .policy(backoff)
        ///     .stable_after(Duration::ZERO)
        ///     .run(|_conn| {
        ///         sessions += 1;
        ///         let n = sessions;
        ///         async move {
        ///             if n < 4 { SessionEnd::<_, ()>::Reconnect } else { SessionEnd::Done(n) }
        ///         }
        ///     })
        ///     .await;
        /// assert!(matches!(outcome, RetryOutcome::Done(4)));
        /// assert_eq!(start.elapsed(), Duration::from_secs(3)); // 1 + 1 + 1, not 1 + 2 + 4
        /// # }
        /// ```
        stable_after;
        /// Which connect errors are worth retrying; on others the loop gives up
        /// ([`GiveUpCause::Fatal`]). As
        /// [`Builder::retry_connect_if`](super::Builder::retry_connect_if).
        ///
        /// # Examples
        ///
        /// Where a refused connection means the service is not coming back:
        ///
        /// ```
        /// use std::io;
        /// use staunch::reconnect::{GiveUpCause, RetryLoop, RetryOutcome, SessionEnd};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let outcome = RetryLoop::new(refuse)
        ///     .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        ///     .run(|_conn| async { SessionEnd::<(), ()>::Done(()) })
        ///     .await;
        /// let RetryOutcome::GaveUp { gave_up, .. } = outcome else { panic!("connected") };
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Fatal, 1));
        /// # }
        /// ```
        retry_connect_if;
        /// An async hook run after each failed attempt and each ended session (except
        /// [`SessionEnd::Done`] and [`SessionEnd::Fatal`]), before the delay: it gets the
        /// [`HookContext`](super::HookContext) and the connector, and decides ([`Decision`](super::Decision)). As
        /// [`Builder::on_disconnect`](super::Builder::on_disconnect). The session's own error stays
        /// with the session: a session that should stop the loop returns [`SessionEnd::Fatal`].
        ///
        /// # Examples
        ///
        /// Wait a delay of its own after the first failure, give up after the second:
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{Decision, GiveUpCause, RetryLoop, RetryOutcome, SessionEnd};
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let start = Instant::now();
        /// let outcome = RetryLoop::new(refuse)
        ///     .on_disconnect(|ctx, _connector| {
        ///         let decision = match ctx.attempt() {
        ///             1 => Decision::RetryAfter(Duration::from_secs(5)),
        ///             _ => Decision::GiveUp,
        ///         };
        ///         Box::pin(async move { decision })
        ///     })
        ///     .run(|_conn| async { SessionEnd::<(), ()>::Done(()) })
        ///     .await;
        /// let RetryOutcome::GaveUp { gave_up, .. } = outcome else { panic!("connected") };
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Hook, 2));
        /// assert_eq!(start.elapsed(), Duration::from_secs(5));
        /// # }
        /// ```
        on_disconnect;
        /// Stop once `signal` completes, whatever the loop is doing (connecting, running a session,
        /// waiting, running the hook): the session future is dropped and the loop gives up
        /// ([`GiveUpCause::Cancelled`]). As [`Builder::cancel_on`](super::Builder::cancel_on).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{GiveUpCause, RetryLoop, RetryOutcome, SessionEnd};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let outcome = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
        ///     .cancel_on(tokio::time::sleep(Duration::from_secs(1)))
        ///     // A session that would run for ever is dropped at the signal.
        ///     .run(|_conn| std::future::pending::<SessionEnd<(), ()>>())
        ///     .await;
        /// let RetryOutcome::GaveUp { gave_up, .. } = outcome else { panic!("done") };
        /// assert_eq!(gave_up.cause(), GiveUpCause::Cancelled);
        /// # }
        /// ```
        cancel_on;
    }

    /// A handle that cuts the loop's backoff short and starts it over, from any task, also
    /// while [`run`](Self::run) runs (see [`ReconnectHandle`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::backoff::Constant;
    /// use staunch::reconnect::{RetryLoop, RetryOutcome, SessionEnd};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let retry = RetryLoop::new(|| async { Ok(tokio::io::duplex(64).0) })
    ///     .policy(Constant::new(Duration::from_secs(60)));
    /// let handle = retry.reconnect_handle();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     handle.reconnect_now(); // the server is back: do not wait out the minute
    /// });
    /// let mut sessions = 0;
    /// let start = Instant::now();
    /// let outcome = retry
    ///     .run(|_conn| {
    ///         sessions += 1;
    ///         let n = sessions;
    ///         async move {
    ///             if n < 2 { SessionEnd::<_, ()>::Reconnect } else { SessionEnd::Done(n) }
    ///         }
    ///     })
    ///     .await;
    /// assert!(matches!(outcome, RetryOutcome::Done(2)));
    /// assert_eq!(start.elapsed(), Duration::from_secs(1));
    /// # }
    /// ```
    pub fn reconnect_handle(&self) -> ReconnectHandle {
        ReconnectHandle::new(&self.retry.reconnect_now)
    }

    /// A loop over `connector` with the defaults.
    pub fn new(connector: C) -> Self {
        RetryLoop {
            connector,
            retry: RetryConfig::new(),
        }
    }

    /// Run the loop: `session` is called with each new connection.
    pub async fn run<T, E, S, Fut>(mut self, mut session: S) -> RetryOutcome<T, E>
    where
        S: FnMut(C::Io) -> Fut,
        Fut: Future<Output = SessionEnd<T, E>>,
    {
        let mut outage = Outage::new(&self.retry);
        let mut sessions = 0;
        let mut session_error = None;
        let give_up = |outage: &mut Outage, cause, last, session_error| RetryOutcome::GaveUp {
            gave_up: outage.give_up(cause, last),
            session_error,
        };
        loop {
            let (attempt, timeout) = outage.begin_attempt(&self.retry);
            log_event!(debug, attempt, "retry loop: connecting");
            // Only the log event reads it (no event without the `tracing` feature).
            let _ = attempt;
            let connect = self.retry.attempt(self.connector.connect(), timeout);
            let (reason, uptime) = match self.retry.cancellable(connect).await {
                None => return give_up(&mut outage, GiveUpCause::Cancelled, None, session_error),
                Some(Err(reason)) if self.retry.is_fatal(&reason) => {
                    return give_up(&mut outage, GiveUpCause::Fatal, Some(reason), None);
                }
                Some(Err(reason)) => {
                    log_event!(warn, attempt, reason = %reason, "retry loop: connect failed");
                    session_error = None;
                    (reason, None)
                }
                Some(Ok(io)) => {
                    sessions += 1;
                    // A request to reconnect now is met.
                    self.retry.reconnect_now.take_woken();
                    log_event!(info, sessions, "retry loop: connected, running the session");
                    let began = Instant::now();
                    let end = self.retry.cancellable(session(io)).await;
                    let uptime = began.elapsed();
                    outage.connection_lost(uptime, &self.retry);
                    log_event!(debug, ?uptime, "retry loop: session ended");
                    session_error = match end {
                        None => {
                            return give_up(
                                &mut outage,
                                GiveUpCause::Cancelled,
                                None,
                                session_error,
                            )
                        }
                        Some(SessionEnd::Done(value)) => return RetryOutcome::Done(value),
                        Some(SessionEnd::Fatal(e)) => {
                            let last = Some(Reason::SessionEnded);
                            return give_up(&mut outage, GiveUpCause::Fatal, last, Some(e));
                        }
                        Some(SessionEnd::Retry(e)) => Some(e),
                        Some(SessionEnd::Reconnect) => None,
                    };
                    (Reason::SessionEnded, Some(uptime))
                }
            };
            let next = outage.after_failure(
                &mut self.retry,
                &mut self.connector,
                sessions,
                reason,
                uptime,
            );
            let delay = match next {
                Next::Decided(delay) => delay,
                Next::Ask(hook, next_delay) => match self.retry.cancellable(hook).await {
                    Some(decision) => settle(decision, next_delay),
                    None => Err(GiveUpCause::Cancelled),
                },
            };
            let delay = match delay {
                Ok(delay) => delay,
                Err(cause) => return give_up(&mut outage, cause, None, session_error),
            };
            log_event!(debug, ?delay, "retry loop: waiting");
            let request = Arc::clone(&self.retry.reconnect_now);
            let mut sleep = pin!(tokio::time::sleep(delay));
            let waited = std::future::poll_fn(|cx| {
                if now::requested(&request, cx) {
                    return Poll::Ready(true);
                }
                sleep.as_mut().poll(cx).map(|()| false)
            });
            match self.retry.cancellable(waited).await {
                None => return give_up(&mut outage, GiveUpCause::Cancelled, None, session_error),
                // Cut short: the next attempt now, with the backoff started over.
                Some(true) => outage.start_over(&self.retry),
                Some(false) => {}
            }
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for RetryLoop<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLoop")
            .field("connector", &self.connector)
            .field("retry", &self.retry)
            .finish()
    }
}
