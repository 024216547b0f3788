/// How reads behave across a reconnect.
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
