//! Server side: the [`ListenExt`] combinators.

#[macro_use]
mod common;

mod bind;
mod bind_many;
mod classify;
mod connection;
mod driver;
mod local;
#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
mod reuseport;
mod setup_sockets;
pub(crate) mod shutdown;
mod sleep_on_error;
mod socket_options;
mod spawn_listen;
mod stats;

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_core::Stream;

pub use bind_many::{bind_many, AddrState, BindHandle, BindMany};
pub use classify::{is_connection_error, ErrorClass};
pub use connection::ConnectionOutput;
pub use local::Listen;
#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
pub use reuseport::bind_reuseport;
pub use setup_sockets::SetupSockets;
pub use shutdown::{Drain, GracefulShutdown, ShutdownReport};
pub use sleep_on_error::{
    AcceptAction, AcceptErrorEvent, NoHook, SleepOnError, MIN_ACCEPT_BACKOFF,
};
pub use socket_options::SocketOptions;
pub use spawn_listen::SpawnListen;
pub use stats::{Stats, StatsSnapshot};

/// Accept-loop combinators for every [`Stream`].
///
/// A server chain reads: accept stream → [`sleep_on_error`](ListenExt::sleep_on_error) →
/// `map(handle)` → [`listen`](ListenExt::listen) or [`spawn_listen`](ListenExt::spawn_listen).
pub trait ListenExt: Stream {
    /// Run `setup` on every accepted socket before it is passed on: set `TCP_NODELAY`,
    /// keepalive, buffer sizes ([`SocketOptions`] does the common ones), or anything else. A
    /// socket whose setup fails is dropped and passed on as a per-connection error (kind
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted), the original error as its
    /// source), which [`sleep_on_error`](ListenExt::sleep_on_error) skips and counts.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::{ListenExt, SocketOptions};
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// let options = SocketOptions::new().nodelay(true).keepalive(Duration::from_secs(60));
    /// TcpListenerStream::new(listener)
    ///     .setup_sockets(move |socket| options.apply(socket))
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .map(|_socket| async {})
    ///     .listen(1000)
    ///     .await;
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
    /// - Per-connection errors ([`ErrorClass::Connection`]: a client that reset before it was
    ///   accepted, `ECONNABORTED`, `EPROTO`, ...) are counted and skipped at once.
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
    /// - While `max_connections` are in flight the stream is not polled, so new clients wait in
    ///   the kernel's backlog (backpressure) instead of piling up in memory.
    /// - A connection future's output may be `()` or a `Result` with a displayable error; errors
    ///   are logged and counted, and a panic inside one connection is caught, logged and counted:
    ///   the others keep running.
    /// - When the stream ends it is dropped at once (closing the listening socket, so new clients
    ///   are refused rather than left hanging), and the future resolves when every in-flight
    ///   connection has finished.
    /// - Connection futures need not be `Send`; this works on a current-thread runtime. To use
    ///   every worker thread, see [`spawn_listen`](ListenExt::spawn_listen).
    ///
    /// Add [`connection_time_limit`](Listen::connection_time_limit) against slow clients and
    /// [`with_graceful_shutdown`](Listen::with_graceful_shutdown) to stop on a signal and drain
    /// with a deadline (or none, with `Duration::MAX`). `take_until(signal)` on the stream also
    /// stops accepting, but only once the stream is polled again, which a full listener does not
    /// do: `with_graceful_shutdown` closes the port at once, full or not.
    ///
    /// A panic is caught where the connection future is polled; one raised while dropping a
    /// connection future, or while formatting its error, is not, and reaches the listener.
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
        Listen::new(self, max_connections)
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
        SpawnListen::new(self, max_connections)
    }
}

impl<S: Stream + ?Sized> ListenExt for S {}
