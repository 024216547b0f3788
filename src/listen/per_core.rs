use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::resume_unwind;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_core::Stream;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::listener::Listener;
use super::mode::Mode;
use super::reuseport::bind_reuseport;
use super::shutdown::ShutdownReport;
use super::stats::Stats;

/// Run one accept loop per thread, each on its own current-thread runtime with its own
/// `SO_REUSEPORT` socket bound to `addr` ([`bind_reuseport`]), so that accepting and serving
/// scale with the cores while every connection stays on the thread that accepted it.
///
/// A [`listen`](crate::ListenExt::listen) in one task uses one thread, even on a multi-thread
/// runtime, and [`spawn_listen`](crate::ListenExt::spawn_listen) still accepts on one: this
/// layout gives each core an accept loop of its own, and the kernel spreads new connections
/// across them (evenly on Linux; other systems with `SO_REUSEPORT` may not balance).
///
/// `setup` runs once on each thread, inside its runtime, with that thread's listening socket,
/// and builds the loop: typically `TcpListenerStream::new(listener).sleep_on_error(..)
/// .map(handle).listen(max)`. Its connection futures need not be `Send`. `max` applies per loop.
///
/// Returns once every loop is running. The [`PerCore`] handle has the merged [`Stats`] of all
/// the loops and one [`shutdown`](PerCore::shutdown) for all of them. The loop `setup` returns
/// is a plain [`Listener`] (from `listen`, `serve` or their spawning forms, with any time limit
/// or reclaim): `per_core` adds the graceful shutdown itself.
///
/// # Errors
///
/// Fails with [`InvalidInput`](io::ErrorKind::InvalidInput) if `threads` is zero, and with the
/// error of the bind, of a thread or runtime that could not start, or of registering a socket
/// with its runtime; the loops already started are stopped first.
///
/// # Panics
///
/// If `setup` panics, the loops already started are stopped and the panic goes on in the caller.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::ListenExt;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// let server = staunch::listen::per_core("127.0.0.1:0".parse().unwrap(), 2, |listener| {
///     TcpListenerStream::new(listener)
///         .sleep_on_error(Duration::from_millis(100))
///         .map(|mut socket: tokio::net::TcpStream| async move {
///             let mut buf = [0; 4];
///             socket.read_exact(&mut buf).await?;
///             socket.write_all(&buf).await
///         })
///         .listen(10_000)
/// })?;
///
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// std::io::Write::write_all(&mut client, b"ping")?;
/// let mut echo = [0; 4];
/// std::io::Read::read_exact(&mut client, &mut echo)?;
/// assert_eq!(&echo, b"ping");
///
/// let report = server.shutdown(Duration::from_secs(5));
/// assert_eq!((report.stats.accepted, report.stats.connections), (1, 1));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn per_core<F, S, M>(addr: SocketAddr, threads: usize, setup: F) -> io::Result<PerCore>
where
    F: Fn(TcpListener) -> Listener<S, M> + Send + Sync + 'static,
    S: Stream,
    M: Mode<S::Item>,
{
    let sockets = bind_reuseport(addr, threads)?;
    let local_addr = sockets[0].local_addr()?;
    let setup = Arc::new(setup);
    let (stop, _) = watch::channel(None);
    let mut server = PerCore {
        local_addr,
        stats: Stats::merged([]),
        per_loop: Vec::with_capacity(threads),
        stop,
        loops: Vec::with_capacity(threads),
    };
    for (i, socket) in sockets.into_iter().enumerate() {
        let (started_tx, started) = mpsc::channel();
        let (setup, stop) = (setup.clone(), server.stop.subscribe());
        let spawned = std::thread::Builder::new()
            .name(format!("staunch-per-core-{i}"))
            .spawn(move || run_loop(socket, &*setup, stop, started_tx));
        let started = match spawned {
            Ok(handle) => {
                server.loops.push(handle);
                started.recv()
            }
            Err(e) => Ok(Err(e)),
        };
        match started {
            Ok(Ok(stats)) => server.per_loop.push(stats),
            Ok(Err(e)) => {
                server.stop_all(Duration::ZERO);
                return Err(e);
            }
            // `setup` panicked: the thread ended without a word.
            Err(mpsc::RecvError) => {
                let failed = server.loops.pop().expect("the thread that panicked");
                server.stop_all(Duration::ZERO);
                match failed.join() {
                    Err(panic) => resume_unwind(panic),
                    Ok(_) => unreachable!("an accept loop ended before it started"),
                }
            }
        }
    }
    server.stats = Stats::merged(server.per_loop.iter().cloned());
    Ok(server)
}

