//! Resumable sessions: a byte stream that survives reconnects and delivers every byte exactly
//! once, in order, when both ends speak this protocol.
//!
//! A plain reconnecting client ([`reconnect`](crate::reconnect)) cannot recover the bytes the
//! kernel had accepted when the connection died: TCP cannot resume a stream. This module moves
//! the bookkeeping into the application layer, as ASP.NET SignalR's stateful reconnect does:
//! each end numbers the bytes it sends, keeps them until the peer acknowledges them, and after a
//! reconnect resends from the position the peer says it reached.
//!
//! - [`Client`] connects through any [`Connect`](crate::reconnect::Connect) connector and
//!   reconnects on the retry core of [`reconnect`](crate::reconnect), with the same settings
//!   ([`ClientBuilder`]), hooks, cancellation, [`GaveUp`](crate::reconnect::GaveUp) and
//!   watchable [`ConnState`](crate::reconnect::ConnState);
//! - [`Acceptor`] turns accepted connections into server [`Session`]s and hands a returning
//!   client's connection to its session (it fits in a [`ListenExt`](crate::ListenExt)
//!   pipeline, see its example).
//!
//! Both are `AsyncRead + AsyncWrite`.
//!
//! # Guarantees
//!
//! - **Exactly once, in order.** A byte a write accepted reaches the peer's reader exactly
//!   once and in order, across any number of reconnects, as long as the session lives.
//! - **Bounded memory.** Each end keeps at most [`Config::buffer_size`] unacknowledged bytes
//!   (default 100,000); a write beyond that waits (backpressure) until the peer's reader has
//!   taken enough bytes. Small writes are gathered in blocks of up to 64 KiB, so the heap they
//!   take stays within about twice the buffer (blocks held whole) however small they are.
//! - **Acknowledged means read.** The position an end acknowledges counts the bytes its reader
//!   has taken, not the bytes the transport delivered, so a successful
//!   [`shutdown`](tokio::io::AsyncWriteExt::shutdown) means the peer's reader has every byte.
//! - **A session ends** with an error, not a silent loss: the client gives up when its retry
//!   policy runs out (or its hook or cancellation says so), the server expires a session after [`Config::session_expiry`] with no
//!   reconnect, and malformed input closes that session (only) with
//!   [`InvalidData`](std::io::ErrorKind::InvalidData).
//!
//! Both ends are driven by their own operations (there is no background task): keep a read
//! pending while the peer may send, as with any socket. A write does not wait for the network:
//! written bytes go out on the next operation, so [`flush`](tokio::io::AsyncWriteExt::flush)
//! after a burst. Like TCP, two ends that only write and never read stop once both buffers are
//! full.
//!
//! # Throughput
//!
//! - **The buffer is also the window.** At most [`Config::buffer_size`] bytes travel
//!   unacknowledged, so a bulk transfer moves at most one buffer per round trip (the time for
//!   the bytes to reach the peer's reader and its ack to come back), as a TCP window does. The
//!   default 100,000 bytes (SignalR's) suits messages; give bulk transfers 1 to 4 MiB.
//! - **A borrowed write is copied** into the replay buffer, which costs about as much CPU as
//!   the kernel's own copy into the socket. [`Client::write_all_bytes`] and
//!   [`Session::write_all_bytes`] keep owned [`Bytes`](bytes::Bytes) as they are instead.
//! - Scenario 10 of the benchmark program measures both against the plain reconnecting
//!   adapter, one way over loopback with 64 KiB writes.
//!
//! # Security
//!
//! A session id is a bearer secret: whoever presents it takes the session over (the current
//! connection is replaced). Ids are 128 bits from the operating system's random source, but the
//! protocol neither encrypts nor authenticates: **on an untrusted network, run it over TLS**
//! (the connector and the acceptor both take any `AsyncRead + AsyncWrite` transport). A hello
//! with a wrong or expired id never joins another session: the server answers with a reject
//! frame, the client fails with [`NotFound`](std::io::ErrorKind::NotFound).
//!
//! # Protocol (version 1)
//!
//! Every frame is a 5-byte header, kind (1 byte) and payload length (`u32`, big-endian),
//! followed by the payload. Integers are big-endian. A position is a `u64` count of the bytes an
//! end has sent since the session began; the end-of-stream marker (FIN) takes one position after
//! the last byte.
//!
//! | kind | name | payload | sent by |
//! |---|---|---|---|
//! | 1 | HELLO | version `u8` (1), session id (16 bytes, all zero for a new session), received position `u64`, replay buffer size `u32` | client, first frame on each connection |
//! | 2 | WELCOME | session id (16 bytes), received position `u64`, replay buffer size `u32` | server, answer to a hello |
//! | 3 | REJECT | reason `u8`: 1 unknown or expired session, 2 unsupported version, 3 the server is full (the client tries again later) | server, answer to a hello; then it closes |
//! | 4 | DATA | 1 to 1,048,576 bytes of the stream | both |
//! | 5 | ACK | received position `u64` | both |
//! | 6 | ACK REQUEST | none | both |
//! | 7 | FIN | none | both, after the last data |
//!
//! - **Handshake.** On every connection the client sends HELLO with the position it has
//!   received up to; the server answers WELCOME with its own (a new session gets a fresh id from
//!   the server). Each end then sends, from the position the other reported, everything it still
//!   holds, so nothing is sent twice on one connection and the receiver drops nothing. The
//!   client sends nothing else until the WELCOME.
//! - **Data** frames carry no position: on each connection they continue from the position the
//!   receiver reported in the handshake.
//! - **Acks** carry the receiver's position: sent each time the reader has taken a quarter of
//!   the peer's replay buffer (as its hello or welcome announced), on a FIN, and at once on an
//!   ACK REQUEST; after a request, again as soon as the reader takes more bytes. The sender then
//!   frees those bytes. Acking by a share of the sender's buffer keeps it writing while an ack
//!   travels, and wakes it only when an ack frees a good share of its buffer.
//! - **ACK REQUEST** is sent when the buffer is full, and as a heartbeat when a connection has
//!   been silent for [`Config::heartbeat`]; silent for another heartbeat, the connection is
//!   taken as dead and replaced (a partition raises no error by itself). An end keeps watching
//!   its connection while a write waits and the peer's data waits for the reader: it reads up
//!   to 32 KiB ahead, which shows a close or a reset at once; past that it cannot hear the peer
//!   (its acks and heartbeats queue behind the unread data), so a reader that takes nothing
//!   for two heartbeats while a write waits costs a reconnect, and never a hang.
//! - **FIN** is sent by [`shutdown`](tokio::io::AsyncWriteExt::shutdown), which returns once it
//!   is acknowledged; the peer's reader then reads end of stream.
//! - **Errors.** An unknown kind, a length that does not fit the kind, a data frame over 1,048,576
//!   bytes, an ack beyond the bytes sent, a resume position outside what the sender still
//!   holds, data after a FIN, or any frame but WELCOME or REJECT before the WELCOME: the session
//!   fails with [`InvalidData`](std::io::ErrorKind::InvalidData), every later operation returns
//!   that error, and the server's other sessions go on.
//! - **A connection that ends inside a frame** is a lost connection, not malformed input: the
//!   partial frame is dropped and the session resumes on the next connection from the last
//!   byte its reader took. A truncated hello fails that [`Acceptor::accept`] with
//!   [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof).
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use staunch::backoff::Exponential;
//! use staunch::resume::Client;
//! use tokio::io::AsyncWriteExt;
//! use tokio::net::TcpStream;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backoff = Exponential::builder().max(Duration::from_secs(5)).build()?;
//! let mut client = Client::builder(|| TcpStream::connect("127.0.0.1:8080"))
//!     .policy(backoff)
//!     .connect_timeout(Duration::from_secs(10))
//!     .build();
//! client.write_all(b"every byte of this arrives exactly once").await?;
//! client.shutdown().await?; // returns once the server's reader has it all
//! # Ok(())
//! # }
//! ```

