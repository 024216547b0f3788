use std::io;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Options applied to each accepted TCP socket, for
/// [`setup_sockets`](crate::ListenExt::setup_sockets). Unset options are left as the kernel
/// made them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::listen::SocketOptions;
///
/// let options = SocketOptions::new()
///     .nodelay(true)
///     .keepalive(Duration::from_secs(60))
///     .send_buffer_size(256 * 1024);
/// assert_eq!(options.get_nodelay(), Some(true));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "apply the options with .apply(&socket) or setup_sockets"]
pub struct SocketOptions {
    nodelay: Option<bool>,
    keepalive: Option<Duration>,
    recv_buffer_size: Option<usize>,
    send_buffer_size: Option<usize>,
}

impl SocketOptions {
    /// No options: every socket is left as accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `TCP_NODELAY` (disable Nagle's algorithm).
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = Some(nodelay);
        self
    }

    /// Turn on TCP keepalive, with the first probe after `idle` without traffic (and, where the
    /// platform allows, probes every `idle` after that).
    ///
    /// # Panics
    ///
    /// Panics if `idle` is zero or under one second (the kernel counts in whole seconds).
    #[track_caller]
    pub fn keepalive(mut self, idle: Duration) -> Self {
        assert!(
            idle >= Duration::from_secs(1),
            "SocketOptions::keepalive: the idle time must be at least 1 s"
        );
        self.keepalive = Some(idle);
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

    /// Apply the options to one socket.
    pub fn apply(&self, socket: &TcpStream) -> io::Result<()> {
        let socket = SockRef::from(socket);
        if let Some(nodelay) = self.nodelay {
            socket.set_tcp_nodelay(nodelay)?;
        }
        if let Some(idle) = self.keepalive {
            socket.set_tcp_keepalive(&crate::sockopt::keepalive(idle, Some(idle), None))?;
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
