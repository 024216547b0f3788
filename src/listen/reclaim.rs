//! Reclaiming idle connections near the connection limit: the policy behind
//! [`Listener::reclaim_idle`] and [`Conn::idle`](super::Conn::idle).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_core::Stream;
use tokio::sync::Notify;

use super::listener::Listener;
use super::mode::Mode;
use super::stats::ListenShared;
use crate::overload::{reject, RejectReason};

impl<S, M> Listener<S, M>
where
    S: Stream,
    M: Mode<S::Item>,
{
    /// Near the connection limit, ask the connections that have been idle longest to close, so
    /// that new clients find a free slot instead of waiting behind idle keep-alive connections
    /// (nginx closes its oldest idle keep-alive connections the same way). It works through the
    /// [`Conn`](super::Conn) handles of [`serve`](crate::ListenExt::serve): each connection
    /// marks itself idle with [`Conn::idle`](super::Conn::idle) (between requests), and a
    /// connection asked to close sees its handle fire ([`draining`](super::Conn::draining)
    /// completes, [`is_draining`](super::Conn::is_draining) turns true), exactly as at a
    /// shutdown, so a handler that ends an idle connection on its handle needs nothing more.
    ///
    /// Reclaim starts when fewer than `max_connections / 16 + 1` slots are free (at 1/16 or
    /// fewer free, as nginx; for a limit under 16, when full), and asks just enough idle
    /// connections, the longest idle first, to bring the free slots back to that. It is
    /// checked whenever a connection starts and whenever one turns idle; only connections
    /// idle at that moment are asked, each once, and never the connection whose start or
    /// idle mark made the check (a client is not closed to make room for itself). A connection
    /// asked to close counts as free from then on (until its handle is dropped), and as
    /// [`RejectReason::Reclaimed`] in the listener's stats, with the peer given to
    /// [`Conn::with_peer`](super::Conn::with_peer); it is logged (`tracing`, `debug`) too.
    ///
    /// A connection counts as occupying its slot while it runs and holds its
    /// [`Conn`](super::Conn): a handler that drops its handle early is not counted, so reclaim
    /// may leave fewer slots free than asked for, never more.
    ///
    /// [`reclaim_idle_keep_free`](Listener::reclaim_idle_keep_free) sets the threshold.
    /// Without this call, [`Conn::idle`](super::Conn::idle) does nothing and costs one atomic
    /// load. Connections of `map(handle).listen(n)` have no handle and are never reclaimed.
    ///
    /// # Panics
    ///
    /// Panics if called twice.
    ///
    /// # Examples
    ///
    /// Keep-alive connections, idle while they wait for a next request, close at once when
    /// their handle fires (at a shutdown, or to make room). With a limit of 2, the second
    /// client makes the listener full, so the first, idle longest, is asked to close; the
    /// third then has the second closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{listen::Conn, overload::RejectReason, ListenExt};
    /// use tokio::time::{sleep, sleep_until, Instant};
    ///
    /// /// A connection that waits for a request that never comes, up to a minute.
    /// async fn keep_alive(conn: Conn, start: Instant) -> (&'static str, u64) {
    ///     let _idle = conn.idle();
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
    /// let server = stream::iter([0, 10, 20])
    ///     .then(|at| sleep_until(start + Duration::from_secs(at)))
    ///     .serve(2, move |(), conn| {
    ///         let ended = ended.clone();
    ///         async move { ended.send(keep_alive(conn, start).await).unwrap() }
    ///     })
    ///     .reclaim_idle();
    /// let stats = server.stats();
    /// server.await;
    /// let ends: Vec<_> = ends.try_iter().collect();
    /// assert_eq!(ends, [("reclaimed", 10), ("reclaimed", 20), ("keep-alive timeout", 80)]);
    /// assert_eq!(stats.snapshot().rejected.get(RejectReason::Reclaimed), 2);
    /// # }
    /// ```
    #[track_caller]
    pub fn reclaim_idle(self) -> Self {
        let keep_free = self.max_connections() / 16 + 1;
        self.reclaim_idle_keep_free(keep_free)
    }

    /// [`reclaim_idle`](Listener::reclaim_idle), reclaiming while fewer than `keep_free` slots
    /// are free. A `keep_free` over the limit asks every idle connection to close at once.
    ///
    /// # Panics
    ///
    /// Panics if `keep_free` is zero (it would never reclaim), or if reclaim is already set.
    ///
    /// # Examples
    ///
    /// With a limit of 4, [`reclaim_idle`](Listener::reclaim_idle) waits until the listener is
    /// full; keeping 2 slots free, the third client already has the first, idle longest,
    /// asked to close.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{listen::Conn, ListenExt};
    /// use tokio::time::{sleep, sleep_until, Instant};
    ///
    /// /// A connection that waits for a request that never comes, up to a minute.
    /// async fn keep_alive(conn: Conn, start: Instant) -> (&'static str, u64) {
    ///     let _idle = conn.idle();
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
    /// let server = stream::iter([0, 10, 20])
    ///     .then(|at| sleep_until(start + Duration::from_secs(at)))
    ///     .serve(4, move |(), conn| {
    ///         let ended = ended.clone();
    ///         async move { ended.send(keep_alive(conn, start).await).unwrap() }
    ///     })
    ///     .reclaim_idle_keep_free(2);
    /// server.await;
    /// let ends: Vec<_> = ends.try_iter().collect();
    /// let timeout = "keep-alive timeout";
    /// assert_eq!(ends, [("reclaimed", 20), (timeout, 70), (timeout, 80)]);
    /// # }
    /// ```
    #[track_caller]
    pub fn reclaim_idle_keep_free(self, keep_free: usize) -> Self {
        assert!(
            keep_free > 0,
            "reclaim_idle_keep_free: keep_free must be at least 1 (0 would never reclaim)"
        );
        let reclaim = Reclaim {
            limit: self.max_connections(),
            keep_free,
            shared: self.conns().shared.clone(),
            state: Mutex::default(),
        };
        assert!(
            self.conns().reclaim.set(reclaim).is_ok(),
            "reclaim_idle: this listener already reclaims"
        );
        self
    }
}

