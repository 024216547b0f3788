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

mod builder;

pub use builder::ClientBuilder;

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
