//! The control socket: the old process offers its listeners over a Unix socket
//! (`SCM_RIGHTS`) to the new process that presents its ticket.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::{UnixListener as TokioUnixListener, UnixStream};
use tokio::sync::Notify;

use super::error::{io_error, HandoverError};
use super::kind::Kind;
use super::listener::Listeners;
use super::ready::{await_ready, Ready};
use super::{scm, validate};
use crate::task::AbortOnDrop;

/// The first line of an offer: the protocol and its version.
const HEADER: &str = "staunch-handover 1";
/// The last line of an offer.
const END: &str = "end";
/// What the successor says first: this and its ticket's token, then a newline.
const TAKE: &str = "take ";
/// The old process's answer to a ticket that is not the current one.
const STALE: &[u8] = b"stale\n";
/// A process that connects gets this long to present its ticket, so that one that says
/// nothing does not hold a connection for ever.
const TAKE_WITHIN: Duration = Duration::from_secs(10);
/// At most this many connections present their tickets at once; more wait in the backlog.
const MAX_PRESENTING: usize = 64;
/// After a failed `accept` (out of descriptors, say), the control socket waits this long
/// before accepting again, rather than spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Tokens are at most this long (and the `take` line with them).
const MAX_TOKEN: usize = 64;
/// Offers longer than this are refused (253 names of 255 bytes fit).
const MAX_OFFER: usize = 80 * 1024;

/// The old process's side: a control socket at a path where a new process can take over the
/// listeners.
///
/// The socket file is created with mode `0600` and removed when this is dropped (if it is
/// still the one this created). A task answers the processes that connect, from
/// [`bind`](Handover::bind) until this is dropped, so that one with a voided or used ticket is
/// turned away at once, offer or no offer.
///
/// # Examples
///
/// Both sides in one process, to show the steps (in real use, [`take_over`] runs in the new
/// process, with the ticket from its environment):
///
/// ```
/// use std::os::fd::AsFd as _;
/// use staunch::handover::{take_over, Handover};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let path = std::env::temp_dir().join(format!("staunch-doc-{}.sock", std::process::id()));
/// let handover = Handover::bind(&path)?;
/// let ticket = handover.ticket();
/// let successor = tokio::spawn(async move {
///     let (mut listeners, ready) = take_over(&ticket).await?;
///     let taken = listeners.take_tcp("http")?;
///     ready.ready().await?;
///     Ok::<_, staunch::handover::HandoverError>(taken)
/// });
/// handover.offer(&[("http", listener.as_fd())]).await?; // returns once it is ready
/// let taken = successor.await??;
/// assert_eq!(taken.local_addr()?, listener.local_addr()?); // the very same socket
/// drop(handover);
/// assert!(!path.exists()); // the control socket is removed
/// # Ok(())
/// # }
/// ```
pub struct Handover {
    path: PathBuf,
    /// Device and inode of the socket file, to remove only our own.
    file: (u64, u64),
    tickets: Arc<Tickets>,
    /// Accepts on the control socket and reads tickets (`answer`); it owns the listener.
    _answering: AbortOnDrop<()>,
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field("path", &self.path)
            .field("tickets", &*self.tickets.lock())
            .finish_non_exhaustive()
    }
}

/// The current ticket and the process that presented it.
#[derive(Debug, Default)]
struct Tickets {
    state: Mutex<TicketState>,
    /// A process presented the current ticket.
    presented: Notify,
}

#[derive(Debug, Default)]
struct TicketState {
    /// The token of the current ticket; `None` before the first and once a process presented
    /// it.
    current: Option<String>,
    /// The process that presented the current ticket, until an offer takes it.
    waiting: Option<UnixStream>,
}

