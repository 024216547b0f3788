use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::overload::{RejectCounts, RejectReason, Rejections};

/// A cheap handle to a server's counters, readable while it runs (from any thread).
///
/// Get one from [`SleepOnError::stats`](super::SleepOnError::stats) (accept counters only) or from
/// [`Listener::stats`](super::Listener::stats) (connection counters, plus the accept counters of
/// every `sleep_on_error` stream the listener polls, however many adapters sit between them).
/// Cloning it is an `Arc` clone; reading it is a handful of relaxed atomic loads.
///
/// # Examples
///
/// ```
/// use futures_util::stream;
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let accepts = stream::iter([Ok(1), Err(std::io::ErrorKind::ConnectionReset.into()), Ok(2)]);
/// let server = accepts
///     .sleep_on_error(std::time::Duration::from_millis(100))
///     .map(|n: u32| async move { let _ = n; })
///     .listen(10);
/// let stats = server.stats();
/// server.await;
/// let s = stats.snapshot();
/// assert_eq!((s.accepted, s.connection_errors, s.connections, s.finished), (2, 1, 2, 2));
/// # }
/// # use futures_util::StreamExt;
/// ```
#[derive(Clone)]
pub struct Stats {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Accept(Arc<AcceptShared>),
    Listen(Arc<ListenShared>),
    Merged(Arc<[Stats]>),
}

/// The counters of a [`Stats`] handle at one moment.
///
/// For a listener, `connections == active + finished + failed + panicked + timed_out + cancelled`
/// holds once it has stopped (while it runs, counters are read one by one and may be a moment
/// apart).
///
/// Connections refused or dropped on purpose are counted by reason in
/// [`rejected`](StatsSnapshot::rejected): by the overload controls and `shed_on_emfile` the
/// listener polls, by its idle reclaim, and by the listener itself when it cancels a connection
/// (`rejected.get(TimeLimit)` is `timed_out` and `rejected.get(Shutdown)` is `cancelled`). A
/// connection closed by `limit_per_peer`, `reject_excess` or shed was never started, so it is
/// not in `connections`; one failed by `MinReadRate` was, and its future ended as `failed` (or
/// `finished`, if the handler swallowed the error).
///
/// # Examples
///
/// ```
/// use futures_util::{stream, StreamExt};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = stream::iter([Ok(()), Err("bad request"), Ok(())])
///     .map(std::future::ready)
///     .listen(10);
/// let stats = server.stats();
/// server.await;
/// let s = stats.snapshot();
/// assert_eq!((s.connections, s.finished, s.failed), (3, 2, 1));
/// let ended = s.finished + s.failed + s.panicked + s.timed_out + s.cancelled;
/// assert_eq!(s.connections, s.active as u64 + ended);
/// assert!(s.to_string().contains(" connections=3 active=0 "));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Items `sleep_on_error` passed on (successful accepts).
    pub accepted: u64,
    /// Per-connection accept errors skipped at once.
    pub connection_errors: u64,
    /// Resource and unknown accept errors that made the stream back off.
    pub backoffs: u64,
    /// Times a backoff was cut short because one of the listener's connections ended and freed
    /// a descriptor.
    pub woken_by_release: u64,
    /// Connection futures started by the listener.
    pub connections: u64,
    /// Connection futures running now.
    pub active: usize,
    /// The most connection futures ever running at once.
    pub peak_active: usize,
    /// Connection futures that completed with `()` or `Ok`.
    pub finished: u64,
    /// Connection futures that completed with `Err` (logged).
    pub failed: u64,
    /// Connections that panicked (caught and logged): in the connection future, or in the
    /// synchronous part of the `map` closure that made it.
    pub panicked: u64,
    /// Connection futures cancelled by the per-connection time limit.
    pub timed_out: u64,
    /// Connection futures cancelled by the listener: at the end of a graceful shutdown's grace
    /// period, or because the listener was dropped while they ran.
    pub cancelled: u64,
    /// `true` once a `sleep_on_error` stream gave up and ended because errors persisted.
    pub gave_up: bool,
    /// Connections refused or dropped on purpose, by [`RejectReason`](crate::overload::RejectReason).
    pub rejected: RejectCounts,
}

