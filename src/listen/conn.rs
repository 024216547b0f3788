//! [`Conn`]: the handle a listener gives each connection of
//! [`serve`](crate::ListenExt::serve), and [`Serve`], the stream that makes them.

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;

use super::reclaim::{Member, Reclaim};
use super::stats::ListenShared;

/// What every [`Conn`] of one listener shares: the shutdown signal, the spread of the closes,
/// and the reclaim policy.
pub(crate) struct Conns {
    /// When the shutdown started and over how long its closes are spread; `None` until then.
    started: watch::Sender<Option<(Instant, Duration)>>,
    /// Handles made so far: the next one's place in the spread window.
    made: std::sync::atomic::AtomicU64,
    /// Set by [`Listener::reclaim_idle`](super::Listener::reclaim_idle).
    pub(crate) reclaim: OnceLock<Reclaim>,
    pub(crate) shared: Arc<ListenShared>,
}

impl Conns {
    pub(crate) fn new(shared: Arc<ListenShared>) -> Self {
        Conns {
            started: watch::Sender::new(None),
            made: Default::default(),
            reclaim: OnceLock::new(),
            shared,
        }
    }

    /// Tell every connection that the shutdown has started: each closes at its moment in
    /// `spread`. A second call does nothing.
    pub(crate) fn start(&self, spread: Duration) {
        let first = self.started.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(|| (Instant::now(), spread));
            first
        });
        if first && self.started.receiver_count() > 0 {
            log_event!(
                debug,
                spread_ms = spread.as_millis() as u64,
                "shutdown: connections told to close"
            );
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.borrow().is_some()
    }

    fn make(self: &Arc<Self>) -> Conn {
        // Written by the listener's task only (it makes every handle), so no read-modify-write.
        let index = self.made.load(std::sync::atomic::Ordering::Relaxed) + 1;
        self.shared
            .handles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.made.store(index, std::sync::atomic::Ordering::Relaxed);
        Conn {
            conns: self.clone(),
            index,
            member: OnceLock::new(),
            peer: None,
        }
    }
}

impl fmt::Debug for Conns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conns")
            .field("started", &self.is_started())
            .field("reclaim", &self.reclaim.get())
            .finish_non_exhaustive()
    }
}

/// One connection's handle, made by the listener of [`serve`](crate::ListenExt::serve) and
/// [`spawn_serve`](crate::ListenExt::spawn_serve) and given to the handler with the
/// connection: it tells the connection when to close, so that it can end cleanly (finish the
/// request in progress, send `Connection: close` or GOAWAY, close an idle keep-alive
/// connection at once) instead of being cut at a deadline.
///
/// - It fires when the listener's graceful shutdown starts
///   ([`with_graceful_shutdown`](super::Listener::with_graceful_shutdown)), at this
///   connection's moment of the close spread
///   ([`close_spread`](super::GracefulShutdown::close_spread)) if one is set; or alone, when
///   the listener reclaims this connection while it is idle
///   ([`reclaim_idle`](super::Listener::reclaim_idle)).
/// - Wait for it with [`draining`](Conn::draining) (a future, for `tokio::select!`), or check
///   it with [`is_draining`](Conn::is_draining) (say, between requests).
/// - Mark the connection idle while it waits for a request, with [`idle`](Conn::idle) (a
///   guard) or [`set_idle`](Conn::set_idle) (for an I/O wrapper), so that reclaim may pick it.
///
/// It is one connection's, so it is not `Clone`: share it with an `Arc` (an I/O wrapper that
/// marks the connection idle and a handler that waits for the drain, say).
///
/// # Examples
///
/// A connection that serves requests until the shutdown starts, then finishes the one in
/// progress:
///
/// ```
/// use std::time::Duration;
/// use futures_util::stream;
/// use staunch::{listen::Conn, ListenExt};
/// use tokio::time::sleep;
///
/// async fn serve(mut requests: u32, conn: Conn) {
///     while requests > 0 {
///         tokio::select! {
///             () = sleep(Duration::from_millis(100)) => {} // the next request comes in
///             () = conn.draining() => return,              // idle: close at once
///         }
///         sleep(Duration::from_secs(1)).await; // serve it, shutdown or not
///         requests -= 1;
///         if conn.is_draining() {
///             return; // close after the request in progress
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let server = stream::iter([3600])
///     .chain(stream::pending())
///     .serve(10, serve)
///     .with_graceful_shutdown(sleep(Duration::from_secs(5)))
///     .grace(Duration::from_secs(30));
/// let start = tokio::time::Instant::now();
/// let report = server.await;
/// // The signal came at 5 s, during the fifth request (4.5 s to 5.5 s): the connection
/// // finished it and closed, instead of serving on until it was cut at 35 s.
/// assert_eq!((report.ended, report.cancelled), (1, 0));
/// assert_eq!(start.elapsed(), Duration::from_millis(5500));
/// # }
/// # use futures_util::StreamExt;
/// ```
pub struct Conn {
    conns: Arc<Conns>,
    /// This handle's place in the spread window.
    index: u64,
    /// This connection's part in reclaim: made on first need once the listener reclaims, so a
    /// listener without reclaim allocates nothing per connection.
    member: OnceLock<Arc<Member>>,
    peer: Option<SocketAddr>,
}

