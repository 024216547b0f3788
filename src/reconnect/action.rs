/// What the [`on_disconnect`](super::Builder::on_disconnect) hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Wait for the next delay of the backoff policy, then try to connect again.
    Reconnect,
    /// Stop for good: the adapter becomes [`Exhausted`](super::ConnState::Exhausted) with
    /// [`GiveUpCause::Hook`](super::GiveUpCause::Hook).
    GiveUp,
}
