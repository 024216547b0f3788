//! [`serve`]: a whole server in one call.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming as Body_;
use hyper_util::server::conn::auto;
use staunch::listen::{ShutdownReport, SleepOnError};
use staunch::overload::{LimitPerPeer, LimitRate, MinReadRateStream, RejectExcess};
use staunch::{ListenExt, Stats};
use tower_service::Service;

use crate::{Error, Http, Io};

/// How long `sleep_on_error` waits after a resource error (`EMFILE`) before accepting again,
/// for a listener given to [`serve`] as it is.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The default of [`Server::max_connections`].
const MAX_CONNECTIONS: usize = 10_000;
/// The default of [`Server::grace`].
const GRACE: Duration = Duration::from_secs(10);

/// What [`serve`] accepts connections from: a listener, or a staunch accept stream.
///
/// - tokio's `TcpListener` and `UnixListener` (and tokio-stream's wrappers of them) are
///   accepted with [`sleep_on_error`](staunch::ListenExt::sleep_on_error) (100 ms after a
///   resource error such as `EMFILE`).
/// - A staunch stream (`sleep_on_error`, `limit_rate`, `reject_excess`, `limit_per_peer`,
///   `min_read_rate`, outermost) is used as it is: its accept errors are already dealt with.
/// - Any other stream of [`Io`] items (your own adapters: a TLS handshake, say), wrapped in
///   [`FromStream`].
///
/// (One blanket implementation for every stream is not possible next to the listeners': Rust
/// does not let a crate rule out that tokio makes `TcpListener` a `Stream` one day.)
pub trait Incoming {
    /// The connections' I/O.
    type Io: Io;
    /// The accept stream.
    type Stream: Stream<Item = Self::Io> + Send + 'static;
    /// The accept stream, ready for staunch's listener.
    fn into_stream(self) -> Self::Stream;
}

impl Incoming for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Stream = SleepOnError<tokio_stream::wrappers::TcpListenerStream>;
    fn into_stream(self) -> Self::Stream {
        tokio_stream::wrappers::TcpListenerStream::new(self).sleep_on_error(ACCEPT_BACKOFF)
    }
}

impl Incoming for tokio_stream::wrappers::TcpListenerStream {
    type Io = tokio::net::TcpStream;
    type Stream = SleepOnError<tokio_stream::wrappers::TcpListenerStream>;
    fn into_stream(self) -> Self::Stream {
        self.sleep_on_error(ACCEPT_BACKOFF)
    }
}

#[cfg(unix)]
impl Incoming for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Stream = SleepOnError<tokio_stream::wrappers::UnixListenerStream>;
    fn into_stream(self) -> Self::Stream {
        tokio_stream::wrappers::UnixListenerStream::new(self).sleep_on_error(ACCEPT_BACKOFF)
    }
}

#[cfg(unix)]
impl Incoming for tokio_stream::wrappers::UnixListenerStream {
    type Io = tokio::net::UnixStream;
    type Stream = SleepOnError<tokio_stream::wrappers::UnixListenerStream>;
    fn into_stream(self) -> Self::Stream {
        self.sleep_on_error(ACCEPT_BACKOFF)
    }
}

/// Any stream of [`Io`] items, for [`serve`] (see [`Incoming`]).
#[derive(Debug)]
pub struct FromStream<S>(pub S);

impl<S> Incoming for FromStream<S>
where
    S: Stream + Send + 'static,
    S::Item: Io,
{
    type Io = S::Item;
    type Stream = S;
    fn into_stream(self) -> S {
        self.0
    }
}

macro_rules! staunch_streams {
    ($($stream:ident < $($param:ident),* >),* $(,)?) => {$(
        impl<$($param),*> Incoming for $stream<$($param),*>
        where
            Self: Stream + Send + 'static,
            <Self as Stream>::Item: Io,
        {
            type Io = <Self as Stream>::Item;
            type Stream = Self;
            fn into_stream(self) -> Self {
                self
            }
        }
    )*};
}

