//! Sockets inherited across exec, as systemd passes them (`LISTEN_FDS`).

use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::HandoverError;
use super::listener::Listeners;
use super::ready::Ready;
use super::validate;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub(super) const FIRST_FD: RawFd = 3;

/// The name of the extra descriptor that carries the readiness handshake.
pub(super) const READY_NAME: &str = "staunch.ready";

/// The name systemd gives a socket that `LISTEN_FDNAMES` does not name.
const UNNAMED: &str = "unknown";

/// Whether [`from_env`] has adopted the descriptors already.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Take the listening sockets passed by the process that started this one (systemd's socket
/// activation, `systemfd`, any manager speaking the same protocol).
///
/// The protocol: `LISTEN_FDS=N` sockets were left open at descriptors 3 to 3+N-1,
/// `LISTEN_PID` is the process they are meant for, and `LISTEN_FDNAMES` optionally names them,
/// separated by `:` (systemd's `FileDescriptorName=`; an unnamed one is called `unknown`).
/// As with the `listenfd` crate, an empty or missing `LISTEN_PID` skips the check, so that
/// `systemfd --no-pid` works through wrappers like `cargo watch`.
///
/// - Nothing passed (no `LISTEN_FDS`), or passed to another process (`LISTEN_PID` is not this
///   one): empty [`Listeners`]. Only the first call in a process takes the sockets; later
///   calls get empty ones.
/// - Each socket is [validated](super::Listener::from_fd) and made close-on-exec and non-blocking.
/// - The environment is left as it is (changing it is unsound once threads run); a child
///   this process starts ignores the variables because `LISTEN_PID` names this process. Remove
///   them from its environment all the same if `LISTEN_PID` may be empty.
///
/// Call it early in `main`, before opening files: if the variables lie about descriptors 3
/// and up, those belong to whatever opened them.
///
/// The returned [`Ready`] tells systemd (`NOTIFY_SOCKET`) that this process is ready, and the
/// old process too when it started this one with [`SuccessorCommand`](super::SuccessorCommand)
/// (the last descriptor, named `staunch.ready`, is its handshake, not a listener).
///
/// # Errors
///
/// [`HandoverError::InvalidEnv`] for a malformed variable (a `LISTEN_FDS` whose last
/// descriptor is not open among them: the count is checked before anything is allocated for
/// it), or a validation error for a passed
/// descriptor that is not a listening TCP or Unix stream socket. No listener is closed then;
/// the handshake of [`SuccessorCommand`](super::SuccessorCommand) is, so that the old process
/// knows at once that this one will not be ready.
///
/// # Examples
///
/// ```no_run
/// use staunch::handover::from_env;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut listeners, ready) = from_env()?;
/// let listener = match listeners.take_tcp("http") {
///     Ok(listener) => tokio::net::TcpListener::from_std(listener)?,
///     Err(_) => tokio::net::TcpListener::bind("127.0.0.1:8080").await?, // started by hand
/// };
/// ready.ready().await?; // READY=1 to systemd, and the old process stops accepting
/// # drop(listener); Ok(())
/// # }
/// ```
pub fn from_env() -> Result<(Listeners, Ready), HandoverError> {
    let var = |name| std::env::var(name).ok();
    let passed = parse(
        std::process::id(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        is_open,
    )?;
    if passed.is_empty() || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok((Listeners::default(), Ready::new(None)));
    }
    let mut passed = passed;
    // The handshake is adopted (close-on-exec) first: if a listener fails its check, it is
    // closed on the way out, and the old process learns at once that this one will not be
    // ready, rather than when the last process that inherited it exits.
    let predecessor = match passed.last() {
        Some((fd, name)) if name == READY_NAME => {
            validate::check_handshake(borrow(*fd), name)?;
            let fd = *fd;
            passed.pop();
            Some(validate::adopt_handshake(adopt(fd), READY_NAME)?)
        }
        _ => None,
    };
    let mut checked = Vec::with_capacity(passed.len());
    for (fd, name) in passed {
        let kind = validate::check(borrow(fd), &name, None)?;
        checked.push((fd, name, kind));
    }
    let mut listeners = Listeners::default();
    for (fd, name, kind) in checked {
        let listener = validate::adopt(adopt(fd), kind, &name)?;
        listeners.push(name, listener);
    }
    Ok((listeners, Ready::new(predecessor)))
}

#[allow(unsafe_code)]
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: `parse` returned `fd` as passed to this process by LISTEN_FDS, and the TAKEN flag
    // makes sure this runs once per process, before `adopt`, which closes it only when dropped.
    // Validation (fstat) fails cleanly with EBADF if the descriptor is not open after all.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: LISTEN_FDS gave this process `fd` (open: it was just validated), and the TAKEN flag
    // makes this the only owner in the process.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[allow(unsafe_code)]
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD reads the descriptor's flags; no memory is passed, and a descriptor that
    // is not open is an error (EBADF), not undefined behaviour.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The descriptors and names passed to process `pid`, as the variables say. `is_open` tells
