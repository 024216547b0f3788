use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::peer::PeerAddr;
use super::reject::{Ambient, RejectReason};

/// Where the read clock of a [`MinReadRate`] stands.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// No read yet: the clock starts at the first.
    NotStarted,
    /// A read is pending: time counts against `deadline`.
    Waiting { deadline: Instant },
    /// The last read returned: time does not count until the next read, so a handler busy with
    /// what it read is not charged for it.
    Paused { deadline: Instant, since: Instant },
    /// The connection was failed for being too slow.
    Failed,
}

pin_project! {
    /// An I/O wrapper that fails reads once the peer sends slower than a minimum rate, after a
    /// grace period: the defence against slowloris clients, which hold a connection slot by
    /// trickling a byte now and then.
    ///
    /// # The rule
    ///
    /// Time counts only while a read is pending: from a read that returned `Pending` until the
    /// next read returns data, that is, while the handler waits for data that does not come.
    /// Time from a read that returned data to the next read (the handler busy with what it
    /// read) does not count. The clock starts at the first read. The connection starts
    /// with `grace` of credit, each byte read adds `1 / bytes_per_sec` seconds, and the credit
    /// never exceeds `grace`, so a fast start cannot be banked for a long silence later. When
    /// the credit runs out during a read, the read fails with an [`io::Error`] of kind
    /// [`TimedOut`](io::ErrorKind::TimedOut) whose inner error is a [`ReadTooSlow`] (so do
    /// every later read), and the rejection is counted as [`RejectReason::MinReadRate`] in the
    /// stats of the listener that made it: one made by the
    /// [`min_read_rate`](super::OverloadExt::min_read_rate) stage, or by hand in the
    /// synchronous part of a `map` or `serve` closure, counts there; one made elsewhere (inside
    /// a spawned handler) logs the rejection only.
    /// Writes are passed through untouched.
    ///
    /// So a peer sending nothing is cut `grace` after the handler starts waiting, and a peer
    /// trickling 1 byte a second at `bytes_per_sec = 240` a few milliseconds later. An idle
    /// keep-alive connection whose handler waits for the next request is waiting too: it is
    /// closed within `grace`, like a keep-alive timeout. A handler that leaves a read pending
    /// while it works on a request (HTTP/2 always does; a `select!` between reading and
    /// writing does) is charged for that time, while its peer, rightly, sends nothing: give
    /// it a grace longer than its slowest response.
    ///
    /// # The slowloris arithmetic
    ///
    /// An attacker holds a slot for as long as a connection may live without sending, here
    /// `grace`. With a concurrency limit of `max_connections`, connections opened at
    /// `max_connections / grace` a second fill every slot, for ever. With 10,000 slots and the
    /// 5 s grace of Kestrel's default (240 B/s after 5 s), that is 2,000 connections a second;
    /// the tls-listener defaults (64 handshakes, 10 s) fell to 6.4 a second. A peer that keeps
    /// up exactly `bytes_per_sec` holds its slot until the listener's
    /// [`connection_time_limit`](crate::listen::Listener::connection_time_limit): then the rate that
    /// saturates is `max_connections / time_limit`, and it costs the attacker `bytes_per_sec`
    /// per slot. Raise the limit or shorten the times to raise the price, and add
    /// [`limit_per_peer`](super::OverloadExt::limit_per_peer) so that one address cannot pay
    /// it alone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::overload::{MinReadRate, ReadTooSlow};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // A peer that sends one byte, then nothing for a minute.
    /// let peer = tokio_test::io::Builder::new()
    ///     .read(b"G")
    ///     .wait(Duration::from_secs(60))
    ///     .build();
    /// let mut conn = MinReadRate::new(peer, 240, Duration::from_secs(5));
    /// let start = tokio::time::Instant::now();
    /// let mut buf = [0; 64];
    /// assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
    /// let error = conn.read(&mut buf).await.unwrap_err();
    /// assert!(ReadTooSlow::from_io_error(&error).is_some());
    /// assert_eq!(start.elapsed(), Duration::from_secs(5));
    /// # }
    /// ```
    pub struct MinReadRate<T> {
        #[pin]
        io: T,
        // Armed at the first wait, then re-armed with `reset` only when it fires before the
        // deadline (which only moves later), so most reads touch no timer. Boxed so that the
        // wrapper is `Unpin` when the connection is, as hyper requires.
        sleep: Option<Pin<Box<Sleep>>>,
        bytes_per_sec: u32,
        grace: Duration,
        clock: Clock,
        peer: Option<SocketAddr>,
        rejections: Ambient,
    }
}

