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
    /// A connection attempt failed with an error that retrying cannot fix, as judged by
    /// [`retry_connect_if`](super::Builder::retry_connect_if) (by default
    /// [`is_retryable_connect_error`](super::is_retryable_connect_error): `InvalidInput`, such as
    /// an address with no port, `PermissionDenied` or `Unsupported`). No `on_disconnect` hook runs
    /// and no more attempts are made. Like every give-up, it is sticky and every later operation
    /// fails with [`NotConnected`](std::io::ErrorKind::NotConnected); the connect error itself,
    /// with its own kind, is [`GaveUp::last_reason`](super::GaveUp::last_reason)
    /// ([`Reason::ConnectFailed`](super::Reason::ConnectFailed)).
    Fatal,
}
