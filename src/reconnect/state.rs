//! What can be watched ([`ConnState`]) and what hooks see and decide ([`HookContext`],
//! [`Decision`]).

use std::time::Duration;

use super::{GaveUp, Reason};

/// The state of a [`Reconnecting`](super::Reconnecting) or a
/// [`resume::Client`](crate::resume::Client), published on a [`tokio::sync::watch`] channel
/// ([`Reconnecting::watch`](super::Reconnecting::watch),
/// [`Client::watch`](crate::resume::Client::watch)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{ConnState, Reconnecting};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
/// };
/// let mut conn = Reconnecting::builder(refuse)
///     .policy(Constant::new(Duration::from_secs(1)).take(1))
///     .build();
/// let states = conn.watch();
/// assert!(matches!(conn.state(), ConnState::Idle));
/// // Dropping the operation loses no progress: the adapter is in its backoff now.
/// let _ = tokio::time::timeout(Duration::from_millis(500), conn.wait_connected()).await;
/// let second_in_a_second = |s: &ConnState| {
///     matches!(s, ConnState::Backoff { attempt: 2, delay, .. } if delay.as_secs() == 1)
/// };
/// assert!(second_in_a_second(&conn.state()));
/// conn.wait_connected().await.unwrap_err();
/// assert!(matches!(*states.borrow(), ConnState::GaveUp(_)));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnState {
    /// Built, no attempt made yet: the first operation starts connecting.
    Idle,
    /// A connection attempt (or the `on_connect` hook on its result) is running.
    Connecting {
        /// 1-based attempt number in the current outage: since the loss of the last connection
        /// that stayed up for the [stable period](super::Builder::stable_after), so it keeps
        /// growing across connections that are lost sooner.
        attempt: u32,
    },
    /// A live connection.
    Connected {
        /// 1 for the first connection, incremented on every new one.
        generation: u64,
    },
    /// A connection was lost or an attempt failed; the
    /// [`on_disconnect`](super::Builder::on_disconnect) hook, if any, runs in this state.
    Failed {
        /// The generation of the last established connection (0 if none was).
        generation: u64,
        /// What happened.
        reason: Reason,
    },
    /// Waiting before the next attempt.
    Backoff {
        /// The attempt that starts once the delay is over (1-based, counted like
        /// [`Connecting`](ConnState::Connecting)'s).
        attempt: u32,
        /// The delay.
        delay: Duration,
        /// The failure that led here.
        reason: Reason,
    },
    /// Gave up for good (the policy ended, the hook said so, cancelled, or a connect error that
    /// cannot succeed: see [`GaveUp::cause`]); every operation fails with
    /// [`NotConnected`](std::io::ErrorKind::NotConnected).
    GaveUp(GaveUp),
    /// Shut down by a local `shutdown()`, and the connection is gone; no reconnect will happen.
    ShutDown,
}

/// What the [`on_disconnect`](super::Builder::on_disconnect) hook decides.
///
/// # Examples
///
/// Retry at once after a clean close, back off otherwise, give up after five in a row:
///
/// ```
/// use std::time::Duration;
/// use staunch::reconnect::{Decision, GaveUp, GiveUpCause, Reason, Reconnecting};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
/// };
/// let mut conn = Reconnecting::builder(refuse)
///     .on_disconnect(|ctx, _connector| {
///         let decision = match ctx.reason() {
///             _ if ctx.attempt() >= 5 => Decision::GiveUp,
///             Some(Reason::Eof) => Decision::RetryAfter(Duration::ZERO),
///             _ => Decision::Retry,
///         };
///         Box::pin(async move { decision })
///     })
///     .build();
/// let err = conn.wait_connected().await.unwrap_err();
/// let gave_up = GaveUp::from_io_error(&err).unwrap();
/// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Hook, 5));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Wait for the backoff policy's next delay ([`HookContext::next_delay`]), then try to
    /// connect again; if the policy has ended, give up
    /// ([`GiveUpCause::PolicyExhausted`](super::GiveUpCause::PolicyExhausted)).
    Retry,
    /// Wait this long instead of the policy's delay, then try to connect again (even if the
    /// policy has ended).
    RetryAfter(Duration),
    /// Stop for good, with [`GiveUpCause::Hook`](super::GiveUpCause::Hook).
    GiveUp,
}

/// What a hook knows when it runs: the same for [`Reconnecting`](super::Reconnecting)'s hooks and
/// [`RetryLoop`](super::RetryLoop)'s.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{Decision, Reconnecting};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
/// };
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let mut conn = Reconnecting::builder(refuse)
///     .policy(Constant::new(Duration::from_secs(2)).take(2))
///     .on_disconnect(move |ctx, _connector| {
///         log.lock().unwrap().push((ctx.attempt(), ctx.elapsed(), ctx.next_delay()));
///         Box::pin(async { Decision::Retry })
///     })
///     .build();
/// conn.wait_connected().await.unwrap_err();
/// let two = Some(Duration::from_secs(2));
/// assert_eq!(
///     *seen.lock().unwrap(),
///     [
///         (1, Duration::ZERO, two),
///         (2, Duration::from_secs(2), two),
///         (3, Duration::from_secs(4), None), // the policy has ended: `Retry` gives up
///     ]
/// );
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HookContext {
    pub(crate) attempt: u32,
    pub(crate) total_attempts: u64,
    pub(crate) generation: u64,
    pub(crate) reason: Option<Reason>,
    pub(crate) elapsed: Duration,
    pub(crate) uptime: Option<Duration>,
    pub(crate) next_delay: Option<Duration>,
}

impl HookContext {
    /// Connection attempts made in the current outage, that is since the backoff last started
    /// over (see [`Builder::stable_after`](super::Builder::stable_after)): 0 in `on_disconnect`
    /// right after a stable connection was lost, `n` after `n` attempts (successful ones whose
    /// connection did not stay up for the stable period included); in `on_connect`, the number of
    /// the attempt that produced the new connection (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Connection attempts made since the adapter (or loop) started.
    pub fn total_attempts(&self) -> u64 {
        self.total_attempts
    }

    /// In `on_disconnect`, the generation of the last established connection (0 if none was ever
    /// established; for a [`RetryLoop`](super::RetryLoop), the number of sessions started); in
    /// `on_connect`, the generation the new connection gets once the hook succeeds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Why the hook runs: the lost connection's or the failed attempt's reason; `None` in
    /// `on_connect`.
    pub fn reason(&self) -> Option<&Reason> {
        self.reason.as_ref()
    }

    /// Time since the outage began: the first attempt, or the loss of the last connection that
    /// stayed up for the [stable period](super::Builder::stable_after). Connections lost sooner do
    /// not end the outage.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// In `on_disconnect` right after a live connection was lost (or a session ended), how long it
    /// had been up; `None` after a failed attempt and in `on_connect`.
    pub fn uptime(&self) -> Option<Duration> {
        self.uptime
    }

    /// In `on_disconnect`, the delay [`Decision::Retry`] waits (the backoff policy's next one);
    /// `None` if the policy has ended, and in `on_connect`.
    pub fn next_delay(&self) -> Option<Duration> {
        self.next_delay
    }
}
