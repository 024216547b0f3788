/// Why a [`Reconnecting`](super::Reconnecting) stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUpCause {
    /// The backoff policy ended (its iterator returned `None`).
    PolicyExhausted,
    /// The [`on_disconnect`](super::Builder::on_disconnect) hook returned
    /// [`Action::GiveUp`](super::Action::GiveUp).
    Hook,
    /// The cancellation future given to [`cancel_on`](super::Builder::cancel_on) completed.
    Cancelled,
}
