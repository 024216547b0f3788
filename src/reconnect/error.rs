//! The one family of loss and give-up types: why ([`Reason`]), a lost connection
//! ([`Disconnected`]), and the end of retrying ([`GaveUp`] with its [`GiveUpCause`]).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Why a connection was lost or an attempt failed.
///
/// Cheap to clone: the underlying [`io::Error`] is shared.
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::{GaveUp, Reason, Reconnecting};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(io::ErrorKind::ConnectionRefused.into())
/// };
/// let mut conn = Reconnecting::builder(refuse).policy(std::iter::empty()).build();
/// let err = conn.wait_connected().await.unwrap_err();
/// let reason = GaveUp::from_io_error(&err).unwrap().last_reason().unwrap();
/// assert!(matches!(reason, Reason::ConnectFailed(_)));
/// assert!(reason.is_connect_failure());
/// assert_eq!(reason.kind(), io::ErrorKind::ConnectionRefused);
/// assert_eq!(reason.to_string(), "connect failed: connection refused");
/// # }
/// ```
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
    /// A session run by a [`RetryLoop`](super::RetryLoop) ended, asking for a new connection
    /// ([`SessionEnd::Reconnect`](super::SessionEnd::Reconnect),
    /// [`Retry`](super::SessionEnd::Retry)) or for good
    /// ([`Fatal`](super::SessionEnd::Fatal)); the session's own error, if any, is in the
    /// [`RetryOutcome`](super::RetryOutcome).
    SessionEnded,
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
            Reason::SessionEnded => io::ErrorKind::Other,
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Io(e) => write!(f, "connection lost: {e}"),
            Reason::Eof => f.write_str("connection closed by the peer"),
            Reason::IdleTimeout(d) => write!(f, "no data received for {d:?}"),
            Reason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Reason::ConnectTimeout(d) => write!(f, "connect timed out after {d:?}"),
            Reason::HandshakeFailed(e) => write!(f, "on_connect hook failed: {e}"),
            Reason::SessionEnded => f.write_str("the session ended"),
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

/// The payload of the [`io::Error`] a [`Reconnecting`](super::Reconnecting) returns when a
/// connection was lost: which connection, why, and how many bytes written on it may be lost.
///
/// The error's kind is [`Reason::kind`]. Get the payload back with
/// [`Disconnected::from_io_error`].
///
/// `unconfirmed_bytes` counts the bytes that writes *through the handle that gets the report*
/// reported as written on that connection since it was established or since the last
/// [`confirm`](super::Reconnecting::confirm). TCP cannot say how many of them reached the peer's
/// application: anything between none and all of them did.
///
/// Each loss is reported once to each handle that used the lost connection, never about a
/// connection the handle did not use: once for a whole `Reconnecting`, once per half after
/// [`Reconnecting::split`](super::Reconnecting::split) (the read half wrote nothing, so its report
/// counts 0 unconfirmed bytes).
///
/// Where the operating system can say, [`kernel_unacked_bytes`](Disconnected::kernel_unacked_bytes)
/// narrows it down: of the unconfirmed bytes, that many were never acknowledged by the peer's
/// kernel and so certainly did not reach the peer's application; the rest reached the peer's
/// kernel, and may or may not have been read before the connection died.
///
/// `#[non_exhaustive]`: more facts about the loss may be added.
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
#[non_exhaustive]
pub struct Disconnected {
    pub(crate) generation: u64,
    pub(crate) unconfirmed: u64,
    pub(crate) kernel_unacked: Option<u64>,
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

    /// The bytes the lost connection's send queue still held when the loss was noticed:
    /// written to the socket, but never acknowledged by the peer's kernel (not yet sent, or sent
    /// and not acknowledged). None of them reached the peer's application.
    ///
    /// Measured by the kernel where the connector can read it
    /// ([`Connect::unacked_bytes`](super::Connect::unacked_bytes)): over TCP on Linux and
    /// Android with [`TcpConnector`](super::TcpConnector) (`SIOCOUTQ`). `None` elsewhere, for
    /// other connectors, and for the read half of a [split](super::Reconnecting::split)
    /// adapter; fall back to [`unconfirmed_bytes`](Self::unconfirmed_bytes) then.
    ///
    /// It is at most `unconfirmed_bytes` unless [`confirm`](super::Reconnecting::confirm) was
    /// called while written bytes were still queued (the kernel does not know about confirms).
    pub fn kernel_unacked_bytes(&self) -> Option<u64> {
        self.kernel_unacked
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
            "connection {} lost ({}); {} written on it {} not confirmed",
            self.generation,
            self.reason,
            plural(self.unconfirmed, "byte"),
            if self.unconfirmed == 1 { "was" } else { "were" }
        )?;
        if let Some(n) = self.kernel_unacked {
            write!(f, " ({} never acknowledged by the peer)", plural(n, "byte"))?;
        }
        Ok(())
    }
}

