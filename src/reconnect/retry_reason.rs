/// Why a [`RetryLoop`](super::RetryLoop) is about to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// A connection attempt failed (or timed out).
    ConnectFailed,
    /// A session ended with [`SessionEnd::Reconnect`](super::SessionEnd::Reconnect) or
    /// [`SessionEnd::Retry`](super::SessionEnd::Retry).
    SessionEnded,
}
