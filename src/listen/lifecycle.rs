//! Each connection's life as its listener's observers see it: the hook of
//! [`Listener::on_connection`](super::Listener::on_connection), and (with the `metrics` feature)
//! the metrics of [`Listener::metrics`](super::Listener::metrics).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use futures_core::Stream;

use super::listener::Listener;
use super::mode::Mode;
use super::stats::ListenShared;

/// How a connection future ended.
///
/// # Examples
///
/// A log line for each connection:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::ConnectionEvent, ListenExt};
/// use tokio::time::sleep;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let server = stream::iter([(1, Ok(())), (2, Err("bad request")), (60, Ok(()))])
///     .map(|(secs, result)| async move {
///         sleep(Duration::from_secs(secs)).await;
///         result
///     })
///     .listen(10)
///     .connection_time_limit(Duration::from_secs(30))
///     .on_connection({
///         let lines = lines.clone();
///         move |event| {
///             if let ConnectionEvent::Ended { end, duration } = event {
///                 lines.lock().unwrap().push(format!("{end} after {duration:?}"));
///             }
///         }
///     });
/// server.await;
/// let lines = lines.lock().unwrap();
/// assert_eq!(*lines, ["finished after 1s", "failed after 2s", "timed_out after 30s"]);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionEnd {
    /// It completed with `()` or `Ok`.
    Finished,
    /// It completed with `Err` (logged).
    Failed,
    /// It panicked (caught and logged).
    Panicked,
    /// The listener cancelled it at its time limit.
    TimedOut,
    /// The listener cancelled it: at the end of a graceful shutdown's grace period, or because
    /// the listener was dropped.
    Cancelled,
}

impl ConnectionEnd {
    /// A short `snake_case` name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionEnd::Finished => "finished",
            ConnectionEnd::Failed => "failed",
            ConnectionEnd::Panicked => "panicked",
            ConnectionEnd::TimedOut => "timed_out",
            ConnectionEnd::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ConnectionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a connection's life, as the hook of
/// [`Listener::on_connection`](super::Listener::on_connection) sees it.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use staunch::listen::{ConnectionEnd, ConnectionEvent};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let events = Arc::new(Mutex::new(Vec::new()));
/// let server = stream::iter([1, 2])
///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
///     .listen(10)
///     .on_connection({
///         let events = events.clone();
///         move |event| events.lock().unwrap().push(*event)
///     });
/// server.await;
/// let ended = |secs| ConnectionEvent::Ended {
///     end: ConnectionEnd::Finished,
///     duration: Duration::from_secs(secs),
/// };
/// let opened = ConnectionEvent::Opened;
/// assert_eq!(*events.lock().unwrap(), [opened, opened, ended(1), ended(2)]);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The listener started the connection's future.
    Opened,
    /// The connection's future ended, `duration` after it was started.
    Ended {
        /// How it ended.
        end: ConnectionEnd,
        /// How long it ran.
        duration: Duration,
    },
}

pub(crate) type Hook = dyn Fn(&ConnectionEvent) + Send + Sync;

/// Who watches a listener's connections. Unset, a connection costs one check at its start.
#[derive(Default)]
pub(crate) struct Observers {
    pub(crate) hook: OnceLock<Arc<Hook>>,
    /// The `listener` label of the metrics, once they are on.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: OnceLock<&'static str>,
}

impl Observers {
    fn any(&self) -> bool {
        #[cfg(feature = "metrics")]
        if self.metrics.get().is_some() {
            return true;
        }
        self.hook.get().is_some()
    }

