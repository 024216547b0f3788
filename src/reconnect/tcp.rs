use socket2::SockRef;
use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};

use super::{BoxFuture, Connect};
use crate::SocketOptions;

/// TCP connector: resolves `host:port` afresh on every attempt (so a DNS change is picked up),
/// tries each resolved address in turn, and sets the [`SocketOptions`] given with
/// [`socket_options`](TcpConnector::socket_options) (`TCP_NODELAY`, keepalive,
/// `TCP_USER_TIMEOUT`, buffer sizes) on each new socket before it connects.
///
/// Defaults: no options (`TCP_NODELAY` off, keepalive off).
///
/// An address that cannot work fails with `InvalidInput` (a host with no port, say), which a
/// [`Reconnecting`](super::Reconnecting) gives up on after that one attempt
/// ([`GiveUpCause::Fatal`](super::GiveUpCause::Fatal)); a name that does not resolve, or resolves
/// to no address (`NotFound`), is retried like a refused connection.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::reconnect::{Reconnecting, TcpConnector};
/// use staunch::SocketOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let connector = TcpConnector::new("127.0.0.1:8080").socket_options(
///     SocketOptions::new()
///         .nodelay(true)
///         .keepalive(Duration::from_secs(30))
///         .keepalive_interval(Duration::from_secs(5))
///         .keepalive_retries(3)
///         // A dead peer is noticed within 30 s + 3 × 5 s, also while bytes wait for an ack.
///         .user_timeout(Duration::from_secs(45)),
/// );
/// let conn = Reconnecting::builder(connector)
///     .connect_timeout(Duration::from_secs(3))
///     .build(); // does not connect yet
/// # drop(conn);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addr: String,
    options: SocketOptions,
}

impl TcpConnector {
    /// A connector to `addr`, a `host:port` string (or an IP socket address).
    pub fn new(addr: impl Into<String>) -> Self {
        TcpConnector {
            addr: addr.into(),
            options: SocketOptions::new(),
        }
    }

    /// The target.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Change the target; the next attempt uses it.
    pub fn set_addr(&mut self, addr: impl Into<String>) {
        self.addr = addr.into();
    }

    /// Set `options` on every new socket, before it connects.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    async fn open(self) -> io::Result<TcpStream> {
        if !has_port(&self.addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("missing port in {:?}: expected host:port", self.addr),
            ));
        }
        let addrs = tokio::net::lookup_host(self.addr.as_str())
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot resolve host {:?}: {e}", self.addr),
                )
            })?;
        let mut last = None;
        for addr in addrs {
            match self.open_one(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        // A name with no address (yet) is as transient as one the resolver does not know, so
        // not `InvalidInput`, which `is_retryable_connect_error` treats as permanent.
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolved to no address", self.addr),
            )
        }))
    }

    async fn open_one(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        self.options.apply_to(SockRef::from(&socket))?;
        socket.connect(addr).await
    }
}

impl Connect for TcpConnector {
    type Io = TcpStream;
    type Future = BoxFuture<io::Result<TcpStream>>;

    fn connect(&mut self) -> Self::Future {
        Box::pin(self.clone().open())
    }

    fn unacked_bytes(io: &TcpStream) -> Option<u64> {
        super::tcp_send_queue(io)
    }
}

/// Whether `addr` ends in a port: `host:port`, `1.2.3.4:port` or `[v6]:port` (a bare IPv6
/// address has colons but no port).
fn has_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let bare_v6 = host.contains(':') && !host.starts_with('[');
    !bare_v6 && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::has_port;

    #[test]
    fn a_port_is_recognised_in_every_address_form() {
        for addr in [
            "localhost:80",
            "127.0.0.1:8080",
            "[::1]:443",
            "example.com:0",
        ] {
            assert!(has_port(addr), "{addr}");
        }
        for addr in [
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "host:",
            "host:http",
            "host:70000",
        ] {
            assert!(!has_port(addr), "{addr}");
        }
    }
}
