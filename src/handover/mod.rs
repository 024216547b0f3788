//! Zero-downtime restart: hand the listening sockets to a new process, drain the old one.
//!
//! A new binary takes over the very sockets the old one listens on, so the port never closes:
//! a client connecting during the switch waits in the kernel's accept queue, which both
//! processes share, instead of being refused. The old process stops accepting only after the
//! new one says it is ready, then drains its connections with the usual graceful shutdown
//! (deadline and report). If the new process fails before it is ready, the old one keeps
//! serving as if nothing happened. This is nginx's binary upgrade, HAProxy's
//! `expose-fd listeners`, Envoy's hot restart and Cloudflare's ecdysis/tableflip.
//!
//! Two ways in:
//!
//! - **Over a Unix socket** (`SCM_RIGHTS`): the old process [binds](Handover::bind) a control
//!   socket at a path, issues a [ticket](Handover::ticket) for the new process, and
//!   [offers](Handover::offer) its listeners there; the new process
//!   [takes them over](take_over) with that ticket, validates them, and calls
//!   [`Ready::ready`] when it can serve, which is when [`Handover::offer`] returns.
//! - **Inherited across exec**: the `LISTEN_FDS` protocol of systemd's socket activation, which
//!   `systemfd` and the `listenfd` crate speak too. The old process starts the new one with
//!   [`SuccessorCommand`] and [waits](SuccessorReady::wait) until it is ready; the new one
//!   takes them with [`from_env`] (which also takes systemd's) and calls [`Ready::ready`].
//!
//! `bind_many` and `bind_reuseport` sockets are plain listeners too:
//! [`BindHandle::listeners`](crate::listen::BindHandle::listeners) gives the ones a
//! [`BindMany`](crate::listen::BindMany) holds, and
//! [`bind_many_from`](crate::listen::bind_many_from) starts one from listeners taken over,
//! binding nothing.
//!
//! Each socket is checked before use: it is a socket, it is listening (`SO_ACCEPTCONN`), and
//! its family and type are those of a TCP or Unix stream listener, as announced. Errors name
//! the socket ([`HandoverError`]). The API takes and returns plain listeners (borrowed
//! descriptors and [`Listener`]), so sockets from anywhere can be handed over.
//!
//! # Example: the old process
//!
//! ```no_run
//! use std::os::fd::AsFd as _;
//! use staunch::handover::Handover;
//!
//! # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! // On SIGHUP, say:
//! let handover = Handover::bind("/run/myapp/handover.sock")?;
//! let successor = tokio::process::Command::new(std::env::current_exe()?)
//!     .env("MYAPP_TAKE_OVER", handover.ticket())
//!     .spawn()?;
//! handover.offer(&[("http", listener.as_fd())]).await?;
//! // The successor is serving: stop accepting and drain (the graceful shutdown's signal).
//! # drop(successor); Ok(())
//! # }
//! ```
//!
//! `examples/hot_upgrade.rs` is a complete server that upgrades itself on SIGHUP, and races
//! the offer with the successor's exit so that a successor that dies before it connects does
//! not leave the offer waiting.
//!
//! # Example: the new process
//!
//! ```no_run
//! use staunch::handover::take_over;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ticket = std::env::var_os("MYAPP_TAKE_OVER").ok_or("not started for a handover")?;
//! let (mut listeners, ready) = take_over(&ticket).await?;
//! let listener = tokio::net::TcpListener::from_std(listeners.take_tcp("http")?)?;
//! // ... load configuration, warm caches: the old process serves meanwhile ...
//! ready.ready().await?; // the old process stops accepting now
//! # drop(listener); Ok(())
//! # }
//! ```
//!
//! # `SO_REUSEPORT` groups
//!
//! Starting the new process with sockets of its own in the same `SO_REUSEPORT` group, then
//! closing the old ones, loses connections: closing a socket of a group resets the
//! connections still queued on it (completed handshakes nobody accepted, handshakes in
//! progress), unless `net.ipv4.tcp_migrate_req` (Linux 5.14 and later, off by default) is set,
//! in which case the kernel moves them to another socket of the group; [`tcp_migrate_req`]
//! reads it (changing it takes root, for the whole network namespace). Handing the group's
//! sockets over instead closes none of them: the queues move with the sockets, whatever that
//! setting. Measured on Linux 6.18 with 64 connections queued on a group of two listeners:
//! closing one lost 28 to 34 of them with `tcp_migrate_req=0` and none with `1`; handing it
//! over lost none (`tests/handover/reuseport.rs`).
//!
//! # With systemd
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=all
//! ExecStart=/usr/bin/myapp
//! ExecReload=/bin/kill -HUP $MAINPID
//! ```
//!
//! - `systemctl reload` sends SIGHUP to the main process, which starts the new one and offers
//!   it the sockets; `ExecReload=` returns at once and the upgrade goes on in the background.
//! - The new process inherits `NOTIFY_SOCKET`. [`Ready::ready`] sends `READY=1` and
//!   `MAINPID=<its pid>` there before it tells the old process, so systemd follows the new
//!   process as the main one before the old one exits (`NotifyAccess=all` lets a process other
//!   than the main one say so). Both stay in the service's cgroup.
//! - With a `.socket` unit, systemd owns the listeners and passes them to the first process
//!   ([`from_env`]); later upgrades go through the control socket as above (keep its path
//!   under `RuntimeDirectory=`), or across exec with [`SuccessorCommand`].
//! - A `systemctl stop` during a drain reaches both processes; the old one is draining already
//!   and keeps to its deadline (set `TimeoutStopSec=` above the grace).
//!
//! # In containers
//!
//! The container's main process (PID 1 or under an init such as `tini`) must stay alive, so
//! run a supervisor that upgrades its child, or let the new process be the child of the old
//! one and keep PID 1 a small init that reaps orphans and forwards signals. An orchestrator's
//! rolling update (new container, new network namespace) cannot share sockets this way; there,
//! readiness probes and connection draining at the load balancer do this job.
//!
//! # A successor that comes late
//!
//! Each offer has its own [ticket](Handover::ticket), and a new ticket voids the older ones. A
//! new process started for an offer that was given up (it was too slow, the old process raced
//! the offer with a timeout) and that connects afterwards is turned away with
//! [`HandoverError::StaleTicket`]: the next offer waits for the process it was made for,
//! instead of handing the sockets to the stale one.
//!
//! # What it does not cover
//!
//! Only listening sockets move. Established connections stay with the old process until they
//! finish or the grace period cuts them; application state (caches, sessions, counters) is not
//! copied: keep it outside the process or send it over a channel of your own. The control
//! socket's directory should be writable only by the service's user: whoever can connect can
//! take the sockets.
#![cfg_attr(docsrs, doc(cfg(unix)))]

