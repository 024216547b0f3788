use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};

use super::accept_error::hook::ErrorHook;
use super::accept_error::{report, AcceptAction, AcceptErrorEvent};
#[cfg(feature = "tracing")]
use super::connection::NoPanic;
use super::link::Link;
use super::shed::{is_out_of_descriptors, Shed};
use super::stats::{bump, AcceptShared, Stats};
use super::ErrorClass;
use crate::backoff::Constant;

/// The shortest backoff `sleep_on_error` sleeps, whatever a policy yields: a policy yielding zero
/// must not turn the accept loop into a busy loop.
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(1);

/// How many per-connection errors in a row one `poll_next` skips before yielding to the runtime,
/// so a stream that fails instantly forever cannot starve other tasks.
const SKIP_BUDGET: u32 = 64;

/// At most one backoff event a second is logged at `error` level; the others go to `debug`.
const LOUD_LOG_INTERVAL: Duration = Duration::from_secs(1);

pin_project! {
    /// Stream for the [`sleep_on_error`](crate::ListenExt::sleep_on_error) method.
    ///
    /// It yields every successful item of the inner stream, skips per-connection errors at once,
    /// and backs off on every other error. It never ends because of an error unless a give-up
    /// limit was set ([`give_up_after`](SleepOnError::give_up_after), or a policy that ends). It
    /// holds a [`tokio::time::Sleep`], so it is `!Unpin`: pin it (`Box::pin` or `tokio::pin!`)
    /// to call `next()` directly.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, pin::pin, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let oom = io::Error::from(io::ErrorKind::OutOfMemory);
    /// let accepts = stream::iter([Ok(1), Err(oom), Ok(2)]);
    /// let mut accepts = pin!(accepts.sleep_on_error(Duration::from_millis(100)));
    /// assert_eq!(accepts.next().await, Some(1));
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(accepts.next().await, Some(2)); // after a backoff
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// assert_eq!(accepts.next().await, None);
    /// assert_eq!(accepts.stats().snapshot().backoffs, 1);
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct SleepOnError<S, B = Constant, H = ()> {
        #[pin]
        stream: S,
        // Made at the first backoff (a `Sleep` needs a runtime), then reset for each one after.
        #[pin]
        sleep: Option<Sleep>,
        sleeping: bool,
        backoff: Backoff<B>,
        on_error: H,
        // Boxed: most streams do not shed, and pay one pointer for it.
        shed: Option<Box<Shed<S>>>,
        // Carried over as is by the builder methods.
        state: State,
    }
}

/// The backoff policy as given, the one running, and the errors that made it run.
#[derive(Debug)]
struct Backoff<B> {
    policy: B,
    current: B,
    consecutive: u32,
}

impl<B: Clone> Backoff<B> {
    fn new(policy: B) -> Self {
        Backoff {
            current: policy.clone(),
            policy,
            consecutive: 0,
        }
    }
}

#[derive(Debug)]
struct State {
    give_up_after: Option<u32>,
    shared: Arc<AcceptShared>,
    link: Link,
    last_class: ErrorClass,
    loud_log: Option<Instant>,
    done: bool,
}

impl<S, T> SleepOnError<S, Constant>
where
    S: Stream<Item = io::Result<T>>,
{
    #[track_caller]
    pub(crate) fn new(stream: S, delay: Duration) -> Self {
        assert!(
            !delay.is_zero(),
            "sleep_on_error: the delay must be greater than zero (a zero delay is a busy loop)"
        );
        SleepOnError {
            stream,
            sleep: None,
            sleeping: false,
            backoff: Backoff::new(Constant::new(delay)),
            on_error: (),
            shed: None,
            state: State {
                give_up_after: None,
                shared: Arc::default(),
                link: Link::default(),
                last_class: ErrorClass::Unknown,
                loud_log: None,
                done: false,
            },
        }
    }
}

impl<S, B, H> SleepOnError<S, B, H> {
    /// Replace the fixed delay with another backoff policy, for example
    /// [`Exponential`](crate::backoff::Exponential). The policy starts over (from a clone of the
    /// one given) after every successful accept. Delays under [`MIN_ACCEPT_BACKOFF`] are raised
    /// to it. When the policy ends (returns `None`), the stream gives up as with
    /// [`give_up_after`](SleepOnError::give_up_after).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{backoff::Exponential, ListenExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let oom = || -> io::Result<u32> { Err(io::ErrorKind::OutOfMemory.into()) };
    /// let accepts = stream::iter([oom(), oom(), oom(), Ok(1), oom(), Ok(2)]);
    /// let backoff = Exponential::builder()
    ///     .min(Duration::from_millis(10))
    ///     .max(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let accepts = accepts.sleep_on_error(Duration::from_millis(10)).backoff(backoff);
    /// assert_eq!(accepts.collect::<Vec<_>>().await, [1, 2]);
    /// // 10 + 20 + 40 ms, then the accept started the policy over: 10 ms.
    /// assert_eq!(start.elapsed(), Duration::from_millis(80));
    /// # }
    /// ```
    pub fn backoff<B2>(self, policy: B2) -> SleepOnError<S, B2, H>
    where
        B2: Iterator<Item = Duration> + Clone,
    {
        SleepOnError {
            stream: self.stream,
            sleep: None,
            sleeping: false,
            backoff: Backoff::new(policy),
            on_error: self.on_error,
            shed: self.shed,
            state: self.state,
        }
    }

