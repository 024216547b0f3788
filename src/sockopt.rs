//! Socket options, written once: [`SocketOptions`] for the TCP sockets a server accepts and a
//! client connects, the listening socket ([`listen_on`]), TCP keepalive ([`keepalive`]) and the
//! platforms with `SO_REUSEPORT` ([`cfg_reuseport!`]); and the one socket fact staunch reads,
//! the send queue ([`send_queue`]).

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
    // The address goes into the message (the kind stays): "address in use" alone does not say
    // which of a server's addresses it was.
    let at = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {addr}: {e}"));
    socket
        .bind(&addr.into())
        .map_err(|e| at(e, "cannot bind"))?;
    // The kernel caps it at its own maximum; clamp rather than wrap for the C int.
    socket
        .listen(backlog.min(i32::MAX as u32) as i32)
        .map_err(|e| at(e, "cannot listen on"))?;
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

/// Options for a TCP socket, the same for the sockets a server accepts
/// ([`setup_sockets`](crate::ListenExt::setup_sockets), with [`apply`](SocketOptions::apply))
/// and those a client connects
/// ([`TcpConnector::socket_options`](crate::reconnect::TcpConnector::socket_options)). Unset
/// options are left as the kernel made them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::SocketOptions;
///
/// let options = SocketOptions::new()
///     .nodelay(true)
///     .keepalive(Duration::from_secs(60))
///     .send_buffer_size(256 * 1024);
/// assert_eq!(options.get_nodelay(), Some(true));
/// assert_eq!(options.get_keepalive(), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "apply the options with .apply(&socket), setup_sockets or TcpConnector::socket_options"]
pub struct SocketOptions {
    nodelay: Option<bool>,
    keepalive: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_retries: Option<u32>,
    user_timeout: Option<Duration>,
    recv_buffer_size: Option<usize>,
    send_buffer_size: Option<usize>,
}