impl<T> MinReadRate<T> {
    /// Wrap `io`: after a grace period of `grace`, reads must keep up `bytes_per_sec` on
    /// average (see the [type docs](MinReadRate) for the exact rule).
    ///
    /// # Panics
    ///
    /// Panics if `bytes_per_sec` or `grace` is zero.
    #[track_caller]
    pub fn new(io: T, bytes_per_sec: u32, grace: Duration) -> Self {
        assert!(
            bytes_per_sec > 0,
            "MinReadRate::new: the rate must be at least 1 byte a second"
        );
        assert!(
            !grace.is_zero(),
            "MinReadRate::new: the grace period must be greater than zero"
        );
        MinReadRate {
            io,
            sleep: None,
            bytes_per_sec,
            grace,
            clock: Clock::NotStarted,
            peer: None,
            rejections: Ambient::current(),
        }
    }

    /// The peer's address, for the rejection report.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::{MinReadRate, RejectReason};
    /// use staunch::ListenExt;
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let server = stream::iter([peer])
    ///     .map(|peer| {
    ///         // A client that sends nothing, wrapped here, in the listener's poll.
    ///         let silent = tokio_test::io::Builder::new().wait(Duration::from_secs(60)).build();
    ///         let mut io = MinReadRate::new(silent, 240, Duration::from_secs(5)).peer(peer);
    ///         async move { io.read(&mut [0; 64]).await.map(drop) }
    ///     })
    ///     .listen(10)
    ///     .on_reject({
    ///         let seen = seen.clone();
    ///         move |event| seen.lock().unwrap().push((event.reason(), event.peer()))
    ///     });
    /// server.await;
    /// assert_eq!(*seen.lock().unwrap(), [(RejectReason::MinReadRate, Some(peer))]);
    /// # }
    /// ```
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    access_inner!(
        io: T,
        "wrapped I/O object",
        get_mut: "Reading from it directly is not timed.",
        into_inner: "dropping the clock."
    );

    fn error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            ReadTooSlow {
                bytes_per_sec: self.bytes_per_sec,
                grace: self.grace,
            },
        )
    }
}

/// The credit `n` bytes buy at `bytes_per_sec`.
fn credit(n: usize, bytes_per_sec: u32) -> Duration {
    let nanos = n as u128 * 1_000_000_000 / u128::from(bytes_per_sec);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl<T: AsyncRead> AsyncRead for MinReadRate<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let now = Instant::now();
        let deadline = match self.clock {
            Clock::NotStarted => now + self.grace,
            Clock::Waiting { deadline } => deadline,
            Clock::Paused { deadline, since } => deadline + (now - since),
            Clock::Failed => return Poll::Ready(Err(self.error())),
        };
        let this = self.as_mut().project();
        let filled = buf.filled().len();
        if let Poll::Ready(result) = this.io.poll_read(cx, buf) {
            let read = buf.filled().len() - filled;
            let deadline = (deadline + credit(read, *this.bytes_per_sec)).min(now + *this.grace);
            *this.clock = Clock::Paused {
                deadline,
                since: now,
            };
            return Poll::Ready(result);
        }
        *this.clock = Clock::Waiting { deadline };
        if now < deadline {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
            loop {
                if sleep.is_elapsed() && sleep.deadline() < deadline {
                    // It fired for an earlier deadline: the peer has sent since.
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if sleep.deadline() >= deadline {
                    break;
                }
            }
        }
        *this.clock = Clock::Failed;
        log_event!(
            debug,
            peer = ?this.peer,
            bytes_per_sec = *this.bytes_per_sec,
            grace_ms = this.grace.as_millis() as u64,
            "read slower than the minimum rate: failing the connection"
        );
        this.rejections
            .reject(RejectReason::MinReadRate, *this.peer);
        Poll::Ready(Err(self.error()))
    }
}

delegate_async_write!(MinReadRate);

