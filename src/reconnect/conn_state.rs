use std::time::Duration;

use super::{GaveUp, Reason};

/// The state of a [`Reconnecting`](super::Reconnecting), published on a
/// [`tokio::sync::watch`] channel ([`Reconnecting::watch`](super::Reconnecting::watch)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnState {
    /// Built, no attempt made yet: the first operation starts connecting.
    Idle,
    /// A connection attempt (or the `on_connect` hook on its result) is running.
    Connecting {
        /// 1-based attempt number in the current outage: since the loss of the last connection
        /// that stayed up for the [stable period](super::Builder::stable_after), so it keeps
        /// growing across connections that are lost sooner.
        attempt: u32,
    },
    /// A live connection.
    Connected {
        /// 1 for the first connection, incremented on every new one.
        generation: u64,
    },
    /// A connection was lost or an attempt failed; the
    /// [`on_disconnect`](super::Builder::on_disconnect) hook, if any, runs in this state.
    Disconnected {
        /// The generation of the last established connection (0 if none was).
        generation: u64,
        /// What happened.
        reason: Reason,
    },
    /// Waiting before the next attempt.
    Backoff {
        /// The attempt that starts once the delay is over (1-based, counted like
        /// [`Connecting`](ConnState::Connecting)'s).
        attempt: u32,
        /// The delay.
        delay: Duration,
        /// The failure that led here.
        last_error: Reason,
    },
    /// Gave up for good; every operation fails with
    /// [`NotConnected`](std::io::ErrorKind::NotConnected).
    Exhausted(GaveUp),
    /// Closed by a local `shutdown()`; no reconnect will happen.
    Closed,
}
