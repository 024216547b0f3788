//! Rejections: why a connection was refused or dropped on purpose, the counts by reason, and
//! where each control reports them.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// Why a connection was refused or dropped on purpose.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::{overload::RejectReason, ListenExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let server = stream::iter([1, 60])
///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
///     .listen(10)
///     .connection_time_limit(Duration::from_secs(30));
/// let stats = server.stats();
/// server.await;
/// let s = stats.snapshot();
/// let rejected: Vec<_> = s.rejected.iter().filter(|&(_, n)| n > 0).collect();
/// assert_eq!(rejected, [(RejectReason::TimeLimit, 1)]);
/// assert_eq!(s.rejected.get(RejectReason::TimeLimit), s.timed_out);
/// assert_eq!(RejectReason::TimeLimit.as_str(), "time_limit"); // a metrics label
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Accepted and reset at once because the process ran out of descriptors, so that a queued
    /// client learns at once instead of waiting out its connect timeout
    /// ([`shed_on_emfile`](crate::listen::SleepOnError::shed_on_emfile)).
    Shed,
    /// Closed at once because its peer already held the most connections allowed per peer
    /// ([`limit_per_peer`](super::OverloadExt::limit_per_peer)).
    PeerLimit,
    /// Closed at once because it arrived faster than an accept rate limit allows
    /// ([`LimitRate::reject_excess`](super::LimitRate::reject_excess)). Plain
    /// [`limit_rate`](super::OverloadExt::limit_rate) leaves the excess waiting in the kernel's
    /// backlog instead, which is not a rejection.
    RateLimit,
    /// Failed because the peer sent slower than the minimum read rate
    /// ([`MinReadRate`](super::MinReadRate)).
    MinReadRate,
    /// Asked to close while idle because the listener was near its connection limit, to make
    /// room for new clients ([`Listener::reclaim_idle`](crate::listen::Listener::reclaim_idle)).
    /// Counted when it is asked; it ends as its handler decides (normally at once, as
    /// `finished`).
    Reclaimed,
    /// Cancelled because it ran longer than the per-connection time limit.
    TimeLimit,
    /// Cancelled by the listener: at the end of a graceful shutdown's grace period, or because
    /// the listener itself was dropped with the connection still running.
    Shutdown,
}

const REASONS: usize = 7;

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; REASONS] = [
        RejectReason::Shed,
        RejectReason::PeerLimit,
        RejectReason::RateLimit,
        RejectReason::MinReadRate,
        RejectReason::Reclaimed,
        RejectReason::TimeLimit,
        RejectReason::Shutdown,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// A short `snake_case` name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Shed => "shed",
            RejectReason::PeerLimit => "peer_limit",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::MinReadRate => "min_read_rate",
            RejectReason::Reclaimed => "reclaimed",
            RejectReason::TimeLimit => "time_limit",
            RejectReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connections rejected, by [`RejectReason`]: the one set of per-reason counters, read as part
/// of a listener's [`StatsSnapshot`](crate::listen::StatsSnapshot).
///
/// # Examples
///
/// ```
/// use staunch::overload::{RejectCounts, RejectReason};
///
/// let counts = RejectCounts::default();
/// assert_eq!(counts.get(RejectReason::PeerLimit), 0);
/// assert_eq!(counts.total(), 0);
/// assert_eq!(counts.to_string(), "none");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts([u64; REASONS]);

impl RejectCounts {
    /// Connections rejected for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason.index()]
    }

    /// Connections rejected for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every reason with its count, in the order of [`RejectReason::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    /// Add `other`'s counts to these.
    /// Set the count of `reason`, for those a listener counts with its endings.
    pub(crate) fn set(&mut self, reason: RejectReason, n: u64) {
        self.0[reason.index()] = n;
    }

    pub(crate) fn add(&mut self, other: &RejectCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl fmt::Display for RejectCounts {
    /// The reasons with a count, as `reason=n` separated by spaces; `none` if there are none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (reason, n) in self.iter().filter(|&(_, n)| n > 0) {
            if any {
                f.write_str(" ")?;
            }
            write!(f, "{reason}={n}")?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// One rejected connection, as the hook of
/// [`Listener::on_reject`](crate::listen::Listener::on_reject) sees it.
///
/// # Examples
///
/// Counting rejections by address, to find the worst sources:
///
/// ```
/// use std::collections::HashMap;
/// use std::net::{IpAddr, SocketAddr};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::overload::{OverloadExt, RejectEvent};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let from = |peer: &str| ((), peer.parse::<SocketAddr>().unwrap());
/// let clients = [from("10.0.0.1:1"), from("10.0.0.1:2"), from("10.0.0.1:3"), from("10.0.0.2:1")];
/// let by_address = Arc::new(Mutex::new(HashMap::<IpAddr, u64>::new()));
/// let server = stream::iter(clients)
///     .limit_per_peer(1)
///     .map(|permit| async move {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         drop(permit);
///     })
///     .listen(10)
///     .on_reject({
///         let by_address = by_address.clone();
///         move |event: &RejectEvent| {
///             if let Some(peer) = event.peer() {
///                 *by_address.lock().unwrap().entry(peer.ip()).or_default() += 1;
///             }
///         }
///     });
/// server.await;
/// let worst: IpAddr = "10.0.0.1".parse().unwrap();
/// assert_eq!(*by_address.lock().unwrap(), HashMap::from([(worst, 2)]));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RejectEvent {
    reason: RejectReason,
    peer: Option<SocketAddr>,
}

impl RejectEvent {
    /// Why it was rejected.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The peer's address, where the code that rejected it knew it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

pub(crate) type Hook = dyn Fn(&RejectEvent) + Send + Sync;

/// One listener's live rejection counters and its hook. Every control polled by the listener
/// (or made while it polls its stream) reports into it, found through [`Ambient`].
#[derive(Clone, Default)]
pub(crate) struct Rejections {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    counts: [AtomicU64; REASONS],
    hook: RwLock<Option<Arc<Hook>>>,
    /// The `listener` label of the rejection metric, once metrics are on.
    #[cfg(feature = "metrics")]
    metrics: std::sync::OnceLock<&'static str>,
}

impl Rejections {
    pub(crate) fn counts(&self) -> RejectCounts {
        RejectCounts(std::array::from_fn(|i| self.shared.counts[i].load(Relaxed)))
    }

    pub(crate) fn set_hook(&self, hook: Arc<Hook>) {
        *self.shared.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Record each rejection as the metric `staunch.rejected_connections`, labelled
    /// `listener = name` and `reason`.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_metrics(&self, name: &'static str) {
        let _ = self.shared.metrics.set(name);
    }

    /// Count one rejection and call the hook (without logging it: see [`reject`]).
    pub(crate) fn record(&self, reason: RejectReason, peer: Option<SocketAddr>) {
        // Several threads may reject at once (connections of a multi-thread runtime), so a
        // read-modify-write, unlike the single-writer counters of `Stats`.
        self.shared.counts[reason.index()].fetch_add(1, Relaxed);
        self.notify(reason, peer);
    }

    /// Tell the metrics and the hook of a rejection counted elsewhere (a listener's own
    /// cancels, which its ending counters already count).
    pub(crate) fn notify(&self, reason: RejectReason, peer: Option<SocketAddr>) {
        #[cfg(feature = "metrics")]
        if let Some(&listener) = self.shared.metrics.get() {
            ::metrics::counter!(
                "staunch.rejected_connections",
                "listener" => listener,
                "reason" => reason.as_str()
            )
            .increment(1);
        }
        let hook = self
            .shared
            .hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(&RejectEvent { reason, peer });
        }
    }
}

impl fmt::Debug for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.counts(), f)
    }
}

