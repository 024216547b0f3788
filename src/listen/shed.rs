//! Backlog shedding when descriptors run out (libuv's `EMFILE` trick, counted and bounded).
//!
//! When `accept` fails with `EMFILE`/`ENFILE`, the connections already in the kernel's backlog
//! cannot be accepted, and their clients wait out their own connect or read timeouts. A
//! [`SleepOnError`](super::SleepOnError) with [`shed_on_emfile`](super::SleepOnError::shed_on_emfile)
//! keeps one spare descriptor (an open `/dev/null`) for that moment: it closes it, accepts and
//! resets queued connections one by one in the slot it freed, up to a bound, and opens it again.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;

use super::SleepOnError;
use crate::overload::{reject, RejectReason, Rejections};

/// Accept one queued connection and close it. `Pending` when the backlog is empty, with the task
/// registered to be woken by the next client.
pub(crate) type ShedOne<S> = fn(&S, &mut Context<'_>) -> Poll<io::Result<Option<SocketAddr>>>;

/// A listening socket whose backlog [`shed_on_emfile`](super::SleepOnError::shed_on_emfile) can
/// shed: anything that is `AsRef` to tokio's `TcpListener` or `UnixListener`, such as
/// tokio-stream's `TcpListenerStream` and `UnixListenerStream`. `L` is the listener type; it is
/// inferred. Sealed: it cannot be implemented outside this crate.
///
/// # Examples
///
/// An accept stream of your own qualifies by being `AsRef` to its listener:
///
/// ```
/// use std::{io, pin::Pin, task::{Context, Poll}, time::Duration};
/// use futures_util::{Stream, StreamExt};
/// use staunch::ListenExt;
/// use tokio::net::{TcpListener, TcpStream};
///
/// struct Accepts(TcpListener);
///
/// impl AsRef<TcpListener> for Accepts {
///     fn as_ref(&self) -> &TcpListener {
///         &self.0
///     }
/// }
///
/// impl Stream for Accepts {
///     type Item = io::Result<TcpStream>;
///
///     fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
///         self.0.poll_accept(cx).map(|accepted| Some(accepted.map(|(socket, _)| socket)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> io::Result<()> {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let client = TcpStream::connect(listener.local_addr()?).await?;
/// let accepts = Accepts(listener).sleep_on_error(Duration::from_millis(50)).shed_on_emfile(64);
/// let mut accepts = std::pin::pin!(accepts);
/// let next = tokio::time::timeout(Duration::from_secs(5), accepts.next());
/// let socket = next.await.unwrap().unwrap(); // while descriptors last, served as usual
/// assert_eq!(socket.peer_addr()?, client.local_addr()?);
/// # Ok(())
/// # }
/// ```
#[cfg(unix)]
pub trait ShedBacklog<L>: sealed::Sealed<L> {
    /// Accept one queued connection and close it (see [`ShedOne`]), returning its peer's address
    /// where it has one.
    #[doc(hidden)]
    fn poll_shed_one(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<SocketAddr>>>;
}

#[cfg(unix)]
mod sealed {
    pub trait Sealed<L> {}
    impl<S: AsRef<tokio::net::TcpListener>> Sealed<tokio::net::TcpListener> for S {}
    impl<S: AsRef<tokio::net::UnixListener>> Sealed<tokio::net::UnixListener> for S {}
}

#[cfg(unix)]
impl<S: AsRef<TcpListener>> ShedBacklog<TcpListener> for S {
    fn poll_shed_one(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<SocketAddr>>> {
        // Through tokio's `poll_accept`, so that an empty backlog registers the task for the
        // next client: it then meets `EMFILE` again (the spare is back) and is shed in turn,
        // never served in the slot the spare freed.
        let (socket, peer) = ready!(self.as_ref().poll_accept(cx))?;
        // A reset, not a FIN: the client learns at once that it was not served (a FIN would
        // read as an empty answer), and the closed socket holds no kernel state (no FIN_WAIT or
        // TIME_WAIT) while the process is already out of resources.
        let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
        drop(socket);
        Poll::Ready(Ok(Some(peer)))
    }
}

#[cfg(unix)]
impl<S: AsRef<tokio::net::UnixListener>> ShedBacklog<tokio::net::UnixListener> for S {
    fn poll_shed_one(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<SocketAddr>>> {
        // As for TCP. A Unix socket has no reset: closing it reads as EOF at the client (as an
        // error, if it had sent data that was never read), and leaves no state behind.
        let (socket, _) = ready!(self.as_ref().poll_accept(cx))?;
        drop(socket);
        Poll::Ready(Ok(None))
    }
}

/// The shedding state of one `sleep_on_error` stream.
pub(crate) struct Shed<S> {
    /// The most connections reset per `EMFILE`.
    bound: usize,
    /// The spare descriptor; `None` while it could not be opened again.
    reserve: Option<File>,
    shed_one: ShedOne<S>,
}

impl<S> Shed<S> {
    pub(crate) fn new(bound: usize, shed_one: ShedOne<S>) -> Self {
        Shed {
            bound,
            reserve: open_reserve(),
            shed_one,
        }
    }

    /// Accept and reset up to `bound` queued connections, in the slot the reserve frees; return
    /// how many, and whether the backlog was found empty (the task is then registered for the
    /// next client, who meets `EMFILE` and is shed in turn: no backoff is needed). Without a
    /// reserve it only tries to open one again: shedding without it would take a descriptor that
    /// just came free, one a connection could be served with.
    pub(crate) fn shed(
        &mut self,
        stream: &S,
        rejections: Option<&Rejections>,
        cx: &mut Context<'_>,
    ) -> (u64, bool) {
        let Some(reserve) = self.reserve.take() else {
            self.reserve = open_reserve();
            return (0, false);
        };
        drop(reserve);
        let mut shed = 0;
        let mut drained = false;
        while shed < self.bound as u64 {
            match (self.shed_one)(stream, cx) {
                Poll::Ready(Ok(peer)) => {
                    shed += 1;
                    reject(rejections, RejectReason::Shed, peer);
                }
                Poll::Pending => {
                    drained = true;
                    break;
                }
                // EMFILE/ENFILE: another thread took the slot. Anything else: the next accept
                // meets it, and classifies it.
                Poll::Ready(Err(_)) => break,
            }
        }
        self.reserve = open_reserve();
        if self.reserve.is_none() {
            log_event!(
                warn,
                "shed_on_emfile: the spare descriptor could not be opened again (another thread \
                 took the slot); shedding pauses until one is free"
            );
        }
        (shed, drained)
    }
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

impl<S> fmt::Debug for Shed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shed")
            .field("bound", &self.bound)
            .field("has_reserve", &self.reserve.is_some())
            .finish()
    }
}

/// `true` for the errors shedding answers: the process's (`EMFILE`) or the system's (`ENFILE`)
/// descriptor table is full.
#[cfg(unix)]
pub(crate) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
pub(crate) fn is_out_of_descriptors(_: &io::Error) -> bool {
    false
}

#[cfg(unix)]
impl<S, B, H> SleepOnError<S, B, H> {
    /// When `accept` fails because descriptors ran out (`EMFILE`, `ENFILE`), reset up to
    /// `max_per_error` connections waiting in the listening socket's backlog, so that their
    /// clients learn at once instead of waiting out their own timeouts (libuv's trick).
    ///
    /// The stream keeps one spare descriptor open (`/dev/null`) from now on. On each such error
    /// it closes it, accepts queued connections one by one into the slot it freed and resets
    /// each (`SO_LINGER` 0: the client reads `ECONNRESET`, not an EOF it could take for an empty
    /// answer, and the socket leaves no `TIME_WAIT` behind), then opens the spare again. Once the
    /// backlog is empty, the stream polls its listener with the slot still free, so it waits for
    /// the next client instead of backing off: each later client is shed as it arrives, and
    /// nothing runs while none does (the error still counts as a backoff in
    /// [`Stats`](super::Stats), and the hook sees it as one). A client that arrives just then
    /// takes the slot and is served. If the round ends otherwise (the bound was reached, or
    /// another thread took the slot) the stream backs off as usual. Service resumes as before
    /// once descriptors free up: the spare is only given up while `accept` is failing.
    ///
    /// It works on any stream that is `AsRef` to a tokio `TcpListener` or `UnixListener`
    /// ([`ShedBacklog`](ShedBacklog)): tokio-stream's `TcpListenerStream` and
    /// `UnixListenerStream`. A Unix socket has no reset: its client reads EOF (an error, if it
    /// had sent data), and it is reported without a peer address.
    ///
    /// Each reset connection is logged and counted as
    /// [`RejectReason::Shed`](crate::overload::RejectReason::Shed) in the stats of the listener
    /// that polls this stream, and reported with its peer address to the listener's
    /// [`on_reject`](super::Listener::on_reject) hook. The count is exact: each one is a client
    /// whose handshake had completed and that this stream took off the backlog and reset.
    ///
    /// # Threads and several listeners
    ///
    /// Descriptors are per process, so another thread (or another listener's shedding) may take
    /// the freed slot between the close and the `accept`: that round then sheds nothing (or
    /// fewer), and until the spare can be opened again this stream does not shed (it tries again
    /// at each later error, and logs a warning). Nothing is lost or counted twice; a client may
    /// only wait longer. Each stream keeps its own spare, so `n` shedding listeners hold `n`
    /// descriptors. The stream sheds only with its spare in hand, so it never resets a client
    /// in a slot that came free for serving.
    ///
    /// # Panics
    ///
    /// Panics if `max_per_error` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::{overload::RejectReason, ListenExt};
    /// use tokio_stream::wrappers::TcpListenerStream;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
    /// let server = TcpListenerStream::new(listener)
    ///     .sleep_on_error(Duration::from_millis(50))
    ///     .shed_on_emfile(1024)
    ///     .map(|_socket| async {})
    ///     .spawn_listen(10_000);
    /// let stats = server.stats();
    /// server.await;
    /// println!("shed: {}", stats.snapshot().rejected.get(RejectReason::Shed));
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn shed_on_emfile<L>(mut self, max_per_error: usize) -> Self
    where
        S: ShedBacklog<L>,
    {
        assert!(
            max_per_error > 0,
            "shed_on_emfile: the bound must be at least 1"
        );
        self.set_shed(Shed::new(
            max_per_error,
            <S as ShedBacklog<L>>::poll_shed_one,
        ));
        self
    }
}