mod exec;
mod inherit;
mod scm;
mod validate;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::{UnixListener as TokioUnixListener, UnixStream};

pub use exec::{SuccessorCommand, SuccessorReady};
pub use inherit::from_env;

/// The first line of an offer: the protocol and its version.
const HEADER: &str = "staunch-handover 1";
/// The last line of an offer.
const END: &str = "end";
/// The successor's answer once it is ready.
const READY: &[u8] = b"ready\n";
/// What the successor says first: this and its ticket's token, then a newline.
const TAKE: &str = "take ";
/// The old process's answer to a ticket that is not the current one.
const STALE: &[u8] = b"stale\n";
/// A process that connects gets this long to present its ticket, so that one that says
/// nothing cannot hold up the offer.
const TAKE_WITHIN: Duration = Duration::from_secs(10);
/// Tokens are at most this long (and the `take` line with them).
const MAX_TOKEN: usize = 64;
/// Offers longer than this are refused (253 names of 255 bytes fit).
const MAX_OFFER: usize = 80 * 1024;

/// What a handed-over listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A TCP listener (IPv4 or IPv6).
    Tcp,
    /// A Unix stream listener.
    Unix,
}

impl Kind {
    fn wire(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "a TCP listener",
            Kind::Unix => "a Unix stream listener",
        })
    }
}

