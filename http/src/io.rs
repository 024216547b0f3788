//! [`Io`], what a connection is served on, and `Tracked`, the wrapper that keeps an upgraded
//! socket tied to its connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An accepted connection that can be served: a byte stream, and its peer's address if it has
/// one (given to requests as axum's `ConnectInfo` and tonic's `TcpConnectInfo`, and to the
/// listener's [`on_reject`](staunch::listen::Listener::on_reject) hook).
///
/// Implemented for tokio's TCP and Unix streams and for staunch's wrappers
/// ([`PeerPermit`](staunch::overload::PeerPermit), [`MinReadRate`](staunch::overload::MinReadRate))
/// around any of them. Implement it for your own wrapper (a TLS stream, say) to serve it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The peer's address, if known.
    fn peer(&self) -> Option<SocketAddr>;
}

impl Io for tokio::net::TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

#[cfg(unix)]
impl Io for tokio::net::UnixStream {
    fn peer(&self) -> Option<SocketAddr> {
        None
    }
}

impl<T: Io> Io for staunch::overload::PeerPermit<T> {
    fn peer(&self) -> Option<SocketAddr> {
        staunch::overload::PeerPermit::peer(self).or_else(|| self.get_ref().peer())
    }
}

impl<T: Io> Io for staunch::overload::MinReadRate<T> {
    fn peer(&self) -> Option<SocketAddr> {
        self.get_ref().peer()
    }
}

/// What a connection future and its socket share: whether the socket still exists (it outlives
/// hyper's connection after an upgrade), and the order to cut it.
#[derive(Debug, Default)]
pub(crate) struct Link {
    dropped: AtomicBool,
    dropped_waker: AtomicWaker,
    cut: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl Link {
    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Completes when the socket has been dropped.
    pub(crate) fn poll_dropped(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_dropped() {
            return Poll::Ready(());
        }
        self.dropped_waker.register(cx.waker());
        if self.is_dropped() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Make every later read and write of the socket fail, and wake a task waiting on one.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.read_waker.wake();
        self.write_waker.wake();
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection was cut by the listener (shutdown deadline or time limit)",
    )
}

pin_project! {
    /// The socket as hyper sees it: the connection's own, until it is cut.
    pub(crate) struct Tracked<T> {
        #[pin]
        io: T,
        link: Arc<Link>,
    }

    impl<T> PinnedDrop for Tracked<T> {
        fn drop(this: Pin<&mut Self>) {
            this.link.dropped.store(true, Ordering::Release);
            this.link.dropped_waker.wake();
        }
    }
}

impl<T> Tracked<T> {
    pub(crate) fn new(io: T, link: Arc<Link>) -> Self {
        Tracked { io, link }
    }
}

/// Fails a cut socket; registers the task of a pending operation so that a cut wakes it.
macro_rules! tracked {
    ($this:ident, $waker:ident, $cx:ident, $op:expr) => {{
        let link = &**$this.link;
        if link.cut.load(Ordering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = $op;
        if polled.is_pending() {
            link.$waker.register($cx.waker());
            // A cut between the check and the registration found no waker to wake.
            if link.cut.load(Ordering::Acquire) {
                return Poll::Ready(Err(cut_error()));
            }
        }
        polled
    }};
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        tracked!(this, read_waker, cx, this.io.poll_read(cx, buf))
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        tracked!(this, write_waker, cx, this.io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        tracked!(this, write_waker, cx, this.io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        tracked!(this, write_waker, cx, this.io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        tracked!(this, write_waker, cx, this.io.poll_shutdown(cx))
    }
}