/// The idle connections of one listener, and the policy that picks which to ask to close.
pub(crate) struct Reclaim {
    limit: usize,
    keep_free: usize,
    shared: Arc<ListenShared>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The key of the next connection to turn idle: keys grow, so the first entry of `idle` has
    /// been idle longest.
    next: u64,
    idle: BTreeMap<u64, Arc<Member>>,
    /// Connections asked to close that have not yet dropped their handle: still active in the
    /// listener's count, but counted as free here so that none is asked twice over.
    asked: usize,
}

/// One connection's part in reclaim: made by its [`Conn`](super::Conn) on first need.
pub(crate) struct Member {
    reclaimed: AtomicBool,
    notify: Notify,
    /// Its key in `State::idle` while it is there, 0 otherwise. Written under the state lock.
    key: AtomicU64,
    peer: Option<SocketAddr>,
}

impl Member {
    pub(crate) fn new(peer: Option<SocketAddr>) -> Member {
        Member {
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

    /// A connection started: reclaim if that brought the listener near its limit.
    pub(crate) fn arrived(&self) {
        let mut state = self.state();
        if state.idle.is_empty() {
            return;
        }
        let asked = self.pick(&mut state);
        drop(state);
        self.ask(asked);
    }

    /// `member` turned idle: reclaim others if the listener is near its limit, then queue it.
    /// Returns whether it was queued now (not if it already was, or was already asked to close).
    pub(crate) fn idle(&self, member: &Arc<Member>) -> bool {
        if member.is_reclaimed() {
            return false;
        }
        let mut state = self.state();
        if member.key.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // Picked before it joins the queue: the connection that made the check is not asked.
        let asked = self.pick(&mut state);
        state.next += 1;
        let key = state.next;
        member.key.store(key, Ordering::Relaxed);
        state.idle.insert(key, member.clone());
        drop(state);
        self.ask(asked);
        true
    }

    /// `member` turned busy: take it off the queue.
    pub(crate) fn busy(&self, member: &Member) {
        let mut state = self.state();
        let key = member.key.swap(0, Ordering::Relaxed);
        if key != 0 {
            state.idle.remove(&key);
        }
    }

    /// A connection's handle was dropped: off the queue, and no longer counted as asked or
    /// occupied (both under the lock, so no check sees one change without the other).
    pub(crate) fn gone(&self, member: &Member) {
        let mut state = self.state();
        self.shared.handles.fetch_sub(1, Ordering::Relaxed);
        let key = member.key.swap(0, Ordering::Relaxed);
        if key != 0 {
            state.idle.remove(&key);
        }
        if member.is_reclaimed() {
            state.asked = state.asked.saturating_sub(1);
        }
    }

    /// Take the longest-idle connections off the queue until enough slots are free, and mark
    /// them asked.
    fn pick(&self, state: &mut State) -> Vec<Arc<Member>> {
        // A connection whose handle is gone no longer holds its slot for reclaim's purposes,
        // though the listener counts it until it has seen its end; one accepted while full is
        // the other way round. Occupied is what both count.
        let occupied = (self.shared.active.load(Ordering::Relaxed))
            .min(self.shared.handles.load(Ordering::Relaxed));
        let active = occupied.saturating_sub(state.asked);
        let free = self.limit.saturating_sub(active);
        let wanted = self.keep_free.saturating_sub(free);
        let mut asked = Vec::new();
        while asked.len() < wanted {
            let Some((_, member)) = state.idle.pop_first() else {
                break;
            };
            member.key.store(0, Ordering::Relaxed);
            member.reclaimed.store(true, Ordering::Release);
            asked.push(member);
        }
        state.asked += asked.len();
        asked
    }

    /// Tell each connection picked, count and log it.
    fn ask(&self, asked: Vec<Arc<Member>>) {
        if asked.is_empty() {
            return;
        }
        log_event!(
            debug,
            asked = asked.len(),
            active = self.shared.active.load(Ordering::Relaxed),
            limit = self.limit,
            keep_free = self.keep_free,
            "reclaim: near the limit, idle connections asked to close"
        );
        for member in asked {
            member.notify.notify_waiters();
            reject(
                Some(&self.shared.rejections),
                RejectReason::Reclaimed,
                member.peer,
            );
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
