use std::collections::{BTreeMap, HashMap};
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

mod session;

use session::ServerLink;
pub use session::Session;

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
/// session is unknown. Dropping a [`Session`] removes it at once. It holds at most
/// [`Config::max_sessions`] sessions: a hello for one more is turned away (and counted in
/// [`SessionStats::over_limit`]), and its client tries again later. Expiring costs a lookup per
/// expired session, however many sessions are held.
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
///
/// # Examples
///
/// Connections that break every 5 seconds: the client comes back, its session takes the new
/// connection over, and the bytes arrive exactly once.
///
/// ```
/// use std::time::Duration;
/// use staunch::resume::{Accepted, Acceptor, Client, Config};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let acceptor = Acceptor::new(Config::default());
/// let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
/// let connector = move || {
///     let (client, mut near) = tokio::io::duplex(4096);
///     let (mut far, socket) = tokio::io::duplex(4096);
///     // The network between them: cut after 5 s.
///     let cut = Duration::from_secs(5);
///     tokio::spawn(async move {
///         tokio::time::timeout(cut, tokio::io::copy_bidirectional(&mut near, &mut far)).await
///     });
///     let (acceptor, accepted_tx) = (acceptor.clone(), accepted_tx.clone());
///     tokio::spawn(async move { accepted_tx.send(acceptor.accept(socket).await.unwrap()) });
///     async move { Ok(client) }
/// };
/// let client = tokio::spawn(async move {
///     let mut client = Client::new(connector);
///     client.write_all(b"one ").await?;
///     client.flush().await?;
///     tokio::time::sleep(Duration::from_secs(10)).await; // the connection is cut meanwhile
///     client.write_all(b"two").await?;
///     client.shutdown().await
/// });
/// let Some(Accepted::New(mut session)) = accepted.recv().await else { unreachable!() };
/// let mut got = Vec::new();
/// session.read_to_end(&mut got).await?;
/// assert_eq!(got, b"one two");
/// let Some(Accepted::Resumed(id)) = accepted.recv().await else { unreachable!() };
/// assert_eq!(id, session.id());
/// client.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Accepted<Io: AsyncRead + AsyncWrite + Unpin> {
    /// A client started a session: serve it.
    New(Session<Io>),
    /// A client came back to this session; its owner carries on with the connection.
    Resumed(SessionId),
}

/// Counts of an [`Acceptor`]'s sessions.
///
/// # Examples
///
/// ```
/// use staunch::resume::{Acceptor, Config};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// // A raw client's hello (see the protocol in the module docs).
/// let hello = |id: [u8; 16]| {
///     let mut frame = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
///     frame.extend(id);
///     frame.extend(0u64.to_be_bytes()); // received position
///     frame.extend(100_000u32.to_be_bytes()); // replay buffer size
///     frame
/// };
/// let acceptor = Acceptor::new(Config::default());
/// let mut accept = |frame: Vec<u8>| {
///     let acceptor = acceptor.clone();
///     async move {
///         let (mut client, socket) = tokio::io::duplex(1024);
///         client.write_all(&frame).await?;
///         acceptor.accept(socket).await
///     }
/// };
/// let session = accept(hello([0; 16])).await?; // all zeros: a new session
/// let err = accept(hello([7; 16])).await.unwrap_err(); // a session it never made
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// let stats = acceptor.stats();
/// assert_eq!((stats.created, stats.rejected, stats.active), (1, 1, 1));
/// drop(session);
/// assert_eq!(acceptor.stats().active, 0);
/// # Ok(())
/// # }
/// ```
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
    /// Hellos for a new session turned away because the acceptor held
    /// [`Config::max_sessions`] sessions (not counted in `rejected`).
    pub over_limit: u64,
    /// Sessions held now.
    pub active: u64,
}

struct Registry<Io> {
    config: Config,
    table: Mutex<Table<Io>>,
    created: AtomicU64,
    resumed: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
    over_limit: AtomicU64,
    /// Slots the expiry pass looked at.
    #[cfg(test)]
    examined: AtomicU64,
}

/// Where an away session waits in [`Table::expiries`]: its deadline, and a sequence number that
/// keeps keys unique.
type ExpiryKey = (Instant, u64);

/// The sessions, under one lock (taken before a slot's, never while holding one).
struct Table<Io> {
    sessions: HashMap<SessionId, Arc<Mutex<Slot<Io>>>>,
    /// The sessions whose client is away, by deadline: the due ones are taken from the front,
    /// without looking at the others.
    expiries: BTreeMap<ExpiryKey, SessionId>,
    next_key: u64,
}

