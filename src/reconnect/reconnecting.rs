use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::builder::{Builder, ConnectHook, DisconnectHook};
use super::policy::DynPolicy;
use super::{
    Action, BoxFuture, ConnState, Connect, Context, Disconnected, EofPolicy, GaveUp, GiveUpCause,
    ReadMode, Reason, WriteMode,
};

/// A connection that reconnects: `AsyncRead + AsyncWrite` over whatever a [`Connect`]or opens,
/// with backoff, hooks, timeouts and a watchable state. See the [module docs](super) for what is
/// retried, what is reported and what can be lost.
///
/// Build one with [`Reconnecting::new`] or [`Reconnecting::builder`]; building never waits, the
/// first operation starts connecting (or, with
/// [`build_and_connect_in_background`](Builder::build_and_connect_in_background), a task starts
/// the first attempt at once). `Reconnecting` is `Unpin`, `Send` when the connector, its
/// future and the connection are `Send`, and `Sync` under the same condition (the state is only
/// ever reached through `&mut self`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{ConnState, Reconnecting};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// // A connector that fails once, then hands out in-memory connections to an echo peer.
/// let mut calls = 0;
/// let connector = move || {
///     calls += 1;
///     let first = calls == 1;
///     async move {
///         if first {
///             return Err(std::io::ErrorKind::ConnectionRefused.into());
///         }
///         let (client, mut server) = tokio::io::duplex(64);
///         tokio::spawn(async move {
///             let (mut r, mut w) = tokio::io::split(&mut server);
///             let _ = tokio::io::copy(&mut r, &mut w).await;
///         });
///         Ok(client)
///     }
/// };
/// let mut conn = Reconnecting::builder(connector)
///     .policy(Constant::new(Duration::from_secs(1)))
///     .build();
/// let state = conn.watch();
/// conn.write_all(b"ping").await?; // connects (after one failure and a 1 s backoff)
/// let mut reply = [0; 4];
/// conn.read_exact(&mut reply).await?;
/// assert_eq!(&reply, b"ping");
/// assert!(matches!(*state.borrow(), ConnState::Connected { generation: 1 }));
/// # Ok(())
/// # }
/// ```
#[must_use = "a Reconnecting does nothing unless read from or written to"]
pub struct Reconnecting<C: Connect> {
    inner: Mutex<Inner<C>>,
    tx: watch::Sender<ConnState>,
}

struct Inner<C: Connect> {
    connector: C,
    state: State<C>,
    policy_template: Box<dyn DynPolicy>,
    policy: Box<dyn DynPolicy>,
    connect_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    eof: EofPolicy,
    read_mode: ReadMode,
    write_mode: WriteMode,
    is_disconnect: fn(&io::Error) -> bool,
    stable_after: Duration,
    retry_connect_if: fn(&io::Error) -> bool,
    on_disconnect: Option<DisconnectHook<C>>,
    on_connect: Option<ConnectHook<C::Io>>,
    cancel: Option<BoxFuture<()>>,
    /// Generation of the current (or last) established connection; 0 before the first.
    generation: u64,
    /// Attempts since the policy last started over (the loss of a stable connection).
    attempt: u32,
    total_attempts: u64,
    /// When the current outage began: the first attempt, or the loss of the last stable
    /// connection.
    outage_start: Option<Instant>,
    /// When the live connection was established.
    connected_at: Option<Instant>,
    /// How long the connection just lost had been up, for the `on_disconnect` hook's context.
    lost_uptime: Option<Duration>,
    /// Bytes accepted by the current connection since it was established or confirmed.
    unconfirmed: u64,
    /// The last lost connection.
    loss: Option<Disconnected>,
    last_reason: Option<Reason>,
    /// The generation each half last used and has not yet been told it lost (0: none).
    read_gen: u64,
    write_gen: u64,
    write_shut: bool,
    idle: Option<Pin<Box<Sleep>>>,
    /// The tasks waiting for the reconnect, one per direction (split halves poll from two tasks).
    waiters: Arc<Waiters>,
    /// Wakes every waiter; the reconnect's futures and sleeps are polled with it.
    waker: Waker,
}

