//! Overload controls: the accept rate limit, the per-peer limit, the minimum read rate and the
//! rejection counters. Scripted streams and I/O with paused time, and real loopback sockets on
//! the real clock.

mod min_rate;
mod peer;
mod rate;
mod reclaim;
mod reject_excess;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use staunch::overload::{
    LimitPerPeer, LimitRate, MinReadRate, MinReadRateStream, PeerPermit, ReadTooSlow, RejectCounts,
    RejectEvent, RejectExcess, RejectReason,
};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    send::<LimitRate<TcpListenerStream>>();
    send::<LimitPerPeer<TcpListenerStream>>();
    sync::<LimitPerPeer<TcpListenerStream>>();
    unpin::<LimitPerPeer<TcpListenerStream>>();
    send::<PeerPermit<TcpStream>>();
    sync::<PeerPermit<TcpStream>>();
    unpin::<PeerPermit<TcpStream>>();
    send::<MinReadRate<TcpStream>>();
    sync::<MinReadRate<TcpStream>>();
    send::<MinReadRateStream<TcpListenerStream>>();
    send::<RejectCounts>();
    sync::<RejectCounts>();
    unpin::<RejectCounts>();
    send::<RejectEvent>();
    sync::<RejectEvent>();
    send::<RejectReason>();
    send::<ReadTooSlow>();
    sync::<ReadTooSlow>();
    send::<io::Error>();
    send::<RejectExcess<TcpListenerStream>>();
    sync::<RejectExcess<TcpListenerStream>>();
    unpin::<RejectExcess<TcpListenerStream>>();
    send::<staunch::listen::Idle<'static>>();
    sync::<staunch::listen::Idle<'static>>();
    send::<staunch::listen::Conn>();
    sync::<staunch::listen::Conn>();
}

/// Held by the tests that flood loopback or measure time on it, so that they do not disturb
/// each other's timing.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A listener on 127.0.0.1, port chosen by the kernel.
async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Connect to `to` from the loopback address `from` (any port).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Await `future`, failing the test if it takes longer than `limit`.
async fn within<F: std::future::Future>(limit: Duration, what: &str, future: F) -> F::Output {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}
