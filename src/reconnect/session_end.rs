/// How a session run by a [`RetryLoop`](super::RetryLoop) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd<T, E> {
    /// Finished for good: the loop returns [`RetryOutcome::Done`](super::RetryOutcome::Done).
    Done(T),
    /// The session asks for a new connection (the server said goodbye, say); no error.
    Reconnect,
    /// A retryable failure: wait, reconnect and run a new session.
    Retry(E),
    /// A permanent failure: the loop returns [`RetryOutcome::Fatal`](super::RetryOutcome::Fatal).
    Fatal(E),
}
