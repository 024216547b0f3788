/// What a read that reaches end of stream (the peer closed its side) means.
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
/// let mut reconnects = Reconnecting::builder(hang_up).eof(EofPolicy::Reconnect).build();
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
