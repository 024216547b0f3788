use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::sockopt::{listen_on, BACKLOG};

/// Bind a tokio [`TcpListener`] on `addr` with a backlog of 1024 (and `SO_REUSEADDR` on Unix, as
/// tokio's `bind` sets it).
///
/// `tokio::net::TcpListener::bind` uses a backlog of 128. While a server is busy (every slot of
/// [`listen`](crate::ListenExt::listen) taken, or a stall), new clients wait in that queue; once
/// it is full the kernel drops their handshakes, and they connect only after SYN retransmits,
/// a second or more later. A burst of 250 clients against a stalled server showed it: 68
/// connects took over half a second, up to 2 s. [`bind_many`](super::bind_many) and
/// [`bind_reuseport`](super::bind_reuseport) use 1024 too. The kernel caps any backlog at its
/// own maximum (`net.core.somaxconn`, 4096 on Linux since 5.4).
///
/// # Errors
///
/// The socket error if the bind fails.
///
/// # Panics
///
/// Panics if called outside a tokio runtime (as `TcpListener::from_std` does).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let listener = staunch::listen::bind("127.0.0.1:0".parse().unwrap())?;
/// let server = TcpListenerStream::new(listener)
///     .sleep_on_error(Duration::from_millis(100))
///     .map(|_socket| async {})
///     .listen(1000);
/// # drop(server);
/// # Ok(())
/// # }
/// ```
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with_backlog(addr, BACKLOG)
}

/// [`bind`] with a backlog of your choice (the kernel caps it at `net.core.somaxconn`).
///
/// # Errors
///
/// The socket error if the bind fails.
///
/// # Panics
///
/// Panics if called outside a tokio runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio::time::timeout;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = staunch::listen::bind_with_backlog("127.0.0.1:0".parse().unwrap(), 4096)?;
/// let client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// let (_socket, peer) = timeout(Duration::from_secs(5), listener.accept()).await.unwrap()?;
/// assert_eq!(peer, client.local_addr()?);
/// # Ok(())
/// # }
/// ```
pub fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    TcpListener::from_std(listen_on(addr, backlog, |_| Ok(()))?)
}
