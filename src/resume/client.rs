use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::engine::{Attach, Engine, Link};
use super::{Config, SessionId};
use crate::reconnect::retry::{settle, ConnectAttempt, Next, Outage, RetryConfig};
use crate::reconnect::{BoxFuture, ConnState, Connect, Decision, GaveUp, GiveUpCause, Reason};

/// The client end of a resumable session: an `AsyncRead + AsyncWrite` byte stream that
/// reconnects through its connector and resumes the session, so every byte arrives exactly once
/// and in order. See the [module docs](super) for the protocol and its guarantees.
///
/// Nothing happens until the first operation: that connects and sends the hello. Writes are
/// buffered (up to [`Config::buffer_size`] unacknowledged bytes) and go out on the next write,
/// read or [`flush`](tokio::io::AsyncWriteExt::flush); [`shutdown`](tokio::io::AsyncWriteExt::shutdown)
/// returns once the server has acknowledged every byte.
///
/// It retries as [`Reconnecting`](crate::reconnect::Reconnecting) does, on the same retry core
/// with the same settings and defaults ([`ClientBuilder`]): a lost connection or a failed
/// attempt waits for the policy's next delay (or what the
/// [`on_disconnect`](ClientBuilder::on_disconnect) hook decides), and the policy starts over
/// only once a connection stayed up for the [stable period](ClientBuilder::stable_after),
/// counted from the server's welcome. A connection lost before the welcome counts as a failed
/// attempt. When it gives up, every operation fails with
/// [`NotConnected`](io::ErrorKind::NotConnected) and a [`GaveUp`] payload
/// ([`GaveUp::from_io_error`]). Its state is published as a [`ConnState`] ([`watch`](Self::watch)):
/// `Connecting` until the server's welcome, `Connected` with a generation counting welcomes.
///
/// A server that rejects the session (an unknown or expired id) or sends malformed input ends
/// it with that error instead ([`NotFound`](io::ErrorKind::NotFound),
/// [`InvalidData`](io::ErrorKind::InvalidData)), and the state becomes
/// [`ConnState::GaveUp`] with [`GiveUpCause::Fatal`] and the error as its last reason.
///
/// # Examples
///
/// Against an echo server, over in-memory connections:
///
/// ```
/// use staunch::resume::{Accepted, Acceptor, Client, Config};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let acceptor = Acceptor::new(Config::default());
/// let server = acceptor.clone();
/// let connector = move || {
///     let (client, socket) = tokio::io::duplex(64 * 1024);
///     let acceptor = server.clone();
///     tokio::spawn(async move {
///         if let Ok(Accepted::New(session)) = acceptor.accept(socket).await {
///             let (mut reader, mut writer) = tokio::io::split(session);
///             tokio::io::copy(&mut reader, &mut writer).await?;
///             writer.shutdown().await?;
///         }
///         std::io::Result::Ok(())
///     });
///     async move { Ok(client) }
/// };
/// let mut client = Client::new(connector);
/// client.write_all(b"hello").await?;
/// client.shutdown().await?; // returns once the server's reader has every byte
/// let mut echoed = Vec::new();
/// client.read_to_end(&mut echoed).await?;
/// assert_eq!(echoed, b"hello");
/// assert!(client.session_id().is_some());
/// assert_eq!(acceptor.stats().created, 1);
/// # Ok(())
/// # }
/// ```
pub struct Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    engine: Engine<ClientLink<C>>,
}

/// Builder for a resumable [`Client`], from [`Client::builder`].
///
/// The retry settings ([`policy`](Self::policy), [`connect_timeout`](Self::connect_timeout),
/// [`connect_timeout_until_next_retry`](Self::connect_timeout_until_next_retry),
/// [`stable_after`](Self::stable_after), [`retry_connect_if`](Self::retry_connect_if),
/// [`on_disconnect`](Self::on_disconnect), [`cancel_on`](Self::cancel_on)) are those of
/// [`reconnect::Builder`](crate::reconnect::Builder), with the same meanings and defaults:
/// exponential backoff from 100 ms to 10 s with ±10 % jitter and no limit, no connect timeout,
/// a 10 s stable period, every connect error retried except those
/// [`is_retryable_connect_error`](crate::reconnect::is_retryable_connect_error) rejects, no
/// hook, no cancellation. The session's own settings are a [`Config`] ([`config`](Self::config)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{GaveUp, GiveUpCause};
/// use staunch::resume::{Client, Config};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
/// };
/// let mut client = Client::builder(refuse)
///     .policy(Constant::new(Duration::from_secs(1)).take(3))
///     .connect_timeout(Duration::from_secs(5))
///     .config(Config::default().buffer_size(1 << 20))
///     .build();
/// let err = client.read(&mut [0; 8]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
/// assert_eq!(GaveUp::from_io_error(&err).unwrap().cause(), GiveUpCause::PolicyExhausted);
/// # }
/// ```
#[must_use = "call .build() to get the client"]
pub struct ClientBuilder<C: Connect> {
    connector: C,
    retry: RetryConfig<C>,
    config: Config,
}

