/// What a read that reaches end of stream (the peer closed its side) means.
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
