use std::fmt;
use std::io::{self, IoSlice};
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::builder::{Builder, ConnectHook};
use super::retry::{Outage, RetryConfig};
use super::{
    ConnState, Connect, Disconnected, EofPolicy, ReadMode, Reason, ReconnectHandle, WriteMode,
};
use crate::task::{AbortOnDrop, WakeBoth};
use machine::{shut_down_error, Attempt, State};

mod machine;

/// A connection that reconnects: `AsyncRead + AsyncWrite` over whatever a [`Connect`]or opens,
/// with backoff, hooks, timeouts and a watchable state. See the [module docs](super) for what is
/// retried, what is reported and what can be lost.
///
/// Build one with [`Reconnecting::new`] or [`Reconnecting::builder`]; building never waits, the
/// first operation starts connecting (or, with
/// [`build_and_connect_in_background`](Builder::build_and_connect_in_background), a task starts
/// the first attempt at once). `Reconnecting` is `Unpin`, and `Send` when the connector, its
/// future and the connection are `Send` (and so are the halves of [`split`](Reconnecting::split)).
/// It is not `Sync`: every operation needs `&mut self`.
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
    connector: C,
    state: State<C>,
    retry: RetryConfig<C>,
    outage: Outage,
    idle_timeout: Option<Duration>,
    eof_policy: EofPolicy,
    read_mode: ReadMode,
    write_mode: WriteMode,
    is_disconnect: fn(&io::Error) -> bool,
    on_connect: Option<ConnectHook<C::Io>>,
    /// Generation of the current (or last) established connection; 0 before the first.
    generation: u64,
    halves: Halves,
    waiters: Arc<WakeBoth>,
    /// Wakes both halves; the reconnect's futures and sleeps are polled with it.
    waker: Waker,
    tx: watch::Sender<ConnState>,
}

// Nothing is ever pinned in place: the connector is only used through `&mut`, the futures and
// sleeps are boxed, and the connection must be `Unpin` to be used at all.
impl<C: Connect> Unpin for Reconnecting<C> {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Half {
    Read,
    Write,
}

impl Half {
    fn index(self) -> usize {
        match self {
            Half::Read => 0,
            Half::Write => 1,
        }
    }
}

/// Which connection each half last used, and the loss report each half is owed: every loss is
/// reported once to each handle that used the lost connection (the whole adapter, or each half
/// after [`Reconnecting::split`]), and never about a connection the half did not use.
#[derive(Default)]
struct Halves {
    split: bool,
    /// The generation each half last used and has not been told it lost (0: none); by
    /// [`Half::index`].
    used: [u64; 2],
    owed: [Option<Disconnected>; 2],
}

impl Halves {
    fn take_owed(&mut self, half: Half) -> Option<io::Error> {
        self.owed[half.index()]
            .take()
            .map(|loss| loss.to_io_error())
    }

    /// Connection `generation` was lost, noticed by `detector`: the report owed to each half that
    /// used it and whose mode reports (`reports`, by index); only one for an unsplit adapter.
    /// Returns the detector's report.
    fn lost(
        &mut self,
        generation: u64,
        unconfirmed: u64,
        kernel_unacked: Option<u64>,
        reason: &Reason,
        detector: Half,
        reports: [bool; 2],
    ) -> Option<io::Error> {
        self.used[detector.index()] = generation;
        let other = match detector {
            Half::Read => Half::Write,
            Half::Write => Half::Read,
        };
        let mut error = None;
        let mut told = false;
        for half in [detector, other] {
            let i = half.index();
            if self.used[i] != generation {
                continue;
            }
            self.used[i] = 0;
            if !reports[i] || (told && !self.split) {
                continue;
            }
            told = true;
            // A read half wrote nothing on it.
            let wrote = !(self.split && half == Half::Read);
            let loss = Disconnected {
                generation,
                unconfirmed: if wrote { unconfirmed } else { 0 },
                kernel_unacked: kernel_unacked.filter(|_| wrote),
                reason: reason.clone(),
            };
            if half == detector {
                error = Some(loss.to_io_error());
            } else {
                self.owed[i] = Some(loss);
            }
        }
        error
    }
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
        let (waiters, waker) = WakeBoth::new();
        Reconnecting {
            waker,
            waiters,
            connector: b.connector,
            state: State::Idle,
            outage: Outage::new(&b.retry),
            retry: b.retry,
            idle_timeout: b.idle_timeout,
            eof_policy: b.eof_policy,
            read_mode: b.read_mode,
            write_mode: b.write_mode,
            is_disconnect: b.is_disconnect,
            on_connect: b.on_connect,
            generation: 0,
            halves: Halves::default(),
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
        let task = tokio::spawn(this.connector.connect());
        let connecting = this.connect(Attempt::Spawned {
            task: AbortOnDrop(task),
        });
        this.transition(connecting);
        this
    }

