use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use super::Connect;

/// Failover between connectors: each attempt uses the current one; an attempt that fails, or
/// that is abandoned before it completes (a [connect timeout](super::Builder::connect_timeout)
/// drops it), moves on to the next (wrapping around); a successful one stays, so the next
/// reconnect tries the target that worked last first.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::{Failover, Reconnecting, TcpConnector};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let connector = Failover::new(vec![
///     TcpConnector::new("127.0.0.1:8080"),
///     TcpConnector::new("127.0.0.1:8081"),
/// ]);
/// assert_eq!(connector.current(), 0);
/// let conn = Reconnecting::new(connector);
/// # drop(conn);
/// # }
/// ```
///
/// # Panics
///
/// [`Failover::new`] panics if the list is empty.
#[derive(Debug)]
pub struct Failover<C> {
    connectors: Vec<C>,
    current: Arc<AtomicUsize>,
}

impl<C> Failover<C> {
    /// Failover over `connectors`, starting with the first.
    #[track_caller]
    pub fn new(connectors: Vec<C>) -> Self {
        assert!(!connectors.is_empty(), "Failover::new: no connectors");
        Failover {
            connectors,
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The index of the connector the next attempt uses (while an attempt is in progress, the one
    /// after it: the attempt has not succeeded yet).
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.connectors.len()
    }

    /// The connectors.
    pub fn connectors_mut(&mut self) -> &mut [C] {
        &mut self.connectors
    }
}

impl<C: Connect> Connect for Failover<C> {
    type Io = C::Io;
    type Future = FailoverFuture<C::Future>;

    fn connect(&mut self) -> Self::Future {
        let index = self.current();
        // Move on now: an attempt that never completes (dropped by a timeout) must count as a
        // failure too. A success moves back to `index`.
        self.current
            .store((index + 1) % self.connectors.len(), Ordering::Relaxed);
        FailoverFuture {
            inner: self.connectors[index].connect(),
            index,
            len: self.connectors.len(),
            current: Arc::clone(&self.current),
        }
    }

    fn unacked_bytes(io: &C::Io) -> Option<u64> {
        C::unacked_bytes(io)
    }
}

pin_project_lite::pin_project! {
    /// The future of one [`Failover`] attempt.
    ///
    /// # Examples
    ///
    /// Named in a connector of your own that wraps a [`Failover`]:
    ///
    /// ```
    /// use std::io;
    /// use staunch::reconnect::future::FailoverFuture;
    /// use staunch::reconnect::{BoxFuture, Connect, Failover, TcpConnector};
    /// use tokio::net::TcpStream;
    ///
    /// struct Counted {
    ///     attempts: u32,
    ///     inner: Failover<TcpConnector>,
    /// }
    ///
    /// impl Connect for Counted {
    ///     type Io = TcpStream;
    ///     type Future = FailoverFuture<BoxFuture<io::Result<TcpStream>>>;
    ///
    ///     fn connect(&mut self) -> Self::Future {
    ///         self.attempts += 1;
    ///         self.inner.connect()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let up = listener.local_addr()?.to_string();
    /// let targets = vec![TcpConnector::new("127.0.0.1"), TcpConnector::new(up)];
    /// let mut connector = Counted { attempts: 0, inner: Failover::new(targets) };
    /// assert!(connector.connect().await.is_err()); // the first target has no port
    /// let _stream = connector.connect().await?; // the second is up
    /// assert_eq!((connector.attempts, connector.inner.current()), (2, 1));
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct FailoverFuture<F> {
        #[pin]
        inner: F,
        index: usize,
        len: usize,
        current: Arc<AtomicUsize>,
    }
}

impl<F, Io> Future for FailoverFuture<F>
where
    F: Future<Output = io::Result<Io>>,
{
    type Output = io::Result<Io>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if result.is_ok() {
            // Stay with the target that worked, unless another attempt has moved on since.
            let next = (*this.index + 1) % *this.len;
            let _ = this.current.compare_exchange(
                next,
                *this.index,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Poll::Ready(result)
    }
}