impl Tickets {
    fn lock(&self) -> MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Handover {
    /// Listen for a new process at `path`. A stale socket file there (nobody listening, left by
    /// a process that crashed) is replaced. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// Those of binding a Unix socket at `path`; `AddrInUse` if another process listens there.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        use std::os::unix::net::{UnixListener, UnixStream};
        let path = path.as_ref();
        let listener = match UnixListener::bind(path) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => match UnixStream::connect(path) {
                Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path)?;
                    UnixListener::bind(path)?
                }
                _ => return Err(e),
            },
            other => other?,
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        let meta = fs::metadata(path)?;
        listener.set_nonblocking(true)?;
        let listener = TokioUnixListener::from_std(listener)?;
        let tickets = Arc::new(Tickets::default());
        let answering = tokio::spawn(answer(listener, Arc::clone(&tickets)));
        Ok(Handover {
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
            tickets,
            _answering: AbortOnDrop(answering),
        })
    }

    /// Issue the ticket for the next offer: give it to the new process (in its environment,
    /// say), which passes it to [`take_over`]. It holds this socket's path and a token unique
    /// to this offer.
    ///
    /// A ticket is good for one process: the first to present it gets the offer, the others
    /// are turned away ([`HandoverError::StaleTicket`]). A new ticket
    /// voids the ones issued before it, so that a process started for an offer that was given
    /// up, and that connects late, is turned away ([`HandoverError::StaleTicket`]) instead of
    /// taking the sockets meant for the next one. Retrying an offer for the same process
    /// (after the offer future was dropped before it connected) needs no new ticket.
    pub fn ticket(&self) -> OsString {
        static ISSUED: AtomicU64 = AtomicU64::new(0);
        // Unique, not secret: whoever can connect to the socket can take the sockets anyway.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!(
            "{:x}-{:x}-{nanos:x}",
            std::process::id(),
            ISSUED.fetch_add(1, Ordering::Relaxed)
        );
        let mut ticket = OsString::from(&token);
        ticket.push(" ");
        ticket.push(self.path.as_os_str());
        let mut state = self.tickets.lock();
        state.current = Some(token);
        // A process that presented the previous ticket and waits for an offer is voided too.
        if let Some(voided) = state.waiting.take() {
            turn_away(&voided);
        }
        ticket
    }

    /// Where the new process connects ([`take_over`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offer `sockets` (each with a name the new process finds it by) to the process that
    /// presents the current [ticket](Handover::ticket), and wait until it is ready.
    ///
    /// 1. The sockets are checked first: listening TCP or Unix stream sockets, names of 1 to
    ///    255 printable ASCII characters other than `:` (so that they also fit
    ///    `LISTEN_FDNAMES`), all different, at most 253 of them.
    /// 2. It waits for a process to connect with the current ticket (no time limit: race it
    ///    with the new process's exit, or with a timeout), or takes the one that did so
    ///    already, and sends it the descriptors. A process with a voided or used ticket is told
    ///    so at once and the wait goes on; one that presents no ticket within 10 seconds is
    ///    disconnected, without holding up the others.
    /// 3. It returns `Ok` when the new process has called [`Ready::ready`]. The caller then
    ///    stops accepting and drains; the sockets stay open in the new process.
    ///
    /// This process keeps its sockets and keeps serving throughout, whatever the outcome.
    /// After an error, the offer can be made again.
    ///
    /// # Errors
    ///
    /// A validation error for a socket or name ([`HandoverError::NotListening`], ...);
    /// [`HandoverError::Protocol`] if no ticket was issued since a process last took one;
    /// [`HandoverError::SuccessorGone`] if the new process disconnects (exits, fails its own
    /// checks, drops [`Ready`]) before it is ready; I/O errors.
    pub async fn offer(&self, sockets: &[(&str, BorrowedFd<'_>)]) -> Result<(), HandoverError> {
        let message = offer_message(sockets)?;
        let stream = self.accept_ticket().await?;
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|(_, fd)| *fd).collect();
        let sending = |e: io::Error| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                HandoverError::SuccessorGone
            }
            _ => io_error("cannot send the sockets", e),
        };
        let sent = stream
            .async_io(Interest::WRITABLE, || {
                scm::send(stream.as_fd(), message.as_bytes(), &fds)
            })
            .await
            .map_err(sending)?;
        let mut stream = stream;
        stream
            .write_all(&message.as_bytes()[sent..])
            .await
            .map_err(sending)?;

        await_ready(&mut stream).await
    }
}

