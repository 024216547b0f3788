use super::Failure;

/// How a [`RetryLoop`](super::RetryLoop) ended.
#[derive(Debug)]
#[must_use = "the outcome says whether the loop finished, failed, gave up or was cancelled"]
#[non_exhaustive]
pub enum RetryOutcome<T, E> {
    /// A session returned [`SessionEnd::Done`](super::SessionEnd::Done).
    Done(T),
    /// A permanent failure: a session returned [`SessionEnd::Fatal`](super::SessionEnd::Fatal),
    /// or a connect error was not retryable ([`RetryLoop::retry_connect_if`](super::RetryLoop::retry_connect_if)).
    Fatal(Failure<E>),
    /// The backoff policy ended, or the delay callback returned `None`.
    GaveUp {
        /// Consecutive failed attempts when the loop gave up.
        attempts: u32,
        /// The last error seen, if any.
        last_error: Option<Failure<E>>,
    },
    /// The cancellation future completed (during a connect, a session or a delay).
    Cancelled {
        /// The last error seen, if any.
        last_error: Option<Failure<E>>,
    },
}
