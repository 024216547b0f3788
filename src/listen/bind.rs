use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// The backlog every listening socket staunch binds gets.
const BACKLOG: i32 = 1024;

/// A non-blocking listening TCP socket on `addr` with `SO_REUSEADDR` (not on Windows, where it
/// means something else); `configure` sets anything more before the bind.
pub(crate) fn listen_on(
    addr: SocketAddr,
    configure: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    configure(&socket)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
