//! How a [`Reconnecting`](super::Reconnecting) treats end of stream, reads and writes across a
//! reconnect.

/// What a read that reaches end of stream (the peer closed its side) means.
///
/// **Choose it explicitly.** The default, [`End`](EofPolicy::End), suits request/response
/// clients that treat the peer's close as the end of the conversation. A subscriber or any
/// long-lived client wants [`Reconnect`](EofPolicy::Reconnect): with `End`, a clean server restart
/// ends the stream for good, and a read loop that does not stop on `Ok(0)` spins.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::{Disconnected, EofPolicy, Reconnecting};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Peers that hang up at once.
/// let hang_up = || async { Ok(tokio::io::duplex(64).0) };
///
/// let mut ends = Reconnecting::new(hang_up);
/// assert_eq!(ends.read(&mut [0; 8]).await.unwrap(), 0); // end of stream
///
/// let mut reconnects = Reconnecting::builder(hang_up).eof_policy(EofPolicy::Reconnect).build();
/// let err = reconnects.read(&mut [0; 8]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
/// assert_eq!(Disconnected::from_io_error(&err).unwrap().generation(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EofPolicy {
    /// End of stream: the read returns `Ok` with no bytes, as on a plain socket; no reconnect.
    /// Writes may go on (the peer may only have half-closed).
    #[default]
    End,
    /// The connection is lost: reconnect (with [`Reason::Eof`](super::Reason::Eof)).
    Reconnect,
}

/// How reads behave across a reconnect.
///
/// # Examples
///
/// With [`Splice`](ReadMode::Splice), one `read_exact` gets bytes of two connections:
///
/// ```
/// use staunch::reconnect::{EofPolicy, ReadMode, Reconnecting};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let mut replies = vec![&b"bar"[..], b"foo"];
/// let connector = move || {
///     let reply = replies.pop();
///     async move {
///         let reply = reply.ok_or(std::io::ErrorKind::ConnectionRefused)?;
///         let (client, mut server) = tokio::io::duplex(64);
///         server.write_all(reply).await?; // then the server hangs up
///         Ok(client)
///     }
/// };
/// let mut conn = Reconnecting::builder(connector)
///     .eof_policy(EofPolicy::Reconnect)
///     .read_mode(ReadMode::Splice)
///     .build();
/// let mut buf = [0; 6];
/// conn.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"foobar");
/// assert_eq!(conn.generation(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadMode {
    /// The reader learns where one connection ended: the first read after its connection was lost
    /// returns the [`Disconnected`](super::Disconnected) error once, and the read after it returns
    /// bytes of the new connection only. A codec can drop its half-read frame there.
    #[default]
    Boundary,
    /// Splice: a read that loses its connection reconnects and goes on reading from the new one in
    /// the same call, so the reader sees one stream made of several connections, with no marker
    /// (io-tether's behaviour). Only for protocols where that is harmless.
    Splice,
}

/// What happens to a write that fails because the connection was lost.
///
/// In no mode does a write return `Ok` for bytes that a live connection did not accept.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::{Reconnecting, WriteMode};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let (peers_tx, mut peers) = tokio::sync::mpsc::unbounded_channel();
/// let connector = move || {
///     let (client, server) = tokio::io::duplex(64);
///     let _ = peers_tx.send(server);
///     async move { Ok(client) }
/// };
/// let mut conn = Reconnecting::builder(connector)
///     .write_mode(WriteMode::RetryFailedWrite)
///     .build();
/// conn.write_all(b"one").await?;
/// drop(peers.recv().await); // the first peer goes away
/// conn.write_all(b"two").await?; // no error: written to the second connection
/// let mut second = peers.recv().await.unwrap();
/// let mut got = [0; 3];
/// second.read_exact(&mut got).await?;
/// assert_eq!(&got, b"two");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// The failed write (or flush) returns the [`Disconnected`](super::Disconnected) error once,
    /// with the number of unconfirmed bytes; the next operation reconnects.
    #[default]
    Report,
    /// The failed buffer is written to the next connection within the same call, as io-tether
    /// does by default. **May deliver a suffix without its prefix**: if a frame was half written
    /// on the old connection, the new connection receives the rest of it, and the bytes lost in
    /// the old connection's buffers are not reported to the writer. A failed flush is still
    /// reported.
    RetryFailedWrite,
}
