use std::future::Future;
use std::io;
use std::pin::Pin;

/// A boxed, `Send` future, the return type of hooks and of the built-in connectors.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::{BoxFuture, Decision};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // What an `on_disconnect` hook returns: `Box::pin` of any `Send` future.
/// let decision: BoxFuture<Decision> = Box::pin(async { Decision::Retry });
/// assert_eq!(decision.await, Decision::Retry);
/// # }
/// ```
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Something that can open a connection, again and again.
///
/// [`connect`](Connect::connect) is called once per attempt with `&mut self`, so a connector may
/// keep state between attempts and change its target (the
/// [`on_disconnect`](super::Builder::on_disconnect) hook gets `&mut` access to it). The future it
/// returns must not borrow the connector: the adapter stores it next to the connector.
///
/// Any `FnMut() -> impl Future<Output = io::Result<Io>>` closure is a connector.
///
/// # Examples
///
/// A closure:
///
/// ```
/// use staunch::reconnect::Connect;
///
/// fn assert_connect<C: Connect>(_: &C) {}
/// let connector = || tokio::net::TcpStream::connect("127.0.0.1:8080");
/// assert_connect(&connector);
/// ```
///
/// A connector with state, cycling through targets:
///
/// ```
/// use std::io;
/// use staunch::reconnect::{BoxFuture, Connect};
/// use tokio::net::TcpStream;
///
/// #[derive(Debug)]
/// struct RoundRobin {
///     targets: Vec<String>,
///     next: usize,
/// }
///
/// impl Connect for RoundRobin {
///     type Io = TcpStream;
///     type Future = BoxFuture<io::Result<TcpStream>>;
///
///     fn connect(&mut self) -> Self::Future {
///         let target = self.targets[self.next % self.targets.len()].clone();
///         self.next += 1;
///         Box::pin(async move { TcpStream::connect(target).await })
///     }
/// }
/// ```
pub trait Connect {
    /// The connection: for the adapter, `AsyncRead + AsyncWrite + Unpin`.
    type Io;
    /// The future of one connection attempt.
    type Future: Future<Output = io::Result<Self::Io>>;

    /// Start one connection attempt.
    fn connect(&mut self) -> Self::Future;

    /// Bytes written to `io` that the peer has not acknowledged, as the operating system
    /// counts them; read when a connection is lost and reported as
    /// [`Disconnected::kernel_unacked_bytes`](super::Disconnected::kernel_unacked_bytes).
    ///
    /// The default is `None` (not known). [`TcpConnector`](super::TcpConnector) reads the TCP
    /// send queue on Linux and Android; a connector of its own over a `TcpStream` can do the
    /// same with [`tcp_send_queue`](super::tcp_send_queue).
    fn unacked_bytes(io: &Self::Io) -> Option<u64> {
        let _ = io;
        None
    }
}

/// The bytes in a TCP socket's send queue: written to the socket but not acknowledged by the
/// peer's kernel, whether not yet sent or sent and unacknowledged (Linux's `SIOCOUTQ`). The
/// kernel keeps the count after the connection was reset, so it can still be read once a write
/// failed. `None` on other systems, or if the socket cannot say.
///
/// For [`Connect::unacked_bytes`] in a connector of your own.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::tcp_send_queue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let stream = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// let queued = tcp_send_queue(&stream);
/// if cfg!(any(target_os = "linux", target_os = "android")) {
///     assert_eq!(queued, Some(0)); // nothing written yet
/// } else {
///     assert_eq!(queued, None);
/// }
/// # Ok(())
/// # }
/// ```
pub fn tcp_send_queue(stream: &tokio::net::TcpStream) -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return crate::sockopt::send_queue(stream);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = stream;
        None
    }
}

impl<F, Fut, Io> Connect for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<Io>>,
{
    type Io = Io;
    type Future = Fut;

    fn connect(&mut self) -> Fut {
        self()
    }
}
