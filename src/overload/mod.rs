//! Overload controls: limits that keep a server serving its fair clients while others flood it.
//!
//! - [`limit_rate`](OverloadExt::limit_rate): at most `n` new connections per period (a token
//!   bucket); the excess waits in the kernel's backlog. The stream wakes exactly when the next
//!   token is due, and yields to the runtime after a few items in a row so that several
//!   listeners on one runtime take fair turns (HAProxy's `maxconnrate` and `tune.maxaccept`).
//!   With [`reject_excess`](LimitRate::reject_excess), the excess is closed at once and counted
//!   instead (Envoy's connection rate limit).
//! - [`limit_per_peer`](OverloadExt::limit_per_peer): at most `k` live connections per peer
//!   address (or per IPv6 prefix); the excess is closed at once. Each connection holds its slot
//!   in a [`PeerPermit`] until it is dropped.
//! - [`MinReadRate`]: fails a connection whose peer sends slower than a minimum rate after a
//!   grace period (Kestrel's minimum data rate), the defence against slowloris clients;
//!   [`min_read_rate`](OverloadExt::min_read_rate) wraps every accepted connection in one.
//! - [`Listener::reclaim_idle`](crate::listen::Listener::reclaim_idle): near the connection
//!   limit, the connections idle longest (keep-alive connections between requests, marked with
//!   [`Conn::idle`](crate::listen::Conn::idle)) are asked to close through their
//!   [`Conn`](crate::listen::Conn), so that new clients find a slot (nginx's reuse of idle
//!   keep-alive connections at 1/16 free).
//! - Shedding the backlog when descriptors run out is
//!   [`SleepOnError::shed_on_emfile`](crate::listen::SleepOnError::shed_on_emfile), since it
//!   needs the accept error.
//!
//! Every rejection is logged (a `tracing` event at `debug`) and counted by [`RejectReason`] in
//! the stats of the listener that polls the control: [`StatsSnapshot::rejected`] is one
//! [`RejectCounts`], and [`Listener::on_reject`](crate::listen::Listener::on_reject) sees each
//! rejection with its peer's address. Nothing is wired by hand: a control finds the listener
//! polling it, however many adapters lie between them. A control polled outside any listener
//! logs its rejections and counts none.
//!
//! Each is opt-in: a server that does not use one pays nothing for it.
//!
//! [`StatsSnapshot::rejected`]: crate::listen::StatsSnapshot::rejected
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use staunch::overload::{MinReadRate, OverloadExt, PeerPermit, RejectReason};
//! use staunch::ListenExt;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//! use tokio_stream::wrappers::TcpListenerStream;
//!
//! async fn handle(mut socket: MinReadRate<PeerPermit<TcpStream>>) -> std::io::Result<()> {
//!     let mut buf = [0; 1024];
//!     loop {
//!         let n = socket.read(&mut buf).await?; // fails if the client trickles
//!         if n == 0 {
//!             return Ok(());
//!         }
//!         socket.write_all(&buf[..n]).await?;
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
//!     let server = TcpListenerStream::new(listener)
//!         .sleep_on_error(Duration::from_millis(100))
//!         .limit_rate(1000, Duration::from_secs(1))
//!         .limit_per_peer(16)
//!         .min_read_rate(240, Duration::from_secs(5)) // Kestrel's default
//!         .map(handle)
//!         .spawn_listen(10_000)
//!         .on_reject(|event| eprintln!("rejected {:?}: {}", event.peer(), event.reason()));
//!     let stats = server.stats();
//!     server.await;
//!     let rejected = stats.snapshot().rejected;
//!     println!(
//!         "rejected: {} ({} per peer, {} too slow)",
//!         rejected.total(),
//!         rejected.get(RejectReason::PeerLimit),
//!         rejected.get(RejectReason::MinReadRate),
//!     );
//!     Ok(())
//! }
//! ```

mod min_rate;
mod peer;
mod rate;
mod reject;
mod schedule;

use std::time::Duration;

use futures_core::Stream;

pub use min_rate::{MinReadRate, MinReadRateStream, ReadTooSlow};
pub use peer::{LimitPerPeer, PeerAddr, PeerPermit};
pub use rate::{LimitRate, RejectExcess, REJECT_EXCESS_BURST};
pub(crate) use reject::{lend, reject, Rejections};
pub use reject::{RejectCounts, RejectEvent, RejectReason};