/// whether a descriptor is open: the last one passed must be, before anything is allocated for
/// the count.
fn parse(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    is_open: impl Fn(RawFd) -> bool,
) -> Result<Vec<(RawFd, String)>, HandoverError> {
    let invalid = |var, value: &str, reason| HandoverError::InvalidEnv {
        var,
        value: value.into(),
        reason,
    };
    let Some(fds) = listen_fds else {
        return Ok(Vec::new());
    };
    match listen_pid {
        None | Some("") => {}
        Some(value) => match value.parse::<u32>() {
            Ok(for_pid) if for_pid == pid => {}
            Ok(_) => return Ok(Vec::new()),
            Err(_) => return Err(invalid("LISTEN_PID", value, "not a process id")),
        },
    }
    let count: RawFd = fds
        .parse()
        .ok()
        .filter(|n| (0..=RawFd::MAX - FIRST_FD).contains(n))
        .ok_or_else(|| invalid("LISTEN_FDS", fds, "not a number of descriptors"))?;
    if count > 0 && !is_open(FIRST_FD + count - 1) {
        return Err(invalid(
            "LISTEN_FDS",
            fds,
            "more descriptors than are open (the last is not)",
        ));
    }
    let names: Vec<String> = match names {
        None => vec![UNNAMED.to_owned(); count as usize],
        Some(value) => {
            let names: Vec<String> = value.split(':').map(str::to_owned).collect();
            if names.len() != count as usize {
                return Err(invalid(
                    "LISTEN_FDNAMES",
                    value,
                    "not as many names as LISTEN_FDS says",
                ));
            }
            names
        }
    };
    Ok((FIRST_FD..).zip(names).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `super::parse` with every descriptor open.
    fn parse(
        pid: u32,
        listen_pid: Option<&str>,
        listen_fds: Option<&str>,
        names: Option<&str>,
    ) -> Result<Vec<(RawFd, String)>, HandoverError> {
        super::parse(pid, listen_pid, listen_fds, names, |_| true)
    }

    fn fds(passed: &[(RawFd, String)]) -> Vec<(RawFd, &str)> {
        passed.iter().map(|(fd, n)| (*fd, n.as_str())).collect()
    }

    #[test]
    fn nothing_passed() {
        assert!(parse(7, None, None, None).unwrap().is_empty());
        assert!(parse(7, Some("7"), None, Some("http")).unwrap().is_empty());
        assert!(parse(7, Some("7"), Some("0"), None).unwrap().is_empty());
    }

    #[test]
    fn passed_to_this_process() {
        let passed = parse(7, Some("7"), Some("2"), Some("http:admin")).unwrap();
        assert_eq!(fds(&passed), [(3, "http"), (4, "admin")]);
        let passed = parse(7, Some("7"), Some("2"), None).unwrap();
        assert_eq!(fds(&passed), [(3, "unknown"), (4, "unknown")]);
    }

    #[test]
    fn passed_to_another_process_is_ignored() {
        assert!(parse(7, Some("8"), Some("1"), None).unwrap().is_empty());
    }

    #[test]
    fn empty_or_missing_pid_skips_the_check_as_listenfd_does() {
        assert_eq!(
            fds(&parse(7, Some(""), Some("1"), None).unwrap()),
            [(3, "unknown")]
        );
        assert_eq!(
            fds(&parse(7, None, Some("1"), None).unwrap()),
            [(3, "unknown")]
        );
    }

    #[test]
    fn malformed_variables_are_errors() {
        let err = |r: Result<_, HandoverError>| match r {
            Err(HandoverError::InvalidEnv { var, .. }) => var,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(parse(7, Some("x"), Some("1"), None)), "LISTEN_PID");
        assert_eq!(err(parse(7, Some("7"), Some("one"), None)), "LISTEN_FDS");
        assert_eq!(err(parse(7, Some("7"), Some("-1"), None)), "LISTEN_FDS");
        assert_eq!(
            err(parse(7, Some("7"), Some("2"), Some("http"))),
            "LISTEN_FDNAMES"
        );
        let message = parse(7, Some("7"), Some("2"), Some("http"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("LISTEN_FDNAMES=\"http\""), "{message}");
    }

    #[test]
    fn a_count_is_checked_against_the_open_descriptors_before_allocating() {
        let asked = std::cell::Cell::new(None);
        let open_below_5 = |fd| {
            asked.set(Some(fd));
            fd < 5
        };
        let passed = super::parse(7, None, Some("2"), None, open_below_5).unwrap();
        assert_eq!((passed.len(), asked.get()), (2, Some(4)));
        // A billion would be 24 GB of names: refused by the one look at descriptor 1000000002.
        let err = super::parse(7, None, Some("1000000000"), None, open_below_5).unwrap_err();
        assert!(
            matches!(
                err,
                HandoverError::InvalidEnv {
                    var: "LISTEN_FDS",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(asked.get(), Some(1_000_000_002));
        // Zero passes nothing and looks at nothing.
        asked.set(None);
        assert!(super::parse(7, None, Some("0"), None, open_below_5)
            .unwrap()
            .is_empty());
        assert_eq!(asked.get(), None);
    }
}