/// The last waker of each direction. Futures keep only the last waker they were polled with, so
/// with split halves the reconnect's futures are polled with a waker that wakes both.
#[derive(Default)]
struct Waiters {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Waiters {
    fn register(&self, half: Half, waker: &Waker) {
        let slot = match half {
            Half::Read => &self.read,
            Half::Write => &self.write,
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            let waker = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

// Nothing is ever pinned in place: the connector is only used through `&mut`, the futures and
// sleeps are boxed, and the connection must be `Unpin` to be used at all.
impl<C: Connect> Unpin for Reconnecting<C> {}

enum State<C: Connect> {
    Idle,
    Failed(Reason),
    Hook(BoxFuture<Action>, Reason),
    Backoff(Pin<Box<Sleep>>),
    Connecting(Attempt<C>, Option<Pin<Box<Sleep>>>),
    Handshake(BoxFuture<io::Result<C::Io>>),
    Connected(C::Io),
    Exhausted(GaveUp),
    Closed,
}

/// One connection attempt: polled in place, or (the first attempt of
/// [`Builder::build_and_connect_in_background`]) running in a task of its own.
enum Attempt<C: Connect> {
    Local(Pin<Box<C::Future>>),
    Spawned(AbortOnDrop<io::Result<C::Io>>),
}

impl<C: Connect> Attempt<C> {
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<C::Io>> {
        match self {
            Attempt::Local(fut) => fut.as_mut().poll(cx),
            Attempt::Spawned(task) => match ready!(Pin::new(&mut task.0).poll(cx)) {
                Ok(result) => Poll::Ready(result),
                // The connector panicked in the task: panic here, as it would have in place.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down.
                Err(e) => Poll::Ready(Err(io::Error::other(e))),
            },
        }
    }
}

/// A spawned attempt is aborted when the adapter drops it (a timeout, a cancellation, a
/// shutdown, or the adapter itself being dropped), so no connection is left open behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<C: Connect> State<C> {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Failed(_) => "failed",
            State::Hook(..) => "on_disconnect",
            State::Backoff(_) => "backoff",
            State::Connecting(..) => "connecting",
            State::Handshake(_) => "on_connect",
            State::Connected(_) => "connected",
            State::Exhausted(_) => "exhausted",
            State::Closed => "closed",
        }
    }
}

/// What the state machine does next, computed while the state is borrowed.
enum Step<Io> {
    Connect,
    Disconnected(Reason),
    Backoff(Reason),
    GiveUp(GiveUpCause),
    Opened(Io),
    Established(Io),
    AttemptFailed(Reason),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Read,
    Write,
}

impl<C: Connect> Reconnecting<C> {
    /// A reconnecting connection with the default settings (see [`Builder`]).
    pub fn new(connector: C) -> Self {
        Builder::new(connector).build()
    }

    /// A builder, to set the backoff policy, timeouts, modes and hooks.
    pub fn builder(connector: C) -> Builder<C> {
        Builder::new(connector)
    }

    pub(crate) fn from_builder(b: Builder<C>) -> Self {
        let (tx, _) = watch::channel(ConnState::Idle);
        let waiters = Arc::new(Waiters::default());
        let inner = Inner {
            waker: Waker::from(Arc::clone(&waiters)),
            waiters,
            connector: b.connector,
            state: State::Idle,
            policy: b.policy.fresh(),
            policy_template: b.policy,
            connect_timeout: b.connect_timeout,
            idle_timeout: b.idle_timeout,
            eof: b.eof,
            read_mode: b.read_mode,
            write_mode: b.write_mode,
            is_disconnect: b.is_disconnect,
            stable_after: b.stable_after,
            retry_connect_if: b.retry_connect_if,
            on_disconnect: b.on_disconnect,
            on_connect: b.on_connect,
            cancel: b.cancel,
            generation: 0,
            attempt: 0,
            total_attempts: 0,
            outage_start: None,
            connected_at: None,
            lost_uptime: None,
            unconfirmed: 0,
            loss: None,
            last_reason: None,
            read_gen: 0,
            write_gen: 0,
            write_shut: false,
            idle: None,
        };
        Reconnecting {
            inner: Mutex::new(inner),
            tx,
        }
    }

    #[track_caller]
    pub(crate) fn from_builder_connecting(b: Builder<C>) -> Self
    where
        C::Future: Send + 'static,
        C::Io: Send + 'static,
    {
        let mut this = Self::from_builder(b);
        let (inner, tx) = this.split_mut();
        let task = tokio::spawn(inner.connector.connect());
        inner.begin_attempt(Attempt::Spawned(AbortOnDrop(task)), tx);
        this
    }

    /// A receiver of the state: every transition is published. Subscribing does not drive the
    /// adapter; only its operations do.
    pub fn watch(&self) -> watch::Receiver<ConnState> {
        self.tx.subscribe()
    }

