//! The server side: accept streams that survive errors, and listeners that run connections.
//!
//! A server chain reads: accept stream → [`sleep_on_error`](ListenExt::sleep_on_error) →
//! [`spawn_serve(n, handle)`](ListenExt::spawn_serve) (or [`serve`](ListenExt::serve) to run
//! connections in the listener's own task), which returns a [`Listener`] that makes each
//! connection's [`Conn`] handle; then
//! [`with_graceful_shutdown(signal)`](Listener::with_graceful_shutdown). A handler that needs
//! no handle can be given with `map(handle)` and [`spawn_listen`](ListenExt::spawn_listen) or
//! [`listen`](ListenExt::listen) instead. [`ListenExt`], [`Stats`] and [`is_connection_error`]
//! are also at the crate root.
//!
//! Binding: [`bind`] gives a tokio `TcpListener` with a backlog of 1024 (tokio's own `bind` uses
//! 128), [`bind_many`] accepts on a set of addresses that can change while it runs (and
//! [`bind_many_from`] on sockets handed over by a previous process), and
//! `bind_reuseport` binds one socket per accept loop.

mod accept_error;
mod bind;
mod bind_many;
mod classify;
mod conn;
mod connection;
mod lifecycle;
mod link;
mod listener;
mod mode;
mod reclaim;
mod setup_sockets;
mod shed;
mod shutdown;
mod sleep_on_error;
mod stats;

cfg_reuseport! {
    mod per_core;
    mod reuseport;
    pub use per_core::{per_core, PerCore};
    pub use reuseport::bind_reuseport;
}

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_core::Stream;

pub use accept_error::{AcceptAction, AcceptErrorEvent};
pub use bind::{bind, bind_with_backlog};
pub use bind_many::{bind_many, bind_many_from, AddrState, BindHandle, BindMany};
pub use classify::{is_connection_error, ErrorClass};
pub use conn::{Conn, Idle, Serve};
pub use connection::ConnectionOutput;
pub use lifecycle::{ConnectionEnd, ConnectionEvent};
pub use listener::{Listen, Listener, SpawnListen};
pub use mode::{InTask, Mode, Spawned};
pub use setup_sockets::SetupSockets;
#[cfg(unix)]
pub use shed::ShedBacklog;
pub use shutdown::{GracefulShutdown, ShutdownReport};
pub use sleep_on_error::{SleepOnError, MIN_ACCEPT_BACKOFF};
pub use stats::{Stats, StatsSnapshot};