impl SocketOptions {
    /// No options: every socket is left as the kernel made it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `TCP_NODELAY` (disable Nagle's algorithm).
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = Some(nodelay);
        self
    }

    /// Turn on TCP keepalive, with the first probe after `idle` without traffic, then one
    /// every [`keepalive_interval`](SocketOptions::keepalive_interval) (by default `idle`
    /// again), where the platform lets that be set per socket.
    ///
    /// # Panics
    ///
    /// Panics if `idle` is under one second (the kernel counts in whole seconds).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch::SocketOptions;
    /// use tokio::net::{TcpListener, TcpStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let socket = TcpStream::connect(listener.local_addr()?).await?;
    /// // A silent peer is given up on 60 s + 3 × 10 s after its last packet.
    /// let options = SocketOptions::new()
    ///     .keepalive(Duration::from_secs(60))
    ///     .keepalive_interval(Duration::from_secs(10))
    ///     .keepalive_retries(3);
    /// options.apply(&socket)?;
    /// let socket = socket2::SockRef::from(&socket);
    /// assert!(socket.keepalive()?);
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(socket.tcp_keepalive_time()?, Duration::from_secs(60));
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(socket.tcp_keepalive_interval()?, Duration::from_secs(10));
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(socket.tcp_keepalive_retries()?, 3);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn keepalive(mut self, idle: Duration) -> Self {
        assert!(
            idle >= Duration::from_secs(1),
            "SocketOptions::keepalive: the idle time must be at least 1 s, not {idle:?}"
        );
        self.keepalive = Some(idle);
        self
    }

    /// The time between keepalive probes once the first went unanswered. Takes effect with
    /// [`keepalive`](SocketOptions::keepalive).
    ///
    /// # Panics
    ///
    /// Panics if `interval` is under one second.
    #[track_caller]
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        assert!(
            interval >= Duration::from_secs(1),
            "SocketOptions::keepalive_interval: the interval must be at least 1 s, not {interval:?}"
        );
        self.keepalive_interval = Some(interval);
        self
    }

    /// How many unanswered probes end the connection (the platform's default if unset). Takes
    /// effect with [`keepalive`](SocketOptions::keepalive).
    ///
    /// # Panics
    ///
    /// Panics if `retries` is zero.
    #[track_caller]
    pub fn keepalive_retries(mut self, retries: u32) -> Self {
        assert!(
            retries > 0,
            "SocketOptions::keepalive_retries: at least one probe is needed, not 0"
        );
        self.keepalive_retries = Some(retries);
        self
    }

    /// Set `TCP_USER_TIMEOUT`: how long written bytes may stay unacknowledged (or keepalive
    /// probes unanswered) before the kernel drops the connection with `ETIMEDOUT`, where
    /// otherwise it retransmits for about 15 minutes. gRPC (proposal A18) sets it with
    /// keepalive, so that a dead peer is noticed as soon whether or not bytes are waiting
    /// (keepalive probes only an idle connection): here, `keepalive` + `keepalive_interval` ×
    /// `keepalive_retries`.
    ///
    /// Linux, Android and Fuchsia only; ignored on other platforms.
    ///
    /// # Panics
    ///
    /// Panics if `timeout` is under one millisecond (the kernel counts milliseconds, and takes 0
    /// for its default).
    #[track_caller]
    pub fn user_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            timeout >= Duration::from_millis(1),
            "SocketOptions::user_timeout: the timeout must be at least 1 ms, not {timeout:?}"
        );
        self.user_timeout = Some(timeout);
        self
    }

    /// Set `SO_RCVBUF`.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = Some(bytes);
        self
    }

    /// Set `SO_SNDBUF`.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// The `TCP_NODELAY` setting, if set.
    pub fn get_nodelay(&self) -> Option<bool> {
        self.nodelay
    }

    /// The keepalive idle time, if set.
    pub fn get_keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// The `TCP_USER_TIMEOUT` setting, if set (also on platforms that ignore it).
    pub fn get_user_timeout(&self) -> Option<Duration> {
        self.user_timeout
    }

    /// Apply the options to one socket.
    ///
    /// # Errors
    ///
    /// The first error of a `setsockopt`.
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::SocketOptions;
    /// use tokio::net::{TcpListener, TcpStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let socket = TcpStream::connect(listener.local_addr()?).await?;
    /// SocketOptions::new().nodelay(true).send_buffer_size(4096).apply(&socket)?;
    /// assert!(socket.nodelay()?);
    /// let send_buffer = socket2::SockRef::from(&socket).send_buffer_size()?;
    /// assert!((4096..=2 * 4096).contains(&send_buffer)); // Linux doubles it, for its overhead
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply(&self, socket: &tokio::net::TcpStream) -> std::io::Result<()> {
        self.apply_to(socket2::SockRef::from(socket))
    }

    /// Apply the options to a socket before it connects or as it is accepted.
    pub(crate) fn apply_to(&self, socket: socket2::SockRef<'_>) -> std::io::Result<()> {
        if let Some(nodelay) = self.nodelay {
            socket.set_tcp_nodelay(nodelay)?;
        }
        if let Some(idle) = self.keepalive {
            let interval = self.keepalive_interval.unwrap_or(idle);
            socket.set_tcp_keepalive(&keepalive(idle, Some(interval), self.keepalive_retries))?;
        }
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        if let Some(timeout) = self.user_timeout {
            socket.set_tcp_user_timeout(Some(timeout))?;
        }
        if let Some(bytes) = self.recv_buffer_size {
            socket.set_recv_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.send_buffer_size {
            socket.set_send_buffer_size(bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "android", target_os = "linux"))]
    #[tokio::test]
    async fn the_user_timeout_is_set_on_an_accepted_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let ((accepted, _), _client) = tokio::try_join!(listener.accept(), client).unwrap();
        let read = || {
            socket2::SockRef::from(&accepted)
                .tcp_user_timeout()
                .unwrap()
        };
        assert_eq!(read(), None, "control: the kernel's default");
        let options = SocketOptions::new().user_timeout(Duration::from_millis(2500));
        options.apply(&accepted).unwrap();
        assert_eq!(read(), Some(Duration::from_millis(2500)));
        assert_eq!(
            options.get_user_timeout(),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    #[should_panic(
        expected = "SocketOptions::user_timeout: the timeout must be at least 1 ms, not 500µs"
    )]
    fn a_user_timeout_under_a_millisecond_is_refused() {
        let _ = SocketOptions::new().user_timeout(Duration::from_micros(500));
    }
}