impl<T: PeerAddr> PeerAddr for MinReadRate<T> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.peer {
            Some(peer) => Ok(peer),
            None => self.io.peer_addr(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for MinReadRate<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinReadRate")
            .field("io", &self.io)
            .field("bytes_per_sec", &self.bytes_per_sec)
            .field("grace", &self.grace)
            .field("clock", &self.clock)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The error inside the [`io::Error`] (of kind [`TimedOut`](io::ErrorKind::TimedOut)) that a
/// [`MinReadRate`] fails a slow connection with.
///
/// # Examples
///
/// ```
/// use std::{io, time::Duration};
/// use staunch::overload::{MinReadRate, ReadTooSlow};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let silent = tokio_test::io::Builder::new().wait(Duration::from_secs(60)).build();
/// let mut conn = MinReadRate::new(silent, 240, Duration::from_secs(5));
/// let error = conn.read(&mut [0; 64]).await.unwrap_err();
/// assert_eq!(error.kind(), io::ErrorKind::TimedOut);
/// let slow = ReadTooSlow::from_io_error(&error).unwrap();
/// assert_eq!((slow.bytes_per_sec(), slow.grace()), (240, Duration::from_secs(5)));
/// let message = "the peer sent slower than 240 bytes a second after a grace period of 5s";
/// assert_eq!(slow.to_string(), message);
/// // Another timeout is not one.
/// assert!(ReadTooSlow::from_io_error(&io::ErrorKind::TimedOut.into()).is_none());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTooSlow {
    bytes_per_sec: u32,
    grace: Duration,
}

impl ReadTooSlow {
    /// The `ReadTooSlow` inside `error`, if `error` is a [`MinReadRate`] failing its
    /// connection.
    pub fn from_io_error(error: &io::Error) -> Option<&ReadTooSlow> {
        error.get_ref()?.downcast_ref()
    }

    /// The minimum rate the peer fell below.
    pub fn bytes_per_sec(&self) -> u32 {
        self.bytes_per_sec
    }

    /// The grace period it had.
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

impl fmt::Display for ReadTooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the peer sent slower than {} bytes a second after a grace period of {:?}",
            self.bytes_per_sec, self.grace
        )
    }
}

impl Error for ReadTooSlow {}

pin_project! {
    /// Stream for the [`min_read_rate`](super::OverloadExt::min_read_rate) method: each
    /// accepted connection comes wrapped in a [`MinReadRate`] that knows its peer's address, and
    /// counts its rejection in the stats of the listener that polls this stream.
    ///
    /// # Examples
    ///
    /// A client that connects and sends nothing:
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::overload::{OverloadExt, RejectReason};
    /// use staunch::ListenExt;
    /// use tokio::io::AsyncReadExt;
    /// use tokio::net::{TcpListener, TcpStream};
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let _client = TcpStream::connect(listener.local_addr()?).await?;
    /// let server = TcpListenerStream::new(listener)
    ///     .take(1) // one client, for the example
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .min_read_rate(240, Duration::from_millis(100))
    ///     .map(|mut socket| async move { socket.read(&mut [0; 64]).await.map(drop) })
    ///     .listen(10);
    /// let stats = server.stats();
    /// tokio::time::timeout(Duration::from_secs(5), server).await.unwrap();
    /// let s = stats.snapshot();
    /// assert_eq!((s.failed, s.rejected.get(RejectReason::MinReadRate)), (1, 1));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct MinReadRateStream<S> {
        #[pin]
        stream: S,
        bytes_per_sec: u32,
        grace: Duration,
    }
}

impl<S> MinReadRateStream<S> {
    #[track_caller]
    pub(crate) fn new(stream: S, bytes_per_sec: u32, grace: Duration) -> Self {
        assert!(
            bytes_per_sec > 0,
            "min_read_rate: the rate must be at least 1 byte a second"
        );
        assert!(
            !grace.is_zero(),
            "min_read_rate: the grace period must be greater than zero"
        );
        MinReadRateStream {
            stream,
            bytes_per_sec,
            grace,
        }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, dropping the settings.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> Stream for MinReadRateStream<S>
where
    S: Stream,
    S::Item: PeerAddr,
{
    type Item = MinReadRate<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        this.stream.poll_next(cx).map(|item| {
            item.map(|io| {
                let peer = io.peer_addr().ok();
                let mut io = MinReadRate::new(io, *this.bytes_per_sec, *this.grace);
                if let Some(peer) = peer {
                    io = io.peer(peer);
                }
                io
            })
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S> FusedStream for MinReadRateStream<S>
where
    S: FusedStream,
    S::Item: PeerAddr,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug> fmt::Debug for MinReadRateStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinReadRateStream")
            .field("stream", &self.stream)
            .field("bytes_per_sec", &self.bytes_per_sec)
            .field("grace", &self.grace)
            .finish()
    }
}