    /// Split into a read half and a write half (tokio's, usable from two tasks), each told about
    /// the losses of the connections *it* used, with its own counts: a loss seen by one half is
    /// reported to the other on its next operation (a write, flush or `shutdown()` for the
    /// writer) if it had used that connection. Use this rather than `tokio::io::split`, which
    /// cannot tell the adapter that it is split: an unsplit adapter reports each loss once.
    pub fn split(mut self) -> (ReadHalf<Self>, WriteHalf<Self>)
    where
        C::Io: AsyncRead + AsyncWrite + Unpin,
    {
        self.halves.split = true;
        tokio::io::split(self)
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

    /// A handle that cuts a backoff short and starts it over, from any task, also after
    /// [`split`](Self::split) (see [`ReconnectHandle`]).
    pub fn reconnect_handle(&self) -> ReconnectHandle {
        ReconnectHandle::new(&self.retry.reconnect_now)
    }

    /// The generation of the current (or last) established connection; 0 before the first.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes written on the current connection since it was established or last confirmed; 0
    /// while there is none.
    pub fn unconfirmed_bytes(&self) -> u64 {
        match &self.state {
            State::Connected(live) => live.unconfirmed,
            _ => 0,
        }
    }

    /// Record that the peer has confirmed (at the application level) everything written so far:
    /// a later disconnect error counts unconfirmed bytes from here.
    pub fn confirm(&mut self) {
        if let State::Connected(live) = &mut self.state {
            live.unconfirmed = 0;
        }
    }

    /// The connector, for example to change its target.
    pub fn connector_mut(&mut self) -> &mut C {
        &mut self.connector
    }

    /// The connector, taking the adapter apart (the live connection, if any, is closed).
    pub fn into_connector(self) -> C {
        self.connector
    }

    /// The live connection, if there is one (for socket options, say). Writing to it directly
    /// bypasses the unconfirmed-bytes count.
    pub fn get_mut(&mut self) -> Option<&mut C::Io> {
        match &mut self.state {
            State::Connected(live) => Some(&mut live.io),
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
            self.poll_connected(cx, Half::Write)
                .map_ok(|()| self.generation)
        })
        .await
    }

    /// The give-up error, for operations that otherwise need no connection.
    fn check_gave_up(&self) -> io::Result<()> {
        match &self.state {
            State::GaveUp(gave_up) => Err(gave_up.to_io_error()),
            _ => Ok(()),
        }
    }