impl Conn {
    /// `true` once this connection should close: the shutdown has started and this
    /// connection's moment in the close spread has come, or the listener reclaimed it while
    /// idle.
    pub fn is_draining(&self) -> bool {
        let shutdown = match *self.conns.started.borrow() {
            None => false,
            Some((at, spread)) => Instant::now() >= at + self.delay(spread),
        };
        shutdown || self.member.get().is_some_and(|m| m.is_reclaimed())
    }

    /// `true` once the listener's shutdown has started, whatever this connection's moment in
    /// the close spread.
    pub fn is_shutting_down(&self) -> bool {
        self.conns.is_started()
    }

    /// Completes when this connection should close (see [`is_draining`](Conn::is_draining));
    /// at once if it already should. Cancel-safe: drop it and call again at will.
    ///
    /// With a close spread it needs tokio's timer.
    pub async fn draining(&self) {
        let Some((_, member)) = self.reclaim_parts() else {
            return self.shutdown().await;
        };
        let mut shutdown = pin!(self.shutdown());
        let mut reclaimed = pin!(member.reclaimed());
        poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() || reclaimed.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Completes at this connection's moment of the shutdown.
    async fn shutdown(&self) {
        let mut started = self.conns.started.subscribe();
        // The sender lives in `self.conns`, so it cannot close while we wait.
        // Copied out at once: the borrow holds the channel's lock, and must not live across
        // the sleep.
        let Some((at, spread)) = started
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| *v)
        else {
            return;
        };
        let delay = self.delay(spread);
        if !delay.is_zero() {
            tokio::time::sleep_until(at + delay).await;
        }
    }

    /// How long after the start of the shutdown this connection fires, in a close spread of
    /// `spread`.
    fn delay(&self, spread: Duration) -> Duration {
        if spread.is_zero() {
            Duration::ZERO
        } else {
            spread.mul_f64(spread_fraction(self.index))
        }
    }

    /// Mark this connection idle (say, a keep-alive connection waiting for its next request)
    /// until the guard is dropped: near the connection limit, the listener may then ask it to
    /// close (see [`Listener::reclaim_idle`](super::Listener::reclaim_idle)), and this handle
    /// fires. Without reclaim it does nothing. A guard taken while one is held does nothing
    /// either.
    pub fn idle(&self) -> Idle<'_> {
        let queued = self
            .reclaim_parts()
            .is_some_and(|(reclaim, member)| reclaim.idle(member));
        Idle { conn: self, queued }
    }

    /// Mark this connection idle or busy, for code that cannot hold the guard of
    /// [`idle`](Conn::idle) (an I/O wrapper that sees when a request starts and when its
    /// response has been flushed; share the handle between it and the handler with an `Arc`).
    pub fn set_idle(&self, idle: bool) {
        if let Some((reclaim, member)) = self.reclaim_parts() {
            if idle {
                reclaim.idle(member);
            } else {
                reclaim.busy(member);
            }
        }
    }

    /// Give the listener this connection's peer address, for the
    /// [`on_reject`](super::Listener::on_reject) hook when it is reclaimed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    /// use tokio::time::{sleep, sleep_until, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let start = Instant::now();
    /// let first: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    /// let second: SocketAddr = "10.0.0.2:1000".parse().unwrap();
    /// let reclaimed = Arc::new(Mutex::new(Vec::new()));
    /// let server = stream::iter([(first, 0), (second, 10)])
    ///     .then(|(peer, at)| async move {
    ///         sleep_until(start + Duration::from_secs(at)).await;
    ///         peer
    ///     })
    ///     .serve(2, |peer, conn| {
    ///         let conn = conn.with_peer(peer);
    ///         async move {
    ///             let _idle = conn.idle(); // a keep-alive connection, waiting for a request
    ///             tokio::select! {
    ///                 () = sleep(Duration::from_secs(60)) => {}
    ///                 () = conn.draining() => {}
    ///             }
    ///         }
    ///     })
    ///     .reclaim_idle()
    ///     .on_reject({
    ///         let reclaimed = reclaimed.clone();
    ///         move |event| reclaimed.lock().unwrap().push(event.peer())
    ///     });
    /// server.await;
    /// // The second client filled the listener, so the first, idle, was asked to close.
    /// assert_eq!(*reclaimed.lock().unwrap(), [Some(first)]);
    /// # }
    /// ```
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The peer address given with [`with_peer`](Conn::with_peer).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The listener's reclaim and this connection's part in it, if the listener reclaims.
    fn reclaim_parts(&self) -> Option<(&Reclaim, &Arc<Member>)> {
        let reclaim = self.conns.reclaim.get()?;
        let member = self.member.get_or_init(|| Arc::new(Member::new(self.peer)));
        Some((reclaim, member))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        match (self.conns.reclaim.get(), self.member.get()) {
            (Some(reclaim), Some(member)) => reclaim.gone(member),
            _ => {
                self.conns
                    .shared
                    .handles
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("draining", &self.is_draining())
            .field("shutting_down", &self.is_shutting_down())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The `n`th point of the golden-ratio sequence in `[0, 1)`: however many connections there
/// are, the first `k` of them are spread evenly over the window (no gap wider than about
/// `2.6 / k`), with no random number generator and no need to know `k` in advance.
fn spread_fraction(n: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (n as f64 * GOLDEN).fract()
}

/// A connection marked idle by [`Conn::idle`], until this guard is dropped.
///
/// # Examples
///
/// Only a connection that holds the guard may be asked to close, and never for its own idle
/// mark:
///
/// ```
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::Conn, ListenExt};
/// use tokio::time::{sleep, sleep_until, Instant};
///
/// /// Serve one request (busy for `work` seconds), then wait idle for the next, up to a minute.
/// async fn keep_alive(work: u64, conn: Conn, start: Instant) -> (&'static str, u64) {
///     sleep(Duration::from_secs(work)).await; // busy: not to be asked
///     let _idle = conn.idle(); // idle from here until the guard is dropped
///     let why = tokio::select! {
///         () = sleep(Duration::from_secs(60)) => "keep-alive timeout",
///         () = conn.draining() => "reclaimed",
///     };
///     (why, start.elapsed().as_secs())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let start = Instant::now();
/// let (ended, ends) = std::sync::mpsc::channel();
/// // A arrives at 0 s and works 5 s; B arrives at 1 s (the listener is full) and works 1 s.
/// let server = stream::iter([(0, 5), (1, 1)])
///     .then(|(at, work)| async move {
///         sleep_until(start + Duration::from_secs(at)).await;
///         work
///     })
///     .serve(2, move |work, conn| {
///         let ended = ended.clone();
///         async move { ended.send(keep_alive(work, conn, start).await).unwrap() }
///     })
///     .reclaim_idle();
/// server.await;
/// // Neither was asked while busy; B, idle since 2 s, was asked when A turned idle at 5 s.
/// let ends: Vec<_> = ends.try_iter().collect();
/// assert_eq!(ends, [("reclaimed", 5), ("keep-alive timeout", 65)]);
/// # }
/// ```
#[must_use = "the connection is idle only until the guard is dropped"]
pub struct Idle<'a> {
    conn: &'a Conn,
    /// Whether this guard queued it (not if reclaim is off, or an outer guard did).
    queued: bool,
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        if self.queued {
            self.conn.set_idle(false);
        }
    }
}

