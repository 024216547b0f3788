//! Starting the new process with the sockets inherited across exec (`LISTEN_FDS`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};

use super::control::check_sockets;
use super::env::{FIRST_FD, READY_NAME};
use super::error::{io_error, HandoverError};
use super::ready::await_ready;

/// The shell that sets `LISTEN_PID`.
#[cfg(target_os = "android")]
const SHELL: &str = "/system/bin/sh";
#[cfg(not(target_os = "android"))]
const SHELL: &str = "/bin/sh";

/// `$$` is the shell's pid, which `exec` hands on to the program.
const SET_PID_AND_EXEC: &str = r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#;

/// Starts the new process with the sockets inherited across exec, as systemd passes them, and
/// waits until it is ready.
///
/// The new process gets the sockets at descriptors 3, 4, ... (not close-on-exec), with
/// `LISTEN_FDS`, `LISTEN_FDNAMES` (the names, in order) and `LISTEN_PID` set to its pid, and
/// takes them with [`from_env`](super::from_env) (or the `listenfd` crate, or `sd_listen_fds`).
/// One more descriptor, last and named `staunch.ready`, carries the readiness handshake: the
/// [`Ready`](super::Ready) that `from_env` returns answers on it, and
/// [`SuccessorReady::wait`] returns then, or fails as soon as the new process exits without
/// being ready. Processes the new one starts do not inherit the handshake once it has called
/// `from_env` (which makes it close-on-exec, and closes it if it fails); one started before
/// that holds the wait until it exits. (Another program finds that extra, non-listening socket
/// among its `LISTEN_FDS`: write `ready\n` to it, or ignore it and let the handshake fail.)
///
/// # `LISTEN_PID`
///
/// Only the new process knows its pid, and `LISTEN_PID` must hold it (`sd_listen_fds` ignores
/// the sockets without it). The environment is built before the fork, and changing it
/// afterwards is not async-signal-safe, so the program runs through `/bin/sh -c
/// 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"'`: the shell's pid is the program's,
/// which `exec` keeps. Between fork and exec the child only moves the descriptors into place
/// (`fcntl`, `dup2`).
///
/// # Examples
///
/// ```no_run
/// use std::os::fd::AsFd as _;
/// use staunch::handover::SuccessorCommand;
///
/// # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
/// let mut successor = SuccessorCommand::new(std::env::current_exe()?, &[("http", listener.as_fd())])?;
/// successor.command().args(std::env::args_os().skip(1));
/// let (child, ready) = successor.spawn()?;
/// ready.wait().await?; // fails if the child exits first
/// // The successor serves: stop accepting and drain.
/// # drop(child); Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SuccessorCommand {
    command: Command,
    /// This process's end of the handshake.
    handshake: UnixStream,
}

