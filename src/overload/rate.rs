use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use super::peer::{PeerAddr, DROP_BUDGET};
use super::reject::{Ambient, RejectReason};
use super::schedule::Schedule;

/// The burst [`LimitRate::reject_excess`] allows unless [`LimitRate::burst`] was set.
pub const REJECT_EXCESS_BURST: u32 = 4;

/// How many items [`LimitRate`] passes on in a row by default before it yields to the runtime:
/// HAProxy's `tune.maxaccept` default, which its authors found best.
pub(crate) const DEFAULT_MAX_PER_WAKE: u32 = 4;

pin_project! {
    /// Stream for the [`limit_rate`](super::OverloadExt::limit_rate) method.
    ///
    /// It holds a [`tokio::time::Sleep`], so it is `!Unpin`: pin it (`Box::pin` or
    /// `tokio::pin!`) to call `next()` directly.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{pin::pin, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut accepts = pin!(stream::iter(0..3).limit_rate(2, Duration::from_secs(1)));
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(accepts.next().await, Some(0));
    /// assert_eq!(accepts.next().await, Some(1));
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct LimitRate<S> {
        #[pin]
        stream: S,
        // Armed once, then re-armed with `reset`: one timer for the stream's whole life.
        #[pin]
        sleep: Option<Sleep>,
        schedule: Schedule,
        max_per_wake: u32,
        // Whether `burst` was called, for the default of `reject_excess`.
        burst_set: bool,
        in_a_row: u32,
        // Items are owed: the last poll waited for a token, or passed an item, and the inner
        // stream has not run dry since. Lateness is then charged to the schedule, not lost.
        owed: bool,
        done: bool,
    }
}

impl<S: Stream> LimitRate<S> {
    #[track_caller]
    pub(crate) fn new(stream: S, n: u32, per: Duration) -> Self {
        assert!(n > 0, "limit_rate: n must be at least 1");
        let interval = per / n;
        assert!(
            !interval.is_zero(),
            "limit_rate: {n} per {per:?} leaves under a nanosecond between items"
        );
        LimitRate {
            stream,
            sleep: None,
            schedule: Schedule::new(interval),
            max_per_wake: DEFAULT_MAX_PER_WAKE,
            burst_set: false,
            in_a_row: 0,
            owed: false,
            done: false,
        }
    }
}

impl<S> LimitRate<S> {
    /// Let up to `burst` items through at once after a quiet spell (a token bucket of that
    /// size); the default is 1, which spaces every item by the full interval. In any window of
    /// length `d`, at most `burst + d / interval` items pass, where `interval` is `per / n`.
    ///
    /// # Panics
    ///
    /// Panics if `burst` is zero.
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
    /// let at: Vec<_> = stream::iter(0..5)
    ///     .limit_rate(10, Duration::from_secs(1))
    ///     .burst(3)
    ///     .map(|_| start.elapsed().as_millis())
    ///     .collect()
    ///     .await;
    /// assert_eq!(at, [0, 0, 0, 100, 200]);
    /// # }
    /// ```
    #[track_caller]
    pub fn burst(mut self, burst: u32) -> Self {
        assert!(burst > 0, "burst: the burst must be at least 1");
        self.schedule.set_burst(burst);
        self.burst_set = true;
        self
    }

    /// Pass on at most `n` items in a row without returning `Pending`, then yield to the
    /// runtime once, so that a burst on one listener cannot starve the other tasks (and other
    /// listeners) of the runtime. The default is 4, after HAProxy's `tune.maxaccept`.
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{pin::pin, time::Duration};
    /// use futures_util::{stream, FutureExt, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let accepts = stream::iter(0..10).limit_rate(1000, Duration::from_secs(1)).burst(10);
    /// let mut accepts = pin!(accepts.max_per_wake(2));
    /// assert_eq!(accepts.next().now_or_never(), Some(Some(0)));
    /// assert_eq!(accepts.next().now_or_never(), Some(Some(1)));
    /// assert_eq!(accepts.next().now_or_never(), None); // a turn for the other tasks
    /// assert_eq!(accepts.next().now_or_never(), Some(Some(2)));
    /// # }
    /// ```
    #[track_caller]
    pub fn max_per_wake(mut self, n: u32) -> Self {
        assert!(n > 0, "max_per_wake: the cap must be at least 1");
        self.max_per_wake = n;
        self
    }

