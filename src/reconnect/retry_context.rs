use std::time::Duration;

use super::{Failure, RetryReason};

/// What the delay callback of a [`RetryLoop`](super::RetryLoop) knows.
#[derive(Debug)]
pub struct RetryContext<'a, E> {
    pub(crate) attempt: u32,
    pub(crate) reason: RetryReason,
    pub(crate) elapsed: Duration,
    pub(crate) error: Option<&'a Failure<E>>,
    pub(crate) proposed: Duration,
    pub(crate) session_uptime: Option<Duration>,
}

impl<E> RetryContext<'_, E> {
    /// Consecutive failures so far, this one included (1 for the first). Starts over after a
    /// session that stayed up for the stable period.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Why the loop is about to wait.
    pub fn reason(&self) -> RetryReason {
        self.reason
    }

    /// Time since the loop started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The error of this failure; `None` for a session that asked to reconnect.
    pub fn error(&self) -> Option<&Failure<E>> {
        self.error
    }

    /// The delay the backoff policy proposes.
    pub fn proposed_delay(&self) -> Duration {
        self.proposed
    }

    /// How long the session that just ended ran; `None` when connecting failed.
    pub fn session_uptime(&self) -> Option<Duration> {
        self.session_uptime
    }
}