impl Stats {
    pub(crate) fn accept(shared: Arc<AcceptShared>) -> Stats {
        Stats {
            source: Source::Accept(shared),
        }
    }

    pub(crate) fn listen(shared: Arc<ListenShared>) -> Stats {
        Stats {
            source: Source::Listen(shared),
        }
    }

    /// One view over several listeners' counters, for example one accept loop per core (see
    /// `bind_reuseport`). Counters are summed; `peak_active` is the sum of the peaks, an upper
    /// bound on the joint peak. Each set of counters is read once, however often it is reached:
    /// merging a listener's handle with the `sleep_on_error` handle it already includes (or one
    /// handle twice) counts nothing twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{ListenExt, Stats};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let a = stream::iter(0..3).map(|_| async {}).listen(1);
    /// let b = stream::iter(0..4).map(|_| async {}).listen(1);
    /// let all = Stats::merged([a.stats(), b.stats()]);
    /// tokio::join!(a, b);
    /// assert_eq!(all.snapshot().finished, 7);
    /// # }
    /// ```
    pub fn merged(stats: impl IntoIterator<Item = Stats>) -> Stats {
        Stats {
            source: Source::Merged(stats.into_iter().collect()),
        }
    }

    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        self.add_to(&mut s, &mut Vec::new());
        s
    }

    /// Add the counters not yet in `seen` (the addresses of those already added).
    fn add_to(&self, s: &mut StatsSnapshot, seen: &mut Vec<*const ()>) {
        let first = |seen: &mut Vec<*const ()>, p: *const ()| {
            let new = !seen.contains(&p);
            if new {
                seen.push(p);
            }
            new
        };
        match &self.source {
            Source::Accept(a) => {
                if first(seen, Arc::as_ptr(a).cast()) {
                    a.add_to(s);
                }
            }
            Source::Listen(l) => {
                if first(seen, Arc::as_ptr(l).cast()) {
                    l.add_to(s);
                }
                for a in l.linked.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    if first(seen, Arc::as_ptr(a).cast()) {
                        a.add_to(s);
                    }
                }
            }
            Source::Merged(all) => {
                let mut peak = 0;
                for stats in all.iter() {
                    let mut one = StatsSnapshot::default();
                    stats.add_to(&mut one, seen);
                    peak += one.peak_active;
                    one.peak_active = 0;
                    s.add(&one);
                }
                s.peak_active += peak;
            }
        }
    }

    /// Connection futures running now (0 for a handle from `sleep_on_error`).
    pub fn active(&self) -> usize {
        match &self.source {
            Source::Accept(_) => 0,
            Source::Listen(l) => l.active.load(Relaxed),
            Source::Merged(_) => self.snapshot().active,
        }
    }

    /// The error that made a `sleep_on_error` stream give up, if one did. It can be taken once.
    pub fn take_give_up_error(&self) -> Option<io::Error> {
        match &self.source {
            Source::Accept(a) => a.take_give_up_error(),
            Source::Listen(l) => l
                .linked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find_map(|a| a.take_give_up_error()),
            Source::Merged(all) => all.iter().find_map(Stats::take_give_up_error),
        }
    }
}

impl StatsSnapshot {
    fn add(&mut self, o: &StatsSnapshot) {
        self.accepted += o.accepted;
        self.connection_errors += o.connection_errors;
        self.backoffs += o.backoffs;
        self.woken_by_release += o.woken_by_release;
        self.connections += o.connections;
        self.active += o.active;
        self.peak_active = self.peak_active.max(o.peak_active);
        self.finished += o.finished;
        self.failed += o.failed;
        self.panicked += o.panicked;
        self.timed_out += o.timed_out;
        self.cancelled += o.cancelled;
        self.gave_up |= o.gave_up;
        self.rejected.add(&o.rejected);
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Stats").field(&self.snapshot()).finish()
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} connection_errors={} backoffs={} woken_by_release={} connections={} \
             active={} peak_active={} finished={} failed={} panicked={} timed_out={} cancelled={}",
            self.accepted,
            self.connection_errors,
            self.backoffs,
            self.woken_by_release,
            self.connections,
            self.active,
            self.peak_active,
            self.finished,
            self.failed,
            self.panicked,
            self.timed_out,
            self.cancelled
        )?;
        if self.rejected.total() > self.timed_out + self.cancelled {
            write!(f, " rejected: {}", self.rejected)?;
        }
        if self.gave_up {
            f.write_str(" gave_up")?;
        }
        Ok(())
    }
}