    /// Close the excess at once instead of leaving it in the kernel's backlog: an item that
    /// arrives while no token is due is dropped (closing the connection), logged, and counted
    /// as [`RejectReason::RateLimit`] with its peer's address in the stats of the listener
    /// that polls it, as Envoy's connection rate limit filter does.
    /// The inner stream is then polled whenever the stream is, and no timer is armed. As without
    /// it, a token is charged from when it was due if that was under 5 ms ago, so in any window
    /// of length `d` at most `burst + 1 + (d + 5 ms) / interval` items pass.
    ///
    /// Unless [`burst`](LimitRate::burst) was set, it allows a burst of
    /// [`REJECT_EXCESS_BURST`](super::REJECT_EXCESS_BURST) (4): with a burst of 1, a client that
    /// arrives a moment before its token is due is refused, and under CPU load (the timer and
    /// the runtime late, arrivals bunched) that refused about half of the clients a rate of
    /// fair ones should have let through (measured: 0.46-0.56 of the limit accepted with a burst
    /// of 1, 0.995-1.000 with 4). Set `burst(1)` explicitly for the strictest spacing.
    ///
    /// Which to choose:
    ///
    /// - Without it (the default), the excess waits its turn: every client is served in the
    ///   end, at the rate, as long as the backlog holds it (past that the kernel drops its SYNs
    ///   and it retries). Right for bursts of legitimate clients, say a reconnect storm after a
    ///   restart. The cost is latency, and a flood fills the backlog, so fair clients wait
    ///   behind it.
    /// - With it, the excess learns at once and is counted with its address (for a hook that
    ///   blocks the worst sources). Right against floods: the backlog stays short, so a fair
    ///   client's wait stays short too. The cost is an accept and a close per excess connection,
    ///   and fair clients over the rate are refused and must retry.
    ///
    /// [`max_per_wake`](LimitRate::max_per_wake) does not apply: items pass at the rate anyway,
    /// and at most 64 excess connections are closed before it yields to the runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{overload::{OverloadExt, RejectReason}, ListenExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let peer = "10.0.0.1:1000".parse::<SocketAddr>().unwrap();
    /// // Ten connections arrive at once, at most 2 a second with a burst of 3.
    /// let server = stream::iter(vec![((), peer); 10])
    ///     .limit_rate(2, Duration::from_secs(1))
    ///     .burst(3)
    ///     .reject_excess()
    ///     .map(|_| async {})
    ///     .listen(10);
    /// let stats = server.stats();
    /// server.await;
    /// let s = stats.snapshot();
    /// assert_eq!((s.connections, s.rejected.get(RejectReason::RateLimit)), (3, 7));
    /// # }
    /// ```
    pub fn reject_excess(self) -> RejectExcess<S>
    where
        S: Stream,
        S::Item: PeerAddr,
    {
        let mut schedule = self.schedule;
        if !self.burst_set {
            schedule.set_burst(REJECT_EXCESS_BURST);
        }
        RejectExcess {
            stream: self.stream,
            schedule,
            rejections: Ambient::default(),
        }
    }

    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly bypasses the limit.",
        into_inner: "dropping the limiter."
    );
}

impl<S: Stream> Stream for LimitRate<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if *this.in_a_row >= *this.max_per_wake {
            *this.in_a_row = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let now = Instant::now();
        if let Some(due) = this.schedule.due() {
            if now < due {
                // No token: leave the inner stream unpolled (new clients wait in the kernel's
                // backlog) and sleep until exactly when the next token is due.
                match this.sleep.as_mut().as_pin_mut() {
                    Some(sleep) => sleep.reset(due),
                    None => this.sleep.set(Some(sleep_until(due))),
                }
                let sleep = this.sleep.as_mut().as_pin_mut().expect("armed above");
                if sleep.poll(cx).is_pending() {
                    *this.in_a_row = 0;
                    *this.owed = true;
                    return Poll::Pending;
                }
                *this.owed = true;
            }
        }
        // While items are owed, charge each from the schedule, not from when the runtime got
        // round to us; time the inner stream spends without an item is not banked.
        let make_up_lateness = *this.owed;
        match this.stream.poll_next(cx) {
            Poll::Pending => {
                *this.in_a_row = 0;
                *this.owed = false;
                Poll::Pending
            }
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => {
                this.schedule.take(now, make_up_lateness);
                *this.in_a_row += 1;
                *this.owed = true;
                Poll::Ready(Some(item))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            self.stream.size_hint()
        }
    }
}

impl<S: Stream> FusedStream for LimitRate<S> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<S: fmt::Debug> fmt::Debug for LimitRate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitRate")
            .field("stream", &self.stream)
            .field("schedule", &self.schedule)
            .field("max_per_wake", &self.max_per_wake)
            .field(
                "waiting",
                &self.sleep.as_ref().is_some_and(|s| !s.is_elapsed()),
            )
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Stream for the [`LimitRate::reject_excess`](super::LimitRate::reject_excess) method.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    /// use tokio::time::{sleep_until, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    /// let start = Instant::now();
    /// // Clients arrive at 0, 0, 0 and 1000 ms; one a second is allowed, with a burst of 2.
    /// let passed: Vec<u64> = stream::iter([0, 0, 0, 1000])
    ///     .then(|ms| async move {
    ///         sleep_until(start + Duration::from_millis(ms)).await;
    ///         (ms, peer)
    ///     })
    ///     .limit_rate(1, Duration::from_secs(1))
    ///     .burst(2)
    ///     .reject_excess()
    ///     .map(|(ms, _)| ms)
    ///     .collect()
    ///     .await;
    /// assert_eq!(passed, [0, 0, 1000]); // the third was closed at once, not kept waiting
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct RejectExcess<S> {
        #[pin]
        stream: S,
        schedule: Schedule,
        rejections: Ambient,
    }
}

impl<S> RejectExcess<S> {
    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly bypasses the limit.",
        into_inner: "dropping the limiter."
    );
}

impl<S> Stream for RejectExcess<S>
where
    S: Stream,
    S::Item: PeerAddr,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        this.rejections.find();
        for _ in 0..DROP_BUDGET {
            let Some(item) = ready!(this.stream.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let now = Instant::now();
            if this.schedule.due().is_none_or(|due| now >= due) {
                // Charged from when the token was due if it came a moment ago, so that the
                // gap before the next arrival does not lower the rate under a flood.
                this.schedule.take(now, true);
                return Poll::Ready(Some(item));
            }
            // Over the rate: close it at once (a FIN, or a reset if the client had already sent
            // data) so that the client learns now, instead of waiting in the backlog.
            let peer = item.peer_addr().ok();
            drop(item);
            this.rejections.reject(RejectReason::RateLimit, peer);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Connections over the rate are dropped: nothing is promised.
        (0, self.stream.size_hint().1)
    }
}

impl<S> FusedStream for RejectExcess<S>
where
    S: FusedStream,
    S::Item: PeerAddr,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug> fmt::Debug for RejectExcess<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectExcess")
            .field("stream", &self.stream)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}