impl std::error::Error for Disconnected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.reason
            .io_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Retrying has ended for good: why ([`cause`](GaveUp::cause)), after how many attempts, and the
/// last failure. A [`RetryLoop`](super::RetryLoop) returns it in
/// [`RetryOutcome::GaveUp`](super::RetryOutcome::GaveUp); a
/// [`Reconnecting`](super::Reconnecting) and a [`resume::Client`](crate::resume::Client) publish
/// it ([`ConnState::GaveUp`](super::ConnState::GaveUp)) and make it the payload of the error
/// every operation returns from then on. That error's kind is always
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
#[non_exhaustive]
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

    /// Connection attempts made in the last outage (successful ones included): since the loss of
    /// the last connection that stayed up for the [stable period](super::Builder::stable_after),
    /// or since the start.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last failure before giving up, if any.
    pub fn last_reason(&self) -> Option<&Reason> {
        self.last_reason.as_ref()
    }

    /// The payload of an error returned by a [`Reconnecting`](super::Reconnecting) that gave up.
    pub fn from_io_error(error: &io::Error) -> Option<&GaveUp> {
        error.get_ref()?.downcast_ref()
    }

    pub(crate) fn to_io_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, self.clone())
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = plural(u64::from(self.attempts), "attempt");
        write!(
            f,
            "gave up reconnecting ({:?}) after {attempts}",
            self.cause
        )?;
        if let Some(reason) = &self.last_reason {
            write!(f, "; last failure: {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GaveUp {}

/// Why retrying stopped for good ([`GaveUp::cause`]).
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::reconnect::{Decision, GaveUp, GiveUpCause, Reconnecting};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let cause = |err: io::Error| GaveUp::from_io_error(&err).unwrap().cause();
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(io::ErrorKind::ConnectionRefused.into())
/// };
///
/// let mut hook_says_no = Reconnecting::builder(refuse)
///     .on_disconnect(|_, _| Box::pin(async { Decision::GiveUp }))
///     .build();
/// assert_eq!(cause(hook_says_no.wait_connected().await.unwrap_err()), GiveUpCause::Hook);
///
/// // No port: retrying cannot help.
/// let mut no_port = Reconnecting::new(staunch::reconnect::TcpConnector::new("127.0.0.1"));
/// assert_eq!(cause(no_port.wait_connected().await.unwrap_err()), GiveUpCause::Fatal);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUpCause {
    /// The backoff policy ended (its iterator returned `None`).
    PolicyExhausted,
    /// The [`on_disconnect`](super::Builder::on_disconnect) hook returned
    /// [`Decision::GiveUp`](super::Decision::GiveUp).
    Hook,
    /// The cancellation future given to [`cancel_on`](super::Builder::cancel_on) completed.
    Cancelled,
    /// A connection attempt failed with an error that retrying cannot fix, as judged by
    /// [`retry_connect_if`](super::Builder::retry_connect_if) (by default
    /// [`is_retryable_connect_error`](super::is_retryable_connect_error): `InvalidInput`, such as
    /// an address with no port, `PermissionDenied` or `Unsupported`). No `on_disconnect` hook runs
    /// and no more attempts are made. Like every give-up, it is sticky and every later operation
    /// fails with [`NotConnected`](std::io::ErrorKind::NotConnected); the connect error itself,
    /// with its own kind, is [`GaveUp::last_reason`]
    /// ([`Reason::ConnectFailed`]). A
    /// [`RetryLoop`](super::RetryLoop) session that returns
    /// [`SessionEnd::Fatal`](super::SessionEnd::Fatal) ends with this cause too.
    Fatal,
}

/// `1 byte`, `2 bytes`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