/// Overload-control combinators for every [`Stream`] of accepted connections.
///
/// Chain them after [`sleep_on_error`](crate::ListenExt::sleep_on_error), so that they see
/// accepted connections rather than accept errors, and before `map(handle)`.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::overload::{OverloadExt, RejectReason};
/// use staunch::ListenExt;
/// use tokio::time::{sleep, Instant};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let from = |peer: &str| ((), peer.parse::<SocketAddr>().unwrap());
/// let (a, b) = ("10.0.0.1:1000", "10.0.0.2:1000");
/// // Five clients at once, three of them from one address.
/// let accepts = stream::iter([from(a), from(a), from(a), from(b), from(b)]);
/// let start = Instant::now();
/// let server = accepts
///     .limit_rate(10, Duration::from_secs(1)) // one every 100 ms
///     .limit_per_peer(2)
///     .map(|permit| async move {
///         sleep(Duration::from_secs(1)).await;
///         drop(permit);
///     })
///     .listen(100);
/// let stats = server.stats();
/// server.await;
/// let s = stats.snapshot();
/// // The third from 10.0.0.1 came at 200 ms, while the first two held its slots.
/// assert_eq!((s.connections, s.rejected.get(RejectReason::PeerLimit)), (4, 1));
/// assert_eq!(start.elapsed(), Duration::from_millis(1400)); // the last started at 400 ms
/// # }
/// ```
pub trait OverloadExt: Stream {
    /// Pass on at most `n` items per `per`, spaced evenly (`per / n` apart; allow bursts with
    /// [`burst`](LimitRate::burst)). While no token is due the inner stream is not polled, so
    /// new clients wait in the kernel's backlog, and the stream sleeps until exactly when the
    /// next token is due: it never polls on a timer. After 4 items in a row it yields to the
    /// runtime once ([`max_per_wake`](LimitRate::max_per_wake)).
    ///
    /// A token is charged from when it was due, not from when the runtime woke the stream, so
    /// timer resolution (1 ms) and a busy runtime do not lower the rate: after a late wake-up
    /// the items due meanwhile (up to 5 ms worth) pass at once, as long as the inner stream has
    /// them ready. In any window of length `d`, at most `burst + 1 + (d + 5 ms) / interval`
    /// items pass. Time the inner stream spends without an item is not banked beyond the
    /// burst.
    ///
    /// The end of the inner stream is seen when the next token is due: to stop accepting on a
    /// signal, chain `take_until` after `limit_rate`, not before.
    ///
    /// To close the excess at once and count it instead, add
    /// [`reject_excess`](LimitRate::reject_excess) (which says when to choose which).
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero, or if `per / n` is under a nanosecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let at: Vec<_> = stream::iter(0..4)
    ///     .limit_rate(4, Duration::from_secs(1))
    ///     .map(|_| start.elapsed().as_millis())
    ///     .collect()
    ///     .await;
    /// assert_eq!(at, [0, 250, 500, 750]);
    /// # }
    /// ```
    #[track_caller]
    fn limit_rate(self, n: u32, per: Duration) -> LimitRate<Self>
    where
        Self: Sized,
    {
        LimitRate::new(self, n, per)
    }

    /// Let each peer address hold at most `max` live connections: a connection over the limit
    /// is closed as soon as it is accepted, logged, and counted (as
    /// [`RejectReason::PeerLimit`]) in the stats of the listener that polls it. Each connection
    /// passed on comes in a
    /// [`PeerPermit`] that holds its slot until it is dropped, so the slot frees when the
    /// handler ends, however it ends.
    ///
    /// Peers are told apart by IP address (IPv6 optionally by prefix, with
    /// [`ipv6_prefix`](LimitPerPeer::ipv6_prefix)). Clients behind one NAT share a limit. A
    /// connection whose peer address cannot be read (the peer already left) is passed on
    /// without a slot.
    ///
    /// # Panics
    ///
    /// Panics if `max` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let from = |peer: &str| ((), peer.parse::<SocketAddr>().unwrap());
    /// let mut accepted = stream::iter([from("10.0.0.1:1000"), from("10.0.0.1:1001"), from("10.0.0.2:1000")])
    ///     .limit_per_peer(1);
    /// let first = accepted.next().await.unwrap();
    /// let second = accepted.next().await.unwrap(); // 10.0.0.1:1001 was closed
    /// assert_eq!(second.peer().unwrap().to_string(), "10.0.0.2:1000");
    /// drop(first); // 10.0.0.1 may connect again
    /// # }
    /// ```
    #[track_caller]
    fn limit_per_peer(self, max: usize) -> LimitPerPeer<Self>
    where
        Self: Sized,
        Self::Item: PeerAddr,
    {
        LimitPerPeer::new(self, max)
    }

    /// Wrap each accepted connection in a [`MinReadRate`] (with its peer's address, for the
    /// report): after `grace`, a connection whose peer sends slower than `bytes_per_sec` on
    /// average fails its next read with [`ReadTooSlow`], counted as
    /// [`RejectReason::MinReadRate`] in the stats of the listener that polls it. Chain it after
    /// [`limit_per_peer`](OverloadExt::limit_per_peer) if you use both, so the handler gets a
    /// `MinReadRate<PeerPermit<TcpStream>>`.
    ///
    /// # Panics
    ///
    /// Panics if `bytes_per_sec` or `grace` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::overload::{MinReadRate, OverloadExt, RejectReason};
    /// use staunch::ListenExt;
    /// use tokio::io::AsyncReadExt;
    /// use tokio::net::TcpStream;
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// async fn handle(mut socket: MinReadRate<TcpStream>) -> std::io::Result<()> {
    ///     let mut request = Vec::new();
    ///     socket.read_to_end(&mut request).await?; // fails if the client trickles
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
    /// let server = TcpListenerStream::new(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .min_read_rate(240, Duration::from_secs(5)) // Kestrel's default
    ///     .map(handle)
    ///     .spawn_listen(10_000);
    /// let stats = server.stats();
    /// server.await;
    /// println!("too slow: {}", stats.snapshot().rejected.get(RejectReason::MinReadRate));
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    fn min_read_rate(self, bytes_per_sec: u32, grace: Duration) -> MinReadRateStream<Self>
    where
        Self: Sized,
        Self::Item: PeerAddr,
    {
        MinReadRateStream::new(self, bytes_per_sec, grace)
    }
}

impl<S: Stream + ?Sized> OverloadExt for S {}
