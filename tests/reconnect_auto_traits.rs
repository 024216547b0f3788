//! `Send`, `Sync` and `Unpin` of the client-side public types.

use std::io;

use staunch::reconnect::{
    Action, BoxFuture, Builder, ConnState, Context, Disconnected, EofPolicy, Failover, Failure,
    GaveUp, GiveUpCause, ReadMode, Reason, Reconnecting, RetryLoop, RetryOutcome, RetryReason,
    SessionEnd, TcpConnector, WriteMode,
};
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

fn send_sync_unpin<T: Send + Sync + Unpin>() {}
fn send_unpin<T: Send + Unpin>() {}

type Boxed = Box<dyn FnMut() -> BoxFuture<io::Result<DuplexStream>> + Send>;

#[test]
fn reconnecting_is_send_sync_unpin_when_its_parts_are_send() {
    send_sync_unpin::<Reconnecting<TcpConnector>>();
    send_sync_unpin::<Reconnecting<Failover<TcpConnector>>>();
    // A connector that is Send but not Sync still gives a Sync adapter.
    send_sync_unpin::<Reconnecting<Boxed>>();
    #[cfg(unix)]
    send_sync_unpin::<Reconnecting<staunch::reconnect::UnixConnector>>();
    send_unpin::<Builder<TcpConnector>>();
    send_sync_unpin::<tokio::io::ReadHalf<Reconnecting<TcpConnector>>>();
}

#[test]
fn value_types_are_send_sync_unpin() {
    send_sync_unpin::<Action>();
    send_sync_unpin::<ConnState>();
    send_sync_unpin::<Context>();
    send_sync_unpin::<Disconnected>();
    send_sync_unpin::<EofPolicy>();
    send_sync_unpin::<GaveUp>();
    send_sync_unpin::<GiveUpCause>();
    send_sync_unpin::<ReadMode>();
    send_sync_unpin::<Reason>();
    send_sync_unpin::<WriteMode>();
    send_sync_unpin::<TcpConnector>();
    send_sync_unpin::<RetryReason>();
    send_sync_unpin::<SessionEnd<(), io::Error>>();
    send_sync_unpin::<Failure<io::Error>>();
    send_sync_unpin::<RetryOutcome<(), io::Error>>();
    send_unpin::<RetryLoop<TcpConnector, io::Error>>();
    send_sync_unpin::<TcpStream>();
}

#[test]
fn the_run_future_is_send() {
    fn is_send<T: Send>(_: &T) {}
    let fut = RetryLoop::<_, io::Error>::new(TcpConnector::new("127.0.0.1:1"))
        .run(|_io| async { SessionEnd::<(), io::Error>::Done(()) });
    is_send(&fut);
}
