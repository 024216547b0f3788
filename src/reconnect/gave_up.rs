use std::fmt;
use std::io;

use super::{GiveUpCause, Reason};

/// The payload of the error every operation returns once a
/// [`Reconnecting`](super::Reconnecting) has given up. The error's kind is always
/// [`io::ErrorKind::NotConnected`], whatever the [cause](GaveUp::cause); the error that led to
/// the give-up, with its own kind, is [`last_reason`](GaveUp::last_reason).
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::GaveUp;
///
/// assert!(GaveUp::from_io_error(&io::ErrorKind::NotConnected.into()).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub(crate) cause: GiveUpCause,
    pub(crate) attempts: u32,
    pub(crate) last_reason: Option<Reason>,
}

impl GaveUp {
    /// Why the adapter gave up.
    pub fn cause(&self) -> GiveUpCause {
        self.cause
    }

    /// Connection attempts made in the last outage: since the loss of the last connection that
    /// stayed up for the [stable period](super::Builder::stable_after), or since the start.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last failure before giving up, if any.
    pub fn last_reason(&self) -> Option<&Reason> {
        self.last_reason.as_ref()
    }

    /// The payload of an error returned by an exhausted [`Reconnecting`](super::Reconnecting).
    pub fn from_io_error(error: &io::Error) -> Option<&GaveUp> {
        error.get_ref()?.downcast_ref()
    }

    pub(crate) fn to_io_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, self.clone())
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up reconnecting ({:?}) after {} attempts",
            self.cause, self.attempts
        )?;
        if let Some(reason) = &self.last_reason {
            write!(f, "; last failure: {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GaveUp {}