impl SuccessorCommand {
    /// A command that starts `program` with `sockets`. The sockets are checked as
    /// [`Handover::offer`](super::Handover::offer) checks them, and duplicated: the command
    /// holds its copies until it is spawned or dropped.
    ///
    /// # Errors
    ///
    /// The checks of [`Handover::offer`](super::Handover::offer) on `sockets` and their names
    /// (`staunch.ready` is taken); an I/O error if a socket cannot be duplicated.
    pub fn new(
        program: impl AsRef<OsStr>,
        sockets: &[(&str, BorrowedFd<'_>)],
    ) -> Result<Self, HandoverError> {
        check_sockets(sockets)?;
        if let Some((name, _)) = sockets.iter().find(|(name, _)| *name == READY_NAME) {
            return Err(HandoverError::InvalidName {
                name: (*name).into(),
                reason: "this name is the handshake's",
            });
        }
        let mut fds = sockets
            .iter()
            .map(|(name, fd)| {
                fd.try_clone_to_owned()
                    .map_err(|e| io_error(format!("cannot duplicate socket `{name}`"), e))
            })
            .collect::<Result<Vec<OwnedFd>, _>>()?;
        let (handshake, theirs) =
            UnixStream::pair().map_err(|e| io_error("cannot make the handshake socket", e))?;
        fds.push(theirs.into());
        let mut names: Vec<&str> = sockets.iter().map(|(name, _)| *name).collect();
        names.push(READY_NAME);
        let mut command = Command::new(SHELL);
        command
            .arg("-c")
            .arg(SET_PID_AND_EXEC)
            .arg(program)
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID");
        place_at_exec(&mut command, fds);
        Ok(SuccessorCommand { command, handshake })
    }

    /// The command, to add arguments, environment, a working directory or stdio (not its
    /// descriptors 3 and up, which are the sockets').
    pub fn command(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Start the new process; its [`SuccessorReady`] says when it is ready.
    ///
    /// The command, and with it this process's copies of the sockets and of the new process's
    /// end of the handshake, is dropped here, so that the handshake sees the new process exit.
    ///
    /// # Errors
    ///
    /// Those of spawning the command.
    pub fn spawn(self) -> io::Result<(Child, SuccessorReady)> {
        let SuccessorCommand {
            mut command,
            handshake,
        } = self;
        let child = command.spawn();
        drop(command);
        Ok((child?, SuccessorReady { handshake }))
    }
}

/// The old process's side of the handshake with a process started by [`SuccessorCommand`].
///
/// # Examples
///
/// Give the new process a minute to get ready, and keep serving if it does not:
///
/// ```no_run
/// use std::os::fd::AsFd as _;
/// use std::time::Duration;
/// use staunch::handover::SuccessorCommand;
///
/// # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
/// let successor = SuccessorCommand::new(std::env::current_exe()?, &[("http", listener.as_fd())])?;
/// let (mut child, ready) = successor.spawn()?;
/// match tokio::time::timeout(Duration::from_secs(60), ready.wait()).await {
///     Ok(Ok(())) => { /* the new process serves: stop accepting and drain */ }
///     Ok(Err(e)) => eprintln!("upgrade failed, still serving: {e}"),
///     Err(_) => {
///         eprintln!("the new process is too slow, still serving");
///         child.kill()?;
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the new process's readiness is known only by waiting for it"]
pub struct SuccessorReady {
    handshake: UnixStream,
}

impl SuccessorReady {
    /// Wait until the new process is ready ([`Ready::ready`](super::Ready::ready)). No time
    /// limit: race it with a timeout.
    ///
    /// # Errors
    ///
    /// [`HandoverError::SuccessorGone`] if the new process exits (or drops its `Ready`, or
    /// closes the descriptor) before it is ready; I/O errors.
    pub async fn wait(self) -> Result<(), HandoverError> {
        let mut handshake = self
            .handshake
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(self.handshake))
            .map_err(|e| io_error("cannot wait for the new process", e))?;
        await_ready(&mut handshake).await
    }
}

/// Have the child move `fds` to descriptors 3, 4, ... before it execs.
#[allow(unsafe_code)]
fn place_at_exec(command: &mut Command, fds: Vec<OwnedFd>) {
    // Allocated here: the child must not allocate.
    let mut moved: Vec<RawFd> = vec![-1; fds.len()];
    // SAFETY: between fork and exec the closure calls only `fcntl` and `dup2`, which are
    // async-signal-safe, writes into a vector allocated before the fork, and allocates nothing
    // (an OS error is a plain code).
    unsafe {
        command.pre_exec(move || place(&fds, &mut moved));
    }
}

/// First duplicate every descriptor above the target range (close-on-exec, so that these
/// copies go at exec), then `dup2` each to its place: no placement overwrites a descriptor not
/// duplicated yet, and `dup2` clears close-on-exec on the target, even where a descriptor was
/// already at its place (where `dup2(fd, fd)` would leave the flag).
#[allow(unsafe_code)]
fn place(fds: &[OwnedFd], moved: &mut [RawFd]) -> io::Result<()> {
    let above = FIRST_FD + fds.len() as RawFd;
    for (fd, moved) in fds.iter().zip(moved.iter_mut()) {
        // SAFETY: fcntl on a descriptor this closure owns; no memory is passed.
        *moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
        if *moved < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, &fd) in (FIRST_FD..).zip(moved.iter()) {
        // SAFETY: dup2 between descriptors; the target is ours to replace in the child.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