impl<C: Connect> ClientBuilder<C> {
    retry_setters! {
        "resume::ClientBuilder";
        /// The delays between attempts: any `Iterator<Item = Duration> + Clone`; when it ends,
        /// the client gives up. As [`Builder::policy`](crate::reconnect::Builder::policy).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(1)).take(2))
        ///     .build();
        /// let start = Instant::now();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::PolicyExhausted, 3));
        /// assert_eq!(start.elapsed(), Duration::from_secs(2));
        /// # }
        /// ```
        policy;
        /// Fail a connection attempt that takes longer than `timeout`
        /// ([`Reason::ConnectTimeout`], retried). As
        /// [`Builder::connect_timeout`](crate::reconnect::Builder::connect_timeout). The wait
        /// for the server's welcome is watched by the [heartbeat](Config::heartbeat).
        ///
        /// # Panics
        ///
        /// Panics if `timeout` is zero: no attempt that has to wait for the network could succeed.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{GaveUp, Reason};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let mut client = Client::builder(hang)
        ///     .connect_timeout(Duration::from_secs(3))
        ///     .policy(std::iter::empty())
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let last = GaveUp::from_io_error(&err).unwrap().last_reason();
        /// assert!(matches!(last, Some(Reason::ConnectTimeout(_))));
        /// # }
        /// ```
        connect_timeout;
        /// Give each connection attempt until the next retry is due, and at least `min`, as
        /// [`Builder::connect_timeout_until_next_retry`](crate::reconnect::Builder::connect_timeout_until_next_retry)
        /// does. Replaces [`connect_timeout`](Self::connect_timeout).
        ///
        /// # Panics
        ///
        /// Panics if `min` is zero.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let mut client = Client::builder(hang)
        ///     .policy(Constant::new(Duration::from_secs(10)).take(1))
        ///     .connect_timeout_until_next_retry(Duration::from_secs(1))
        ///     .build();
        /// let start = Instant::now();
        /// client.read(&mut [0; 8]).await.unwrap_err();
        /// // The first attempt ran until the retry was due, the last one for `min`.
        /// assert_eq!(start.elapsed(), Duration::from_secs(10 + 1));
        /// # }
        /// ```
        connect_timeout_until_next_retry;
        /// How long a connection must stay up, from the server's welcome, before its loss starts
        /// the backoff (and the attempt count) over (10 s by default). As
        /// [`Builder::stable_after`](crate::reconnect::Builder::stable_after).
        stable_after;
        /// Which connect errors are worth retrying; on others the client gives up
        /// ([`GiveUpCause::Fatal`]). As
        /// [`Builder::retry_connect_if`](crate::reconnect::Builder::retry_connect_if).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::io;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Fatal, 1));
        /// # }
        /// ```
        retry_connect_if;
        /// An async hook run after each lost connection and each failed attempt, before the
        /// delay: it gets the [`HookContext`](crate::reconnect::HookContext) and the connector,
        /// and decides ([`Decision`]). As
        /// [`Builder::on_disconnect`](crate::reconnect::Builder::on_disconnect).
        ///
        /// # Examples
        ///
        /// ```
        /// use staunch::reconnect::{Decision, GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .on_disconnect(|ctx, _connector| {
        ///         let give_up = ctx.attempt() >= 3;
        ///         let decision = if give_up { Decision::GiveUp } else { Decision::Retry };
        ///         Box::pin(async move { decision })
        ///     })
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Hook, 3));
        /// # }
        /// ```
        on_disconnect;
        /// Stop reconnecting once `signal` completes: a delay, attempt or hook in progress is cut
        /// short and the client gives up ([`GiveUpCause::Cancelled`]); a live connection is left
        /// alone until it is lost. As [`Builder::cancel_on`](crate::reconnect::Builder::cancel_on).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(3600)))
        ///     .cancel_on(tokio::time::sleep(Duration::from_secs(1)))
        ///     .build();
        /// let start = Instant::now();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// assert_eq!(GaveUp::from_io_error(&err).unwrap().cause(), GiveUpCause::Cancelled);
        /// assert_eq!(start.elapsed(), Duration::from_secs(1)); // the hour-long wait cut short
        /// # }
        /// ```
        cancel_on;
    }

    /// The session's settings (the server-only ones are ignored). Default: `Config::default()`.
    ///
    /// # Examples
    ///
    /// Writes are taken into the replay buffer, up to its size, before any connection:
    ///
    /// ```
    /// use staunch::resume::{Client, Config};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
    /// let mut client = Client::builder(hang).config(Config::default().buffer_size(8)).build();
    /// assert_eq!(client.write(&[0; 16]).await?, 8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Build the client. Nothing is connected yet: the first operation starts connecting.
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::reconnect::ConnState;
    /// use staunch::resume::Client;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let client = Client::builder(|| async { Ok(tokio::io::duplex(64).0) }).build();
    /// assert!(matches!(client.state(), ConnState::Idle));
    /// assert_eq!(client.session_id(), None); // no server has welcomed it
    /// # }
    /// ```
    pub fn build(self) -> Client<C>
    where
        C::Io: AsyncRead + AsyncWrite + Unpin,
    {
        let (tx, _) = watch::channel(ConnState::Idle);
        let link = ClientLink {
            connector: self.connector,
            outage: Outage::new(&self.retry),
            retry: self.retry,
            state: LinkState::Idle,
            generation: 0,
            tx,
        };
        Client {
            engine: Engine::new(link, &self.config),
        }
    }
}

