use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::engine::{Attach, Engine, Link};
use super::{Config, SessionId};
use crate::reconnect::Connect;

/// The client end of a resumable session: an `AsyncRead + AsyncWrite` byte stream that
/// reconnects through its connector and resumes the session, so every byte arrives exactly once
/// and in order. See the [module docs](super) for the protocol and its guarantees.
///
/// Nothing happens until the first operation: that connects and sends the hello. Writes are
/// buffered (up to [`Config::buffer_size`] unacknowledged bytes) and go out on the next write,
/// read or [`flush`](tokio::io::AsyncWriteExt::flush); [`shutdown`](tokio::io::AsyncWriteExt::shutdown)
/// returns once the server has acknowledged every byte.
///
/// After a lost connection the client waits for the next delay of the backoff iterator and
/// connects again; an exhausted iterator ends the session with the last connect error. The
/// iterator starts over (a clone of the one given) after every successful resume.
pub struct Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
    engine: Engine<ClientLink<C, B>>,
}

impl<C, B> Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
    /// A client that connects with `connector`, waits `backoff`'s delays between attempts, and
    /// uses the default [`Config`].
    pub fn new(connector: C, backoff: B) -> Self {
        Self::with_config(connector, backoff, Config::default())
    }

    /// A client with the given [`Config`] (the server-only settings are ignored).
    pub fn with_config(connector: C, backoff: B, config: Config) -> Self {
        let link = ClientLink {
            connector,
            backoff: backoff.clone(),
            fresh_backoff: backoff,
            connect_timeout: config.handshake_timeout,
            state: ConnectState::Idle,
        };
        Self {
            engine: Engine::new(link, &config),
        }
    }

    /// The session's id, once the server has welcomed this client.
    pub fn session_id(&self) -> Option<SessionId> {
        self.engine.id()
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
    /// let mut client = Client::new(|| TcpStream::connect("127.0.0.1:7000"), std::iter::empty());
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

// Nothing is pinned in place: the connect attempt and the timers are boxed.
impl<C, B> Unpin for Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
}

impl<C, B> fmt::Debug for Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("engine", &self.engine)
            .finish()
    }
}

impl<C, B> AsyncRead for Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().engine.poll_read(cx, buf)
    }
}

impl<C, B> AsyncWrite for Client<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
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

enum ConnectState<F> {
    /// Connect on the next poll.
    Idle,
    Connecting {
        attempt: Pin<Box<F>>,
        deadline: Pin<Box<Sleep>>,
    },
    Waiting(Pin<Box<Sleep>>),
    GaveUp(io::ErrorKind, String),
}

struct ClientLink<C: Connect, B> {
    connector: C,
    backoff: B,
    fresh_backoff: B,
    connect_timeout: Duration,
    state: ConnectState<C::Future>,
}

impl<C: Connect, B: Iterator<Item = Duration>> ClientLink<C, B> {
    /// Wait for the next delay, or give up with `error` when the backoff is exhausted.
    fn back_off(&mut self, error: io::Error) {
        self.state = match self.backoff.next() {
            Some(delay) => ConnectState::Waiting(Box::pin(tokio::time::sleep(delay))),
            None => ConnectState::GaveUp(
                error.kind(),
                format!("resume: gave up reconnecting, last error: {error}"),
            ),
        };
    }
}

impl<C, B> Link for ClientLink<C, B>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
    B: Iterator<Item = Duration> + Clone,
{
    type Io = C::Io;

    fn poll_attach(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Attach<C::Io>>> {
        loop {
            match &mut self.state {
                ConnectState::Idle => {
                    self.state = ConnectState::Connecting {
                        attempt: Box::pin(self.connector.connect()),
                        deadline: Box::pin(tokio::time::sleep(self.connect_timeout)),
                    };
                }
                ConnectState::Connecting { attempt, deadline } => {
                    let result = match attempt.as_mut().poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "resume: connect timed out",
                            ))
                        }
                    };
                    match result {
                        Ok(io) => {
                            self.state = ConnectState::Idle;
                            return Poll::Ready(Ok(Attach { io, peer: None }));
                        }
                        Err(error) => self.back_off(error),
                    }
                }
                ConnectState::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.state = ConnectState::Idle;
                }
                ConnectState::GaveUp(kind, message) => {
                    return Poll::Ready(Err(io::Error::new(*kind, message.clone())))
                }
            }
        }
    }

    fn replacement(&mut self, _cx: &mut Context<'_>) -> Option<Attach<C::Io>> {
        None
    }

    fn lost(&mut self) {
        self.back_off(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the connection was lost",
        ));
    }

    fn resumed(&mut self) {
        self.backoff = self.fresh_backoff.clone();
    }

    fn server_id(&self) -> Option<SessionId> {
        None
    }
}