staunch_streams!(
    SleepOnError<S, B, H>,
    LimitRate<S>,
    RejectExcess<S>,
    LimitPerPeer<S>,
    MinReadRateStream<S>,
);

/// Serve `service` on every connection of `incoming`, with staunch's protections on: the
/// one-call server. Set it up with the builder's methods, then `.await` it; it resolves with
/// the [`ShutdownReport`] after the shutdown.
///
/// - `incoming`: a `TcpListener` (accept errors such as `EMFILE` back off 100 ms instead of
///   spinning), or a staunch stream with controls of your own (see [`Incoming`]).
/// - `service`: an axum `Router`, tonic `Routes`, any tower service of HTTP requests.
///
/// The defaults:
///
/// - at most 10,000 connections at once ([`max_connections`](Server::max_connections)); more
///   clients wait in the kernel's backlog;
/// - each connection as [`Http`]'s defaults serve it: HTTP/1.1 and HTTP/2, upgrades, HTTP/1's
///   header read timeout (30 s);
/// - a graceful shutdown at Ctrl-C or SIGTERM (or the signal given to
///   [`with_graceful_shutdown`](Server::with_graceful_shutdown)): the port closes, requests in
///   flight finish and connections close (HTTP/1 `Connection: close`, HTTP/2 GOAWAY, idle ones
///   at once), and whatever is still open after [`grace`](Server::grace) (10 s) is cut,
///   upgraded connections included;
/// - counters: [`ServeFuture::stats`] while it runs, and in the report.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let report = staunch_http::serve(listener, app)
///     .max_connections(1024)
///     .max_connection_age(Duration::from_secs(600))
///     .grace(Duration::from_secs(20))
///     .await;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
///
/// With staunch's overload controls in front, and counters read while it runs:
///
/// ```no_run
/// use std::future::IntoFuture;
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use staunch::overload::OverloadExt;
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let accepted = TcpListenerStream::new(listener)
///     .sleep_on_error(Duration::from_millis(100))
///     .limit_per_peer(16);
/// let server = staunch_http::serve(accepted, app).into_future();
/// let stats = server.stats();
/// tokio::spawn(async move {
///     loop {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///         println!("{}", stats.snapshot());
///     }
/// });
/// println!("{}", server.await);
/// # Ok(())
/// # }
/// ```
pub fn serve<I, S, B>(incoming: I, service: S) -> Server<I::Stream, S>
where
    I: Incoming,
    S: Service<Request<Body_>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Error>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    Server {
        stream: incoming.into_stream(),
        service,
        http: Http::new(),
        max_connections: MAX_CONNECTIONS,
        grace: GRACE,
        signal: None,
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The builder of [`serve`]; `.await` it to run the server.
///
/// # Examples
///
/// ```
/// use std::future::IntoFuture;
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = staunch_http::serve(listener, app)
///     .max_connections(64)
///     .with_graceful_shutdown(async { let _ = stopped.await; })
///     .grace(Duration::from_secs(5))
///     .into_future();
/// let server = tokio::spawn(server);
/// let mut client = tokio::net::TcpStream::connect(addr).await?;
/// client.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await?;
/// let mut response = String::new();
/// tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut response)).await??;
/// assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
/// assert!(response.ends_with("hello\n"), "{response}");
/// stop.send(()).unwrap();
/// let report = tokio::time::timeout(Duration::from_secs(10), server).await??;
/// assert!(report.signalled);
/// # Ok(())
/// # }
/// ```
#[must_use = "a server does nothing until it is awaited"]
pub struct Server<St, S> {
    stream: St,
    service: S,
    http: Http,
    max_connections: usize,
    grace: Duration,
    signal: Option<Signal>,
}

impl<St, S> Server<St, S> {
    /// Serve at most `n` connections at once (10,000 by default); more clients wait in the
    /// kernel's backlog until one ends. Upgraded connections count until their socket is
    /// dropped.
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero.
    #[track_caller]
    pub fn max_connections(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "staunch_http::Server::max_connections: must be at least 1 (0 would never accept a connection)"
        );
        self.max_connections = n;
        self
    }

    /// Shut down gracefully when `signal` completes, instead of at Ctrl-C or SIGTERM.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future + Send + 'static,
    {
        self.signal = Some(Box::pin(async move {
            signal.await;
        }));
        self
    }

    /// After the shutdown signal, give connections `grace` to finish (10 s by default), then
    /// cut the rest. A zero grace cuts every connection as the port closes.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serve each connection with `http`'s settings, instead of [`Http::new`]'s.
    pub fn http(mut self, http: Http) -> Self {
        self.http = http;
        self
    }

    /// See [`Http::hyper`].
    pub fn hyper(mut self, configure: impl FnOnce(&mut auto::Builder<crate::Executor>)) -> Self {
        self.http = self.http.hyper(configure);
        self
    }

    /// See [`Http::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.http = self.http.header_read_timeout(timeout);
        self
    }

    /// See [`Http::max_connection_age`].
    #[track_caller]
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.http = self.http.max_connection_age(age);
        self
    }

    /// See [`Http::max_connection_age_grace`].
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.http = self.http.max_connection_age_grace(grace);
        self
    }

    /// See [`Http::conn_extension`].
    pub fn conn_extension(mut self, on: bool) -> Self {
        self.http = self.http.conn_extension(on);
        self
    }

    /// See [`Http::max_idle`].
    #[track_caller]
    pub fn max_idle(mut self, idle: Duration) -> Self {
        self.http = self.http.max_idle(idle);
        self
    }
}

