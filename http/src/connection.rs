//! One connection: [`Http`], its settings, and [`serve_connection`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use staunch::listen::Conn;
use tokio::time::{sleep_until, Instant, Sleep};
use tower_service::Service;

use crate::exec::{Executor, Scoped};
use crate::io::{Io, Link, Tracked};

/// The error of a connection: hyper's, or the cut at the end of an
/// [age grace](Http::max_connection_age_grace).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How connections are served: hyper-util's HTTP/1.1 + HTTP/2 builder, and the graceful
/// lifetime limits. Cheap to clone (the settings are shared); build it once, then serve every
/// connection with [`serve_connection`](Http::serve_connection).
///
/// The defaults: HTTP/1.1 and HTTP/2 (prior knowledge) on the same port, upgrades, tokio's
/// timer (so HTTP/1's header read timeout is on, 30 s), no age or idle limit.
///
/// # Examples
///
/// A staunch chain of your own, with the connection's lifetime limits:
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let http = staunch_http::Http::new()
///     .max_connection_age(Duration::from_secs(600))
///     .max_idle(Duration::from_secs(120));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let report = TcpListenerStream::new(listener)
///     .sleep_on_error(Duration::from_millis(100))
///     .spawn_serve(10_000, move |io, conn| http.serve_connection(io, app.clone(), conn))
///     .with_graceful_shutdown(tokio::signal::ctrl_c())
///     .grace(Duration::from_secs(10))
///     .await;
/// # Ok(())
/// # }
/// ```
///
/// The same on a port of its own, with one request:
///
/// ```
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
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
/// let http = staunch_http::Http::new().max_idle(Duration::from_secs(120));
/// let server = tokio::spawn(
///     TcpListenerStream::new(listener)
///         .sleep_on_error(Duration::from_millis(100))
///         .spawn_serve(16, move |io, conn| http.serve_connection(io, app.clone(), conn))
///         .with_graceful_shutdown(async { let _ = stopped.await; })
///         .grace(Duration::from_secs(5)),
/// );
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
#[derive(Clone)]
pub struct Http {
    settings: Arc<Settings>,
}

#[derive(Clone)]
pub(crate) struct Settings {
    builder: auto::Builder<Executor>,
    max_age: Option<Duration>,
    age_grace: Duration,
    max_idle: Option<Duration>,
    conn_extension: bool,
    /// Whether the listener may reclaim idle connections (then requests are counted in flight
    /// for it). [`serve`](crate::serve)'s never does.
    pub(crate) reclaim: bool,
}

