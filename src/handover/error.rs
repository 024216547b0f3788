//! The error type, and the helper that gives an I/O error its context.

use std::fmt;
use std::io;

use super::kind::Kind;

pub(super) fn io_error(context: impl Into<String>, source: io::Error) -> HandoverError {
    HandoverError::Io {
        context: context.into(),
        source,
    }
}

/// Why a handover, or a socket in it, failed.
///
/// # Examples
///
/// ```
/// use std::os::fd::{AsRawFd as _, OwnedFd};
/// use staunch::handover::{HandoverError, Listener};
///
/// let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// let fd = udp.as_raw_fd();
/// let err = Listener::from_fd(OwnedFd::from(udp)).unwrap_err();
/// assert!(matches!(err, HandoverError::WrongKind { expected: None, .. }));
/// assert_eq!(
///     err.to_string(),
///     format!("socket `fd {fd}` is an IPv4 datagram socket, not a TCP or Unix stream listener")
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoverError {
    /// The descriptor is not a socket.
    NotASocket {
        /// The socket's name (`fd N` from [`Listener::from_fd`](super::Listener::from_fd)).
        name: String,
    },
    /// The socket is not listening (`listen` was never called on it).
    NotListening {
        /// The socket's name.
        name: String,
    },
    /// The socket is not of the expected family or type.
    WrongKind {
        /// The socket's name.
        name: String,
        /// What was expected; `None`: a TCP or Unix stream listener.
        expected: Option<Kind>,
        /// What it is, in words.
        found: String,
    },
    /// No listener of that name was handed over.
    NotFound {
        /// The name asked for.
        name: String,
        /// The names of the listeners left.
        offered: Vec<String>,
    },
    /// A name [`Handover::offer`](super::Handover::offer) cannot send.
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `LISTEN_*` variable is malformed ([`from_env`](super::from_env)).
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The new process disconnected before it said it was ready; this process keeps serving.
    SuccessorGone,
    /// The ticket given to [`take_over`](super::take_over) is not the current one: it was
    /// voided by a newer one (the offer it was issued for was given up), or another process
    /// presented it first.
    StaleTicket,
    /// The other side does not speak this protocol (or another version of it).
    Protocol(String),
    /// A system call failed.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoverError::NotASocket { name } => write!(f, "`{name}` is not a socket"),
            HandoverError::NotListening { name } => {
                write!(f, "socket `{name}` is not listening")
            }
            HandoverError::WrongKind {
                name,
                expected,
                found,
            } => {
                let expected = match expected {
                    Some(kind) => kind.to_string(),
                    None => "a TCP or Unix stream listener".into(),
                };
                write!(f, "socket `{name}` is {found}, not {expected}")
            }
            HandoverError::NotFound { name, offered } => {
                write!(
                    f,
                    "no listener `{name}` was handed over (left: {offered:?})"
                )
            }
            HandoverError::InvalidName { name, reason } => {
                write!(f, "cannot hand over a socket named {name:?}: {reason}")
            }
            HandoverError::InvalidEnv { var, value, reason } => {
                write!(f, "{var}={value:?}: {reason}")
            }
            HandoverError::SuccessorGone => {
                f.write_str("the new process disconnected before it was ready")
            }
            HandoverError::StaleTicket => f.write_str(
                "the ticket is not the current one: the old process issued a newer one, or \
                 another process presented it first",
            ),
            HandoverError::Protocol(what) => write!(f, "handover protocol: {what}"),
            HandoverError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for HandoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandoverError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
