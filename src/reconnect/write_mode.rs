/// What happens to a write that fails because the connection was lost.
///
/// In no mode does a write return `Ok` for bytes that a live connection did not accept.
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