    fn write_is_shut(&self) -> bool {
        match &self.state {
            State::Connected(live) => live.shut,
            State::ShutDown => true,
            _ => false,
        }
    }
}

impl<C> Reconnecting<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read_priv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            // Room for nothing is not end of stream, and needs no connection.
            return Poll::Ready(self.check_gave_up());
        }
        loop {
            if let Some(e) = self.halves.take_owed(Half::Read) {
                return Poll::Ready(Err(e));
            }
            if matches!(self.state, State::ShutDown) {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_connected(cx, Half::Read))?;
            self.halves.used[Half::Read.index()] = self.generation;
            let State::Connected(live) = &mut self.state else {
                unreachable!("poll_connected returned Ok")
            };
            let before = buf.filled().len();
            let reason = match Pin::new(&mut live.io).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > before => {
                    live.disarm_idle();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => match self.eof_policy {
                    EofPolicy::End => return Poll::Ready(Ok(())),
                    EofPolicy::Reconnect => Reason::Eof,
                },
                Poll::Ready(Err(e)) if (self.is_disconnect)(&e) => Reason::Io(Arc::new(e)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let Some(limit) = self.idle_timeout else {
                        return Poll::Pending;
                    };
                    ready!(live.poll_idle(cx, limit));
                    Reason::IdleTimeout(limit)
                }
            };
            let reports = self.read_mode == ReadMode::Boundary;
            if let Some(e) = self.lose(reason, Half::Read, reports) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        mut write: impl FnMut(Pin<&mut C::Io>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(self.check_gave_up().map(|()| 0));
        }
        loop {
            if let Some(e) = self.halves.take_owed(Half::Write) {
                return Poll::Ready(Err(e));
            }
            if self.write_is_shut() {
                return Poll::Ready(Err(shut_down_error()));
            }
            ready!(self.poll_connected(cx, Half::Write))?;
            self.halves.used[Half::Write.index()] = self.generation;
            let State::Connected(live) = &mut self.state else {
                unreachable!("poll_connected returned Ok")
            };
            let error = match ready!(write(Pin::new(&mut live.io), cx)) {
                Ok(0) => {
                    io::Error::new(io::ErrorKind::WriteZero, "the connection accepted no byte")
                }
                Ok(n) => {
                    live.unconfirmed += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if (self.is_disconnect)(&e) => e,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let reports = self.write_mode == WriteMode::Report;
            if let Some(e) = self.lose(Reason::Io(Arc::new(error)), Half::Write, reports) {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn poll_flush_priv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.halves.take_owed(Half::Write) {
            return Poll::Ready(Err(e));
        }
        let live = match &mut self.state {
            State::Connected(live) => live,
            State::GaveUp(gave_up) => return Poll::Ready(Err(gave_up.to_io_error())),
            // No connection: nothing is buffered anywhere to flush, and flushing does not
            // reconnect.
            _ => return Poll::Ready(Ok(())),
        };
        match ready!(Pin::new(&mut live.io).poll_flush(cx)) {
            // A failed flush is reported in every write mode.
            Err(e) if (self.is_disconnect)(&e) => {
                let error = self.lose(Reason::Io(Arc::new(e)), Half::Write, true);
                Poll::Ready(Err(
                    error.expect("the detector that reports gets the report")
                ))
            }
            other => Poll::Ready(other),
        }
    }

    fn poll_shutdown_priv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Like a flush, a shutdown is where a writer learns that bytes it wrote were lost.
        if let Some(e) = self.halves.take_owed(Half::Write) {
            return Poll::Ready(Err(e));
        }
        self.check_gave_up()?;
        let live = match &mut self.state {
            State::Connected(live) => live,
            State::ShutDown => return Poll::Ready(Ok(())),
            _ => {
                log_event!(debug, "reconnect: shut down while not connected");
                self.transition(State::ShutDown);
                return Poll::Ready(Ok(()));
            }
        };
        let first = !mem::replace(&mut live.shut, true);
        // A reset the adapter has not noticed yet would stay hidden: the kernel answers
        // `shutdown` on a reset TCP socket with `ENOTCONN`, which tokio turns into `Ok`. An empty
        // write asks the connection first; on a reset socket it fails (`ECONNRESET`, `EPIPE`).
        // Only the first time: once shut, that write fails with `EPIPE` on a healthy connection,
        // whose reply is still to be read.
        let probe = first.then(|| Pin::new(&mut live.io).poll_write(cx, &[]));
        if let Some(Poll::Ready(Err(e))) = probe {
            if (self.is_disconnect)(&e) {
                let error = self.lose(Reason::Io(Arc::new(e)), Half::Write, true);
                return Poll::Ready(Err(
                    error.expect("the detector that reports gets the report")
                ));
            }
        }
        let result = ready!(Pin::new(&mut live.io).poll_shutdown(cx));
        log_event!(debug, generation = self.generation, "reconnect: shut down");
        Poll::Ready(result)
    }
}

impl<C> AsyncRead for Reconnecting<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_priv(cx, buf)
    }
}

impl<C> AsyncWrite for Reconnecting<C>
where
    C: Connect,
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, buf.len(), |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut()
            .poll_write_with(cx, len, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    /// The live connection's answer; `false` while there is none (a write then waits for a new
    /// connection, whose answer may differ).
    fn is_write_vectored(&self) -> bool {
        match &self.state {
            State::Connected(live) => live.io.is_write_vectored(),
            _ => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_priv(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_shutdown_priv(cx)
    }
}

impl<C: Connect> fmt::Debug for Reconnecting<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("state", &*self.tx.borrow())
            .field("generation", &self.generation)
            .field("attempt", &self.outage.attempt())
            .field("unconfirmed", &self.unconfirmed_bytes())
            .field("split", &self.halves.split)
            .finish_non_exhaustive()
    }
}
