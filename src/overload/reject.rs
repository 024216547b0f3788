use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why a connection was refused or dropped on purpose.
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
    /// Cancelled because a graceful shutdown's drain deadline passed.
    Shutdown,
}

impl RejectReason {
    /// Every reason, in declaration order.
    const ALL: [RejectReason; 7] = [
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

    /// `true` for the reasons a listener counts itself, as endings of connections it ran
    /// ([`StatsSnapshot::timed_out`](crate::listen::StatsSnapshot::timed_out) and
    /// [`cancelled`](crate::listen::StatsSnapshot::cancelled)).
    fn is_ending(self) -> bool {
        matches!(self, RejectReason::TimeLimit | RejectReason::Shutdown)
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

/// One rejected connection, as seen by the hook of [`Rejections::with_hook`].
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

type Hook = dyn Fn(&RejectEvent) + Send + Sync;

/// Counters of rejected connections, one per [`RejectReason`], and an optional hook that sees
/// each rejection with the peer's address.
///
/// A cheap handle: clones share the counters and the hook. Give a clone to every overload
/// control that should count into it (their `rejections` methods); without one they count
/// nothing and only log. The hook runs on the thread that rejected the connection, inside its
/// `poll`, so it must be quick and must not block.
///
/// Give it to the listener too, with [`Listener::rejections`](crate::listen::Listener::rejections):
/// the listener's [`Stats`](crate::Stats) then include these counters (each set of counters is
/// read once, however many listeners and streams it is given to), and the listener reports the
/// connections it cancels at their time limit ([`RejectReason::TimeLimit`]) or at the end of a
/// graceful shutdown ([`RejectReason::Shutdown`]) to the hook, without a peer address. Those two
/// reasons are counted here only when the listener reports them; in `Stats` they are the
/// listener's own `timed_out` and `cancelled`.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use staunch::overload::{RejectReason, Rejections};
///
/// let loud = Arc::new(AtomicU64::new(0));
/// let seen = loud.clone();
/// let rejections = Rejections::with_hook(move |event| {
///     if event.reason() == RejectReason::PeerLimit {
///         seen.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// assert_eq!(rejections.count(RejectReason::PeerLimit), 0);
/// assert_eq!(rejections.total(), 0);
/// ```
#[derive(Clone, Default)]
pub struct Rejections {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    counts: [AtomicU64; RejectReason::ALL.len()],
    hook: Option<Box<Hook>>,
}

impl Rejections {
    /// Counters, all zero, and no hook.
    pub fn new() -> Rejections {
        Rejections::default()
    }

    /// Counters, all zero, and a hook called for every rejection counted into them.
    pub fn with_hook(hook: impl Fn(&RejectEvent) + Send + Sync + 'static) -> Rejections {
        Rejections {
            shared: Arc::new(Shared {
                counts: Default::default(),
                hook: Some(Box::new(hook)),
            }),
        }
    }

    /// Connections rejected for `reason` so far.
    pub fn count(&self, reason: RejectReason) -> u64 {
        self.shared.counts[reason.index()].load(Relaxed)
    }

    /// Connections rejected for any reason so far.
    pub fn total(&self) -> u64 {
        RejectReason::ALL.iter().map(|&r| self.count(r)).sum()
    }

    /// Add the counters a listener does not count itself to `s`.
    pub(crate) fn add_to(&self, s: &mut crate::listen::StatsSnapshot) {
        for reason in RejectReason::ALL {
            if !reason.is_ending() {
                s.add_rejected(reason, self.count(reason));
            }
        }
    }

    /// The address of the shared counters, so that a set is read once however often it is
    /// reached.
    pub(crate) fn id(&self) -> *const () {
        Arc::as_ptr(&self.shared).cast()
    }

    /// Count one rejection and call the hook (without logging it: the caller did).
    pub(crate) fn report(&self, reason: RejectReason, peer: Option<SocketAddr>) {
        self.record(&RejectEvent { reason, peer });
    }

    fn record(&self, event: &RejectEvent) {
        // Several threads may reject at once (connections of a multi-thread runtime), so a
        // read-modify-write, unlike the single-writer counters of `Stats`.
        self.shared.counts[event.reason.index()].fetch_add(1, Relaxed);
        if let Some(hook) = &self.shared.hook {
            hook(event);
        }
    }
}

impl fmt::Debug for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for reason in RejectReason::ALL {
            map.entry(&reason.as_str(), &self.count(reason));
        }
        map.finish()
    }
}

/// Log one rejection and count it into `rejections`, if the caller has any: the one place every
/// overload control reports through.
pub(crate) fn reject(
    rejections: Option<&Rejections>,
    reason: RejectReason,
    peer: Option<SocketAddr>,
) {
    log_event!(debug, reason = reason.as_str(), peer = ?peer, "connection rejected");
    if let Some(rejections) = rejections {
        rejections.record(&RejectEvent { reason, peer });
    }
}
