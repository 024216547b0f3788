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
