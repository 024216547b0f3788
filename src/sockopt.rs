//! Socket options staunch sets itself, written once: the listening socket ([`listen_on`]), TCP
//! keepalive ([`keepalive`]) and the platforms with `SO_REUSEPORT` ([`cfg_reuseport!`]); and the
//! one socket fact staunch reads, the send queue ([`send_queue`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

/// The backlog of every listening socket staunch binds. tokio's `TcpListener::bind` uses 128,
/// which a burst of clients against a busy server overflows (they then wait for SYN retransmits,
/// a second or more); the kernel caps it at `net.core.somaxconn` (4096 on Linux since 5.4).
pub(crate) const BACKLOG: u32 = 1024;

/// Items only on platforms with `SO_REUSEPORT` (as socket2 offers it), documented as such.
macro_rules! cfg_reuseport {
    (@$cfg:meta; $($item:item)*) => {
        $(
            #[cfg($cfg)]
            #[cfg_attr(docsrs, doc(cfg($cfg)))]
            $item
        )*
    };
    ($($item:item)*) => {
        cfg_reuseport! {
            @all(unix, not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin")));
            $($item)*
        }
    };
}

/// A non-blocking listening TCP socket on `addr` with `SO_REUSEADDR` (not on Windows, where it
/// means something else) and a backlog of `backlog`; `configure` sets anything more before the
/// bind.
pub(crate) fn listen_on(
    addr: SocketAddr,
    backlog: u32,
    configure: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    configure(&socket)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps it at its own maximum; clamp rather than wrap for the C int.
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// TCP keepalive parameters: the first probe after `idle` without traffic, then one every
/// `interval`, giving up after `retries` unanswered probes. `interval` and `retries` apply where
/// the platform lets them be set per socket, and are left to the system default elsewhere.
pub(crate) fn keepalive(
    idle: Duration,
    interval: Option<Duration>,
    retries: Option<u32>,
) -> TcpKeepalive {
    let params = TcpKeepalive::new().with_time(idle);
    // Used only on the platforms below.
    let _ = (interval, retries);
    #[cfg(any(
        target_os = "android",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "fuchsia",
        target_os = "illumos",
        target_os = "ios",
        target_os = "visionos",
        target_os = "linux",
        target_os = "macos",
        target_os = "netbsd",
        target_os = "tvos",
        target_os = "watchos",
        target_os = "cygwin",
        target_os = "windows",
    ))]
    let params = {
        let params = match interval {
            Some(interval) => params.with_interval(interval),
            None => params,
        };
        match retries {
            Some(retries) => params.with_retries(retries),
            None => params,
        }
    };
    params
}

/// Bytes in a connected TCP socket's send queue (`SIOCOUTQ`): written to it, but not yet
/// acknowledged by the peer's kernel (unsent or in flight). The kernel keeps the count after a
/// reset, so it can be read once the connection is known lost. `None` if the call fails.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn send_queue(socket: &impl std::os::fd::AsFd) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: the fd is open for the borrow's lifetime, and SIOCOUTQ (TIOCOUTQ's number) writes
    // one `c_int` through the pointer, which points to a live, writable `c_int`.
    let rc = unsafe { libc::ioctl(socket.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| u64::try_from(queued).ok()).flatten()
}