/// Counters of one `sleep_on_error` stream.
#[derive(Debug, Default)]
pub(crate) struct AcceptShared {
    pub(crate) accepted: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
    pub(crate) backoffs: AtomicU64,
    pub(crate) woken_by_release: AtomicU64,
    pub(crate) give_up_error: Mutex<Option<io::Error>>,
    pub(crate) gave_up: std::sync::atomic::AtomicBool,
}

impl AcceptShared {
    fn add_to(&self, s: &mut StatsSnapshot) {
        s.accepted += self.accepted.load(Relaxed);
        s.connection_errors += self.connection_errors.load(Relaxed);
        s.backoffs += self.backoffs.load(Relaxed);
        s.woken_by_release += self.woken_by_release.load(Relaxed);
        s.gave_up |= self.gave_up.load(Relaxed);
    }

    fn take_give_up_error(&self) -> Option<io::Error> {
        self.give_up_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Counters of one listener, and the accept streams linked to it.
#[derive(Debug, Default)]
pub(crate) struct ListenShared {
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicUsize,
    pub(crate) peak_active: AtomicUsize,
    pub(crate) finished: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// Bumped whenever a connection future ends (and so has dropped its socket).
    pub(crate) releases: AtomicU64,
    /// [`Conn`](super::Conn) handles alive: what reclaim counts as occupied, since a handle
    /// is dropped (by its connection, on any thread) before the listener notices the end.
    pub(crate) handles: AtomicUsize,
    linked: Mutex<Vec<Arc<AcceptShared>>>,
    /// Where every control this listener polls counts its rejections (found through the
    /// thread-local lend while the listener polls its stream), and where the listener counts
    /// its own cancels.
    pub(crate) rejections: Rejections,
    /// The hook of `on_connection`, and the metrics.
    pub(crate) observers: super::lifecycle::Observers,
}

impl ListenShared {
    fn add_to(&self, s: &mut StatsSnapshot) {
        s.connections += self.connections.load(Relaxed);
        s.active += self.active.load(Relaxed);
        s.peak_active = s.peak_active.max(self.peak_active.load(Relaxed));
        s.finished += self.finished.load(Relaxed);
        s.failed += self.failed.load(Relaxed);
        s.panicked += self.panicked.load(Relaxed);
        let (timed_out, cancelled) = (self.timed_out.load(Relaxed), self.cancelled.load(Relaxed));
        s.timed_out += timed_out;
        s.cancelled += cancelled;
        // A listener's own cuts are counted once, as endings.
        let mut rejected = self.rejections.counts();
        rejected.set(RejectReason::TimeLimit, timed_out);
        rejected.set(RejectReason::Shutdown, cancelled);
        s.rejected.add(&rejected);
    }

    pub(crate) fn started(&self) -> usize {
        bump(&self.connections);
        let active = self.active.load(Relaxed) + 1;
        self.active.store(active, Relaxed);
        if active > self.peak_active.load(Relaxed) {
            self.peak_active.store(active, Relaxed);
        }
        active
    }

    pub(crate) fn ended(&self, counter: &AtomicU64) {
        bump(counter);
        self.active.store(self.active.load(Relaxed) - 1, Relaxed);
        bump(&self.releases);
    }

    pub(crate) fn link(&self, accept: Arc<AcceptShared>) {
        self.linked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
    }
}

/// Add one to a counter. Every counter has a single writer, the task that owns the stream or
/// listener (they are written through `&mut`/`Pin<&mut>` paths only), so a plain load and store
/// is enough, and cheaper than a read-modify-write; readers on other threads see each value
/// whole.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}