mod client;
mod engine;
mod frame;
mod replay;
mod server;

use std::fmt;
use std::io;
use std::time::Duration;

pub use client::{Client, ClientBuilder};
pub use server::{Accepted, Acceptor, Session, SessionStats};

/// The settings of a resumable session (both ends) and of an [`Acceptor`]. A client's retry
/// settings are its [`ClientBuilder`]'s.
///
/// # Examples
///
/// A session whose client never comes back expires:
///
/// ```
/// use std::time::Duration;
/// use staunch::resume::{Accepted, Acceptor, Config};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// // A hello for a new session, as a raw client sends it (see the module docs' protocol).
/// let mut hello = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
/// hello.extend([0; 16]); // no session id yet
/// hello.extend(0u64.to_be_bytes()); // received position
/// hello.extend(100_000u32.to_be_bytes()); // replay buffer size
/// let acceptor = Acceptor::new(Config::default().session_expiry(Duration::from_secs(30)));
/// let (mut client, socket) = tokio::io::duplex(1024);
/// client.write_all(&hello).await?;
/// let Accepted::New(mut session) = acceptor.accept(socket).await? else { unreachable!() };
/// drop(client); // gone for good
/// let start = Instant::now();
/// let err = session.read(&mut [0; 8]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// assert_eq!(start.elapsed(), Duration::from_secs(30));
/// assert_eq!(acceptor.stats().expired, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    buffer_size: usize,
    heartbeat: Duration,
    session_expiry: Duration,
    handshake_timeout: Duration,
    max_sessions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            buffer_size: 100_000,
            heartbeat: Duration::from_secs(15),
            session_expiry: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 10_000,
        }
    }
}

