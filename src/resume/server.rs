use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::engine::{Attach, Engine, Link, Peer};
use super::frame::{self, RejectReason, HELLO_LEN, VERSION};
use super::{Config, SessionId};

/// The server end of resumable sessions: turns accepted connections into sessions.
///
/// [`accept`](Acceptor::accept) reads a connection's hello. A client starting a session gets a
/// new [`Session`] to serve; a client coming back is handed to its session's owner (the task
/// holding the [`Session`]), which takes the connection over on its next poll. Cloning shares
/// the sessions.
///
/// A session whose client stays away longer than [`Config::session_expiry`] expires: it is
/// removed, counted in [`SessionStats::expired`], its owner's next operation fails with
/// [`TimedOut`](io::ErrorKind::TimedOut), and a client that comes back later is told the
/// session is unknown. Dropping a [`Session`] removes it at once.
///
/// # Examples
///
/// With [`ListenExt`](crate::ListenExt): the task that accepted a new session serves it for its
/// whole life; tasks that brought a returning client back finish at once.
///
/// ```no_run
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::resume::{Accepted, Acceptor, Config};
/// use staunch::ListenExt;
/// use tokio::net::TcpListener;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # async fn run() -> std::io::Result<()> {
/// let acceptor = Acceptor::new(Config::default().session_expiry(Duration::from_secs(30)));
/// let listener = TcpListener::bind("127.0.0.1:8080").await?;
/// TcpListenerStream::new(listener)
///     .sleep_on_error(Duration::from_millis(100))
///     .map(|socket| {
///         let acceptor = acceptor.clone();
///         async move {
///             match acceptor.accept(socket).await? {
///                 Accepted::New(session) => {
///                     let (mut reader, mut writer) = tokio::io::split(session);
///                     tokio::io::copy(&mut reader, &mut writer).await?;
///                     writer.shutdown().await
///                 }
///                 Accepted::Resumed(_) => Ok(()),
///             }
///         }
///     })
///     .listen(10_000)
///     .await;
/// # Ok(())
/// # }
/// # use tokio::io::AsyncWriteExt;
/// ```
pub struct Acceptor<Io> {
    registry: Arc<Registry<Io>>,
}

impl<Io> Clone for Acceptor<Io> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
        }
    }
}

impl<Io> fmt::Debug for Acceptor<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("config", &self.registry.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What [`Acceptor::accept`] made of a connection.
#[derive(Debug)]
pub enum Accepted<Io: AsyncRead + AsyncWrite + Unpin> {
    /// A client started a session: serve it.
    New(Session<Io>),
    /// A client came back to this session; its owner carries on with the connection.
    Resumed(SessionId),
}

/// Counts of an [`Acceptor`]'s sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Sessions started.
    pub created: u64,
    /// Connections that resumed a session.
    pub resumed: u64,
    /// Hellos turned away: an unknown or expired session id, or an unsupported version.
    pub rejected: u64,
    /// Sessions removed because their client stayed away longer than the expiry.
    pub expired: u64,
    /// Sessions held now.
    pub active: u64,
}

struct Registry<Io> {
    config: Config,
    sessions: Mutex<HashMap<SessionId, Arc<Mutex<Slot<Io>>>>>,
    created: AtomicU64,
    resumed: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
}

