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
/// use staunch::reconnect::{Disconnected, Reconnecting};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let (client, server) = tokio::io::duplex(64);
/// let mut slot = Some(client);
/// let connector = move || {
///     let io = slot.take().ok_or(std::io::ErrorKind::ConnectionRefused.into());
///     async move { io }
/// };
/// let mut conn = Reconnecting::new(connector);
/// conn.write_all(b"hello").await?;
/// drop(server); // the peer goes away
/// let err = conn.write_all(b"world").await.unwrap_err();
/// let lost = Disconnected::from_io_error(&err).unwrap();
/// assert_eq!(lost.generation(), 1);
/// assert_eq!(lost.unconfirmed_bytes(), 5); // "hello" may or may not have been read
/// # Ok(())
/// # }
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
