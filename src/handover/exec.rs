//! Starting the new process with the sockets inherited across exec (`LISTEN_FDS`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::{check_sockets, io_error, HandoverError};
use crate::handover::inherit::FIRST_FD;

/// The shell that sets `LISTEN_PID`.
#[cfg(target_os = "android")]
const SHELL: &str = "/system/bin/sh";
#[cfg(not(target_os = "android"))]
const SHELL: &str = "/bin/sh";

/// `$$` is the shell's pid, which `exec` hands on to the program.
const SET_PID_AND_EXEC: &str = r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#;

/// A command that starts `program` with `sockets` inherited as systemd passes them: at
/// descriptors 3, 4, ... (not close-on-exec), with `LISTEN_FDS`, `LISTEN_FDNAMES` (the names, in
/// order) and `LISTEN_PID` set to the new process's pid. The new process takes them with
/// [`from_env`](super::from_env), the `listenfd` crate or `sd_listen_fds`. Add arguments,
/// environment and stdio to the command as usual, and spawn it (tokio's `Command` is `From`
/// it). The sockets are checked first, as [`Handover::offer`](super::Handover::offer) does.
///
/// Only the new process knows its pid, and `LISTEN_PID` must hold it (`sd_listen_fds` ignores
/// the sockets without it). The environment is built before the fork, and changing it
/// afterwards is not async-signal-safe, so the command runs `program` through `/bin/sh -c
/// 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"'`: the shell's pid is the program's, which
/// `exec` keeps. The descriptors are moved into place between fork and exec with `fcntl` and
/// `dup2` only.
///
/// The command holds duplicates of the sockets until it is dropped: drop it once it has
/// spawned, or the sockets stay open in this process.
///
/// This path has no readiness handshake: the old process cannot tell when the new one serves.
/// Both accept from the same sockets meanwhile, so stopping to accept early loses nothing
/// (connections wait in the queue), but if the new process fails, nobody serves them. Where
/// that matters, use [`Handover`](super::Handover) (its offer returns when the new process is
/// ready and fails if it dies first), or wait for a sign of your own (a health check).
///
/// # Errors
///
/// The checks of [`Handover::offer`](super::Handover::offer) on `sockets` and their names; an
/// I/O error if a socket cannot be duplicated.
pub fn successor_command(
    program: impl AsRef<OsStr>,
    sockets: &[(&str, BorrowedFd<'_>)],
) -> Result<Command, HandoverError> {
    check_sockets(sockets)?;
    let fds = sockets
        .iter()
        .map(|(name, fd)| {
            fd.try_clone_to_owned()
                .map_err(|e| io_error(format!("cannot duplicate socket `{name}`"), e))
        })
        .collect::<Result<Vec<OwnedFd>, _>>()?;
    let names: Vec<&str> = sockets.iter().map(|(name, _)| *name).collect();
    let mut command = Command::new(SHELL);
    command
        .arg("-c")
        .arg(SET_PID_AND_EXEC)
        .arg(program)
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("LISTEN_PID");
    place_at_exec(&mut command, fds);
    Ok(command)
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
