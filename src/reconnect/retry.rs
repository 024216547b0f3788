//! The retry core that both front ends drive: [`Reconnecting`](super::Reconnecting) from its
//! `poll` methods, [`RetryLoop`](super::RetryLoop) from an `async fn`.
//!
//! [`RetryConfig`] holds the settings both builders share; [`Outage`] counts attempts, starts the
//! backoff over after a stable connection, and turns a failure into the next delay or a give-up
//! (asking the `on_disconnect` hook, if any). "Attempt" means one connection attempt, the same
//! everywhere: in [`ConnState`](super::ConnState), [`HookContext`] and [`GaveUp`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{BoxFuture, Decision, GaveUp, GiveUpCause, HookContext, Reason};
use crate::backoff::{default_policy, DynPolicy};
use crate::task::NoteWake;

/// The default stable period of both front ends.
const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(10);

pub(crate) type DisconnectHook<C> =
    Box<dyn FnMut(&HookContext, &mut C) -> BoxFuture<Decision> + Send>;

/// How long a connection attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectTimeout {
    Fixed(Duration),
    /// Until the next retry is due (the attempt's start plus the backoff's next delay), and at
    /// least this long; the delay then counts from the attempt's start (gRPC's semantics).
    UntilNextRetry(Duration),
}

/// The settings both front ends share.
pub(crate) struct RetryConfig<C> {
    pub(crate) policy: Box<dyn DynPolicy>,
    pub(crate) connect_timeout: Option<ConnectTimeout>,
    pub(crate) stable_after: Duration,
    pub(crate) retry_connect_if: fn(&io::Error) -> bool,
    pub(crate) on_disconnect: Option<DisconnectHook<C>>,
    pub(crate) cancel: Option<BoxFuture<()>>,
    /// Set by [`ReconnectHandle::reconnect_now`](super::ReconnectHandle::reconnect_now).
    pub(crate) reconnect_now: Arc<NoteWake>,
}

impl<C> RetryConfig<C> {
    pub(crate) fn new() -> Self {
        RetryConfig {
            policy: default_policy(),
            connect_timeout: None,
            stable_after: DEFAULT_STABLE_AFTER,
            retry_connect_if: super::is_retryable_connect_error,
            on_disconnect: None,
            cancel: None,
            reconnect_now: Arc::default(),
        }
    }

    /// Set the connect timeout; `setter` names the front end's method for the panic message.
    #[track_caller]
    pub(crate) fn set_connect_timeout(&mut self, setter: &str, timeout: ConnectTimeout) {
        let (ConnectTimeout::Fixed(limit) | ConnectTimeout::UntilNextRetry(limit)) = timeout;
        assert!(
            !limit.is_zero(),
            "{setter}: the timeout must be greater than zero"
        );
        self.connect_timeout = Some(timeout);
    }

    /// `connect`, failing with [`Reason::ConnectTimeout`] after `timeout` (from
    /// [`Outage::begin_attempt`]).
    pub(crate) fn attempt<F>(&self, connect: F, timeout: Option<Duration>) -> ConnectAttempt<F> {
        ConnectAttempt {
            connect,
            deadline: timeout.map(tokio::time::sleep),
            limit: timeout.unwrap_or_default(),
        }
    }

    /// Whether a failed attempt is one that retrying cannot fix. Only the connector's own errors
    /// are classified: timeouts and `on_connect` failures are always retried.
    pub(crate) fn is_fatal(&self, reason: &Reason) -> bool {
        matches!(reason, Reason::ConnectFailed(e) if !(self.retry_connect_if)(e))
    }

    /// Whether the cancellation signal has completed.
    pub(crate) fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> bool {
        self.cancel
            .as_mut()
            .is_some_and(|signal| signal.as_mut().poll(cx).is_ready())
    }

    /// Resolve `fut`, or `None` if the cancellation signal completes first.
    pub(crate) async fn cancellable<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            if self.poll_cancelled(cx) {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    }
}

impl<C> fmt::Debug for RetryConfig<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("stable_after", &self.stable_after)
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// One connection attempt with the connect timeout.
    pub(crate) struct ConnectAttempt<F> {
        #[pin]
        connect: F,
        #[pin]
        deadline: Option<Sleep>,
        limit: Duration,
    }
}

impl<F, Io> Future for ConnectAttempt<F>
where
    F: Future<Output = io::Result<Io>>,
{
    type Output = Result<Io, Reason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.connect.poll(cx) {
            return Poll::Ready(result.map_err(|e| Reason::ConnectFailed(Arc::new(e))));
        }
        match this.deadline.as_pin_mut() {
            Some(deadline) => {
                ready!(deadline.poll(cx));
                Poll::Ready(Err(Reason::ConnectTimeout(*this.limit)))
            }
            None => Poll::Pending,
        }
    }
}

/// What follows a failure: decided at once, or once the hook's future resolves.
pub(crate) enum Next {
    Decided(Result<Duration, GiveUpCause>),
    Ask(BoxFuture<Decision>, Option<Duration>),
}

