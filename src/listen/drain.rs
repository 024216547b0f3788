//! [`Drain`]: the signal that tells each connection a shutdown has started.

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::reclaim::{Conn, Idle, Reclaim};

/// Tells connections that a shutdown has started, so each can end cleanly (finish the request
/// in progress, send `Connection: close` or GOAWAY, close an idle keep-alive connection at
/// once) instead of being cut when the grace period runs out.
///
/// - Hand a clone to every connection (in the `map` closure), and give the original to
///   [`GracefulShutdown::with_drain`](super::GracefulShutdown::with_drain), which starts it when
///   the shutdown signal comes. [`start`](Drain::start) starts it by hand.
/// - A connection waits for it with [`draining`](Drain::draining) (a future, for
///   `tokio::select!`) or checks it with [`is_draining`](Drain::is_draining) (say, between
///   requests).
/// - Cloning is an `Arc` clone; a started drain stays started.
///
/// # Spreading the closes
///
/// Made with [`with_close_spread`](Drain::with_close_spread), each clone fires at its own moment
/// within a window after the start, spread evenly, instead of every connection closing (and
/// every client reconnecting elsewhere) at once, as HAProxy's `close-spread-time` does. Each
/// clone takes the next moment, so clone it once per connection.
///
/// # Reclaiming idle connections
///
/// Given to [`Listener::reclaim_idle`](super::Listener::reclaim_idle), a drain also fires for
/// one connection alone: near the connection limit, the listener asks the connections idle
/// longest to close, and their clones fire. A connection says when it is idle (a keep-alive
/// connection waiting for its next request) by holding the guard of [`idle`](Drain::idle); a
/// handler that already closes an idle connection on the drain needs nothing else.
///
/// # Examples
///
/// A connection that serves requests until the drain starts, then finishes the one in progress:
///
/// ```
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::Drain, ListenExt};
/// use tokio::time::sleep;
///
/// async fn serve(mut requests: u32, drain: Drain) {
///     while requests > 0 {
///         tokio::select! {
///             () = sleep(Duration::from_millis(100)) => {} // the next request comes in
///             () = drain.draining() => return,             // idle: close at once
///         }
///         sleep(Duration::from_secs(1)).await; // serve it, drain or not
///         requests -= 1;
///         if drain.is_draining() {
///             return; // close after the request in progress
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let drain = Drain::new();
/// let server = stream::iter([3600])
///     .chain(stream::pending())
///     .map({
///         let drain = drain.clone();
///         move |requests| serve(requests, drain.clone())
///     })
///     .listen(10)
///     .with_graceful_shutdown(sleep(Duration::from_secs(5)), Duration::from_secs(30))
///     .with_drain(drain);
/// let start = tokio::time::Instant::now();
/// let report = server.await;
/// // The signal came at 5 s, during the fifth request (4.5 s to 5.5 s): the connection
/// // finished it and closed, instead of serving on until it was cut at 35 s.
/// assert_eq!((report.ended, report.cancelled), (1, 0));
/// assert_eq!(start.elapsed(), Duration::from_millis(5500));
/// # }
/// ```
pub struct Drain {
    shared: Arc<Shared>,
    /// How long after the start this clone fires (zero without a spread window).
    delay: Duration,
    /// This clone's connection, for idle reclaim: made on first need once a listener reclaims
    /// through this drain, so a drain without reclaim allocates nothing per clone.
    conn: OnceLock<Arc<Conn>>,
    peer: Option<SocketAddr>,
}

struct Shared {
    /// When the drain started; `None` until then.
    started: watch::Sender<Option<Instant>>,
    spread: Duration,
    /// Clones made so far: the next clone's place in the spread window.
    clones: AtomicU64,
    /// Set by [`Listener::reclaim_idle`](super::Listener::reclaim_idle).
    reclaim: OnceLock<Reclaim>,
}

impl Drain {
    /// A drain that has not started; every clone fires the moment it starts.
    pub fn new() -> Self {
        Self::with_close_spread(Duration::ZERO)
    }

    /// A drain whose clones fire at moments spread evenly over `window` after the start (see
    /// [Spreading the closes](Drain#spreading-the-closes)). The original fires at the start.
    /// A zero window is [`new`](Drain::new).
    pub fn with_close_spread(window: Duration) -> Self {
        Drain {
            shared: Arc::new(Shared {
                started: watch::Sender::new(None),
                spread: window,
                clones: AtomicU64::new(0),
                reclaim: OnceLock::new(),
            }),
            delay: Duration::ZERO,
            conn: OnceLock::new(),
            peer: None,
        }
    }