/// The default of [`Http::max_connection_age_grace`].
const AGE_GRACE: Duration = Duration::from_secs(30);

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// The defaults (see the [type docs](Http)).
    pub fn new() -> Self {
        let mut builder = auto::Builder::new(Executor);
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        Http {
            settings: Arc::new(Settings {
                builder,
                max_age: None,
                age_grace: AGE_GRACE,
                max_idle: None,
                conn_extension: false,
                reclaim: true,
            }),
        }
    }

    pub(crate) fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Configure hyper-util's builder: HTTP/2 keepalive pings, buffer sizes, header limits, ...
    ///
    /// ```
    /// use std::time::Duration;
    /// let http = staunch_http::Http::new().hyper(|b| {
    ///     b.http2().keep_alive_interval(Duration::from_secs(30));
    ///     b.http1().max_buf_size(64 * 1024);
    /// });
    /// # drop(http);
    /// ```
    pub fn hyper(mut self, configure: impl FnOnce(&mut auto::Builder<Executor>)) -> Self {
        configure(&mut self.settings().builder);
        self
    }

    /// How long an HTTP/1 client may take to send a request's headers (Slowloris) before the
    /// connection is closed; `None` turns the limit off. The default is hyper's, 30 s.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings().builder.http1().header_read_timeout(timeout);
        self
    }

    /// Close each connection gracefully once it is `age` old, give or take 10% (chosen per
    /// connection, so that connections opened together do not all close together), as gRPC's
    /// `MAX_CONNECTION_AGE` does: clients reconnect, and load balancers see new connections.
    /// The connection is then cut if it is still open after the
    /// [age grace](Http::max_connection_age_grace). Off by default.
    ///
    /// Not applied to a connection once it has been upgraded (a WebSocket): it ends with its
    /// socket, or at the listener's shutdown deadline.
    ///
    /// # Panics
    ///
    /// Panics if `age` is zero.
    #[track_caller]
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        assert!(
            !age.is_zero(),
            "max_connection_age: the age must be greater than zero"
        );
        self.settings().max_age = Some(age);
        self
    }

    /// How long a connection closing at its [maximum age](Http::max_connection_age) or
    /// [idle limit](Http::max_idle) gets to finish its requests in flight before it is cut
    /// (gRPC's `MAX_CONNECTION_AGE_GRACE`). The default is 30 s.
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.settings().age_grace = grace;
        self
    }

    /// Close a connection gracefully once it has had no request in flight for `idle` (gRPC's
    /// `MAX_CONNECTION_IDLE`): an HTTP/1 keep-alive connection closes, an HTTP/2 one gets
    /// GOAWAY. Off by default.
    ///
    /// # Panics
    ///
    /// Panics if `idle` is zero.
    #[track_caller]
    pub fn max_idle(mut self, idle: Duration) -> Self {
        assert!(
            !idle.is_zero(),
            "max_idle: the limit must be greater than zero"
        );
        self.settings().max_idle = Some(idle);
        self
    }

    /// Give every request the connection's `Arc<Conn>` as an extension (off by default: it
    /// costs each request an allocation): a handler that outlives the request, such as the
    /// task of a WebSocket, awaits its `draining()` to close in time for the shutdown (see
    /// [upgraded connections](crate#upgraded-connections)).
    pub fn conn_extension(mut self, on: bool) -> Self {
        self.settings().conn_extension = on;
        self
    }

    /// Serve one connection with `service` (an axum `Router`, tonic `Routes`, any tower service
    /// of HTTP requests), until the client closes it or it closes gracefully (see the
    /// [crate docs](crate#what-a-connection-does)); after an upgrade, until the upgraded socket
    /// is dropped. Give it the [`Conn`] of staunch's `serve`/`spawn_serve`.
    ///
    /// With [`conn_extension`](Http::conn_extension), every request carries the connection's
    /// `Arc<Conn>` as an extension; when the peer address is known, every request carries axum's `ConnectInfo<SocketAddr>` (feature `axum`) and tonic's
    /// `TcpConnectInfo` (feature `tonic`). A client that closes before sending a byte is not an
    /// error.
    pub fn serve_connection<I, S, B>(
        &self,
        io: I,
        service: S,
        conn: Conn,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static
    where
        I: Io,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Error>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Error>,
    {
        run(self.settings.clone(), io, service, conn)
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("Http")
            .field("max_connection_age", &s.max_age)
            .field("max_connection_age_grace", &s.age_grace)
            .field("max_idle", &s.max_idle)
            .field("conn_extension", &s.conn_extension)
            .finish_non_exhaustive()
    }
}

/// [`Http::serve_connection`] with the default settings.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// TcpListenerStream::new(listener)
///     .sleep_on_error(Duration::from_millis(100))
///     .spawn_serve(10_000, move |io, conn| staunch_http::serve_connection(io, app.clone(), conn))
///     .with_graceful_shutdown(tokio::signal::ctrl_c())
///     .grace(Duration::from_secs(10))
///     .await;
/// # Ok(())
/// # }
/// ```
pub fn serve_connection<I, S, B>(
    io: I,
    service: S,
    conn: Conn,
) -> impl Future<Output = Result<(), Error>> + Send + 'static
where
    I: Io,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Error>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    static DEFAULT: OnceLock<Http> = OnceLock::new();
    DEFAULT
        .get_or_init(Http::new)
        .serve_connection(io, service, conn)
}