/// Accept-loop combinators for every [`Stream`].
///
/// A server chain reads: accept stream → [`sleep_on_error`](ListenExt::sleep_on_error) →
/// [`spawn_serve(n, handle)`](ListenExt::spawn_serve) or [`serve`](ListenExt::serve) (or
/// `map(handle)` → [`spawn_listen(n)`](ListenExt::spawn_listen) or
/// [`listen(n)`](ListenExt::listen), for handlers that need no [`Conn`]).
///
/// # Examples
///
/// ```
/// use std::{io, time::Duration};
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::Conn, ListenExt};
/// use tokio::time::{sleep, Instant};
///
/// /// Serve for `secs` seconds, or until the server shuts down.
/// async fn handle(secs: u64, conn: Conn) {
///     tokio::select! {
///         () = sleep(Duration::from_secs(secs)) => {}
///         () = conn.draining() => {}
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
/// let accepts = stream::iter([Ok(1), Err(reset), Ok(3600)]).chain(stream::pending());
/// let start = Instant::now();
/// let report = accepts
///     .sleep_on_error(Duration::from_millis(100))
///     .serve(1000, handle)
///     .connection_time_limit(Duration::from_secs(300))
///     .with_graceful_shutdown(sleep(Duration::from_secs(10)))
///     .grace(Duration::from_secs(5))
///     .await;
/// // The reset was skipped; the 1 s connection finished, the long one closed at the signal.
/// assert_eq!(report.stats.connection_errors, 1);
/// assert_eq!((report.stats.finished, report.ended, report.cancelled), (2, 1, 0));
/// assert_eq!(start.elapsed(), Duration::from_secs(10));
/// # }
/// ```
pub trait ListenExt: Stream {
    /// Run `setup` on every accepted socket before it is passed on: set `TCP_NODELAY`,
    /// keepalive, buffer sizes ([`SocketOptions`](crate::SocketOptions) does the common
    /// ones), or anything else. A
    /// socket whose setup fails is dropped and passed on as a per-connection error (kind
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted), the original error as its
    /// source), which [`sleep_on_error`](ListenExt::sleep_on_error) skips and counts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{pin::pin, time::Duration};
    /// use futures_util::StreamExt;
    /// use staunch::{ListenExt, SocketOptions};
    /// use tokio::time::timeout;
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let _client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
    /// let options = SocketOptions::new().nodelay(true).keepalive(Duration::from_secs(60));
    /// let mut accepts = pin!(TcpListenerStream::new(listener)
    ///     .setup_sockets(move |socket| options.apply(socket))
    ///     .sleep_on_error(Duration::from_millis(100)));
    /// let socket = timeout(Duration::from_secs(5), accepts.next()).await.unwrap().unwrap();
    /// assert!(socket.nodelay()?);
    /// # Ok(())
    /// # }
    /// ```
    fn setup_sockets<T, F>(self, setup: F) -> SetupSockets<Self, F>
    where
        Self: Stream<Item = io::Result<T>> + Sized,
        F: FnMut(&T) -> io::Result<()>,
    {
        SetupSockets::new(self, setup)
    }

    /// Turn a stream of accept results into a stream of accepted items that survives errors.
    ///
    /// - Per-connection errors ([`ErrorClass::Connection`]: `ECONNABORTED`, `EPROTO`, ...) are
    ///   counted and skipped at once. (On Linux a client that resets before it is accepted does
    ///   not make `accept` fail: the socket is accepted, and the reset shows up at its first
    ///   read, as a failed connection.)
    /// - Every other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, anything unknown) is logged
    ///   and the stream waits `delay` before polling the inner stream again, instead of spinning
    ///   at 100% CPU. Chained into [`listen`](ListenExt::listen) or
    ///   [`spawn_listen`](ListenExt::spawn_listen), a resource-error wait ends early when one of
    ///   the listener's connections ends, since that freed a descriptor.
    /// - It never ends because of an error: only when the inner stream ends (or when a give-up
    ///   limit set with [`give_up_after`](SleepOnError::give_up_after) or a finite
    ///   [`backoff`](SleepOnError::backoff) policy is reached).
    ///
    /// `delay` is tk-listen's fixed sleep; [`backoff`](SleepOnError::backoff) replaces it with
    /// any policy (exponential growth with a cap, reset after a successful accept), and
    /// [`on_error`](SleepOnError::on_error) sees every error with its class and the delay chosen.
    ///
    /// # Panics
    ///
    /// Panics if `delay` is zero: a zero delay would be the busy loop this method exists to
    /// prevent. (Delays a custom policy yields are raised to [`MIN_ACCEPT_BACKOFF`] instead.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let emfile = || io::Error::from_raw_os_error(24);
    /// let accepts = stream::iter([
    ///     Ok("a"),
    ///     Err(io::ErrorKind::ConnectionReset.into()), // skipped at once
    ///     Err(emfile()),                              // waits 100 ms
    ///     Ok("b"),
    /// ]);
    /// let start = tokio::time::Instant::now();
    /// let items: Vec<_> = accepts.sleep_on_error(Duration::from_millis(100)).collect().await;
    /// assert_eq!(items, ["a", "b"]);
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # }
    /// ```
    #[track_caller]
    fn sleep_on_error<T>(self, delay: Duration) -> SleepOnError<Self>
    where
        Self: Stream<Item = io::Result<T>> + Sized,
    {
        SleepOnError::new(self, delay)
    }

    /// Run each item (a connection future) with at most `max_connections` in flight, inside
    /// this future's own task.
    ///
    /// - While `max_connections` are in flight, new clients wait in the kernel's backlog
    ///   (backpressure) instead of piling up in memory. The stream is still polled, so that it
    ///   can end (`take_until(signal)` closes the port even when full); a connection it yields
    ///   meanwhile is held, and started first when a slot frees.
    /// - A connection future's output may be `()` or a `Result` with a displayable error; errors
    ///   are logged and counted, and a panic inside one connection is caught, logged and counted:
    ///   the others keep running.
    /// - When the stream ends it is dropped at once (closing the listening socket, so new clients
    ///   are refused rather than left hanging), and the future resolves when every in-flight
    ///   connection has finished.
    /// - Connection futures need not be `Send`; this works on a current-thread runtime.
    /// - One task is one thread: on a multi-thread runtime, the accept loop and every connection
    ///   still run on whichever single worker polls this future, so a busy server uses one
    ///   core (measured: under half the connections per second of a bare accept+spawn loop on
    ///   16 cores). To use every core, run one loop per core with
    ///   [`per_core`] (a current-thread runtime and an `SO_REUSEPORT`
    ///   socket per thread, connections never leave the thread that accepted them), or spawn
    ///   each connection with [`spawn_listen`](ListenExt::spawn_listen).
    ///
    /// Add [`connection_time_limit`](Listener::connection_time_limit) against slow clients and
    /// [`with_graceful_shutdown`](Listener::with_graceful_shutdown) to stop on a signal and drain
    /// (with a deadline if given one). To tell connections that a shutdown has started, give
    /// the handler to [`serve`](ListenExt::serve) instead, which hands each connection its
    /// [`Conn`].
    ///
    /// # Panics in connections
    ///
    /// A panic is caught where the connection future is polled (and where its output is judged
    /// and dropped), counted in [`StatsSnapshot::panicked`], and logged; the other connections
    /// and the listener go on. One raised while dropping a connection future that did not finish
    /// (at a time limit or shutdown) is not caught.
    ///
    /// The synchronous part of the closure given to `map` runs while the listener polls its
    /// accept stream, not in the connection future. A panic there (say
    /// `s.peer_addr().unwrap()` on a client that has already reset) is caught too, and counted
    /// as a connection that panicked; the socket it held is dropped. Only a stream that panics
    /// 10,000 times in a row, with no item and no `Pending` between (a generator that panics on
    /// every poll once it has panicked), is taken to be broken: its panic then unwinds out of
    /// the listener instead of being caught in a busy loop. Fallible work is still best done
    /// inside the `async` block, where an error is an error, not a panic:
    ///
    /// ```
    /// # use futures_util::StreamExt;
    /// # use staunch::ListenExt;
    /// # fn serve(accepts: impl futures_util::Stream<Item = tokio::net::TcpStream>) {
    /// let server = accepts
    ///     .map(|socket| async move {
    ///         let peer = socket.peer_addr()?; // ENOTCONN if the client has already reset
    ///         # let _ = peer;
    ///         std::io::Result::Ok(())
    ///     })
    ///     .listen(1000);
    /// # drop(server);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if `max_connections` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::ListenExt;
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::{TcpListener, TcpStream};
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// async fn handle(mut socket: TcpStream) -> std::io::Result<()> {
    ///     socket.write_all(b"hello\n").await
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:8080").await?;
    /// TcpListenerStream::new(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .map(handle)
    ///     .listen(1000)
    ///     .await;
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    fn listen(self, max_connections: usize) -> Listen<Self>
    where
        Self: Sized,
        Self::Item: Future,
        <Self::Item as Future>::Output: ConnectionOutput,
    {
        Listener::new(self, max_connections)
    }

    /// Like [`listen`](ListenExt::listen), but each connection future is spawned onto the tokio
    /// runtime (so it must be `Send + 'static`) and connections run on every worker thread. The
    /// accept stream and the count stay in this future; `max_connections` bounds the spawned
    /// tasks alive at once. It must run inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if `max_connections` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let server = stream::iter(0..100)
    ///     .map(|n| async move { if n % 10 == 0 { Err("bad request") } else { Ok(()) } })
    ///     .spawn_listen(8);
    /// let stats = server.stats();
    /// tokio::spawn(server).await.unwrap();
    /// assert_eq!((stats.snapshot().finished, stats.snapshot().failed), (90, 10));
    /// # }
    /// ```
    #[track_caller]
    fn spawn_listen(self, max_connections: usize) -> SpawnListen<Self>
    where
        Self: Sized,
        Self::Item: Future + Send + 'static,
        <Self::Item as Future>::Output: ConnectionOutput,
    {
        Listener::new(self, max_connections)
    }

    /// Like `map(handler).listen(max_connections)`, but `handler` gets each connection's
    /// [`Conn`] with it: the handle that fires when the listener's graceful shutdown starts (or
    /// when the listener reclaims the connection while idle), and with which the connection
    /// marks itself idle. The listener makes one per connection, starts them all at the
    /// signal of [`with_graceful_shutdown`](Listener::with_graceful_shutdown), and reclaims
    /// through them ([`reclaim_idle`](Listener::reclaim_idle)). Connections run inside this
    /// future's own task, as with [`listen`](ListenExt::listen); [`spawn_serve`](ListenExt::spawn_serve)
    /// spawns each one.
    ///
    /// # Panics
    ///
    /// Panics if `max_connections` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::stream;
    /// use staunch::{listen::Conn, ListenExt};
    /// use tokio::time::sleep;
    ///
    /// /// A keep-alive connection: serves until told to close.
    /// async fn handle(_request: u32, conn: Conn) {
    ///     conn.draining().await;
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = tokio::time::Instant::now();
    /// let report = stream::iter(0..3)
    ///     .chain(stream::pending())
    ///     .serve(10, handle)
    ///     .with_graceful_shutdown(sleep(Duration::from_secs(1)))
    ///     .grace(Duration::from_secs(30))
    ///     .await;
    /// // Every connection closed at the signal, none at the deadline.
    /// assert_eq!((report.ended, report.cancelled), (3, 0));
    /// assert_eq!(start.elapsed(), Duration::from_secs(1));
    /// # }
    /// # use futures_util::StreamExt;
    /// ```
    #[track_caller]
    fn serve<H, F>(self, max_connections: usize, handler: H) -> Listen<Serve<Self, H>>
    where
        Self: Sized,
        H: FnMut(Self::Item, Conn) -> F,
        F: Future,
        F::Output: ConnectionOutput,
    {
        Listener::with_conns(max_connections, |conns| {
            Serve::new(self, handler, conns.clone())
        })
    }

    /// Like [`serve`](ListenExt::serve), but each connection future is spawned onto the tokio
    /// runtime, as with [`spawn_listen`](ListenExt::spawn_listen): the usual choice for a
    /// server on a multi-thread runtime.
    ///
    /// # Panics
    ///
    /// Panics if `max_connections` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::{listen::Conn, ListenExt};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use tokio::net::TcpStream;
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// /// Echo lines until the client leaves or the server shuts down.
    /// async fn handle(mut socket: TcpStream, conn: Conn) -> std::io::Result<()> {
    ///     let mut buf = [0; 1024];
    ///     loop {
    ///         let n = tokio::select! {
    ///             n = socket.read(&mut buf) => n?,
    ///             () = conn.draining() => return Ok(()), // idle: close at once
    ///         };
    ///         if n == 0 {
    ///             return Ok(());
    ///         }
    ///         socket.write_all(&buf[..n]).await?;
    ///     }
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
    /// let report = TcpListenerStream::new(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .spawn_serve(10_000, handle)
    ///     .with_graceful_shutdown(tokio::signal::ctrl_c())
    ///     .grace(Duration::from_secs(10))
    ///     .await;
    /// println!("{report}");
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    fn spawn_serve<H, F>(self, max_connections: usize, handler: H) -> SpawnListen<Serve<Self, H>>
    where
        Self: Sized,
        H: FnMut(Self::Item, Conn) -> F,
        F: Future + Send + 'static,
        F::Output: ConnectionOutput,
    {
        Listener::with_conns(max_connections, |conns| {
            Serve::new(self, handler, conns.clone())
        })
    }
}

impl<S: Stream + ?Sized> ListenExt for S {}