impl<Io> Registry<Io> {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Mutex<Slot<Io>>>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expire `id` if it is still registered; counted once, by whoever removes it.
    fn expire(&self, id: SessionId) {
        let removed = self.sessions().remove(&id);
        if let Some(slot) = removed {
            self.expired.fetch_add(1, Ordering::Relaxed);
            log_event!(info, ?id, "resume: session expired");
            let mut slot = lock(&slot);
            slot.expired = true;
            slot.pending = None;
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Expire every session whose client stayed away too long.
    fn sweep(&self, now: Instant) {
        let overdue: Vec<SessionId> = self
            .sessions()
            .iter()
            .filter(|(_, slot)| {
                lock(slot)
                    .away_since
                    .is_some_and(|since| now >= since + self.config.session_expiry)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            self.expire(id);
        }
    }
}

/// What a session's owner and the acceptor share.
struct Slot<Io> {
    /// A connection the client came back on, with the position its hello reported.
    pending: Option<(Io, Peer)>,
    waker: Option<Waker>,
    /// When the session lost its connection; `None` while one is attached.
    away_since: Option<Instant>,
    expired: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<Io> Acceptor<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// An acceptor with no sessions yet.
    pub fn new(config: Config) -> Self {
        Self {
            registry: Arc::new(Registry {
                config,
                sessions: Mutex::new(HashMap::new()),
                created: AtomicU64::new(0),
                resumed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                expired: AtomicU64::new(0),
            }),
        }
    }

    /// Read the hello on a new connection and start or resume its session.
    ///
    /// # Errors
    ///
    /// The connection is dropped (no session is touched) and:
    /// - [`NotFound`](io::ErrorKind::NotFound): the hello names a session this acceptor does
    ///   not hold (a wrong id, or one that expired); the client is told so and gives up;
    /// - [`Unsupported`](io::ErrorKind::Unsupported): another protocol version;
    /// - [`InvalidData`](io::ErrorKind::InvalidData): not a hello;
    /// - [`TimedOut`](io::ErrorKind::TimedOut): no hello within [`Config::handshake_timeout`];
    /// - any error reading the connection, or from the OS random source for a new id.
    pub async fn accept(&self, mut io: Io) -> io::Result<Accepted<Io>> {
        let registry = &self.registry;
        let mut hello = [0; HELLO_LEN];
        tokio::time::timeout(registry.config.handshake_timeout, io.read_exact(&mut hello))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resume: no hello in time"))??;
        let hello = frame::parse_hello(&hello)?;
        registry.sweep(Instant::now());
        if hello.version != VERSION {
            return Err(self.reject(io, RejectReason::UnsupportedVersion).await);
        }
        let Some(id) = hello.id else {
            let id = SessionId::random()?;
            let slot = Arc::new(Mutex::new(Slot {
                pending: Some((
                    io,
                    Peer {
                        received: 0,
                        buffer: hello.buffer,
                    },
                )),
                waker: None,
                away_since: None,
                expired: false,
            }));
            registry.sessions().insert(id, slot.clone());
            registry.created.fetch_add(1, Ordering::Relaxed);
            log_event!(debug, ?id, "resume: session created");
            let link = ServerLink {
                id,
                slot,
                registry: registry.clone(),
                timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            };
            return Ok(Accepted::New(Session {
                engine: Box::new(Engine::new(link, &registry.config)),
            }));
        };
        let slot = registry.sessions().get(&id).cloned();
        let Some(slot) = slot else {
            return Err(self.reject(io, RejectReason::UnknownSession).await);
        };
        let mut slot = lock(&slot);
        slot.pending = Some((
            io,
            Peer {
                received: hello.received,
                buffer: hello.buffer,
            },
        ));
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        registry.resumed.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted::Resumed(id))
    }

    async fn reject(&self, mut io: Io, reason: RejectReason) -> io::Error {
        self.registry.rejected.fetch_add(1, Ordering::Relaxed);
        log_event!(debug, ?reason, "resume: hello rejected");
        let frame = frame::reject_frame(reason);
        let _ = tokio::time::timeout(self.registry.config.handshake_timeout, async {
            io.write_all(&frame).await?;
            io.shutdown().await
        })
        .await;
        reason.to_error()
    }
}

impl<Io> Acceptor<Io> {
    /// The counts so far.
    pub fn stats(&self) -> SessionStats {
        let registry = &self.registry;
        SessionStats {
            created: registry.created.load(Ordering::Relaxed),
            resumed: registry.resumed.load(Ordering::Relaxed),
            rejected: registry.rejected.load(Ordering::Relaxed),
            expired: registry.expired.load(Ordering::Relaxed),
            active: registry.sessions().len() as u64,
        }
    }
}

/// The server end of one resumable session: an `AsyncRead + AsyncWrite` byte stream that
/// survives the client's reconnects. Made by [`Acceptor::accept`].
///
/// It is driven by its own operations: keep a read pending (as any server does) so that a
/// returning client is taken over and answered promptly. Dropping it ends the session.
pub struct Session<Io: AsyncRead + AsyncWrite + Unpin> {
    // Boxed: a session is moved around (in `Accepted`, into tasks) more than it is polled.
    engine: Box<Engine<ServerLink<Io>>>,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Session<Io> {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.engine.link().id
    }

    /// Write all of `bytes` without copying them, as
    /// [`Client::write_all_bytes`](super::Client::write_all_bytes) does (same cancel safety).
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

struct ServerLink<Io> {
    id: SessionId,
    slot: Arc<Mutex<Slot<Io>>>,
    registry: Arc<Registry<Io>>,
    timer: Pin<Box<Sleep>>,
}

impl<Io> Drop for ServerLink<Io> {
    fn drop(&mut self) {
        let mut sessions = self.registry.sessions();
        if sessions
            .get(&self.id)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            sessions.remove(&self.id);
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
            self.registry.expire(self.id);
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
        lock(&self.slot).away_since = Some(Instant::now());
    }

    fn resumed(&mut self) {
        lock(&self.slot).away_since = None;
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
