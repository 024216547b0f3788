//! Reclaiming idle connections near the connection limit: the policy behind
//! [`Listener::reclaim_idle`] and [`Drain::idle`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_core::Stream;
use tokio::sync::Notify;

use super::drain::Drain;
use super::listener::Listener;
use super::mode::Mode;
use super::stats::Stats;
use crate::overload::{reject, RejectReason};

impl<S, M> Listener<S, M>
where
    S: Stream,
    M: Mode<S::Item>,
{
    /// Near the connection limit, ask the connections that have been idle longest to close, so
    /// that new clients find a free slot instead of waiting behind idle keep-alive connections
    /// (nginx closes its oldest idle keep-alive connections the same way). `drain` is the
    /// [`Drain`] the connections get a clone of: each marks itself idle with
    /// [`Drain::idle`] (between requests), and a connection asked to close sees its own clone
    /// fire ([`draining`](Drain::draining) completes, [`is_draining`](Drain::is_draining) turns
    /// true), exactly as at a shutdown, so a handler that ends an idle connection on the drain
    /// needs nothing more.
    ///
    /// Reclaim starts when fewer than `max_connections / 16 + 1` slots are free (at 1/16 or
    /// fewer free, as nginx; for a limit under 16, when full), and asks just enough idle
    /// connections, the longest idle first, to bring the free slots back to that. Only
    /// connections idle at that moment are asked, each once. It is checked whenever a
    /// connection turns idle; mark a new connection idle while it waits for its first request
    /// (as below), so that each arrival is checked too. A connection asked to close counts as
    /// free from then on (until its drain clone is dropped), and as
    /// [`RejectReason::Reclaimed`] in the listener's [`Rejections`](crate::overload::Rejections)
    /// (given with [`rejections`](Listener::rejections); the hook gets the peer given with
    /// [`Drain::peer`]); it is logged (`tracing`, `debug`) either way.
    ///
    /// With [`spawn_listen`](crate::ListenExt::spawn_listen), a connection asked to close that
    /// has just ended stays in the listener's count until the listener next runs; a connection
    /// turning idle on another thread meanwhile may then see one slot fewer free than there
    /// is, and one more idle connection may be asked than needed.
    ///
    /// [`reclaim_idle_keep_free`](Listener::reclaim_idle_keep_free) sets the threshold.
    ///
    /// A drain reclaims for one listener. Without this call, [`Drain::idle`] does nothing and
    /// costs one atomic load.
    ///
    /// # Panics
    ///
    /// Panics if `drain` already reclaims for a listener.
    ///
    /// # Examples
    ///
    /// Keep-alive connections, idle while they wait for a next request, close at once when
    /// their drain fires (at a shutdown, or to make room). With a limit of 2, the second client
    /// makes the listener full, so the first, idle longest, is asked to close; the third then
    /// has the second closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{listen::Drain, overload::Rejections, ListenExt};
    /// use tokio::time::{sleep, sleep_until, Instant};
    ///
    /// /// A connection that waits for a request that never comes, up to a minute.
    /// async fn keep_alive(drain: Drain, start: Instant) -> (&'static str, u64) {
    ///     let _idle = drain.idle();
    ///     let why = tokio::select! {
    ///         () = sleep(Duration::from_secs(60)) => "keep-alive timeout",
    ///         () = drain.draining() => "reclaimed",
    ///     };
    ///     (why, start.elapsed().as_secs())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (drain, rejections, start) = (Drain::new(), Rejections::new(), Instant::now());
    /// let (ended, ends) = std::sync::mpsc::channel();
    /// let server = stream::iter([0, 10, 20])
    ///     .then(|at| sleep_until(start + Duration::from_secs(at)))
    ///     .map({
    ///         let drain = drain.clone();
    ///         move |()| {
    ///             let (drain, ended) = (drain.clone(), ended.clone());
    ///             async move { ended.send(keep_alive(drain, start).await).unwrap() }
    ///         }
    ///     })
    ///     .listen(2)
    ///     .reclaim_idle(&drain)
    ///     .rejections(rejections);
    /// let stats = server.stats();
    /// server.await;
    /// let ends: Vec<_> = ends.try_iter().collect();
    /// assert_eq!(ends, [("reclaimed", 10), ("reclaimed", 20), ("keep-alive timeout", 80)]);
    /// assert_eq!(stats.snapshot().reclaimed, 2);
    /// # }
    /// ```
    #[track_caller]
    pub fn reclaim_idle(self, drain: &Drain) -> Self {
        let keep_free = self.max_connections() / 16 + 1;
        self.reclaim_idle_keep_free(drain, keep_free)
    }

    /// [`reclaim_idle`](Listener::reclaim_idle), reclaiming while fewer than `keep_free` slots
    /// are free. A `keep_free` over the limit asks every idle connection to close at once.
    ///
    /// # Panics
    ///
    /// Panics if `keep_free` is zero (it would never reclaim), or if `drain` already reclaims for
    /// a listener.
    #[track_caller]
    pub fn reclaim_idle_keep_free(self, drain: &Drain, keep_free: usize) -> Self {
        assert!(
            keep_free > 0,
            "reclaim_idle_keep_free: keep_free must be at least 1 (0 would never reclaim)"
        );
        drain.reclaim_for(Reclaim {
            limit: self.max_connections(),
            keep_free,
            stats: self.stats(),
            state: Mutex::default(),
        });
        self
    }
}