    /// Start the drain: from now on `is_draining` turns true and `draining` completes (for each
    /// clone at its moment, with a spread window). Starting it again does nothing.
    pub fn start(&self) {
        let started = self.shared.started.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(Instant::now);
            first
        });
        if started {
            log_event!(
                debug,
                spread_ms = self.shared.spread.as_millis() as u64,
                "drain: started, connections told to close"
            );
        }
    }

    /// `true` once this clone should close: the drain has started and this clone's moment in
    /// the spread window has come, or this clone's connection was asked to close while idle
    /// (see [`Listener::reclaim_idle`](super::Listener::reclaim_idle)).
    pub fn is_draining(&self) -> bool {
        let shutdown = match *self.shared.started.borrow() {
            None => false,
            Some(_) if self.delay.is_zero() => true,
            Some(at) => Instant::now() >= at + self.delay,
        };
        shutdown || self.conn.get().is_some_and(|conn| conn.is_reclaimed())
    }

    /// Mark this clone's connection idle (say, a keep-alive connection waiting for its next
    /// request) until the guard is dropped: near the connection limit, the listener may then
    /// ask it to close (see [`Listener::reclaim_idle`](super::Listener::reclaim_idle)), and
    /// this clone fires. Each clone is one connection: clone the drain once per connection, and
    /// mark that clone. Without reclaim it does nothing. A guard taken while one is held does
    /// nothing either.
    pub fn idle(&self) -> Idle<'_> {
        let queued = self
            .reclaim_parts()
            .is_some_and(|(reclaim, conn)| reclaim.idle(conn));
        Idle::new(self, queued)
    }

    /// Mark this clone's connection idle or busy, for code that cannot hold the guard of
    /// [`idle`](Drain::idle) (an I/O wrapper that sees when a request starts and when its
    /// response has been flushed; share one clone between it and the handler with an `Arc`).
    pub fn set_idle(&self, idle: bool) {
        if let Some((reclaim, conn)) = self.reclaim_parts() {
            if idle {
                reclaim.idle(conn);
            } else {
                reclaim.busy(conn);
            }
        }
    }

    /// The peer of this clone's connection, for the rejection hook when it is reclaimed.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The listener's reclaim and this clone's connection, if a listener reclaims through this
    /// drain.
    pub(crate) fn reclaim_parts(&self) -> Option<(&Reclaim, &Arc<Conn>)> {
        let reclaim = self.shared.reclaim.get()?;
        let conn = self.conn.get_or_init(|| Arc::new(Conn::new(self.peer)));
        Some((reclaim, conn))
    }

    #[track_caller]
    pub(crate) fn reclaim_for(&self, reclaim: Reclaim) {
        assert!(
            self.shared.reclaim.set(reclaim).is_ok(),
            "reclaim_idle: this drain already reclaims for a listener"
        );
    }

    /// `true` once the drain has started, whatever this clone's moment in the spread window.
    pub fn is_started(&self) -> bool {
        self.shared.started.borrow().is_some()
    }

    /// Completes when this clone should close (see [`is_draining`](Drain::is_draining)); at
    /// once if it already should. Cancel-safe: drop it and call again at will.
    ///
    /// With a spread window it needs tokio's timer.
    pub async fn draining(&self) {
        let Some((_, conn)) = self.reclaim_parts() else {
            return self.shutdown().await;
        };
        let mut shutdown = pin!(self.shutdown());
        let mut reclaimed = pin!(conn.reclaimed());
        poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() || reclaimed.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Completes at this clone's moment of the shutdown drain.
    async fn shutdown(&self) {
        let mut started = self.shared.started.subscribe();
        // The sender lives in `self.shared`, so it cannot close while we wait.
        let at = match started.wait_for(Option::is_some).await {
            Ok(at) => at.expect("waited for Some"),
            Err(_) => return,
        };
        if !self.delay.is_zero() {
            tokio::time::sleep_until(at + self.delay).await;
        }
    }

    /// How long after the start this clone fires.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl Clone for Drain {
    /// Another handle on the same drain. With a spread window, the clone takes the next moment
    /// in the window.
    fn clone(&self) -> Self {
        let spread = self.shared.spread;
        let delay = if spread.is_zero() {
            Duration::ZERO
        } else {
            let n = self.shared.clones.fetch_add(1, Relaxed) + 1;
            spread.mul_f64(spread_fraction(n))
        };
        Drain {
            shared: self.shared.clone(),
            delay,
            conn: OnceLock::new(),
            peer: None,
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let (Some(reclaim), Some(conn)) = (self.shared.reclaim.get(), self.conn.get()) {
            if conn.is_reclaimed() {
                reclaim.gone();
            }
        }
    }
}

/// The `n`th point of the golden-ratio sequence in `[0, 1)`: however many clones there are, the
/// first `k` of them are spread evenly over the window (no gap wider than about `2.6 / k`), with
/// no random number generator and no need to know `k` in advance.
fn spread_fraction(n: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (n as f64 * GOLDEN).fract()
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("started", &self.is_started())
            .field("spread", &self.shared.spread)
            .field("delay", &self.delay)
            .field(
                "reclaimed",
                &self.conn.get().is_some_and(|conn| conn.is_reclaimed()),
            )
            .finish()
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