/// Log one rejection and count it into `rejections`, if the caller found any: the one place
/// every control reports through.
pub(crate) fn reject(
    rejections: Option<&Rejections>,
    reason: RejectReason,
    peer: Option<SocketAddr>,
) {
    log_event!(debug, reason = reason.as_str(), peer = ?peer, "connection rejected");
    if let Some(rejections) = rejections {
        rejections.record(reason, peer);
    }
}

thread_local! {
    /// The rejection counters of the listener polling its stream on this thread right now.
    static POLLING: Cell<Option<Rejections>> = const { Cell::new(None) };
}

/// Run `poll` with `lent` (a listener's counters) lent to this thread, so that every control
/// polled meanwhile, however many adapters deep, finds it. Moved in and back out: no clone. A
/// listener polled inside another's stream lends its own and restores the outer one after, also
/// on unwind.
pub(crate) fn lend<R>(lent: &mut Option<Rejections>, poll: impl FnOnce() -> R) -> R {
    struct GiveBack<'a> {
        slot: &'a mut Option<Rejections>,
        outer: Option<Rejections>,
    }
    impl Drop for GiveBack<'_> {
        fn drop(&mut self) {
            *self.slot = POLLING.with(|p| p.replace(self.outer.take()));
        }
    }
    let outer = POLLING.with(|p| p.replace(lent.take()));
    let _give_back = GiveBack { slot: lent, outer };
    poll()
}

/// A control's way to its listener's counters: found on the first poll inside a listener, then
/// kept. A control polled only outside any listener logs its rejections and counts none.
#[derive(Default)]
pub(crate) struct Ambient(Option<Rejections>);

impl Ambient {
    /// The counters of the listener polling on this thread now, if any.
    pub(crate) fn current() -> Ambient {
        Ambient(POLLING.with(|p| {
            let lent = p.take();
            let found = lent.clone();
            p.set(lent);
            found
        }))
    }

    /// Look for the listener if none is known yet: one thread-local access per call until found.
    pub(crate) fn find(&mut self) {
        if self.0.is_none() {
            *self = Ambient::current();
        }
    }

    /// Log one rejection and count it into the listener's counters, if found.
    pub(crate) fn reject(&self, reason: RejectReason, peer: Option<SocketAddr>) {
        reject(self.0.as_ref(), reason, peer);
    }

    pub(crate) fn is_found(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Ambient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ambient").field(&self.is_found()).finish()
    }
}