/// A validated listening socket, close-on-exec and non-blocking.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A TCP listener; `tokio::net::TcpListener::from_std` takes it.
    Tcp(std::net::TcpListener),
    /// A Unix stream listener; `tokio::net::UnixListener::from_std` takes it.
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// What it is.
    pub fn kind(&self) -> Kind {
        match self {
            Listener::Tcp(_) => Kind::Tcp,
            Listener::Unix(_) => Kind::Unix,
        }
    }
}

/// The listeners a new process took over, by name.
#[derive(Debug, Default)]
pub struct Listeners {
    named: Vec<(String, Listener)>,
}

impl Listeners {
    fn push(&mut self, name: String, listener: Listener) {
        self.named.push((name, listener));
    }

    /// Take the listener called `name`, whatever it is.
    pub fn take(&mut self, name: &str) -> Option<Listener> {
        let i = self.named.iter().position(|(n, _)| n == name)?;
        Some(self.named.remove(i).1)
    }

    fn take_kind(&mut self, name: &str, kind: Kind) -> Result<Listener, HandoverError> {
        match self.named.iter().position(|(n, _)| n == name) {
            None => Err(HandoverError::NotFound {
                name: name.into(),
                offered: self.names().map(str::to_owned).collect(),
            }),
            Some(i) if self.named[i].1.kind() != kind => Err(HandoverError::WrongKind {
                name: name.into(),
                expected: Some(kind),
                found: self.named[i].1.kind().to_string(),
            }),
            Some(i) => Ok(self.named.remove(i).1),
        }
    }

    /// Take the TCP listener called `name`.
    ///
    /// # Errors
    ///
    /// [`HandoverError::NotFound`] if there is none of that name, [`HandoverError::WrongKind`]
    /// if it is a Unix listener (which then stays).
    pub fn take_tcp(&mut self, name: &str) -> Result<std::net::TcpListener, HandoverError> {
        match self.take_kind(name, Kind::Tcp)? {
            Listener::Tcp(listener) => Ok(listener),
            Listener::Unix(_) => unreachable!("take_kind checked the kind"),
        }
    }

    /// Take the Unix stream listener called `name`.
    ///
    /// # Errors
    ///
    /// [`HandoverError::NotFound`] if there is none of that name, [`HandoverError::WrongKind`]
    /// if it is a TCP listener (which then stays).
    pub fn take_unix(
        &mut self,
        name: &str,
    ) -> Result<std::os::unix::net::UnixListener, HandoverError> {
        match self.take_kind(name, Kind::Unix)? {
            Listener::Unix(listener) => Ok(listener),
            Listener::Tcp(_) => unreachable!("take_kind checked the kind"),
        }
    }

    /// The names of the listeners not taken yet, in the order they were passed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(n, _)| n.as_str())
    }

    /// How many listeners are left.
    pub fn len(&self) -> usize {
        self.named.len()
    }

    /// Whether none is left (or none was passed).
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

impl IntoIterator for Listeners {
    type Item = (String, Listener);
    type IntoIter = std::vec::IntoIter<(String, Listener)>;

    fn into_iter(self) -> Self::IntoIter {
        self.named.into_iter()
    }
}

/// The new process's promise to say when it is ready; see [`Ready::ready`].
///
/// Dropping it without calling `ready` tells the old process that the handover failed: its
/// [`Handover::offer`] returns [`HandoverError::SuccessorGone`] and it keeps serving.
#[derive(Debug)]
#[must_use = "the old process stops accepting only when `ready` is called"]
pub struct Ready {
    /// The old process's end of the handshake: the control connection, or the descriptor
    /// [`SuccessorCommand`] passed.
    predecessor: Option<std::os::unix::net::UnixStream>,
}