/// The bookkeeping of one outage: from the first attempt (or the loss of the last connection that
/// stayed up for the stable period) to the next stable connection.
pub(crate) struct Outage {
    policy: Box<dyn DynPolicy>,
    attempt: u32,
    total_attempts: u64,
    started: Option<Instant>,
    last_reason: Option<Reason>,
    /// With [`ConnectTimeout::UntilNextRetry`]: when the current attempt began, and the delay
    /// drawn for after it (drawn before it, to know its deadline).
    planned: Option<(Instant, Option<Duration>)>,
}

impl Outage {
    pub(crate) fn new<C>(config: &RetryConfig<C>) -> Self {
        Outage {
            policy: config.policy.fresh(),
            attempt: 0,
            total_attempts: 0,
            started: None,
            last_reason: None,
            planned: None,
        }
    }

    /// Attempts in this outage so far.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Count a new attempt; returns its number in the outage (1-based) and its timeout.
    pub(crate) fn begin_attempt<C>(&mut self, config: &RetryConfig<C>) -> (u32, Option<Duration>) {
        self.attempt = self.attempt.saturating_add(1);
        self.total_attempts += 1;
        let now = Instant::now();
        self.started.get_or_insert(now);
        let timeout = config.connect_timeout.map(|timeout| match timeout {
            ConnectTimeout::Fixed(timeout) => timeout,
            ConnectTimeout::UntilNextRetry(min) => {
                let next_delay = self.policy.next_delay();
                self.planned = Some((now, next_delay));
                next_delay.map_or(min, |delay| delay.max(min))
            }
        });
        (self.attempt, timeout)
    }

    /// A connection that was up for `uptime` is gone. If it was stable, it ended the outage:
    /// its loss starts a new one, with the policy and the attempt count started over (a fresh
    /// clone of the policy, so fresh jitter).
    pub(crate) fn connection_lost<C>(&mut self, uptime: Duration, config: &RetryConfig<C>) {
        if uptime >= config.stable_after {
            self.start_over(config);
            self.started = Some(Instant::now());
        } else {
            log_event!(
                debug,
                ?uptime,
                attempt = self.attempt,
                "connection lost before the stable period, backoff goes on"
            );
        }
    }

    /// The backoff starts over: a fresh clone of the policy, the attempt count from zero.
    pub(crate) fn start_over<C>(&mut self, config: &RetryConfig<C>) {
        self.policy = config.policy.fresh();
        self.planned = None;
        self.attempt = 0;
    }

    /// A failure (a lost connection, a failed attempt, an ended session): take the policy's next
    /// delay and let the hook, if any, decide.
    pub(crate) fn after_failure<C>(
        &mut self,
        config: &mut RetryConfig<C>,
        connector: &mut C,
        generation: u64,
        reason: Reason,
        uptime: Option<Duration>,
    ) -> Next {
        let next_delay = match self.planned.take() {
            // A failed attempt: the retry is due at the deadline drawn when it began.
            Some((began, delay)) if uptime.is_none() => {
                delay.map(|delay| delay.saturating_sub(began.elapsed()))
            }
            // A connection that was up: its loss takes the delay drawn for after its attempt.
            Some((_, delay)) => delay,
            None => self.policy.next_delay(),
        };
        self.last_reason = Some(reason.clone());
        match config.on_disconnect.as_mut() {
            None => Next::Decided(settle(Decision::Retry, next_delay)),
            Some(hook) => {
                let ctx = HookContext {
                    next_delay,
                    uptime,
                    ..self.context(generation, Some(reason))
                };
                Next::Ask(hook(&ctx, connector), next_delay)
            }
        }
    }

    pub(crate) fn context(&self, generation: u64, reason: Option<Reason>) -> HookContext {
        HookContext {
            attempt: self.attempt,
            total_attempts: self.total_attempts,
            generation,
            reason,
            elapsed: self.started.map_or(Duration::ZERO, |t| t.elapsed()),
            uptime: None,
            next_delay: None,
        }
    }

    /// The give-up, with this outage's count and last failure.
    pub(crate) fn give_up(&mut self, cause: GiveUpCause, last: Option<Reason>) -> GaveUp {
        if last.is_some() {
            self.last_reason = last;
        }
        log_event!(warn, cause = ?cause, attempts = self.attempt, "giving up");
        GaveUp {
            cause,
            attempts: self.attempt,
            last_reason: self.last_reason.clone(),
        }
    }
}

/// The delay a decision leads to, or why there is none.
pub(crate) fn settle(
    decision: Decision,
    next_delay: Option<Duration>,
) -> Result<Duration, GiveUpCause> {
    match decision {
        Decision::Retry => next_delay.ok_or(GiveUpCause::PolicyExhausted),
        Decision::RetryAfter(delay) => Ok(delay),
        Decision::GiveUp => Err(GiveUpCause::Hook),
    }
}