/// One connection, from its first byte to the drop of its socket.
async fn run<I, S, B>(settings: Arc<Settings>, io: I, service: S, conn: Conn) -> Result<(), Error>
where
    I: Io,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Error>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    let peer = io.peer();
    let conn = match peer {
        Some(peer) if conn.peer().is_none() => conn.with_peer(peer),
        _ => conn,
    };
    let state = Arc::new(State {
        conn: Arc::new(conn),
        in_flight: AtomicUsize::new(0),
        start: Instant::now(),
        idle_since_ns: AtomicU64::new(0),
        track_idle: settings.max_idle.is_some(),
        track_busy: settings.max_idle.is_some() || settings.reclaim,
        conn_extension: settings.conn_extension,
        peer,
    });
    if state.track_busy {
        // Waiting for its first request, a connection is idle (reclaim may pick it).
        state.conn.set_idle(true);
    }
    let link = Arc::new(Link::default());
    // Cancelled (the shutdown deadline, a time limit), this future cuts the socket wherever it
    // lives by then, an upgrade's task included.
    let _cut = CutOnDrop(link.clone());
    let io = TokioIo::new(Tracked::new(io, link.clone()));
    let service = Svc {
        inner: service,
        state: state.clone(),
    };
    let served = match serve_http(&settings, io, service, &state).await {
        // A client closed (or the drain came) before the first byte: hyper-util says
        // `Interrupted`; nothing was lost.
        Err(e) if e.downcast_ref().map(io::Error::kind) == Some(io::ErrorKind::Interrupted) => {
            Ok(())
        }
        served => served,
    };
    if !link.is_dropped() {
        // Upgraded: hyper gave the socket to the handler's task. It stays this connection's
        // (counted, holding its slot, cut with it) until that task drops it.
        if state.track_busy {
            state.conn.set_idle(false);
        }
        poll_fn(|cx| link.poll_dropped(cx)).await;
    }
    served
}

/// Drive hyper's connection, closing it gracefully when the listener, its age or its idle
/// time says so. Returns with hyper's connection (and so its socket, unless upgraded) dropped.
async fn serve_http<I, S, B>(
    settings: &Settings,
    io: TokioIo<Tracked<I>>,
    service: Svc<S>,
    state: &State,
) -> Result<(), Error>
where
    I: Io,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Error>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    // What hyper spawns (HTTP/2 streams' handlers) is this connection's: cut with it, and
    // waited for when it closes.
    let mut http = pin!(Scoped::connection(
        settings.builder.serve_connection_with_upgrades(io, service)
    ));
    let conn = &*state.conn;
    let mut age = pin!(Timer::at(
        settings.max_age.map(|age| state.start + jittered(age))
    ));
    let mut idle = pin!(Timer::at(settings.max_idle.map(|idle| state.start + idle)));
    let mut cut = pin!(Timer::at(None));
    let mut closing = false;
    loop {
        tokio::select! {
            // The connection first: a client taken from the backlog as the port closed starts
            // with its request waiting and `conn` already fired; it is answered (then closed),
            // not dropped.
            biased;
            done = http.as_mut() => {
                poll_fn(|cx| http.as_mut().poll_tasks(cx)).await;
                return done;
            }
            () = conn.draining(), if !closing => {
                closing = true;
                http.as_mut().inner().graceful_shutdown();
            }
            () = age.as_mut(), if !closing => {
                closing = true;
                http.as_mut().inner().graceful_shutdown();
                cut.as_mut().set(Instant::now() + settings.age_grace);
            }
            () = idle.as_mut(), if !closing => {
                let max_idle = settings.max_idle.unwrap_or_default();
                match state.idle_since() {
                    Some(since) if since + max_idle <= Instant::now() => {
                        closing = true;
                        http.as_mut().inner().graceful_shutdown();
                        cut.as_mut().set(Instant::now() + settings.age_grace);
                    }
                    Some(since) => idle.as_mut().set(since + max_idle),
                    None => idle.as_mut().set(Instant::now() + max_idle),
                }
            }
            () = cut.as_mut() => {
                return Err(format!(
                    "connection cut: still open {:?} after it was asked to close (max_connection_age_grace)",
                    settings.age_grace
                )
                .into());
            }
        }
    }
}

