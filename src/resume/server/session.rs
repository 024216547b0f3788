//! [`Session`]: one accepted session, and its link to the acceptor.

#[allow(unused_imports)]
use super::*;

/// The server end of one resumable session: an `AsyncRead + AsyncWrite` byte stream that
/// survives the client's reconnects. Made by [`Acceptor::accept`].
///
/// It is driven by its own operations: keep a read pending (as any server does) so that a
/// returning client is taken over and answered promptly. Dropping it ends the session.
///
/// # Examples
///
/// ```
/// use staunch::resume::{Accepted, Acceptor, Client, Config};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let acceptor = Acceptor::new(Config::default());
/// let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel();
/// let connector = move || {
///     let (client, socket) = tokio::io::duplex(4096);
///     let (acceptor, sessions_tx) = (acceptor.clone(), sessions_tx.clone());
///     tokio::spawn(async move { sessions_tx.send(acceptor.accept(socket).await.unwrap()) });
///     async move { Ok(client) }
/// };
/// let mut client = Client::new(connector);
/// let reading = tokio::spawn(async move {
///     let mut greeting = [0; 6];
///     client.read_exact(&mut greeting).await.map(|_| (greeting, client.session_id()))
/// });
/// let Some(Accepted::New(mut session)) = sessions.recv().await else { unreachable!() };
/// session.write_all(b"hello\n").await?;
/// session.flush().await?; // written bytes go out on the next operation
/// let (greeting, id) = reading.await.unwrap()?;
/// assert_eq!(&greeting, b"hello\n");
/// assert_eq!(id, Some(session.id()));
/// # Ok(())
/// # }
/// ```
pub struct Session<Io: AsyncRead + AsyncWrite + Unpin> {
    // Boxed: a session is moved around (in `Accepted`, into tasks) more than it is polled.
    pub(super) engine: Box<Engine<ServerLink<Io>>>,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Session<Io> {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.engine.link().id
    }

    /// Write all of `bytes` without copying them, as
    /// [`Client::write_all_bytes`](crate::resume::Client::write_all_bytes) does (same cancel safety).
    pub async fn write_all_bytes(&mut self, bytes: &mut Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.engine.poll_write_bytes(cx, bytes)).await
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> fmt::Debug for Session<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("engine", &self.engine)
            .finish()
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for Session<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().engine.poll_read(cx, buf)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Session<Io> {
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

pub(super) struct ServerLink<Io> {
    pub(super) id: SessionId,
    pub(super) slot: Arc<Mutex<Slot<Io>>>,
    pub(super) registry: Arc<Registry<Io>>,
    pub(super) timer: Pin<Box<Sleep>>,
    /// Where this session waits in [`Table::expiries`] while its client is away.
    pub(super) expiry_key: Option<ExpiryKey>,
}

impl<Io> Drop for ServerLink<Io> {
    fn drop(&mut self) {
        let mut table = self.registry.table();
        if let Some(key) = self.expiry_key.take() {
            table.expiries.remove(&key);
        }
        if table
            .sessions
            .get(&self.id)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            table.sessions.remove(&self.id);
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Link for ServerLink<Io> {
    type Io = Io;

    fn poll_attach(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Attach<Io>>> {
        let deadline = {
            let mut slot = lock(&self.slot);
            if slot.expired {
                return Poll::Ready(Err(expired()));
            }
            if let Some((io, peer)) = slot.pending.take() {
                return Poll::Ready(Ok(Attach {
                    io,
                    peer: Some(peer),
                }));
            }
            slot.waker = Some(cx.waker().clone());
            slot.away_since.unwrap_or_else(Instant::now) + self.registry.config.session_expiry
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            let mut table = self.registry.table();
            if let Some(key) = self.expiry_key.take() {
                table.expiries.remove(&key);
            }
            table.expire(&self.registry, self.id, None);
            return Poll::Ready(Err(expired()));
        }
        Poll::Pending
    }

    fn replacement(&mut self, cx: &mut Context<'_>) -> Option<Attach<Io>> {
        let mut slot = lock(&self.slot);
        match slot.pending.take() {
            Some((io, peer)) => Some(Attach {
                io,
                peer: Some(peer),
            }),
            None => {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                None
            }
        }
    }

    fn lost(&mut self, _error: io::Error) {
        let now = Instant::now();
        lock(&self.slot).away_since = Some(now);
        let mut table = self.registry.table();
        if let Some(key) = self.expiry_key.take() {
            table.expiries.remove(&key);
        }
        let key = (now + self.registry.config.session_expiry, table.next_key);
        table.next_key += 1;
        table.expiries.insert(key, self.id);
        self.expiry_key = Some(key);
    }

    fn resumed(&mut self) {
        lock(&self.slot).away_since = None;
        if let Some(key) = self.expiry_key.take() {
            self.registry.table().expiries.remove(&key);
        }
    }

    fn server_id(&self) -> Option<SessionId> {
        Some(self.id)
    }
}

fn expired() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "resume: the session expired: its client did not come back in time",
    )
}
