use std::fmt;
use std::io;

use super::Reason;

/// The payload of the [`io::Error`] a [`Reconnecting`](super::Reconnecting) returns when a
/// connection was lost: which connection, why, and how many bytes written on it may be lost.
///
/// The error's kind is [`Reason::kind`]. Get the payload back with
/// [`Disconnected::from_io_error`].
///
/// `unconfirmed_bytes` counts the bytes that writes reported as written on that connection since
/// it was established or since the last [`confirm`](super::Reconnecting::confirm). TCP cannot say
/// how many of them reached the peer's application: anything between none and all of them did.
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::Disconnected;
///
/// let error = io::Error::other("not from staunch");
/// assert!(Disconnected::from_io_error(&error).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Disconnected {
    pub(crate) generation: u64,
    pub(crate) unconfirmed: u64,
    pub(crate) reason: Reason,
}

impl Disconnected {
    /// The generation of the lost connection (1 for the first connection).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes written on the lost connection since it was established or last confirmed; any of
    /// them may not have reached the peer.
    pub fn unconfirmed_bytes(&self) -> u64 {
        self.unconfirmed
    }

    /// Why the connection was lost.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The payload of an error returned by a [`Reconnecting`](super::Reconnecting), if `error` is
    /// such a disconnect error.
    pub fn from_io_error(error: &io::Error) -> Option<&Disconnected> {
        error.get_ref()?.downcast_ref()
    }

    pub(crate) fn to_io_error(&self) -> io::Error {
        io::Error::new(self.reason.kind(), self.clone())
    }
}

impl fmt::Display for Disconnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} lost ({}); {} bytes written on it were not confirmed",
            self.generation, self.reason, self.unconfirmed
        )
    }
}

impl std::error::Error for Disconnected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.reason
            .io_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