impl<C: Connect> fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("retry", &self.retry)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C> Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    /// A client that connects with `connector`, with the default settings (see
    /// [`ClientBuilder`]).
    pub fn new(connector: C) -> Self {
        Self::builder(connector).build()
    }

    /// A builder, to set the backoff policy, timeouts, hooks and the session's [`Config`].
    pub fn builder(connector: C) -> ClientBuilder<C> {
        ClientBuilder {
            connector,
            retry: RetryConfig::new(),
            config: Config::default(),
        }
    }

    /// The session's id, once the server has welcomed this client.
    pub fn session_id(&self) -> Option<SessionId> {
        self.engine.id()
    }

    /// A receiver of the state: every change is published. Subscribing does not drive the
    /// client; only its operations do.
    pub fn watch(&self) -> watch::Receiver<ConnState> {
        self.engine.link().tx.subscribe()
    }

    /// The current state (a snapshot of what [`watch`](Self::watch) publishes).
    pub fn state(&self) -> ConnState {
        self.engine.link().tx.borrow().clone()
    }

    /// Write all of `bytes` without copying them: the replay buffer keeps a reference to them
    /// until the peer acknowledges them, where [`write`](tokio::io::AsyncWriteExt::write)
    /// must copy what it is lent. Writes of under 4 KiB are copied anyway (and merged with
    /// their neighbours into one frame). Waits while the buffer is full, as a write does.
    ///
    /// For bulk transfers: the copy a borrowed write makes costs about as much CPU as the
    /// kernel's own copy into the socket.
    ///
    /// # Cancel safety
    ///
    /// As with [`write_all_buf`](tokio::io::AsyncWriteExt::write_all_buf), `bytes` is advanced
    /// past what was taken: if the future is dropped before it completes, what was taken will
    /// be delivered, and `bytes` holds the rest.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use bytes::Bytes;
    /// use staunch::resume::Client;
    /// use tokio::net::TcpStream;
    ///
    /// let mut client = Client::new(|| TcpStream::connect("127.0.0.1:7000"));
    /// let mut payload = Bytes::from(vec![0x5a; 1 << 20]);
    /// client.write_all_bytes(&mut payload).await?;
    /// assert!(payload.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write_all_bytes(&mut self, bytes: &mut Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.engine.poll_write_bytes(cx, bytes)).await
    }
}

// Nothing is pinned in place: the connect attempt, the hook and the timers are boxed.
impl<C> Unpin for Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
}

impl<C> fmt::Debug for Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.engine.link().tx.borrow())
            .field("engine", &self.engine)
            .finish()
    }
}

impl<C> AsyncRead for Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().engine.poll_read(cx, buf)
    }
}

impl<C> AsyncWrite for Client<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().engine.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().engine.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().engine.poll_shutdown(cx)
    }
}

/// Where the client's retrying stands.
enum LinkState<C: Connect> {
    /// Connect on the next poll.
    Idle,
    Connecting(Pin<Box<ConnectAttempt<C::Future>>>),
    /// A transport is attached; `welcomed`: when the server's welcome came.
    Attached {
        welcomed: Option<Instant>,
    },
    /// The `on_disconnect` hook decides.
    Deciding {
        hook: BoxFuture<Decision>,
        reason: Reason,
        next_delay: Option<Duration>,
    },
    Backoff(Pin<Box<Sleep>>),
    GaveUp(GaveUp),
}

struct ClientLink<C: Connect> {
    connector: C,
    retry: RetryConfig<C>,
    outage: Outage,
    state: LinkState<C>,
    /// Welcomes so far: the generation of the current (or last) connection.
    generation: u64,
    tx: watch::Sender<ConnState>,
}