/// One thread of [`per_core`]: its runtime, its loop, its report.
fn run_loop<S, M>(
    socket: std::net::TcpListener,
    setup: &dyn Fn(TcpListener) -> Listener<S, M>,
    stop: watch::Receiver<Option<Duration>>,
    started: mpsc::Sender<io::Result<Stats>>,
) -> ShutdownReport
where
    S: Stream,
    M: Mode<S::Item>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return not_started(&started, e),
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(socket) {
            Ok(listener) => setup(listener),
            Err(e) => return not_started(&started, e),
        };
        let _ = started.send(Ok(listener.stats()));
        drop(started);
        serve_until_stopped(listener, stop).await
    })
}

fn not_started(started: &mpsc::Sender<io::Result<Stats>>, e: io::Error) -> ShutdownReport {
    let _ = started.send(Err(e));
    ShutdownReport {
        signalled: true,
        ..ShutdownReport::default()
    }
}

/// Run `listener` until `stop` carries a grace period (or its sender is gone: no grace), then
/// shut it down gracefully with that grace.
async fn serve_until_stopped<S, M>(
    listener: Listener<S, M>,
    stop: watch::Receiver<Option<Duration>>,
) -> ShutdownReport
where
    S: Stream,
    M: Mode<S::Item>,
{
    let mut signal = stop.clone();
    listener
        .with_graceful_shutdown(async move {
            let _ = signal.wait_for(Option::is_some).await;
        })
        // A dropped `PerCore` drops the sender: then no grace at all.
        .grace(Duration::ZERO)
        .late_grace(stop)
        .await
}

/// The accept loops of [`per_core`], one per thread: their merged [`Stats`] and one
/// [`shutdown`](PerCore::shutdown).
///
/// Dropping it stops every loop with no grace period (their connections are cancelled) and does
/// not wait for the threads.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::ListenExt;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// let server = staunch::listen::per_core("127.0.0.1:0".parse().unwrap(), 2, |listener| {
///     TcpListenerStream::new(listener)
///         .sleep_on_error(Duration::from_millis(100))
///         .map(|mut socket: tokio::net::TcpStream| async move {
///             let mut byte = [0; 1];
///             socket.read_exact(&mut byte).await?;
///             socket.write_all(&byte).await
///         })
///         .listen(100)
/// })?;
/// assert_eq!(server.threads(), 2);
/// let per_loop = server.stats_per_loop().to_vec();
/// for _ in 0..4 {
///     let addr = server.local_addr();
///     let mut client = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
///     client.set_read_timeout(Some(Duration::from_secs(5)))?;
///     client.write_all(b"x")?;
///     client.read_exact(&mut [0; 1])?; // served by one loop or the other
/// }
/// let report = server.shutdown(Duration::from_secs(5));
/// let served: u64 = per_loop.iter().map(|loop_stats| loop_stats.snapshot().finished).sum();
/// assert_eq!((served, report.stats.finished), (4, 4));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PerCore {
    local_addr: SocketAddr,
    stats: Stats,
    per_loop: Vec<Stats>,
    /// Carries the grace period to every loop. Dropped, it stops them with none.
    stop: watch::Sender<Option<Duration>>,
    loops: Vec<JoinHandle<ShutdownReport>>,
}

impl PerCore {
    /// The address every loop's socket is bound to (the port chosen, if `addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters of every loop, merged (see [`Stats::merged`]).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The counters of each loop, in the order of their threads: how evenly the kernel spreads
    /// connections.
    pub fn stats_per_loop(&self) -> &[Stats] {
        &self.per_loop
    }

    /// The number of accept loops (threads).
    pub fn threads(&self) -> usize {
        self.loops.len()
    }

    /// Stop every loop with the same [`with_graceful_shutdown`](Listener::with_graceful_shutdown)
    /// each would have on its own (close every socket at once, taking the clients queued in its
    /// backlog, fire the connections' [`Conn`](super::Conn) handles, give in-flight connections
    /// `grace` to finish, cancel the rest), wait for the threads, and return one report for all of them: `ended` and
    /// `cancelled` summed, `stats` merged, `signalled` if every loop was still running when the
    /// signal came.
    ///
    /// It blocks the calling thread until every loop has ended, at most about `grace`: from
    /// async code, call it inside `tokio::task::spawn_blocking`.
    ///
    /// # Panics
    ///
    /// If a loop's thread panicked (a panic in the accept stream that the listener lets
    /// through), that panic goes on here, after the other loops have been stopped.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let reports = self.stop_all(grace);
        let mut all = ShutdownReport {
            signalled: true,
            stats: self.stats.snapshot(),
            ..ShutdownReport::default()
        };
        let mut panic = None;
        for report in reports {
            match report {
                Ok(r) => all.merge(&r),
                Err(p) => panic = panic.or(Some(p)),
            }
        }
        if let Some(panic) = panic {
            resume_unwind(panic);
        }
        all
    }

    /// Signal every loop and join their threads.
    fn stop_all(&mut self, grace: Duration) -> Vec<std::thread::Result<ShutdownReport>> {
        self.stop.send_replace(Some(grace));
        self.loops.drain(..).map(JoinHandle::join).collect()
    }
}

impl fmt::Debug for PerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCore")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.loops.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