/// `age`, give or take 10%, chosen anew for each call.
fn jittered(age: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    age.mul_f64(0.9 + 0.2 * fraction)
}

struct CutOnDrop(Arc<Link>);

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        self.0.cut();
    }
}

pin_project! {
    /// A sleep that may be unset (then it never completes).
    struct Timer {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Timer {
    fn at(deadline: Option<Instant>) -> Self {
        Timer {
            sleep: deadline.map(sleep_until),
        }
    }

    fn set(self: Pin<&mut Self>, deadline: Instant) {
        let mut sleep = self.project().sleep;
        match sleep.as_mut().as_pin_mut() {
            Some(armed) => armed.reset(deadline),
            None => sleep.set(Some(sleep_until(deadline))),
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Pending,
        }
    }
}

/// What a connection and its requests share.
struct State {
    conn: Arc<Conn>,
    /// Requests whose response has not been sent yet.
    in_flight: AtomicUsize,
    start: Instant,
    /// When the last request ended, since `start` (kept only with `max_idle`).
    idle_since_ns: AtomicU64,
    track_idle: bool,
    /// Whether requests are counted in flight (for `max_idle`, or the listener's reclaim).
    track_busy: bool,
    conn_extension: bool,
    #[cfg_attr(not(any(feature = "axum", feature = "tonic")), allow(dead_code))]
    peer: Option<SocketAddr>,
}

impl State {
    /// Since when no request has been in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.start + Duration::from_nanos(self.idle_since_ns.load(Ordering::Acquire)))
    }

    /// Give a request what it may extract: the connection's handle and the peer's address.
    fn extend(&self, extensions: &mut http::Extensions) {
        if self.conn_extension {
            extensions.insert(self.conn.clone());
        }
        #[cfg(feature = "axum")]
        if let Some(peer) = self.peer {
            extensions.insert(::axum::extract::ConnectInfo(peer));
        }
        #[cfg(feature = "tonic")]
        if self.peer.is_some() {
            extensions.insert(::tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: self.peer,
            });
        }
    }
}

/// A request in flight, until its response has been sent (or it failed).
struct Busy(Arc<State>);

impl Busy {
    fn new(state: &Arc<State>) -> Self {
        if state.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            state.conn.set_idle(false);
        }
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let state = &*self.0;
        if state.track_idle {
            let since = state.start.elapsed().as_nanos() as u64;
            state.idle_since_ns.fetch_max(since, Ordering::AcqRel);
        }
        if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.conn.set_idle(true);
        }
    }
}

/// The tower service as hyper's: each request gets the connection's extensions and is counted
/// in flight until its response body has been sent.
struct Svc<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Svc<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = SvcFuture<S>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.state.extend(request.extensions_mut());
        SvcFuture {
            service: self.inner.clone(),
            request: Some(request),
            future: None,
            busy: self.state.track_busy.then(|| Busy::new(&self.state)),
        }
    }
}

pin_project! {
    /// tower's `Oneshot`, holding the request's [`Busy`] mark.
    struct SvcFuture<S: Service<Request<Incoming>>> {
        service: S,
        request: Option<Request<Incoming>>,
        #[pin]
        future: Option<S::Future>,
        busy: Option<Busy>,
    }
}

impl<S, B> Future for SvcFuture<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                let response = ready!(future.poll(cx))?;
                let busy = this.busy.take();
                return Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, busy })));
            }
            ready!(this.service.poll_ready(cx))?;
            let request = this
                .request
                .take()
                .expect("SvcFuture polled after completion");
            this.future.set(Some(this.service.call(request)));
        }
    }
}

pin_project! {
    /// A response body, holding its request's place in flight until it is dropped.
    pub(crate) struct ResponseBody<B> {
        #[pin]
        inner: B,
        busy: Option<Busy>,
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}