    /// Call `hook` for every accept error, with its class and the action taken, before acting on
    /// it. Use it to count, alert or log in your own format.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::{io, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::{listen::ErrorClass, ListenExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let error = |kind: io::ErrorKind| -> io::Result<()> { Err(kind.into()) };
    /// let (reset, oom) = (io::ErrorKind::ConnectionReset, io::ErrorKind::OutOfMemory);
    /// let accepts = stream::iter([error(reset), error(oom), Ok(())]);
    /// let resource_errors = Arc::new(AtomicU64::new(0));
    /// let counter = resource_errors.clone();
    /// let accepts = accepts.sleep_on_error(Duration::from_millis(100)).on_error(move |event| {
    ///     if event.class() == ErrorClass::Resource {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// assert_eq!(accepts.count().await, 1);
    /// assert_eq!(resource_errors.load(Ordering::Relaxed), 1);
    /// # }
    /// ```
    pub fn on_error<H2>(self, hook: H2) -> SleepOnError<S, B, H2>
    where
        H2: FnMut(&AcceptErrorEvent<'_>),
    {
        SleepOnError {
            stream: self.stream,
            sleep: self.sleep,
            sleeping: self.sleeping,
            backoff: self.backoff,
            on_error: hook,
            shed: self.shed,
            state: self.state,
        }
    }

    /// End the stream when `errors` backed-off errors come in a row with no successful accept
    /// between them. The last error is logged, passed to the hook with
    /// [`AcceptAction::GiveUp`], and kept for [`Stats::take_give_up_error`], so a server that can
    /// never accept again can exit (and be restarted by its supervisor) instead of hanging.
    ///
    /// # Panics
    ///
    /// Panics if `errors` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let oom = || -> io::Result<u32> { Err(io::ErrorKind::OutOfMemory.into()) };
    /// let accepts = stream::iter([Ok(1), oom(), oom(), oom(), Ok(2)]);
    /// let accepts = accepts.sleep_on_error(Duration::from_millis(100)).give_up_after(3);
    /// let stats = accepts.stats();
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(accepts.collect::<Vec<_>>().await, [1]);
    /// assert_eq!(start.elapsed(), Duration::from_millis(200)); // two backoffs, then the end
    /// assert!(stats.snapshot().gave_up);
    /// let error = stats.take_give_up_error().unwrap();
    /// assert_eq!(error.kind(), io::ErrorKind::OutOfMemory);
    /// # }
    /// ```
    #[track_caller]
    pub fn give_up_after(mut self, errors: u32) -> Self {
        assert!(errors > 0, "give_up_after: the limit must be at least 1");
        self.state.give_up_after = Some(errors);
        self
    }

    /// A handle to this stream's counters.
    pub fn stats(&self) -> Stats {
        Stats::accept(self.state.shared.clone())
    }

    /// The backoff policy, as given.
    pub fn policy(&self) -> &B {
        &self.backoff.policy
    }

    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly bypasses the error handling.",
        into_inner: "dropping the rest."
    );
}

impl<S, B, H> SleepOnError<S, B, H> {
    /// Shed the backlog with `shed` on every `EMFILE` and `ENFILE` from now on.
    #[cfg(unix)]
    pub(super) fn set_shed(&mut self, shed: Shed<S>) {
        self.shed = Some(Box::new(shed));
    }
}