/// The idle connections of one listener, and the policy that picks which to ask to close.
pub(crate) struct Reclaim {
    limit: usize,
    keep_free: usize,
    stats: Stats,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The key of the next connection to turn idle: keys grow, so the first entry of `idle` has
    /// been idle longest.
    next: u64,
    idle: BTreeMap<u64, Arc<Conn>>,
    /// Connections asked to close that have not yet dropped their drain: still active in the
    /// listener's count, but counted as free here so that none is asked twice over.
    asked: usize,
}

/// One connection's part in reclaim: made by its [`Drain`] clone on first need.
pub(crate) struct Conn {
    reclaimed: AtomicBool,
    notify: Notify,
    /// Its key in `State::idle` while it is there, 0 otherwise. Written under the state lock.
    key: AtomicU64,
    peer: Option<SocketAddr>,
}

impl Conn {
    pub(crate) fn new(peer: Option<SocketAddr>) -> Conn {
        Conn {
            reclaimed: AtomicBool::new(false),
            notify: Notify::new(),
            key: AtomicU64::new(0),
            peer,
        }
    }

    pub(crate) fn is_reclaimed(&self) -> bool {
        self.reclaimed.load(Ordering::Acquire)
    }

    /// Completes once the connection has been asked to close.
    pub(crate) async fn reclaimed(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a `notify_waiters` after it is not missed.
            notified.as_mut().enable();
            if self.is_reclaimed() {
                return;
            }
            notified.await;
        }
    }
}

impl Reclaim {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole between statements that could panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `conn` turned idle: queue it and reclaim if the listener is near its limit. Returns
    /// whether it was queued now (not if it already was, or was already asked to close).
    pub(crate) fn idle(&self, conn: &Arc<Conn>) -> bool {
        if conn.is_reclaimed() {
            return false;
        }
        let mut state = self.state();
        if conn.key.load(Ordering::Relaxed) != 0 {
            return false;
        }
        state.next += 1;
        let key = state.next;
        conn.key.store(key, Ordering::Relaxed);
        state.idle.insert(key, conn.clone());
        let asked = self.pick(&mut state);
        drop(state);
        self.ask(asked);
        true
    }

    /// `conn` turned busy: take it off the queue.
    pub(crate) fn busy(&self, conn: &Conn) {
        let mut state = self.state();
        let key = conn.key.swap(0, Ordering::Relaxed);
        if key != 0 {
            state.idle.remove(&key);
        }
    }

    /// A connection asked to close dropped its drain.
    pub(crate) fn gone(&self) {
        let mut state = self.state();
        state.asked = state.asked.saturating_sub(1);
    }

    /// Take the longest-idle connections off the queue until enough slots are free, and mark
    /// them asked.
    fn pick(&self, state: &mut State) -> Vec<Arc<Conn>> {
        let active = self.stats.active().saturating_sub(state.asked);
        let free = self.limit.saturating_sub(active);
        let wanted = self.keep_free.saturating_sub(free);
        let mut asked = Vec::new();
        while asked.len() < wanted {
            let Some((_, conn)) = state.idle.pop_first() else {
                break;
            };
            conn.key.store(0, Ordering::Relaxed);
            conn.reclaimed.store(true, Ordering::Release);
            asked.push(conn);
        }
        state.asked += asked.len();
        asked
    }

    /// Tell each connection picked, count and log it.
    fn ask(&self, asked: Vec<Arc<Conn>>) {
        if asked.is_empty() {
            return;
        }
        log_event!(
            debug,
            asked = asked.len(),
            active = self.stats.active(),
            limit = self.limit,
            keep_free = self.keep_free,
            "reclaim: near the limit, idle connections asked to close"
        );
        let rejections = self.stats.listener_rejections();
        for conn in asked {
            conn.notify.notify_waiters();
            reject(rejections.as_ref(), RejectReason::Reclaimed, conn.peer);
        }
    }
}

impl fmt::Debug for Reclaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Reclaim")
            .field("limit", &self.limit)
            .field("keep_free", &self.keep_free)
            .field("idle", &state.idle.len())
            .field("asked", &state.asked)
            .finish()
    }
}

/// A connection marked idle by [`Drain::idle`], until this guard is dropped.
#[must_use = "the connection is idle only until the guard is dropped"]
pub struct Idle<'a> {
    drain: &'a Drain,
    /// Whether this guard queued it (not if reclaim is off, or an outer guard did).
    queued: bool,
}

impl<'a> Idle<'a> {
    pub(crate) fn new(drain: &'a Drain, queued: bool) -> Self {
        Idle { drain, queued }
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        if self.queued {
            self.drain.set_idle(false);
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
