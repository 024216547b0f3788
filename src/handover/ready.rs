//! The readiness handshake: the new process says it is ready (to systemd, then to the old
//! process), and the old process waits for it.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::error::{io_error, HandoverError};

/// The successor's answer once it is ready.
const READY: &[u8] = b"ready\n";

/// The new process's promise to say when it is ready; see [`Ready::ready`].
///
/// Dropping it without calling `ready` tells the old process that the handover failed: its
/// [`Handover::offer`](super::Handover::offer) returns [`HandoverError::SuccessorGone`] and it
/// keeps serving.
///
/// # Examples
///
/// A new process that fails its own checks drops it, and the old process keeps serving:
///
/// ```
/// use std::os::fd::AsFd as _;
/// use staunch::handover::{take_over, Handover, HandoverError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let path = std::env::temp_dir().join(format!("staunch-doc-ready-{}.sock", std::process::id()));
/// let handover = Handover::bind(&path)?;
/// let ticket = handover.ticket();
/// tokio::spawn(async move {
///     let (_listeners, ready) = take_over(&ticket).await?;
///     drop(ready); // say, its configuration does not load
///     Ok::<_, HandoverError>(())
/// });
/// let err = handover.offer(&[("http", listener.as_fd())]).await.unwrap_err();
/// assert!(matches!(err, HandoverError::SuccessorGone));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the old process stops accepting only when `ready` is called"]
pub struct Ready {
    /// The old process's end of the handshake: the control connection, or the descriptor
    /// [`SuccessorCommand`](super::SuccessorCommand) passed.
    predecessor: Option<std::os::unix::net::UnixStream>,
}

impl Ready {
    pub(super) fn new(predecessor: Option<std::os::unix::net::UnixStream>) -> Self {
        Ready { predecessor }
    }

    /// Tell systemd, when `NOTIFY_SOCKET` is set, that this process is ready and is now the
    /// main one (`READY=1`, `MAINPID=`); then the old process (if the sockets came from one),
    /// so that it stops accepting and drains.
    ///
    /// systemd first: once told, the old process may exit at once, and systemd must know the
    /// new main process by then, or it takes that exit for the service's (it reads
    /// notifications before exits, so a message sent earlier is seen earlier).
    ///
    /// # Errors
    ///
    /// An I/O error if either could not be told. If systemd could not, the old process is not
    /// told either: it keeps serving, and its offer fails with
    /// [`HandoverError::SuccessorGone`]. A failure to tell the old process that it has gone
    /// already is not one: these sockets are this process's to serve.
    pub async fn ready(self) -> Result<(), HandoverError> {
        notify_systemd()?;
        let Some(predecessor) = self.predecessor else {
            return Ok(());
        };
        let told = async {
            predecessor.set_nonblocking(true)?;
            UnixStream::from_std(predecessor)?.write_all(READY).await
        };
        match told.await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(io_error("cannot tell the old process", e)),
        }
    }
}

fn notify_systemd() -> Result<(), HandoverError> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let error = |e| io_error(format!("cannot notify systemd at {path:?}"), e);
    let socket = std::os::unix::net::UnixDatagram::unbound().map_err(error)?;
    let bytes = path.as_encoded_bytes();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).map_err(error)?;
        return socket
            .send_to_addr(message.as_bytes(), &addr)
            .map(drop)
            .map_err(error);
    }
    let _ = bytes;
    socket
        .send_to(message.as_bytes(), &path)
        .map(drop)
        .map_err(error)
}

/// Wait for the new process's `ready` on `stream`.
pub(super) async fn await_ready(stream: &mut UnixStream) -> Result<(), HandoverError> {
    let mut answer = [0; READY.len()];
    match stream.read_exact(&mut answer).await {
        Ok(_) if answer == READY => Ok(()),
        Ok(_) => Err(HandoverError::Protocol(format!(
            "the new process answered {:?} instead of {:?}",
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(READY)
        ))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Err(HandoverError::SuccessorGone)
        }
        Err(e) => Err(io_error("cannot read the new process's answer", e)),
    }
}
