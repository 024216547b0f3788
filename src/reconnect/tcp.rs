use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};

use super::{BoxFuture, Connect};

/// TCP connector: resolves `host:port` afresh on every attempt (so a DNS change is picked up),
/// tries each resolved address in turn, and sets TCP keepalive and `TCP_NODELAY` on the new
/// socket.
///
/// Defaults: `TCP_NODELAY` off, keepalive off.
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
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let connector = TcpConnector::new("127.0.0.1:8080")
///     .nodelay(true)
///     .keepalive(Duration::from_secs(30))
///     .keepalive_interval(Duration::from_secs(5))
///     .keepalive_retries(3);
/// let conn = Reconnecting::builder(connector)
///     .connect_timeout(Duration::from_secs(3))
///     .build(); // does not connect yet
/// # drop(conn);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addr: String,
    nodelay: bool,
    keepalive: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_retries: Option<u32>,
}

impl TcpConnector {
    /// A connector to `addr`, a `host:port` string (or an IP socket address).
    pub fn new(addr: impl Into<String>) -> Self {
        TcpConnector {
            addr: addr.into(),
            nodelay: false,
            keepalive: None,
            keepalive_interval: None,
            keepalive_retries: None,
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

    /// Set `TCP_NODELAY` on every new connection.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Turn TCP keepalive on: the first probe is sent after the connection was idle for `time`.
    ///
    /// # Panics
    ///
    /// Panics if `time` is under one second: the kernel counts in whole seconds and rejects 0,
    /// which would make every connection attempt fail.
    #[track_caller]
    pub fn keepalive(mut self, time: Duration) -> Self {
        assert!(
            time >= Duration::from_secs(1),
            "TcpConnector::keepalive: the idle time must be at least 1 s"
        );
        self.keepalive = Some(time);
        self
    }

    /// Time between keepalive probes (where the platform sets it per socket: Linux, Android, the
    /// Apple systems, the BSDs, illumos, Windows; ignored elsewhere). Only used with [`keepalive`](Self::keepalive).
    ///
    /// # Panics
    ///
    /// Panics if `interval` is under one second (see [`keepalive`](Self::keepalive)).
    #[track_caller]
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        assert!(
            interval >= Duration::from_secs(1),
            "TcpConnector::keepalive_interval: the interval must be at least 1 s"
        );
        self.keepalive_interval = Some(interval);
        self
    }

    /// Unanswered probes before the kernel drops the connection (same platforms as
    /// [`keepalive_interval`](Self::keepalive_interval)). Only used with
    /// [`keepalive`](Self::keepalive).
    ///
    /// # Panics
    ///
    /// Panics if `retries` is zero (the kernel rejects it).
    #[track_caller]
    pub fn keepalive_retries(mut self, retries: u32) -> Self {
        assert!(
            retries > 0,
            "TcpConnector::keepalive_retries: at least one probe is needed"
        );
        self.keepalive_retries = Some(retries);
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
        if let Some(time) = self.keepalive {
            let params =
                crate::sockopt::keepalive(time, self.keepalive_interval, self.keepalive_retries);
            SockRef::from(&socket).set_tcp_keepalive(&params)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(self.nodelay)?;
        Ok(stream)
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