impl Handover {
    /// The process that presented the current ticket, once one has.
    async fn accept_ticket(&self) -> Result<UnixStream, HandoverError> {
        {
            let state = self.tickets.lock();
            if state.current.is_none() && state.waiting.is_none() {
                return Err(HandoverError::Protocol(
                    "no ticket was issued for this offer (Handover::ticket)".into(),
                ));
            }
        }
        loop {
            if let Some(stream) = self.tickets.lock().waiting.take() {
                return Ok(stream);
            }
            // `notify_one` keeps a permit when nobody waits: no arrival is missed.
            self.tickets.presented.notified().await;
        }
    }
}

/// The control socket's task: accept connections and read their tickets side by side.
async fn answer(listener: TokioUnixListener, tickets: Arc<Tickets>) {
    let mut presenting = FuturesUnordered::new();
    loop {
        let accepted = std::future::poll_fn(|cx| {
            // Finished presentations make room; their outcome is handled in `present`.
            while let Poll::Ready(Some(())) = presenting.poll_next_unpin(cx) {}
            if presenting.len() >= MAX_PRESENTING {
                return Poll::Pending;
            }
            listener.poll_accept(cx)
        })
        .await;
        match accepted {
            Ok((stream, _)) => presenting.push(present(stream, &tickets)),
            Err(_e) => {
                log_event!(warn, error = %_e, "handover: cannot accept on the control socket");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// Read the ticket of a process that connected: keep it for the offer if it is the current
/// one, turn it away otherwise.
async fn present(mut stream: UnixStream, tickets: &Tickets) {
    let Ok(Ok(token)) = tokio::time::timeout(TAKE_WITHIN, read_take(&mut stream)).await else {
        log_event!(
            warn,
            "handover: a process connected without presenting a ticket; disconnected"
        );
        return;
    };
    let mut state = tickets.lock();
    if state.current.as_deref() == Some(token.as_str()) {
        state.current = None;
        state.waiting = Some(stream);
        drop(state);
        tickets.presented.notify_one();
    } else {
        drop(state);
        log_event!(
            warn,
            "handover: a process presented a voided or used ticket; turned away"
        );
        turn_away(&stream);
    }
}

/// Tell a process that its ticket is not the current one. Without waiting: it fits in the
/// empty send buffer of a new connection, and whether it is heard does not matter to the offer.
fn turn_away(stream: &UnixStream) {
    let _ = stream.try_write(STALE);
}

/// Read the `take TOKEN` line a new process starts with; the token.
async fn read_take(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0; 1];
    // Byte by byte: nothing after the line may be consumed (there is nothing, but this
    // keeps the protocol honest), and the line is short.
    while line.len() <= TAKE.len() + MAX_TOKEN {
        stream.read_exact(&mut byte).await?;
        if byte[0] == b'\n' {
            let line = String::from_utf8(line).map_err(|_| invalid_take())?;
            return match line.strip_prefix(TAKE) {
                Some(token) => Ok(token.to_owned()),
                None => Err(invalid_take()),
            };
        }
        line.push(byte[0]);
    }
    Err(invalid_take())
}

fn invalid_take() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a `take` line")
}

impl Drop for Handover {
    fn drop(&mut self) {
        if fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The text of an offer: the header, `KIND NAME` per socket, `end`.
fn offer_message(sockets: &[(&str, BorrowedFd<'_>)]) -> Result<String, HandoverError> {
    let mut message = format!("{HEADER}\n");
    for ((name, _), kind) in sockets.iter().zip(check_sockets(sockets)?) {
        message.push_str(&format!("{} {name}\n", kind.wire()));
    }
    message.push_str(END);
    message.push('\n');
    Ok(message)
}

/// Check sockets to hand over, by either path: their number, their names, and that each is a
/// listening TCP or Unix stream socket; their kinds.
pub(super) fn check_sockets(
    sockets: &[(&str, BorrowedFd<'_>)],
) -> Result<Vec<Kind>, HandoverError> {
    if sockets.len() > scm::MAX_FDS {
        return Err(HandoverError::Protocol(format!(
            "{} sockets offered; at most {} can be handed over",
            sockets.len(),
            scm::MAX_FDS
        )));
    }
    let mut kinds = Vec::with_capacity(sockets.len());
    for (i, (name, fd)) in sockets.iter().enumerate() {
        let reason = if name.is_empty() || name.len() > 255 {
            Some("names have 1 to 255 characters")
        } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            Some("names are printable ASCII without spaces or `:`")
        } else if sockets[..i].iter().any(|(other, _)| other == name) {
            Some("offered twice")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(HandoverError::InvalidName {
                name: (*name).into(),
                reason,
            });
        }
        kinds.push(validate::check(*fd, name, None)?);
    }
    Ok(kinds)
}

/// The new process's side: with the `ticket` the old process issued
/// ([`Handover::ticket`]), connect to its [`Handover`], receive its listeners and check each one
/// as announced.
///
/// Returns the listeners and the [`Ready`] to call when this process can serve; until then the
/// old process keeps accepting on the same sockets.
///
/// # Errors
///
/// [`HandoverError::Protocol`] if `ticket` is not one, or the other side does not speak this
/// protocol; [`HandoverError::StaleTicket`] if a newer ticket was issued since, or another
/// process presented this one first (told at once, whether or not an offer runs); I/O errors
/// connecting or reading; a validation error if a socket is not what it was announced as (then
/// the old process's offer fails with [`HandoverError::SuccessorGone`]).
pub async fn take_over(ticket: impl AsRef<OsStr>) -> Result<(Listeners, Ready), HandoverError> {
    let ticket = ticket.as_ref().as_bytes();
    let (token, path) = match ticket.iter().position(|&b| b == b' ') {
        Some(space) if (1..=MAX_TOKEN).contains(&space) => (
            &ticket[..space],
            Path::new(OsStr::from_bytes(&ticket[space + 1..])),
        ),
        _ => {
            return Err(HandoverError::Protocol(format!(
                "{:?} is not a ticket (Handover::ticket)",
                String::from_utf8_lossy(ticket)
            )))
        }
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| io_error(format!("cannot connect to {}", path.display()), e))?;
    let mut take = TAKE.as_bytes().to_vec();
    take.extend_from_slice(token);
    take.push(b'\n');
    stream
        .write_all(&take)
        .await
        .map_err(|e| io_error("cannot present the ticket", e))?;
    let mut text = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    while !text.ends_with(format!("\n{END}\n").as_bytes()) {
        let read = stream
            .async_io(Interest::READABLE, || {
                scm::recv(stream.as_fd(), &mut buf, &mut fds)
            })
            .await
            .map_err(|e| io_error("cannot receive the sockets", e))?;
        if read == 0 && text == STALE {
            return Err(HandoverError::StaleTicket);
        }
        if read == 0 {
            return Err(HandoverError::Protocol(
                "the old process closed the connection before the end of its offer".into(),
            ));
        }
        text.extend_from_slice(&buf[..read]);
        if text == STALE {
            return Err(HandoverError::StaleTicket);
        }
        if text.len() > MAX_OFFER {
            return Err(HandoverError::Protocol("the offer is too long".into()));
        }
    }
    let text = String::from_utf8(text)
        .map_err(|_| HandoverError::Protocol("the offer is not UTF-8".into()))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(HandoverError::Protocol(format!(
            "the offer does not start with {HEADER:?}"
        )));
    }
    let announced: Vec<(Kind, &str)> = lines
        .take_while(|line| *line != END)
        .map(|line| match line.split_once(' ') {
            Some(("tcp", name)) => Ok((Kind::Tcp, name)),
            Some(("unix", name)) => Ok((Kind::Unix, name)),
            _ => Err(HandoverError::Protocol(format!(
                "unknown line in the offer: {line:?}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    if announced.len() != fds.len() {
        return Err(HandoverError::Protocol(format!(
            "{} sockets announced, {} received",
            announced.len(),
            fds.len()
        )));
    }
    let mut listeners = Listeners::default();
    for ((kind, name), fd) in announced.into_iter().zip(fds) {
        validate::check(fd.as_fd(), name, Some(kind))?;
        listeners.push(name.into(), validate::adopt(fd, kind, name)?);
    }
    Ok((
        listeners,
        Ready::new(Some(
            stream
                .into_std()
                .map_err(|e| io_error("cannot keep the connection", e))?,
        )),
    ))
}