impl<St, S, B> IntoFuture for Server<St, S>
where
    St: Stream + Send + 'static,
    St::Item: Io,
    S: Service<Request<Body_>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Error>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    type Output = ShutdownReport;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        let Server {
            stream,
            service,
            http,
            max_connections,
            grace,
            signal,
        } = self;
        let signal = signal.unwrap_or_else(terminate_or_interrupt);
        // This listener never reclaims: requests are counted in flight only for `max_idle`.
        let mut http = http;
        http.settings().reclaim = false;
        let server = stream
            .spawn_serve(max_connections, move |io, conn| {
                http.serve_connection(io, service.clone(), conn)
            })
            .with_graceful_shutdown(signal)
            .grace(grace);
        ServeFuture {
            stats: server.stats(),
            server: Box::pin(server),
        }
    }
}

impl<St: fmt::Debug, S> fmt::Debug for Server<St, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("stream", &self.stream)
            .field("http", &self.http)
            .field("max_connections", &self.max_connections)
            .field("grace", &self.grace)
            .field("signal", &self.signal.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// The running server of [`serve`]: resolves with the [`ShutdownReport`].
///
/// # Examples
///
/// Its counters, read while it runs:
///
/// ```
/// use std::future::IntoFuture;
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = staunch_http::serve(listener, app)
///     .with_graceful_shutdown(async { let _ = stopped.await; })
///     .into_future();
/// let stats = server.stats();
/// let server = tokio::spawn(server);
/// let mut client = tokio::net::TcpStream::connect(addr).await?;
/// client.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await?;
/// let mut response = String::new();
/// tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut response)).await??;
/// assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
/// assert!(response.ends_with("hello\n"), "{response}");
/// assert_eq!(stats.snapshot().accepted, 1);
/// stop.send(()).unwrap();
/// tokio::time::timeout(Duration::from_secs(10), server).await??;
/// # Ok(())
/// # }
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ServeFuture {
    stats: Stats,
    server: Pin<Box<dyn Future<Output = ShutdownReport> + Send>>,
}

impl ServeFuture {
    /// A handle to the server's counters, readable while it runs.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

impl Future for ServeFuture {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        self.server.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture")
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// Completes at Ctrl-C or SIGTERM. The handlers are installed now (a signal that comes
/// before the future is first polled is not lost, and does not kill the process).
fn terminate_or_interrupt() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        Box::pin(async move {
            let recv = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = recv(interrupt) => {}
                () = recv(terminate) => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