impl<S, B, H, T> Stream for SleepOnError<S, B, H>
where
    S: Stream<Item = io::Result<T>>,
    B: Iterator<Item = Duration> + Clone,
    H: ErrorHook,
{
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut this = self.project();
        let state = this.state;
        let backoff = this.backoff;
        if state.done {
            return Poll::Ready(None);
        }
        state.link.find(&state.shared);
        let mut skipped = 0;
        loop {
            if let Some(sleep) = this.sleep.as_mut().as_pin_mut().filter(|_| *this.sleeping) {
                let released =
                    state.last_class == ErrorClass::Resource && state.link.released_since_backoff();
                if released {
                    bump(&state.shared.woken_by_release);
                    log_event!(
                        debug,
                        "a connection ended and freed resources: accepting again"
                    );
                } else {
                    ready!(sleep.poll(cx));
                }
                *this.sleeping = false;
            }
            let error = match ready!(this.stream.as_mut().poll_next(cx)) {
                None => {
                    state.done = true;
                    return Poll::Ready(None);
                }
                Some(Ok(item)) => {
                    bump(&state.shared.accepted);
                    if backoff.consecutive > 0 {
                        backoff.consecutive = 0;
                        backoff.current = backoff.policy.clone();
                    }
                    return Poll::Ready(Some(item));
                }
                Some(Err(error)) => error,
            };
            let class = ErrorClass::of(&error);
            if class == ErrorClass::Connection {
                bump(&state.shared.connection_errors);
                report(this.on_error, &error, class, AcceptAction::Skip, 0);
                log_event!(
                    debug,
                    error = %NoPanic(&error),
                    kind = ?error.kind(),
                    errno = ?error.raw_os_error(),
                    active = ?state.link.active(),
                    "accept: per-connection error skipped"
                );
                skipped += 1;
                if skipped >= SKIP_BUDGET {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            backoff.consecutive = backoff.consecutive.saturating_add(1);
            let limit_reached = state
                .give_up_after
                .is_some_and(|n| backoff.consecutive >= n);
            let delay = if limit_reached {
                None
            } else {
                backoff.current.next().map(|d| d.max(MIN_ACCEPT_BACKOFF))
            };
            let Some(delay) = delay else {
                report(
                    this.on_error,
                    &error,
                    class,
                    AcceptAction::GiveUp,
                    backoff.consecutive,
                );
                log_event!(
                    error,
                    error = %NoPanic(&error),
                    kind = ?error.kind(),
                    errno = ?error.raw_os_error(),
                    consecutive = backoff.consecutive,
                    "accept: giving up after persistent errors; the stream ends"
                );
                state.shared.gave_up.store(true, Relaxed);
                *state
                    .shared
                    .give_up_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(error);
                state.done = true;
                return Poll::Ready(None);
            };
            bump(&state.shared.backoffs);
            report(
                this.on_error,
                &error,
                class,
                AcceptAction::Backoff(delay),
                backoff.consecutive,
            );
            let loud = state
                .loud_log
                .is_none_or(|at| at.elapsed() >= LOUD_LOG_INTERVAL);
            if loud {
                state.loud_log = Some(Instant::now());
            }
            log_backoff(
                loud,
                &error,
                class,
                delay,
                backoff.consecutive,
                state.link.active(),
            );
            if let Some(shed) = this
                .shed
                .as_deref_mut()
                .filter(|_| is_out_of_descriptors(&error))
            {
                let rejections = state.link.rejections();
                let (n, drained) = shed.shed(this.stream.as_ref().get_ref(), rejections, cx);
                if n > 0 {
                    log_event!(
                        info,
                        shed = n,
                        "accept: out of descriptors; queued connections reset"
                    );
                }
                if drained {
                    // The backlog is empty and the task waits for the next client, who meets
                    // `EMFILE` and is shed in turn when it arrives: no backoff.
                    return Poll::Pending;
                }
            }
            state.last_class = class;
            state.link.backoff_begins();
            match this.sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.reset(Instant::now() + delay),
                None => this.sleep.set(Some(sleep(delay))),
            }
            *this.sleeping = true;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.state.done {
            return (0, Some(0));
        }
        // Errors are dropped, so nothing is promised; at most every inner item comes out.
        (0, self.stream.size_hint().1)
    }
}

/// Log a backoff: at `error` level when `loud`, else at `debug`, so a long storm does not flood
/// the operator's log.
fn log_backoff(
    loud: bool,
    error: &io::Error,
    class: ErrorClass,
    delay: Duration,
    consecutive: u32,
    active: Option<usize>,
) {
    #[cfg(feature = "tracing")]
    macro_rules! event {
        ($level:ident) => {
            log_event!(
                $level,
                error = %NoPanic(error),
                kind = ?error.kind(),
                errno = ?error.raw_os_error(),
                class = ?class,
                delay_ms = delay.as_millis() as u64,
                consecutive,
                active = ?active,
                "accept: error, backing off"
            )
        };
    }
    #[cfg(feature = "tracing")]
    if loud {
        event!(error);
    } else {
        event!(debug);
    }
    let _ = (loud, error, class, delay, consecutive, active);
}

impl<S, B, H, T> FusedStream for SleepOnError<S, B, H>
where
    S: Stream<Item = io::Result<T>>,
    B: Iterator<Item = Duration> + Clone,
    H: ErrorHook,
{
    fn is_terminated(&self) -> bool {
        self.state.done
    }
}

impl<S: fmt::Debug, B: fmt::Debug, H: ErrorHook> fmt::Debug for SleepOnError<S, B, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SleepOnError")
            .field("stream", &self.stream)
            .field("policy", &self.backoff.policy)
            .field("backing_off", &self.sleeping)
            .field("consecutive", &self.backoff.consecutive)
            .field("give_up_after", &self.state.give_up_after)
            .field("has_hook", &!H::IS_NONE)
            .field("shed", &self.shed)
            .field("linked_to_listener", &self.state.link.is_linked())
            .field("done", &self.state.done)
            .finish_non_exhaustive()
    }
}
