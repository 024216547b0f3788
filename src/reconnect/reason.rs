use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Why a connection was lost or an attempt failed.
///
/// Cheap to clone: the underlying [`io::Error`] is shared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reason {
    /// A read, write or flush on a live connection failed with an error classed as a disconnect.
    Io(Arc<io::Error>),
    /// The peer closed its side (a read returned 0 bytes) and
    /// [`EofPolicy::Reconnect`](super::EofPolicy::Reconnect) is set.
    Eof,
    /// No byte arrived for this long while a read was waiting
    /// ([`idle_timeout`](super::Builder::idle_timeout)).
    IdleTimeout(Duration),
    /// A connection attempt failed.
    ConnectFailed(Arc<io::Error>),
    /// A connection attempt took longer than the
    /// [`connect_timeout`](super::Builder::connect_timeout).
    ConnectTimeout(Duration),
    /// The [`on_connect`](super::Builder::on_connect) hook failed on a new connection.
    HandshakeFailed(Arc<io::Error>),
}

impl Reason {
    /// The [`io::ErrorKind`] that stands for this reason in the errors the adapter returns:
    /// the underlying error's kind, `UnexpectedEof` for [`Eof`](Reason::Eof), `TimedOut` for the
    /// timeouts.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Reason::Io(e) | Reason::ConnectFailed(e) | Reason::HandshakeFailed(e) => e.kind(),
            Reason::Eof => io::ErrorKind::UnexpectedEof,
            Reason::IdleTimeout(_) | Reason::ConnectTimeout(_) => io::ErrorKind::TimedOut,
        }
    }

    /// The underlying I/O error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Reason::Io(e) | Reason::ConnectFailed(e) | Reason::HandshakeFailed(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the reason is a failed connection attempt (rather than the loss of a live
    /// connection).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            Reason::ConnectFailed(_) | Reason::ConnectTimeout(_) | Reason::HandshakeFailed(_)
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Io(e) => write!(f, "connection lost: {e}"),
            Reason::Eof => f.write_str("connection closed by the peer"),
            Reason::IdleTimeout(d) => write!(f, "no data received for {d:?}"),
            Reason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Reason::ConnectTimeout(d) => write!(f, "connect timed out after {d:?}"),
            Reason::HandshakeFailed(e) => write!(f, "on_connect hook failed: {e}"),
        }
    }
}

/// The default classification of I/O errors on a live connection: `true` for the kinds that mean
/// the connection is gone (reset, aborted, broken pipe, not connected, timed out, unexpected EOF,
/// host or network unreachable, network down).
///
/// Other errors (for example `InvalidInput` or `InvalidData`) are returned to the caller as they
/// are and do not start a reconnect. Replace it with
/// [`Builder::disconnect_if`](super::Builder::disconnect_if).
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::is_disconnect;
///
/// assert!(is_disconnect(&io::ErrorKind::ConnectionReset.into()));
/// assert!(!is_disconnect(&io::ErrorKind::InvalidData.into()));
/// ```
pub fn is_disconnect(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset
            | ConnectionAborted
            | BrokenPipe
            | NotConnected
            | TimedOut
            | UnexpectedEof
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | WriteZero
    )
}

/// The default classification of failed connection attempts: `true` (try again) for every error
/// except the kinds that retrying cannot fix: `InvalidInput` (an address that does not parse, a
/// host with no port, a Unix socket path that is too long), `PermissionDenied` and `Unsupported`.
///
/// Everything else is retried: refused or reset connections, unreachable hosts, a Unix socket path
/// that does not exist yet (`NotFound`), and name resolution failures. A DNS name that does not
/// resolve is treated as transient on purpose: the resolver reports a missing name and a resolver
/// that is briefly unavailable alike, and a service's name often appears only after the service
/// (a container or Kubernetes service being deployed). Timeouts are always retried.
///
/// Used by [`Builder::retry_connect_if`](super::Builder::retry_connect_if) and
/// [`RetryLoop::retry_connect_if`](super::RetryLoop::retry_connect_if); pass your own function to
/// either to change it (for example `|_| true` to retry everything, as when a firewall that answers
/// `PermissionDenied` may be reconfigured).
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::is_retryable_connect_error;
///
/// assert!(is_retryable_connect_error(&io::ErrorKind::ConnectionRefused.into()));
/// assert!(!is_retryable_connect_error(&io::ErrorKind::InvalidInput.into()));
/// ```
pub fn is_retryable_connect_error(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
    )
}
