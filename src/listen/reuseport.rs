use std::io;
use std::net::SocketAddr;

use crate::sockopt::{listen_on, BACKLOG};

/// Bind `count` listening sockets to one address with `SO_REUSEPORT`, for servers whose single
/// accept task is the bottleneck: run one accept loop per socket, each on its own thread (a
/// current-thread runtime per core and [`listen`](crate::ListenExt::listen) is the classic
/// layout), and the kernel spreads new connections across them. Merge their counters with
/// [`Stats::merged`](super::Stats::merged). Each socket gets a backlog of 1024.
///
/// If `addr` has port 0, the first socket picks the port and the others share it. The sockets
/// are non-blocking `std` listeners, so each thread registers its own with
/// `tokio::net::TcpListener::from_std` inside its runtime. On Linux the kernel balances
/// connections across the sockets; other systems with `SO_REUSEPORT` may not.
///
/// # Errors
///
/// Fails with [`InvalidInput`](io::ErrorKind::InvalidInput) if `count` is zero, and with the
/// socket error if a bind fails.
///
/// # Examples
///
/// ```
/// let listeners = staunch::listen::bind_reuseport("127.0.0.1:0".parse().unwrap(), 2)?;
/// let port = listeners[0].local_addr()?.port();
/// assert!(listeners.iter().all(|l| l.local_addr().unwrap().port() == port));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bind_reuseport: count must be at least 1",
        ));
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = listen_on(addr, BACKLOG, |socket| socket.set_reuse_port(true))?;
        // Port 0: the first socket chose the port; the others must ask for that one.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
