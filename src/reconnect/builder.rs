use std::fmt;
use std::io;
use std::time::Duration;

use super::retry::RetryConfig;
use super::{BoxFuture, Connect, EofPolicy, HookContext, ReadMode, Reconnecting, WriteMode};

pub(crate) type ConnectHook<Io> =
    Box<dyn FnMut(&HookContext, Io) -> BoxFuture<io::Result<Io>> + Send>;

/// Builder for [`Reconnecting`], from [`Reconnecting::builder`].
///
/// Defaults: exponential backoff from 100 ms to 10 s with ±10 % jitter and no limit, starting
/// over once a connection stayed up for 10 s ([`stable_after`](Self::stable_after)), no connect
/// or idle timeout, [`EofPolicy::End`] (choose the [EOF policy](Self::eof_policy) explicitly),
/// [`ReadMode::Boundary`], [`WriteMode::Report`], [`is_disconnect`](super::is_disconnect), every
/// connect error retried except those
/// [`is_retryable_connect_error`](super::is_retryable_connect_error) rejects, no hooks, no
/// cancellation.
///
/// The settings that decide when to retry ([`policy`](Self::policy),
/// [`connect_timeout`](Self::connect_timeout), [`stable_after`](Self::stable_after),
/// [`retry_connect_if`](Self::retry_connect_if), [`on_disconnect`](Self::on_disconnect),
/// [`cancel_on`](Self::cancel_on)) mean the same for a [`RetryLoop`](super::RetryLoop), which has
/// the same methods with the same defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Exponential;
/// use staunch::reconnect::{EofPolicy, Reconnecting};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let (peers_tx, mut peers) = tokio::sync::mpsc::unbounded_channel();
/// let connector = move || {
///     let (client, server) = tokio::io::duplex(64);
///     let _ = peers_tx.send(server);
///     async move { Ok(client) }
/// };
/// let mut conn = Reconnecting::builder(connector)
///     .policy(Exponential::builder().max(Duration::from_secs(5)).build().unwrap())
///     .connect_timeout(Duration::from_secs(3))
///     .eof_policy(EofPolicy::Reconnect)
///     .build();
/// conn.write_all(b"ping").await?;
/// let mut server = peers.recv().await.unwrap();
/// let mut got = [0; 4];
/// server.read_exact(&mut got).await?;
/// assert_eq!(&got, b"ping");
/// # Ok(())
/// # }
/// ```
#[must_use = "call .build() to get the adapter"]
pub struct Builder<C: Connect> {
    pub(crate) connector: C,
    pub(crate) retry: RetryConfig<C>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) eof_policy: EofPolicy,
    pub(crate) read_mode: ReadMode,
    pub(crate) write_mode: WriteMode,
    pub(crate) is_disconnect: fn(&io::Error) -> bool,
    pub(crate) on_connect: Option<ConnectHook<C::Io>>,
}

