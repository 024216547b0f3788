use std::fmt;
use std::io;

/// A failure seen by a [`RetryLoop`](super::RetryLoop): connecting failed, or a session failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// A connection attempt failed or timed out.
    Connect(io::Error),
    /// A session ended with an error.
    Session(E),
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Session(e) => write!(f, "session failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Connect(e) => Some(e),
            Failure::Session(e) => Some(e),
        }
    }
}