impl<C: Connect> ClientLink<C> {
    fn publish(&self, state: ConnState) {
        log_event!(debug, ?state, "resume: client state changed");
        self.tx.send_replace(state);
    }

    /// A lost connection (with how long it was up since its welcome) or a failed attempt: the
    /// hook or the policy decides what follows.
    fn failed(&mut self, reason: Reason, uptime: Option<Duration>) {
        self.publish(ConnState::Failed {
            generation: self.generation,
            reason: reason.clone(),
        });
        let next = self.outage.after_failure(
            &mut self.retry,
            &mut self.connector,
            self.generation,
            reason.clone(),
            uptime,
        );
        match next {
            Next::Decided(delay) => self.back_off(delay, reason),
            Next::Ask(hook, next_delay) => {
                self.state = LinkState::Deciding {
                    hook,
                    reason,
                    next_delay,
                }
            }
        }
    }

    fn back_off(&mut self, delay: Result<Duration, GiveUpCause>, reason: Reason) {
        match delay {
            Ok(delay) => {
                self.state = LinkState::Backoff(Box::pin(tokio::time::sleep(delay)));
                self.publish(ConnState::Backoff {
                    attempt: self.outage.attempt().saturating_add(1),
                    delay,
                    reason,
                });
            }
            Err(cause) => self.give_up(cause, None),
        }
    }

    fn give_up(&mut self, cause: GiveUpCause, last: Option<Reason>) {
        self.retry.cancel = None;
        let gave_up = self.outage.give_up(cause, last);
        self.state = LinkState::GaveUp(gave_up.clone());
        self.publish(ConnState::GaveUp(gave_up));
    }
}

impl<C> Link for ClientLink<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    type Io = C::Io;

    fn poll_attach(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Attach<C::Io>>> {
        loop {
            if self.retry.poll_cancelled(cx) {
                self.give_up(GiveUpCause::Cancelled, None);
            }
            match &mut self.state {
                // Attached: only after the engine dropped the transport without saying why,
                // which it does not; connect again.
                LinkState::Idle | LinkState::Attached { .. } => {
                    let (attempt, timeout) = self.outage.begin_attempt(&self.retry);
                    let connect = self.retry.attempt(self.connector.connect(), timeout);
                    self.state = LinkState::Connecting(Box::pin(connect));
                    self.publish(ConnState::Connecting { attempt });
                }
                LinkState::Connecting(attempt) => match attempt.as_mut().poll(cx) {
                    Poll::Ready(Ok(io)) => {
                        self.state = LinkState::Attached { welcomed: None };
                        return Poll::Ready(Ok(Attach { io, peer: None }));
                    }
                    Poll::Ready(Err(reason)) if self.retry.is_fatal(&reason) => {
                        self.give_up(GiveUpCause::Fatal, Some(reason));
                    }
                    Poll::Ready(Err(reason)) => self.failed(reason, None),
                    Poll::Pending => return Poll::Pending,
                },
                LinkState::Deciding {
                    hook,
                    reason,
                    next_delay,
                } => {
                    let Poll::Ready(decision) = hook.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let (reason, next_delay) = (reason.clone(), *next_delay);
                    self.back_off(settle(decision, next_delay), reason);
                }
                LinkState::Backoff(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.state = LinkState::Idle;
                }
                LinkState::GaveUp(gave_up) => return Poll::Ready(Err(gave_up.to_io_error())),
            }
        }
    }

    fn replacement(&mut self, _cx: &mut Context<'_>) -> Option<Attach<C::Io>> {
        None
    }

    fn lost(&mut self, error: io::Error) {
        let uptime = match self.state {
            LinkState::Attached {
                welcomed: Some(since),
            } => Some(since.elapsed()),
            _ => None,
        };
        if let Some(uptime) = uptime {
            self.outage.connection_lost(uptime, &self.retry);
        }
        self.failed(Reason::Io(Arc::new(error)), uptime);
    }

    fn resumed(&mut self) {
        // The attempt count and the policy go on until this connection proves stable (see
        // `Outage::connection_lost`).
        self.generation += 1;
        self.state = LinkState::Attached {
            welcomed: Some(Instant::now()),
        };
        self.publish(ConnState::Connected {
            generation: self.generation,
        });
    }

    fn ended(&mut self, error: &io::Error) {
        if !matches!(self.state, LinkState::GaveUp(_)) {
            let reason = Reason::Io(Arc::new(io::Error::new(error.kind(), error.to_string())));
            self.give_up(GiveUpCause::Fatal, Some(reason));
        }
    }

    fn server_id(&self) -> Option<SessionId> {
        None
    }
}