impl<C: Connect> Builder<C> {
    retry_setters! {
        "Builder";
        /// The delays between attempts: any `Iterator<Item = Duration> + Clone`, for example from
        /// [`crate::backoff`]. Each delay is taken before the attempt after a failure; when the
        /// iterator ends, the adapter gives up ([`GiveUpCause::PolicyExhausted`](super::GiveUpCause)).
        /// The policy starts over (from a clone of the one given) when a connection that stayed up
        /// for the [stable period](Self::stable_after) is lost; a connection lost sooner goes on with
        /// the same policy, so with a policy that ends (`.take(n)`), a server that keeps accepting and
        /// dropping connections is given up on too.
        ///
        /// The built-in policies reject a zero delay. A policy of your own may yield
        /// `Duration::ZERO`: the adapter still sleeps, and tokio's timer rounds that up to its next
        /// 1 ms tick, so a connector that fails at once is tried about a thousand times a second. That
        /// is not a CPU busy loop, but it hammers the server: use a real backoff.
        ///
        /// # Examples
        ///
        /// Three tries a second apart, then give up:
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause, Reconnecting};
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut conn = Reconnecting::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(1)).take(2))
        ///     .build();
        /// let start = Instant::now();
        /// let err = conn.wait_connected().await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
        /// assert_eq!(gave_up.attempts(), 3);
        /// assert_eq!(start.elapsed(), Duration::from_secs(2));
        /// # }
        /// ```
        policy;
        /// Fail a connection attempt that has not completed after `timeout` (with
        /// [`Reason::ConnectTimeout`](super::Reason::ConnectTimeout)).
        ///
        /// # Panics
        ///
        /// Panics if `timeout` is zero: no attempt that has to wait for the network could succeed.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{GaveUp, Reason, Reconnecting};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// // A black-holed address: the attempt never completes.
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let mut conn = Reconnecting::builder(hang)
        ///     .connect_timeout(Duration::from_secs(3))
        ///     .policy(std::iter::empty()) // no retry, to see the first failure
        ///     .build();
        /// let err = conn.wait_connected().await.unwrap_err();
        /// let last = GaveUp::from_io_error(&err).unwrap().last_reason();
        /// assert!(matches!(last, Some(Reason::ConnectTimeout(t)) if t.as_secs() == 3));
        /// # }
        /// ```
        connect_timeout;
        /// Give each connection attempt until the next retry is due, and at least `min`: the
        /// policy's next delay is drawn when the attempt starts, the attempt may run until that
        /// delay has passed (or `min`, if longer), and after a failure the retry comes at that
        /// moment, not a full delay after the failure. A refused connection thus retries on the
        /// same schedule as with a fixed timeout, while a connect that hangs (a black-holed
        /// address) may use the whole gap before the next retry instead of being cut short.
        ///
        /// This is gRPC's connection backoff:
        /// `.policy(Exponential::grpc()).connect_timeout_until_next_retry(GRPC_MIN_CONNECT_TIMEOUT)`
        /// (see [`Exponential::grpc`](crate::backoff::Exponential::grpc)). Replaces
        /// [`connect_timeout`](Self::connect_timeout); the last one set wins.
        ///
        /// # Panics
        ///
        /// Panics if `min` is zero: no attempt that has to wait for the network could succeed.
        ///
        /// # Examples
        ///
        /// ```
        /// use staunch::backoff::{Exponential, GRPC_MIN_CONNECT_TIMEOUT};
        /// use staunch::reconnect::{Reconnecting, TcpConnector};
        ///
        /// let conn = Reconnecting::builder(TcpConnector::new("127.0.0.1:50051"))
        ///     .policy(Exponential::grpc())
        ///     .connect_timeout_until_next_retry(GRPC_MIN_CONNECT_TIMEOUT)
        ///     .build();
        /// ```
        connect_timeout_until_next_retry;
        /// How long a connection must stay up for the backoff to start over when it is lost.
        ///
        /// The time counts from the moment the connection was established (after the
        /// [`on_connect`](Self::on_connect) hook, if any) to the moment the adapter noticed the loss.
        /// When a connection lasted at least `period`, its loss starts a new outage: the
        /// [policy](Self::policy) starts over from its first delay, and the attempt number
        /// ([`ConnState::Connecting`](super::ConnState::Connecting),
        /// [`ConnState::Backoff`](super::ConnState::Backoff), [`HookContext::attempt`],
        /// [`GaveUp::attempts`](super::GaveUp::attempts)) and [`HookContext::elapsed`] start from
        /// zero.
        /// A connection lost sooner does not end the outage: the attempt number goes on growing and
        /// the next delay is the policy's next one, so a server that accepts and then drops every
        /// connection at once gets ever longer delays (up to the policy's maximum) instead of one
        /// connection per first delay, forever.
        ///
        /// The default is 10 s. `Duration::ZERO` starts over after every successful connection.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Exponential;
        /// use staunch::reconnect::{EofPolicy, Reconnecting};
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// // A server that accepts and hangs up at once: every connection's peer is already gone.
        /// let dead_on_arrival = || async { Ok(tokio::io::duplex(64).0) };
        /// let backoff = Exponential::builder()
        ///     .min(Duration::from_secs(1))
        ///     .max(Duration::from_secs(60))
        ///     .build()
        ///     .unwrap();
        /// let mut conn = Reconnecting::builder(dead_on_arrival)
        ///     .policy(backoff)
        ///     .eof_policy(EofPolicy::Reconnect)
        ///     .stable_after(Duration::from_secs(30))
        ///     .build();
        /// let mut waited = Vec::new();
        /// for _ in 0..5 {
        ///     let start = Instant::now();
        ///     conn.wait_connected().await.unwrap();
        ///     waited.push(start.elapsed().as_secs());
        ///     conn.read(&mut [0; 8]).await.unwrap_err(); // lost at once
        /// }
        /// // Not 1 s before every connection: the connections never lasted 30 s.
        /// assert_eq!(waited, [0, 1, 2, 4, 8]);
        /// # }
        /// ```
        stable_after;
        /// Which failed connection attempts are worth retrying: the connector's error is passed to
        /// `retryable`, and when it returns `false` the adapter gives up at once, with
        /// [`GiveUpCause::Fatal`](super::GiveUpCause::Fatal) and the error in
        /// [`GaveUp::last_reason`](super::GaveUp::last_reason), instead of retrying forever something
        /// that cannot succeed. The [`on_disconnect`](Self::on_disconnect) hook does not run for such
        /// an error.
        ///
        /// The default is [`is_retryable_connect_error`](super::is_retryable_connect_error), which
        /// gives up on `InvalidInput`, `PermissionDenied` and `Unsupported`. Only the connector's
        /// own errors are classified: a [connect timeout](Self::connect_timeout) and an error of the
        /// [`on_connect`](Self::on_connect) hook are always retried (the `on_disconnect` hook can
        /// give up on them). With [`Failover`](super::Failover), a target whose error is not retryable
        /// ends the whole adapter, even if other targets would work; pass `|_| true` to keep going.
        ///
        /// # Examples
        ///
        /// A firewall that answers `PermissionDenied` may be reconfigured: keep trying.
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause, Reconnecting};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let denied = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::PermissionDenied.into())
        /// };
        /// let mut by_default = Reconnecting::new(denied);
        /// let err = by_default.wait_connected().await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Fatal, 1));
        ///
        /// let mut retrying = Reconnecting::builder(denied)
        ///     .retry_connect_if(|_| true)
        ///     .policy(Constant::new(Duration::from_secs(1)).take(4))
        ///     .build();
        /// let err = retrying.wait_connected().await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::PolicyExhausted, 5));
        /// # }
        /// ```
        retry_connect_if;
        /// An async hook run after each lost connection and each failed attempt, before the backoff
        /// delay. It gets the [`HookContext`](super::HookContext) (with the policy's [next delay](HookContext::next_delay))
        /// and `&mut` access to the connector (to change the target), and returns a future that may
        /// wait and then decides: [`Decision::Retry`](super::Decision::Retry) after the policy's delay,
        /// [`Decision::RetryAfter`](super::Decision::RetryAfter) a delay of its own, or [`Decision::GiveUp`](super::Decision::GiveUp). The future runs
        /// inside the adapter, driven by the caller's operations.
        ///
        /// # Examples
        ///
        /// Move to a standby server, and give up after ten failures in a row:
        ///
        /// ```
        /// use staunch::reconnect::{Decision, Reconnecting, TcpConnector};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let conn = Reconnecting::builder(TcpConnector::new("primary.internal:7000"))
        ///     .on_disconnect(|ctx, connector| {
        ///         eprintln!("lost: {:?}, attempt {}", ctx.reason(), ctx.attempt());
        ///         connector.set_addr("standby.internal:7000");
        ///         let give_up = ctx.attempt() >= 10;
        ///         let decision = if give_up { Decision::GiveUp } else { Decision::Retry };
        ///         Box::pin(async move { decision })
        ///     })
        ///     .build();
        /// # drop(conn);
        /// # }
        /// ```
        on_disconnect;
        /// Stop reconnecting once `signal` completes: a backoff delay, connection attempt or hook in
        /// progress is cut short and the adapter becomes
        /// [`GaveUp`](super::ConnState::GaveUp) with
        /// [`GiveUpCause::Cancelled`](super::GiveUpCause::Cancelled). A live connection is left
        /// alone until it is lost. With tokio-util, pass `token.cancelled_owned()`.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause, Reconnecting};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        /// let refuse = || async { Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into()) };
        /// let mut conn = Reconnecting::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(3600)))
        ///     .cancel_on(async move { let _ = stopped.await; })
        ///     .build();
        /// let task = tokio::spawn(async move { conn.wait_connected().await });
        /// tokio::time::sleep(Duration::from_secs(1)).await;
        /// stop.send(()).unwrap(); // cuts the hour-long backoff short
        /// let err = task.await.unwrap().unwrap_err();
        /// assert_eq!(GaveUp::from_io_error(&err).unwrap().cause(), GiveUpCause::Cancelled);
        /// # }
        /// ```
        cancel_on;
    }

    pub(crate) fn new(connector: C) -> Self {
        Builder {
            connector,
            retry: RetryConfig::new(),
            idle_timeout: None,
            eof_policy: EofPolicy::End,
            read_mode: ReadMode::Boundary,
            write_mode: WriteMode::Report,
            is_disconnect: super::is_disconnect,
            on_connect: None,
        }
    }

    /// Treat a connection as lost when a read has waited `timeout` with no byte arriving
    /// ([`Reason::IdleTimeout`](super::Reason::IdleTimeout)). The clock starts when a read finds
    /// no data, and restarts after every byte received. This is how a half-open connection (a
    /// peer that vanished without a FIN or RST) is noticed at the application's pace; TCP
    /// keepalive on [`TcpConnector`](super::TcpConnector) notices it at the kernel's.
    ///
    /// # Panics
    ///
    /// Panics if `timeout` is zero: every read that has to wait would drop its connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::reconnect::{Disconnected, Reason, Reconnecting};
    /// use tokio::io::AsyncReadExt;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (client, _silent_peer) = tokio::io::duplex(64);
    /// let mut slot = Some(client);
    /// let connector = move || {
    ///     let io = slot.take().ok_or(std::io::ErrorKind::ConnectionRefused.into());
    ///     async move { io }
    /// };
    /// let mut conn = Reconnecting::builder(connector)
    ///     .idle_timeout(Duration::from_secs(30))
    ///     .build();
    /// let start = Instant::now();
    /// let err = conn.read(&mut [0; 8]).await.unwrap_err();
    /// assert_eq!(start.elapsed(), Duration::from_secs(30));
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// let lost = Disconnected::from_io_error(&err).unwrap();
    /// assert!(matches!(lost.reason(), Reason::IdleTimeout(_)));
    /// # }
    /// ```
    #[track_caller]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "Builder::idle_timeout: the timeout must be greater than zero"
        );
        self.idle_timeout = Some(timeout);
        self
    }

    /// What end of stream means; see [`EofPolicy`]. The default, [`EofPolicy::End`], ends the
    /// stream when the peer closes, as a plain socket does; a long-lived client (a subscriber)
    /// that should survive a clean server restart wants [`EofPolicy::Reconnect`]. Set it
    /// explicitly.
    pub fn eof_policy(mut self, policy: EofPolicy) -> Self {
        self.eof_policy = policy;
        self
    }

    /// How reads behave across a reconnect; see [`ReadMode`].
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }

    /// What happens to a write that fails; see [`WriteMode`].
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// Which I/O errors on a live connection mean "connection lost" (and start a reconnect);
    /// others are returned to the caller unchanged. The default is
    /// [`is_disconnect`](super::is_disconnect).
    ///
    /// # Examples
    ///
    /// A peer that sends garbage is dropped for a new connection, instead of reported as is:
    ///
    /// ```
    /// use std::io;
    /// use staunch::reconnect::{is_disconnect, Disconnected, Reconnecting};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let garbled = || async {
    ///     let garbage = io::Error::new(io::ErrorKind::InvalidData, "bad frame");
    ///     Ok(tokio_test::io::Builder::new().read_error(garbage).build())
    /// };
    /// let mut plain = Reconnecting::new(garbled);
    /// let err = plain.read(&mut [0; 8]).await.unwrap_err();
    /// assert!(Disconnected::from_io_error(&err).is_none()); // returned unchanged
    ///
    /// let mut conn = Reconnecting::builder(garbled)
    ///     .disconnect_if(|e| is_disconnect(e) || e.kind() == io::ErrorKind::InvalidData)
    ///     .build();
    /// let err = conn.read(&mut [0; 8]).await.unwrap_err();
    /// assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    /// let lost = Disconnected::from_io_error(&err).unwrap(); // a loss: the next read reconnects
    /// assert_eq!(lost.generation(), 1);
    /// # }
    /// ```
    pub fn disconnect_if(mut self, classify: fn(&io::Error) -> bool) -> Self {
        self.is_disconnect = classify;
        self
    }

    /// An async hook run on every new connection before any user I/O touches it: it gets the
    /// connection by value and hands it back (after a handshake or authentication, say). An error
    /// counts as a failed attempt ([`Reason::HandshakeFailed`](super::Reason::HandshakeFailed)).
    ///
    /// The hook owns the connection while it runs, so its future can outlive a dropped read or
    /// write; it may hand back the same connection or another one. Returning an error discards
    /// the attempt.
    ///
    /// # Examples
    ///
    /// Log in on every connection before the caller's bytes go out:
    ///
    /// ```
    /// use staunch::reconnect::Reconnecting;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let (client, mut server) = tokio::io::duplex(64);
    /// let mut slot = Some(client);
    /// let connector = move || {
    ///     let io = slot.take().ok_or(std::io::ErrorKind::ConnectionRefused.into());
    ///     async move { io }
    /// };
    /// let mut conn = Reconnecting::builder(connector)
    ///     .on_connect(|ctx, mut io| {
    ///         let generation = ctx.generation();
    ///         Box::pin(async move {
    ///             io.write_all(format!("LOGIN {generation}\n").as_bytes()).await?;
    ///             Ok(io)
    ///         })
    ///     })
    ///     .build();
    /// conn.write_all(b"DATA\n").await?;
    /// let mut got = [0; 13];
    /// server.read_exact(&mut got).await?;
    /// assert_eq!(&got, b"LOGIN 1\nDATA\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: FnMut(&HookContext, C::Io) -> BoxFuture<io::Result<C::Io>> + Send + 'static,
    {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Build the adapter. Nothing is connected yet: the first operation (or
    /// [`Reconnecting::wait_connected`]) starts connecting. To start connecting at once, see
    /// [`build_and_connect_in_background`](Self::build_and_connect_in_background).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use staunch::reconnect::{ConnState, Reconnecting};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let attempts = Arc::new(AtomicUsize::new(0));
    /// let connector = {
    ///     let attempts = attempts.clone();
    ///     move || {
    ///         attempts.fetch_add(1, Ordering::Relaxed);
    ///         async { Ok(tokio::io::duplex(64).0) }
    ///     }
    /// };
    /// let mut conn = Reconnecting::builder(connector).build();
    /// assert!(matches!(conn.state(), ConnState::Idle));
    /// assert_eq!(attempts.load(Ordering::Relaxed), 0); // nothing connects yet
    /// conn.wait_connected().await?;
    /// assert_eq!(attempts.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Reconnecting<C> {
        Reconnecting::from_builder(self)
    }

    /// Build the adapter and start the first connection attempt at once, in a task spawned on
    /// the current tokio runtime: this returns without waiting, and by the time the program first reads or writes, the connection is
    /// usually there already.
    ///
    /// Only the connector's future runs in the task. The adapter takes up its result on its first
    /// operation (or [`Reconnecting::wait_connected`]), and everything after that works as with
    /// [`build`](Self::build): the [`on_connect`](Self::on_connect) hook runs then, and so do the
    /// `on_disconnect` hook, the backoff and the next attempts if the first one failed. The state
    /// is [`Connecting { attempt: 1 }`](super::ConnState::Connecting) from the start and stays
    /// so until the result is taken up. The [`connect_timeout`](Self::connect_timeout) counts from
    /// here; an attempt that is given up (timeout, cancellation, `shutdown()`, or the adapter
    /// dropped) is aborted, so its connection is not left open. If the connector panics in the
    /// task, the panic is resumed in the operation that takes up the result.
    ///
    /// To run the whole first connect in the background, hooks and retries included, spawn
    /// [`Reconnecting::wait_connected`] instead (see its example).
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::reconnect::{ConnState, Reconnecting};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let (peers_tx, _peers) = tokio::sync::mpsc::unbounded_channel();
    /// let connector = move || {
    ///     let peers_tx = peers_tx.clone();
    ///     async move {
    ///         tokio::time::sleep(Duration::from_millis(300)).await; // a slow network, say
    ///         let (client, server) = tokio::io::duplex(64);
    ///         let _ = peers_tx.send(server);
    ///         Ok(client)
    ///     }
    /// };
    /// let mut conn = Reconnecting::builder(connector).build_and_connect_in_background();
    /// assert!(matches!(conn.state(), ConnState::Connecting { attempt: 1 }));
    /// tokio::time::sleep(Duration::from_secs(1)).await; // other start-up work
    /// let before = tokio::time::Instant::now();
    /// conn.write_all(b"hello").await?; // no wait: the connection was made meanwhile
    /// assert_eq!(before.elapsed(), Duration::ZERO);
    /// assert_eq!(conn.generation(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn build_and_connect_in_background(self) -> Reconnecting<C>
    where
        C::Future: Send + 'static,
        C::Io: Send + 'static,
    {
        Reconnecting::from_builder_connecting(self)
    }
}

impl<C: Connect> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("retry", &self.retry)
            .field("idle_timeout", &self.idle_timeout)
            .field("eof_policy", &self.eof_policy)
            .field("read_mode", &self.read_mode)
            .field("write_mode", &self.write_mode)
            .field("on_connect", &self.on_connect.is_some())
            .finish_non_exhaustive()
    }
}