    fn tell(&self, event: ConnectionEvent) {
        if let Some(hook) = self.hook.get() {
            hook(&event);
        }
        #[cfg(feature = "metrics")]
        if let Some(&listener) = self.metrics.get() {
            metrics::connection(listener, &event);
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("hook", &self.hook.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<S, M> Listener<S, M>
where
    S: Stream,
    M: Mode<S::Item>,
{
    /// Call `hook` for every connection rejected on purpose: by an overload control or a
    /// `shed_on_emfile` stream this listener polls, by idle reclaim, or by the listener itself
    /// at a time limit or shutdown. It sees the [`RejectReason`](crate::overload::RejectReason)
    /// and the peer's address where it is known. It runs on the thread that rejected the
    /// connection, inside its `poll`, so it must be quick and must not block. A second call
    /// replaces the first hook.
    ///
    /// Every rejection is counted in [`StatsSnapshot::rejected`](super::StatsSnapshot::rejected)
    /// with or without a hook.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::sync::{Arc, Mutex};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::{OverloadExt, RejectReason};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let peer = "10.0.0.1:1000".parse::<SocketAddr>().unwrap();
    /// let server = stream::iter([((), peer), ((), peer)])
    ///     .limit_per_peer(1)
    ///     .map(|permit| async move {
    ///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///         drop(permit);
    ///     })
    ///     .listen(10)
    ///     .on_reject({
    ///         let seen = seen.clone();
    ///         move |event| seen.lock().unwrap().push((event.reason(), event.peer()))
    ///     });
    /// let stats = server.stats();
    /// server.await;
    /// let s = stats.snapshot();
    /// // The second connection arrived while the first held the peer's only slot.
    /// assert_eq!((s.connections, s.rejected.get(RejectReason::PeerLimit)), (1, 1));
    /// assert_eq!(*seen.lock().unwrap(), [(RejectReason::PeerLimit, Some(peer))]);
    /// # }
    /// ```
    pub fn on_reject(
        self,
        hook: impl Fn(&crate::overload::RejectEvent) + Send + Sync + 'static,
    ) -> Self {
        self.shared().rejections.set_hook(Arc::new(hook));
        self
    }

    /// Call `hook` when each connection starts and when it ends, with how it ended and how long
    /// it ran ([`ConnectionEvent`]): for a log line per connection, or metrics of your own. It
    /// runs on the thread that started or ended the connection (for a connection cancelled by
    /// the listener, where its future is dropped), so it must be quick and must not block. The
    /// counts of [`Stats`](super::Stats) are kept with or without it; without it (and without
    /// [`metrics`](Listener::metrics)) a connection costs nothing more.
    ///
    /// # Panics
    ///
    /// Panics if a hook was already set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::listen::{ConnectionEnd, ConnectionEvent};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let server = stream::iter([1u64, 60])
    ///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
    ///     .listen(10)
    ///     .connection_time_limit(Duration::from_secs(30))
    ///     .on_connection({
    ///         let seen = seen.clone();
    ///         move |event| {
    ///             if let ConnectionEvent::Ended { end, duration } = *event {
    ///                 seen.lock().unwrap().push((end, duration.as_secs()));
    ///             }
    ///         }
    ///     });
    /// server.await;
    /// let seen = seen.lock().unwrap();
    /// assert_eq!(*seen, [(ConnectionEnd::Finished, 1), (ConnectionEnd::TimedOut, 30)]);
    /// # }
    /// ```
    #[track_caller]
    pub fn on_connection(self, hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static) -> Self {
        assert!(
            self.shared().observers.hook.set(Arc::new(hook)).is_ok(),
            "on_connection: this listener already has a connection hook"
        );
        self
    }

    /// Record this listener's connections through the [`metrics`](https://docs.rs/metrics)
    /// facade, labelled `listener = name` (the names follow OpenTelemetry's and ASP.NET
    /// Kestrel's server metrics):
    ///
    /// | metric | kind | labels | what |
    /// |---|---|---|---|
    /// | `staunch.connections` | counter | `listener` | connections started |
    /// | `staunch.active_connections` | gauge | `listener` | connections running now |
    /// | `staunch.connection.duration` | histogram (seconds) | `listener`, `end` ([`ConnectionEnd::as_str`](super::ConnectionEnd::as_str)) | how long each ran, and how it ended |
    /// | `staunch.rejected_connections` | counter | `listener`, `reason` ([`RejectReason::as_str`](crate::overload::RejectReason::as_str)) | connections refused or dropped on purpose |
    ///
    /// Install a recorder (a Prometheus or OpenTelemetry exporter) as the `metrics` crate
    /// describes; without one, recording costs a few atomic loads. Needs the `metrics` feature.
    ///
    /// # Panics
    ///
    /// Panics if called twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
    /// # use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
    /// # #[derive(Default)]
    /// # struct Connections(Arc<AtomicU64>);
    /// # impl metrics::Recorder for Connections {
    /// #     fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    /// #     fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    /// #     fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    /// #     fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
    /// #         let public = key.labels().any(|l| (l.key(), l.value()) == ("listener", "public"));
    /// #         match key.name() == "staunch.connections" && public {
    /// #             true => Counter::from_arc(self.0.clone()),
    /// #             false => Counter::noop(),
    /// #         }
    /// #     }
    /// #     fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
    /// #         Gauge::noop()
    /// #     }
    /// #     fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
    /// #         Histogram::noop()
    /// #     }
    /// # }
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A recorder that counts `staunch.connections{listener="public"}`; a real server
    /// // installs an exporter (Prometheus, OpenTelemetry) here.
    /// let recorder = Connections::default();
    /// let connections = recorder.0.clone();
    /// metrics::set_global_recorder(recorder).unwrap();
    ///
    /// stream::iter(0..3).map(|_| async {}).listen(10).metrics("public").await;
    /// assert_eq!(connections.load(Ordering::Relaxed), 3);
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[track_caller]
    pub fn metrics(self, name: &'static str) -> Self {
        let shared = self.shared();
        assert!(
            shared.observers.metrics.set(name).is_ok(),
            "metrics: this listener already records metrics"
        );
        shared.rejections.record_metrics(name);
        self
    }
}

/// A started connection's clock: reports its end once, as `Cancelled` if the connection future
/// is dropped before it ends (an aborted task, a cleared pool, a dropped listener).
pub(crate) struct Life {
    opened: Instant,
    shared: Arc<ListenShared>,
    ended: bool,
}

impl Life {
    /// Report the start of a connection, and its clock, if anyone is watching.
    pub(crate) fn start(shared: &Arc<ListenShared>) -> Option<Box<Life>> {
        if !shared.observers.any() {
            return None;
        }
        shared.observers.tell(ConnectionEvent::Opened);
        Some(Box::new(Life {
            opened: Instant::now(),
            shared: shared.clone(),
            ended: false,
        }))
    }

    pub(crate) fn end(&mut self, end: ConnectionEnd) {
        self.ended = true;
        self.report(end);
    }

    fn report(&self, end: ConnectionEnd) {
        let duration = self.opened.elapsed();
        self.shared
            .observers
            .tell(ConnectionEvent::Ended { end, duration });
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        if !self.ended {
            self.report(ConnectionEnd::Cancelled);
        }
    }
}

/// The metrics of [`Listener::metrics`](super::Listener::metrics), through the `metrics` facade.
#[cfg(feature = "metrics")]
pub(crate) mod metrics {
    use super::ConnectionEvent;

    /// Connections started (a counter).
    pub(crate) const CONNECTIONS: &str = "staunch.connections";
    /// Connections running now (a gauge).
    pub(crate) const ACTIVE: &str = "staunch.active_connections";
    /// How long each connection ran, in seconds, labelled with how it ended (a histogram).
    pub(crate) const DURATION: &str = "staunch.connection.duration";

    pub(crate) fn connection(listener: &'static str, event: &ConnectionEvent) {
        match *event {
            ConnectionEvent::Opened => {
                ::metrics::counter!(CONNECTIONS, "listener" => listener).increment(1);
                ::metrics::gauge!(ACTIVE, "listener" => listener).increment(1.0);
            }
            ConnectionEvent::Ended { end, duration } => {
                ::metrics::gauge!(ACTIVE, "listener" => listener).decrement(1.0);
                ::metrics::histogram!(DURATION, "listener" => listener, "end" => end.as_str())
                    .record(duration.as_secs_f64());
            }
        }
    }
}