impl Config {
    /// The most unacknowledged bytes an end keeps for replay; a write waits while the buffer is
    /// full. Default 100,000. It bounds throughput to a buffer per round trip: see
    /// [Throughput](self#throughput).
    ///
    /// # Panics
    ///
    /// If `bytes` is zero: no write could ever complete.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::resume::{Accepted, Acceptor, Config};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// // A hello for a new session, as a raw client sends it (see the module docs' protocol).
    /// let mut hello = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
    /// hello.extend([0; 16]); // no session id yet
    /// hello.extend(0u64.to_be_bytes()); // received position
    /// hello.extend(100_000u32.to_be_bytes()); // replay buffer size
    /// let acceptor = Acceptor::new(Config::default().buffer_size(8));
    /// let (mut client, socket) = tokio::io::duplex(1024);
    /// client.write_all(&hello).await?;
    /// let Accepted::New(mut session) = acceptor.accept(socket).await? else { unreachable!() };
    /// assert_eq!(session.write(&[0; 16]).await?, 8); // the buffer takes 8 bytes
    /// // Full until the client acknowledges, which this one never does: the next write waits.
    /// let next = tokio::time::timeout(Duration::from_secs(1), session.write(&[0; 1])).await;
    /// assert!(next.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "resume::Config::buffer_size must be at least 1");
        self.buffer_size = bytes;
        self
    }

    /// How long a connection may be silent before an end asks for an ack; silent for as long
    /// again, the connection counts as dead and is replaced. Default 15 s.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    ///
    /// # Examples
    ///
    /// A silent connection gets an ACK REQUEST frame after one heartbeat:
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::resume::{Accepted, Acceptor, Config};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// // A hello for a new session, as a raw client sends it (see the module docs' protocol).
    /// let mut hello = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
    /// hello.extend([0; 16]); // no session id yet
    /// hello.extend(0u64.to_be_bytes()); // received position
    /// hello.extend(100_000u32.to_be_bytes()); // replay buffer size
    /// let acceptor = Acceptor::new(Config::default().heartbeat(Duration::from_secs(5)));
    /// let (mut client, socket) = tokio::io::duplex(1024);
    /// client.write_all(&hello).await?;
    /// let Accepted::New(mut session) = acceptor.accept(socket).await? else { unreachable!() };
    /// tokio::spawn(async move { session.read(&mut [0; 8]).await }); // serve it
    /// let mut welcome = [0; 5 + 28];
    /// client.read_exact(&mut welcome).await?;
    /// assert_eq!(welcome[0], 2); // WELCOME
    /// let start = Instant::now();
    /// let mut frame = [0; 5];
    /// client.read_exact(&mut frame).await?;
    /// assert_eq!(frame, [6, 0, 0, 0, 0]); // ACK REQUEST, empty
    /// assert_eq!(start.elapsed(), Duration::from_secs(5));
    /// # Ok(())
    /// # }
    /// ```
    pub fn heartbeat(mut self, period: Duration) -> Self {
        assert!(
            !period.is_zero(),
            "resume::Config::heartbeat must not be zero"
        );
        self.heartbeat = period;
        self
    }

    /// Server: how long a session waits for its client to come back before it expires.
    /// Default 60 s. The [type's example](Config#examples) shows a session expiring.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// Server: the most sessions an [`Acceptor`] holds (live, or waiting for their client to
    /// come back). A hello for a new session beyond it is turned away: the client is told the
    /// server is full and tries again after its next delay, and the hello is counted in
    /// [`SessionStats::over_limit`]; returning clients are still taken. Default 10,000.
    ///
    /// Each hello for a new session holds a session until it expires, even if its client is
    /// gone at once: the limit bounds what such hellos cost.
    ///
    /// # Panics
    ///
    /// If `sessions` is zero: no session could ever start.
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::resume::{Acceptor, Config};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// // A hello for a new session, as a raw client sends it (see the module docs' protocol).
    /// let mut hello = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
    /// hello.extend([0; 16]); // no session id yet
    /// hello.extend(0u64.to_be_bytes()); // received position
    /// hello.extend(100_000u32.to_be_bytes()); // replay buffer size
    /// let acceptor = Acceptor::new(Config::default().max_sessions(1));
    /// let mut sessions = Vec::new();
    /// for _ in 0..2 {
    ///     let (mut client, socket) = tokio::io::duplex(1024);
    ///     client.write_all(&hello).await?;
    ///     sessions.push((acceptor.accept(socket).await, client));
    /// }
    /// assert!(sessions[0].0.is_ok());
    /// let err = sessions[1].0.as_ref().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused); // "full": try again later
    /// let stats = acceptor.stats();
    /// assert_eq!((stats.active, stats.over_limit), (1, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        assert!(
            sessions > 0,
            "resume::Config::max_sessions must be at least 1"
        );
        self.max_sessions = sessions;
        self
    }

    /// Server: how long a new connection may take to send its hello. Default 10 s. (A client's
    /// connect attempts are bounded by
    /// [`ClientBuilder::connect_timeout`](ClientBuilder::connect_timeout).)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::resume::{Acceptor, Config};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let acceptor = Acceptor::new(Config::default().handshake_timeout(Duration::from_secs(2)));
    /// let (_silent, socket) = tokio::io::duplex(1024);
    /// let start = Instant::now();
    /// let err = acceptor.accept(socket).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # }
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// A session's name: 128 bits from the operating system's random source, and a bearer secret
/// (see the [module docs](self#security)). `Debug` shows only its first 4 bytes.
///
/// # Examples
///
/// ```
/// use staunch::resume::{Accepted, Acceptor, Config};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// // A hello for a new session, as a raw client sends it (see the module docs' protocol).
/// let mut hello = vec![1, 0, 0, 0, 29, 1]; // HELLO, 29 bytes, version 1
/// hello.extend([0; 16]); // no session id yet
/// hello.extend(0u64.to_be_bytes()); // received position
/// hello.extend(100_000u32.to_be_bytes()); // replay buffer size
/// let acceptor = Acceptor::new(Config::default());
/// let (mut client, socket) = tokio::io::duplex(1024);
/// client.write_all(&hello).await?;
/// let Accepted::New(session) = acceptor.accept(socket).await? else { unreachable!() };
/// let id = session.id();
/// assert_ne!(id.to_bytes(), [0; 16]); // all zeros asks for a new session
/// let shown = format!("{id:?}"); // never the whole secret, in logs
/// assert!(shown.starts_with("SessionId(") && shown.ends_with("…)"), "{shown}");
/// assert_eq!(shown.chars().count(), "SessionId(01234567…)".chars().count());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// The id's bytes, as they go on the wire.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    #[cfg(unix)]
    fn random() -> io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0; 16];
        loop {
            std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
            // All zeros means "a new session" on the wire.
            if bytes != [0; 16] {
                return Ok(Self(bytes));
            }
        }
    }

    #[cfg(not(unix))]
    fn random() -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "resume: no OS random source on this platform",
        ))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "SessionId({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}