impl Ready {
    fn new(predecessor: Option<std::os::unix::net::UnixStream>) -> Self {
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

/// The old process's side: a control socket at a path where a new process can take over the
/// listeners.
///
/// The socket file is created with mode `0600` and removed when this is dropped (if it is
/// still the one this created).
#[derive(Debug)]
pub struct Handover {
    listener: TokioUnixListener,
    path: PathBuf,
    /// Device and inode of the socket file, to remove only our own.
    file: (u64, u64),
    /// The token of the current ticket; `None` before the first and once a process took it.
    token: Mutex<Option<String>>,
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
        Ok(Handover {
            listener: TokioUnixListener::from_std(listener)?,
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
            token: Mutex::new(None),
        })
    }

    /// Issue the ticket for the next offer: give it to the new process (in its environment,
    /// say), which passes it to [`take_over`]. It holds this socket's path and a token unique
    /// to this offer.
    ///
    /// A ticket is good for one process: the first to present it gets the offer. A new ticket
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
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
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
    ///    with the new process's exit, or with a timeout), and sends it the descriptors. A
    ///    process with a voided ticket is told so and the wait goes on; one that presents no
    ///    ticket within 10 seconds is disconnected.
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

/// Wait for the new process's `ready` on `stream`.
async fn await_ready(stream: &mut UnixStream) -> Result<(), HandoverError> {
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

impl Handover {
    /// Accept connections until one presents the current ticket, and void it.
    async fn accept_ticket(&self) -> Result<UnixStream, HandoverError> {
        let current = || self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if current().is_none() {
            return Err(HandoverError::Protocol(
                "no ticket was issued for this offer (Handover::ticket)".into(),
            ));
        }
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| io_error("cannot accept the new process", e))?;
            let token = match tokio::time::timeout(TAKE_WITHIN, read_take(&mut stream)).await {
                Ok(Ok(token)) => token,
                Ok(Err(_)) | Err(_) => {
                    log_event!(
                        warn,
                        "handover: a process connected without presenting a ticket; disconnected"
                    );
                    continue;
                }
            };
            if self.void_if_current(&token) {
                return Ok(stream);
            }
            log_event!(
                warn,
                "handover: a process presented a voided ticket; turned away"
            );
            // It learns why; whether it hears does not matter to this offer.
            let _ = tokio::time::timeout(TAKE_WITHIN, stream.write_all(STALE)).await;
        }
    }

    /// Whether `token` is the current ticket's; if so it is void from now on.
    fn void_if_current(&self, token: &str) -> bool {
        let mut current = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let matches = current.as_deref() == Some(token);
        if matches {
            *current = None;
        }
        matches
    }
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
fn check_sockets(sockets: &[(&str, BorrowedFd<'_>)]) -> Result<Vec<Kind>, HandoverError> {
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
/// protocol; [`HandoverError::StaleTicket`] if a newer ticket was issued since; I/O errors
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

/// Whether the kernel moves the connections queued on a closing `SO_REUSEPORT` socket to
/// another socket of its group (`net.ipv4.tcp_migrate_req`, Linux 5.14 and later) instead of
/// resetting them. `None` where the setting does not exist or cannot be read.
pub fn tcp_migrate_req() -> Option<bool> {
    let value = fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").ok()?;
    Some(value.trim() != "0")
}

fn io_error(context: impl Into<String>, source: io::Error) -> HandoverError {
    HandoverError::Io {
        context: context.into(),
        source,
    }
}

/// Why a handover, or a socket in it, failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoverError {
    /// The descriptor is not a socket.
    NotASocket {
        /// The socket's name (`fd N` from [`Listener::from_fd`]).
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
    /// A name [`Handover::offer`] cannot send.
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `LISTEN_*` variable is malformed ([`from_env`]).
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
    /// The ticket given to [`take_over`] was voided by a newer one: the offer it was issued
    /// for was given up.
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
                "the old process issued a newer ticket: the offer for this one was given up",
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