impl fmt::Debug for Idle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idle")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The accept stream of [`serve`](crate::ListenExt::serve) and
    /// [`spawn_serve`](crate::ListenExt::spawn_serve): each item, with a [`Conn`] the listener
    /// made for it, becomes a connection future.
    ///
    /// # Examples
    ///
    /// Naming a server's type, to keep it in a struct:
    ///
    /// ```
    /// use std::future::{ready, Ready};
    /// use std::ops::Range;
    /// use futures_util::stream::{self, Iter};
    /// use staunch::listen::{Conn, Listen, Serve};
    /// use staunch::ListenExt;
    ///
    /// type Handler = fn(u32, Conn) -> Ready<()>;
    ///
    /// struct App {
    ///     server: Listen<Serve<Iter<Range<u32>>, Handler>>,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle: Handler = |_request, _conn| ready(());
    /// let app = App { server: stream::iter(0..3).serve(10, handle) };
    /// let stats = app.server.stats();
    /// app.server.await;
    /// assert_eq!(stats.snapshot().finished, 3);
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct Serve<S, H> {
        #[pin]
        stream: S,
        handler: H,
        conns: Arc<Conns>,
    }
}

impl<S, H> Serve<S, H> {
    pub(crate) fn new(stream: S, handler: H, conns: Arc<Conns>) -> Self {
        Serve {
            stream,
            handler,
            conns,
        }
    }

    access_inner!(
        stream: S,
        "accept stream",
        get_mut: "Taking items from it directly bypasses the listener.",
        into_inner: "dropping the handler."
    );
}

impl<S, H, F> Stream for Serve<S, H>
where
    S: Stream,
    H: FnMut(S::Item, Conn) -> F,
{
    type Item = F;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F>> {
        let this = self.project();
        this.stream
            .poll_next(cx)
            .map(|item| item.map(|item| (this.handler)(item, this.conns.make())))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S: fmt::Debug, H> fmt::Debug for Serve<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::spread_fraction;

    #[test]
    fn spread_is_even() {
        for k in [4u64, 16, 100, 1000] {
            let mut points: Vec<f64> = (1..=k).map(spread_fraction).collect();
            points.push(0.0);
            points.push(1.0);
            points.sort_by(f64::total_cmp);
            let widest = points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
            assert!(widest < 2.7 / k as f64, "k={k}: widest gap {widest}");
        }
    }
}
