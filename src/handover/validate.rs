//! Checking that a descriptor is a listening TCP or Unix stream socket, and adopting it.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt as _;

use socket2::{Domain, SockRef, Socket, Type};

use super::error::HandoverError;
use super::kind::Kind;
use super::listener::Listener;

/// Check that `fd` is a listening socket of `expected` kind (either kind when `None`), and
/// return its kind. `name` names the descriptor in errors.
pub(super) fn check(
    fd: BorrowedFd<'_>,
    name: &str,
    expected: Option<Kind>,
) -> Result<Kind, HandoverError> {
    let io = |source| HandoverError::Io {
        context: format!("cannot inspect socket `{name}`"),
        source,
    };
    // fstat through a duplicate: `File` wants to own its descriptor.
    let file = File::from(fd.try_clone_to_owned().map_err(io)?);
    if !file.metadata().map_err(io)?.file_type().is_socket() {
        return Err(HandoverError::NotASocket { name: name.into() });
    }
    drop(file);

    let socket = SockRef::from(&fd);
    let domain = socket.local_addr().map_err(io)?.domain();
    let type_ = socket.r#type().map_err(io)?;
    let found = match (domain, type_) {
        (Domain::IPV4 | Domain::IPV6, Type::STREAM) => Some(Kind::Tcp),
        (Domain::UNIX, Type::STREAM) => Some(Kind::Unix),
        _ => None,
    };
    match (found, expected) {
        (Some(found), None) => check_listening(&socket, name).map(|()| found),
        (Some(found), Some(expected)) if found == expected => {
            check_listening(&socket, name).map(|()| found)
        }
        _ => Err(HandoverError::WrongKind {
            name: name.into(),
            expected,
            found: describe(domain, type_),
        }),
    }
}

#[cfg(any(
    target_os = "aix",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "cygwin",
))]
fn check_listening(socket: &SockRef<'_>, name: &str) -> Result<(), HandoverError> {
    match socket.is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => Err(HandoverError::NotListening { name: name.into() }),
        Err(source) => Err(HandoverError::Io {
            context: format!("cannot read SO_ACCEPTCONN of socket `{name}`"),
            source,
        }),
    }
}

/// Where `SO_ACCEPTCONN` is not available, a socket that is not listening fails at its first
/// `accept` (`EINVAL`) instead.
#[cfg(not(any(
    target_os = "aix",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "cygwin",
)))]
fn check_listening(_: &SockRef<'_>, _: &str) -> Result<(), HandoverError> {
    Ok(())
}

fn describe(domain: Domain, type_: Type) -> String {
    let domain = match domain {
        Domain::IPV4 => "an IPv4".to_owned(),
        Domain::IPV6 => "an IPv6".to_owned(),
        Domain::UNIX => "a Unix".to_owned(),
        other => format!("a {other:?}"),
    };
    let type_ = match type_ {
        Type::STREAM => "stream".to_owned(),
        Type::DGRAM => "datagram".to_owned(),
        Type::SEQPACKET => "seqpacket".to_owned(),
        other => format!("{other:?}"),
    };
    format!("{domain} {type_} socket")
}

/// Check that `fd` is a connected Unix stream socket, as the handshake of
/// [`SuccessorCommand`](super::SuccessorCommand) is.
pub(super) fn check_handshake(fd: BorrowedFd<'_>, name: &str) -> Result<(), HandoverError> {
    let socket = SockRef::from(&fd);
    let io = |source| HandoverError::Io {
        context: format!("cannot inspect socket `{name}`"),
        source,
    };
    let domain = socket.local_addr().map_err(io)?.domain();
    let type_ = socket.r#type().map_err(io)?;
    if (domain, type_) != (Domain::UNIX, Type::STREAM) {
        return Err(HandoverError::WrongKind {
            name: name.into(),
            expected: Some(Kind::Unix),
            found: describe(domain, type_),
        });
    }
    Ok(())
}

/// Adopt the checked handshake descriptor, close-on-exec.
pub(super) fn adopt_handshake(
    fd: OwnedFd,
    name: &str,
) -> Result<std::os::unix::net::UnixStream, HandoverError> {
    let socket = Socket::from(fd);
    socket
        .set_cloexec(true)
        .map_err(|source| HandoverError::Io {
            context: format!("cannot set up socket `{name}`"),
            source,
        })?;
    Ok(socket.into())
}

/// Turn a checked descriptor of `kind` into a listener: close-on-exec (so that children do not
/// inherit it) and non-blocking (as tokio needs).
pub(super) fn adopt(fd: OwnedFd, kind: Kind, name: &str) -> Result<Listener, HandoverError> {
    let socket = Socket::from(fd);
    let io = |source| HandoverError::Io {
        context: format!("cannot set up socket `{name}`"),
        source,
    };
    socket.set_cloexec(true).map_err(io)?;
    socket.set_nonblocking(true).map_err(io)?;
    Ok(match kind {
        Kind::Tcp => Listener::Tcp(socket.into()),
        Kind::Unix => Listener::Unix(socket.into()),
    })
}

impl Listener {
    /// Check that `fd` is a listening TCP or Unix stream socket and wrap it, close-on-exec and
    /// non-blocking.
    ///
    /// Non-blocking mode belongs to the socket, not the descriptor: a process that still
    /// accepts on the same socket sees it too (tokio's listeners are non-blocking anyway).
    ///
    /// # Errors
    ///
    /// [`HandoverError::NotASocket`], [`HandoverError::NotListening`] or
    /// [`HandoverError::WrongKind`] (a datagram or seqpacket socket, another family), named
    /// `fd N`; the descriptor is closed.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, HandoverError> {
        use std::os::fd::AsRawFd as _;
        let name = format!("fd {}", fd.as_raw_fd());
        let kind = check(fd.as_fd(), &name, None)?;
        adopt(fd, kind, &name)
    }
}
