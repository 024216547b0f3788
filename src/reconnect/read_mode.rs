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
///     .eof(EofPolicy::Reconnect)
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