    /// The current state (a snapshot of what [`watch`](Self::watch) publishes).
    pub fn state(&self) -> ConnState {
        self.tx.borrow().clone()
    }

    /// The generation of the current (or last) established connection; 0 before the first.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Bytes written on the current connection since it was established or last confirmed.
    pub fn unconfirmed_bytes(&self) -> u64 {
        self.lock().unconfirmed
    }

    /// Record that the peer has confirmed (at the application level) everything written so far:
    /// a later disconnect error counts unconfirmed bytes from here.
    pub fn confirm(&mut self) {
        self.inner_mut().unconfirmed = 0;
    }

    /// The connector, for example to change its target.
    pub fn connector_mut(&mut self) -> &mut C {
        &mut self.inner_mut().connector
    }

    /// The connector, taking the adapter apart (the live connection, if any, is closed).
    pub fn into_connector(self) -> C {
        self.inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .connector
    }

    /// The live connection, if there is one (for socket options, say). Writing to it directly
    /// bypasses the unconfirmed-bytes count.
    pub fn get_mut(&mut self) -> Option<&mut C::Io> {
        match &mut self.inner_mut().state {
            State::Connected(io) => Some(io),
            _ => None,
        }
    }

    /// Drive the adapter until a connection is established (after backoff and hooks as needed)
    /// and return its generation; fails once the adapter has given up or was shut down. Does
    /// nothing if already connected.
    ///
    /// Building never waits; to connect in the background while the program starts up, spawn
    /// this and take the adapter back when it is needed:
    ///
    /// ```
    /// use staunch::reconnect::Reconnecting;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let mut conn = Reconnecting::new(|| async { Ok(tokio::io::duplex(64).0) });
    /// let connecting = tokio::spawn(async move {
    ///     let generation = conn.wait_connected().await;
    ///     (conn, generation)
    /// });
    /// // ... other start-up work ...
    /// let (conn, generation) = connecting.await.unwrap();
    /// assert_eq!(generation?, 1);
    /// # drop(conn);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_connected(&mut self) -> io::Result<u64> {
        std::future::poll_fn(|cx| {
            let (inner, tx) = self.split_mut();
            inner
                .poll_connected(cx, Half::Write, tx)
                .map_ok(|()| inner.generation)
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inner_mut(&mut self) -> &mut Inner<C> {
        self.split_mut().0
    }

    /// The state, without locking: `&mut self` proves no one else holds it.
    fn split_mut(&mut self) -> (&mut Inner<C>, &watch::Sender<ConnState>) {
        (
            self.inner.get_mut().unwrap_or_else(PoisonError::into_inner),
            &self.tx,
        )
    }
}

fn publish(tx: &watch::Sender<ConnState>, state: ConnState) {
    tx.send_replace(state);
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection was shut down")
}

impl<C: Connect> Inner<C> {
    fn context(&self, reason: Option<Reason>, generation: u64) -> Context {
        Context {
            attempt: self.attempt,
            total_attempts: self.total_attempts,
            generation,
            uptime: reason.as_ref().and(self.lost_uptime),
            reason,
            elapsed: self.outage_start.map_or(Duration::ZERO, |t| t.elapsed()),
        }
    }

    /// The give-up error, for operations that otherwise need no connection.
    fn check_exhausted(&self) -> io::Result<()> {
        match &self.state {
            State::Exhausted(gave_up) => Err(gave_up.to_io_error()),
            _ => Ok(()),
        }
    }

    fn is_live(&self, generation: u64) -> bool {
        matches!(self.state, State::Connected(_)) && self.generation == generation
    }

    /// The disconnect error owed to a half whose connection is gone, once; only for a half whose
    /// mode reports the boundary ([`ReadMode::Boundary`], [`WriteMode::Report`]).
    fn take_boundary(&mut self, half: Half) -> Option<io::Error> {
        let seen = match half {
            Half::Read if self.read_mode == ReadMode::Boundary => self.read_gen,
            Half::Write if self.write_mode == WriteMode::Report => self.write_gen,
            _ => return None,
        };
        if seen == 0 || self.is_live(seen) {
            return None;
        }
        match half {
            Half::Read => self.read_gen = 0,
            Half::Write => self.write_gen = 0,
        }
        self.loss.as_ref().map(Disconnected::to_io_error)
    }

    /// The live connection was lost; returns the error that reports the loss.
    fn fail(&mut self, reason: Reason, tx: &watch::Sender<ConnState>) -> io::Error {
        log_event!(
            debug,
            generation = self.generation,
            unconfirmed = self.unconfirmed,
            reason = %reason,
            "staunch::reconnect: connection lost"
        );
        let loss = Disconnected {
            generation: self.generation,
            unconfirmed: self.unconfirmed,
            reason: reason.clone(),
        };
        let error = loss.to_io_error();
        self.loss = Some(loss);
        self.unconfirmed = 0;
        self.idle = None;
        let uptime = self.connected_at.take().map(|t| t.elapsed());
        self.lost_uptime = uptime;
        if uptime.is_some_and(|up| up >= self.stable_after) {
            // A stable connection ended the last outage: this loss starts a new one.
            self.attempt = 0;
            self.policy = self.policy_template.fresh();
            self.outage_start = Some(Instant::now());
        } else {
            log_event!(
                debug,
                ?uptime,
                attempt = self.attempt,
                "staunch::reconnect: connection lost before the stable period, backoff goes on"
            );
        }
        self.last_reason = Some(reason.clone());
        if self.write_shut {
            self.state = State::Closed;
            publish(tx, ConnState::Closed);
        } else {
            self.set_failed(reason, tx);
        }
        error
    }

    fn set_failed(&mut self, reason: Reason, tx: &watch::Sender<ConnState>) {
        publish(
            tx,
            ConnState::Disconnected {
                generation: self.generation,
                reason: reason.clone(),
            },
        );
        self.state = State::Failed(reason);
    }

    fn give_up(&mut self, cause: GiveUpCause, tx: &watch::Sender<ConnState>) {
        let gave_up = GaveUp {
            cause,
            attempts: self.attempt,
            last_reason: self.last_reason.clone(),
        };
        log_event!(warn, cause = ?cause, attempts = self.attempt, "staunch::reconnect: giving up");
        publish(tx, ConnState::Exhausted(gave_up.clone()));
        self.state = State::Exhausted(gave_up);
        self.cancel = None;
    }

    /// Drive the state machine until there is a live connection, or a terminal state.
    ///
    /// `cx`'s waker is registered for `half`; the reconnect's futures are polled with a waker that
    /// wakes the last task of each half, so neither split half misses the end of a reconnect that
    /// the other drove.
    fn poll_connected(
        &mut self,
        cx: &mut TaskContext<'_>,
        half: Half,
        tx: &watch::Sender<ConnState>,
    ) -> Poll<io::Result<()>> {
        if !matches!(
            self.state,
            State::Connected(_) | State::Exhausted(_) | State::Closed
        ) {
            self.waiters.register(half, cx.waker());
        }
        let waker = self.waker.clone();
        let cx = &mut TaskContext::from_waker(&waker);
        loop {
            let busy = !matches!(
                self.state,
                State::Connected(_) | State::Exhausted(_) | State::Closed
            );
            if busy {
                if let Some(cancel) = self.cancel.as_mut() {
                    if cancel.as_mut().poll(cx).is_ready() {
                        self.give_up(GiveUpCause::Cancelled, tx);
                        continue;
                    }
                }
            }
            let step = match &mut self.state {
                State::Connected(_) => return Poll::Ready(Ok(())),
                State::Exhausted(gave_up) => return Poll::Ready(Err(gave_up.to_io_error())),
                State::Closed => return Poll::Ready(Err(closed_error())),
                State::Idle => Step::Connect,
                State::Failed(reason) => Step::Disconnected(reason.clone()),
                State::Hook(fut, reason) => match ready!(fut.as_mut().poll(cx)) {
                    Action::Reconnect => Step::Backoff(reason.clone()),
                    Action::GiveUp => Step::GiveUp(GiveUpCause::Hook),
                },
                State::Backoff(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    Step::Connect
                }
                State::Connecting(attempt, timeout) => match attempt.poll(cx) {
                    Poll::Ready(Ok(io)) => Step::Opened(io),
                    Poll::Ready(Err(e)) => Step::AttemptFailed(Reason::ConnectFailed(Arc::new(e))),
                    Poll::Pending => match timeout {
                        Some(t) => {
                            ready!(t.as_mut().poll(cx));
                            Step::AttemptFailed(Reason::ConnectTimeout(
                                self.connect_timeout.unwrap_or_default(),
                            ))
                        }
                        None => return Poll::Pending,
                    },
                },
                State::Handshake(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok(io) => Step::Established(io),
                    Err(e) => Step::AttemptFailed(Reason::HandshakeFailed(Arc::new(e))),
                },
            };
            self.step(step, tx);
        }
    }

    /// Count, publish and start the timeout of a new attempt.
    fn begin_attempt(&mut self, attempt: Attempt<C>, tx: &watch::Sender<ConnState>) {
        self.attempt = self.attempt.saturating_add(1);
        self.total_attempts += 1;
        self.lost_uptime = None;
        self.outage_start.get_or_insert_with(Instant::now);
        log_event!(
            debug,
            attempt = self.attempt,
            "staunch::reconnect: connecting"
        );
        publish(
            tx,
            ConnState::Connecting {
                attempt: self.attempt,
            },
        );
        let timeout = self
            .connect_timeout
            .map(|t| Box::pin(tokio::time::sleep(t)));
        self.state = State::Connecting(attempt, timeout);
    }

    fn step(&mut self, step: Step<C::Io>, tx: &watch::Sender<ConnState>) {
        match step {
            Step::Connect => {
                let attempt = Attempt::Local(Box::pin(self.connector.connect()));
                self.begin_attempt(attempt, tx);
            }
            Step::Disconnected(reason) => {
                let ctx = self.context(Some(reason.clone()), self.generation);
                if let Some(hook) = self.on_disconnect.as_mut() {
                    log_event!(debug, reason = %reason, "staunch::reconnect: running on_disconnect");
                    let fut = hook(&ctx, &mut self.connector);
                    self.state = State::Hook(fut, reason);
                } else {
                    self.step(Step::Backoff(reason), tx);
                }
            }
            Step::Backoff(reason) => match self.policy.next_delay() {
                Some(delay) => {
                    log_event!(
                        debug,
                        ?delay,
                        attempt = self.attempt + 1,
                        "staunch::reconnect: backing off"
                    );
                    publish(
                        tx,
                        ConnState::Backoff {
                            attempt: self.attempt.saturating_add(1),
                            delay,
                            last_error: reason,
                        },
                    );
                    self.state = State::Backoff(Box::pin(tokio::time::sleep(delay)));
                }
                None => self.give_up(GiveUpCause::PolicyExhausted, tx),
            },
            Step::GiveUp(cause) => self.give_up(cause, tx),
            Step::Opened(io) => {
                let ctx = self.context(None, self.generation + 1);
                if let Some(hook) = self.on_connect.as_mut() {
                    log_event!(debug, "staunch::reconnect: running on_connect");
                    self.state = State::Handshake(hook(&ctx, io));
                } else {
                    self.step(Step::Established(io), tx);
                }
            }
            Step::Established(io) => {
                // The attempt count, the policy and the outage go on until this connection has
                // proved stable (see `fail`).
                self.generation += 1;
                self.connected_at = Some(Instant::now());
                self.unconfirmed = 0;
                self.idle = None;
                log_event!(
                    info,
                    generation = self.generation,
                    "staunch::reconnect: connected"
                );
                publish(
                    tx,
                    ConnState::Connected {
                        generation: self.generation,
                    },
                );
                self.state = State::Connected(io);
            }
            Step::AttemptFailed(reason) => {
                log_event!(debug, attempt = self.attempt, reason = %reason, "staunch::reconnect: attempt failed");
                let fatal = match &reason {
                    Reason::ConnectFailed(e) => !(self.retry_connect_if)(e),
                    _ => false,
                };
                self.last_reason = Some(reason.clone());
                if fatal {
                    self.give_up(GiveUpCause::Fatal, tx);
                } else {
                    self.set_failed(reason, tx);
                }
            }
        }
    }
}

impl<C> Inner<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
        tx: &watch::Sender<ConnState>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            // Room for nothing is not end of stream, and needs no connection.
            return Poll::Ready(self.check_exhausted());
        }
        loop {
            if let Some(e) = self.take_boundary(Half::Read) {
                return Poll::Ready(Err(e));
            }
            if matches!(self.state, State::Closed) {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_connected(cx, Half::Read, tx))?;
            self.read_gen = self.generation;
            let State::Connected(io) = &mut self.state else {
                unreachable!("poll_connected returned Ok")
            };
            let before = buf.filled().len();
            let reason = match Pin::new(io).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > before => {
                    self.idle = None;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => match self.eof {
                    EofPolicy::End => return Poll::Ready(Ok(())),
                    EofPolicy::Reconnect => Reason::Eof,
                },
                Poll::Ready(Err(e)) if (self.is_disconnect)(&e) => Reason::Io(Arc::new(e)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let Some(limit) = self.idle_timeout else {
                        return Poll::Pending;
                    };
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                    ready!(idle.as_mut().poll(cx));
                    Reason::IdleTimeout(limit)
                }
            };
            let error = self.fail(reason, tx);
            self.read_gen = 0;
            if self.read_mode == ReadMode::Boundary {
                return Poll::Ready(Err(error));
            }
        }
    }