impl<Io> Table<Io> {
    /// Remove `id` and tell its owner it expired, if it is still registered and (with `now`)
    /// its client is still away past the expiry; counted once, by whoever removes it.
    fn expire(&mut self, registry: &Registry<Io>, id: SessionId, now: Option<Instant>) {
        let Some(slot) = self.sessions.get(&id) else {
            return;
        };
        let mut slot = lock(slot);
        let expiry = registry.config.session_expiry;
        if now.is_some_and(|now| slot.away_since.is_none_or(|since| now < since + expiry)) {
            return;
        }
        registry.expired.fetch_add(1, Ordering::Relaxed);
        log_event!(info, ?id, "resume: session expired");
        slot.expired = true;
        slot.pending = None;
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        drop(slot);
        self.sessions.remove(&id);
    }
}

impl<Io> Registry<Io> {
    fn table(&self) -> std::sync::MutexGuard<'_, Table<Io>> {
        lock(&self.table)
    }

    /// Hold a new session `id` whose client is on `io`, unless the table is full (then `io`
    /// comes back).
    fn register(&self, id: SessionId, io: Io, peer: Peer) -> Result<Arc<Mutex<Slot<Io>>>, Io> {
        let mut table = self.table();
        if table.sessions.len() >= self.config.max_sessions {
            return Err(io);
        }
        let slot = Arc::new(Mutex::new(Slot {
            pending: Some((io, peer)),
            waker: None,
            away_since: None,
            expired: false,
        }));
        table.sessions.insert(id, slot.clone());
        Ok(slot)
    }

    /// Expire every session whose client stayed away too long.
    fn expire_due(&self, now: Instant) {
        let mut table = self.table();
        while let Some(entry) = table.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            #[cfg(test)]
            self.examined.fetch_add(1, Ordering::Relaxed);
            table.expire(self, id, Some(now));
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
                table: Mutex::new(Table {
                    sessions: HashMap::new(),
                    expiries: BTreeMap::new(),
                    next_key: 0,
                }),
                created: AtomicU64::new(0),
                resumed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                over_limit: AtomicU64::new(0),
                #[cfg(test)]
                examined: AtomicU64::new(0),
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
    /// - [`ConnectionRefused`](io::ErrorKind::ConnectionRefused): a new session while the
    ///   acceptor holds [`Config::max_sessions`]; the client is told so and tries again later;
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
        registry.expire_due(Instant::now());
        if hello.version != VERSION {
            registry.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(self.reject(io, RejectReason::UnsupportedVersion).await);
        }
        let Some(id) = hello.id else {
            let id = SessionId::random()?;
            let peer = Peer {
                received: 0,
                buffer: hello.buffer,
            };
            let slot = match registry.register(id, io, peer) {
                Ok(slot) => slot,
                Err(io) => {
                    registry.over_limit.fetch_add(1, Ordering::Relaxed);
                    return Err(self.reject(io, RejectReason::Full).await);
                }
            };
            registry.created.fetch_add(1, Ordering::Relaxed);
            log_event!(debug, ?id, "resume: session created");
            let link = ServerLink {
                id,
                slot,
                registry: registry.clone(),
                timer: Box::pin(tokio::time::sleep_until(Instant::now())),
                expiry_key: None,
            };
            return Ok(Accepted::New(Session {
                engine: Box::new(Engine::new(link, &registry.config)),
            }));
        };
        let slot = registry.table().sessions.get(&id).cloned();
        let Some(slot) = slot else {
            registry.rejected.fetch_add(1, Ordering::Relaxed);
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

    /// Tell the client why its hello is turned away (the caller counted it), then close.
    async fn reject(&self, mut io: Io, reason: RejectReason) -> io::Error {
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
            over_limit: registry.over_limit.load(Ordering::Relaxed),
            active: registry.table().sessions.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Park sessions `ids` whose client went away at `since`.
    fn park(
        registry: &Registry<tokio::io::DuplexStream>,
        ids: std::ops::Range<u64>,
        since: Instant,
    ) {
        for i in ids {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            let slot = Arc::new(Mutex::new(Slot {
                pending: None,
                waker: None,
                away_since: Some(since),
                expired: false,
            }));
            let mut table = registry.table();
            let key = (since + registry.config.session_expiry, table.next_key);
            table.next_key += 1;
            table.expiries.insert(key, SessionId(id));
            table.sessions.insert(SessionId(id), slot);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_pass_looks_only_at_due_sessions() {
        let acceptor = Acceptor::<tokio::io::DuplexStream>::new(
            Config::default().session_expiry(Duration::from_secs(60)),
        );
        let registry = &acceptor.registry;
        let start = Instant::now();
        park(registry, 1..2, start);
        tokio::time::advance(Duration::from_secs(1)).await;
        park(registry, 2..10_002, Instant::now());
        tokio::time::advance(Duration::from_secs(59)).await;
        registry.expire_due(Instant::now());
        let stats = acceptor.stats();
        assert_eq!((stats.expired, stats.active), (1, 10_000));
        let examined = registry.examined.load(Ordering::Relaxed);
        assert!(examined <= 2, "{examined} sessions looked at to expire one");
    }
}