    fn poll_write_with(
        &mut self,
        cx: &mut TaskContext<'_>,
        len: usize,
        tx: &watch::Sender<ConnState>,
        mut write: impl FnMut(Pin<&mut C::Io>, &mut TaskContext<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(self.check_exhausted().map(|()| 0));
        }
        loop {
            if self.write_shut {
                return Poll::Ready(Err(closed_error()));
            }
            if let Some(e) = self.take_boundary(Half::Write) {
                return Poll::Ready(Err(e));
            }
            ready!(self.poll_connected(cx, Half::Write, tx))?;
            self.write_gen = self.generation;
            let State::Connected(io) = &mut self.state else {
                unreachable!("poll_connected returned Ok")
            };
            let error = match ready!(write(Pin::new(io), cx)) {
                Ok(0) => {
                    io::Error::new(io::ErrorKind::WriteZero, "the connection accepted no byte")
                }
                Ok(n) => {
                    self.unconfirmed += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if (self.is_disconnect)(&e) => e,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let error = self.fail(Reason::Io(Arc::new(error)), tx);
            self.write_gen = 0;
            if self.write_mode == WriteMode::Report {
                return Poll::Ready(Err(error));
            }
        }
    }

    fn poll_flush(
        &mut self,
        cx: &mut TaskContext<'_>,
        tx: &watch::Sender<ConnState>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.take_boundary(Half::Write) {
            return Poll::Ready(Err(e));
        }
        let io = match &mut self.state {
            State::Connected(io) => io,
            State::Exhausted(gave_up) => return Poll::Ready(Err(gave_up.to_io_error())),
            // No connection: nothing is buffered anywhere to flush, and flushing does not
            // reconnect.
            _ => return Poll::Ready(Ok(())),
        };
        match ready!(Pin::new(io).poll_flush(cx)) {
            Err(e) if (self.is_disconnect)(&e) => {
                let error = self.fail(Reason::Io(Arc::new(e)), tx);
                self.write_gen = 0;
                Poll::Ready(Err(error))
            }
            other => Poll::Ready(other),
        }
    }

    fn poll_shutdown(
        &mut self,
        cx: &mut TaskContext<'_>,
        tx: &watch::Sender<ConnState>,
    ) -> Poll<io::Result<()>> {
        // Like a flush, a shutdown is where a writer learns that bytes it wrote were lost.
        if let Some(e) = self.take_boundary(Half::Write) {
            return Poll::Ready(Err(e));
        }
        // After a give-up every operation keeps failing with the give-up error.
        self.check_exhausted()?;
        self.write_shut = true;
        match &mut self.state {
            State::Connected(io) => {
                let result = ready!(Pin::new(io).poll_shutdown(cx));
                log_event!(
                    debug,
                    generation = self.generation,
                    "staunch::reconnect: shut down"
                );
                Poll::Ready(result)
            }
            State::Exhausted(gave_up) => Poll::Ready(Err(gave_up.to_io_error())),
            State::Closed => Poll::Ready(Ok(())),
            _ => {
                log_event!(debug, "staunch::reconnect: shut down while not connected");
                self.state = State::Closed;
                publish(tx, ConnState::Closed);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<C> AsyncRead for Reconnecting<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (inner, tx) = self.get_mut().split_mut();
        inner.poll_read(cx, buf, tx)
    }
}

impl<C> AsyncWrite for Reconnecting<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let (inner, tx) = self.get_mut().split_mut();
        inner.poll_write_with(cx, buf.len(), tx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        let (inner, tx) = self.get_mut().split_mut();
        inner.poll_write_with(cx, len, tx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let (inner, tx) = self.get_mut().split_mut();
        inner.poll_flush(cx, tx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let (inner, tx) = self.get_mut().split_mut();
        inner.poll_shutdown(cx, tx)
    }
}

impl<C: Connect> fmt::Debug for Reconnecting<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Reconnecting");
        match self.inner.try_lock() {
            Ok(inner) => d
                .field("state", &inner.state.name())
                .field("generation", &inner.generation)
                .field("attempt", &inner.attempt)
                .field("unconfirmed", &inner.unconfirmed),
            Err(_) => d.field("state", &"<busy>"),
        };
        d.finish_non_exhaustive()
    }
}
