//! `Send`, `Sync` and `Unpin` of the client-side public types.

use std::io;

use staunch::reconnect::{
    BoxFuture, Builder, ConnState, Decision, Disconnected, EofPolicy, Failover, GaveUp,
    GiveUpCause, HookContext, ReadMode, Reason, Reconnecting, RetryLoop, RetryOutcome, SessionEnd,
    TcpConnector, WriteMode,
};
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

fn send_sync_unpin<T: Send + Sync + Unpin>() {}
fn send_unpin<T: Send + Unpin>() {}

/// `!Sync`, checked at compile time: `AmbiguousIfSync::some_item` resolves to one impl unless `T`
/// is `Sync`, in which case two impls apply and the call does not compile (tokio-stream's trick).
macro_rules! assert_not_sync {
    ($t:ty) => {{
        #[allow(dead_code)]
        trait AmbiguousIfSync<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSync<()> for T {}
        #[allow(dead_code)]
        struct Invalid;
        impl<T: ?Sized + Sync> AmbiguousIfSync<Invalid> for T {}
        let _ = <$t as AmbiguousIfSync<_>>::some_item;
    }};
}

type Boxed = Box<dyn FnMut() -> BoxFuture<io::Result<DuplexStream>> + Send>;

#[test]
fn reconnecting_is_send_unpin_when_its_parts_are_send() {
    send_unpin::<Reconnecting<TcpConnector>>();
    send_unpin::<Reconnecting<Failover<TcpConnector>>>();
    send_unpin::<Reconnecting<Boxed>>();
    #[cfg(unix)]
    send_unpin::<Reconnecting<staunch::reconnect::UnixConnector>>();
    send_unpin::<Builder<TcpConnector>>();
    // The halves of `split` go to two tasks.
    send_unpin::<tokio::io::ReadHalf<Reconnecting<TcpConnector>>>();
    send_unpin::<tokio::io::WriteHalf<Reconnecting<TcpConnector>>>();
}

#[test]
fn reconnecting_is_not_sync_as_documented() {
    // Every operation takes `&mut self`; its boxed futures are `Send` only.
    assert_not_sync!(Reconnecting<TcpConnector>);
    assert_not_sync!(Builder<TcpConnector>);
}

#[test]
fn value_types_are_send_sync_unpin() {
    send_sync_unpin::<Decision>();
    send_sync_unpin::<ConnState>();
    send_sync_unpin::<HookContext>();
    send_sync_unpin::<Disconnected>();
    send_sync_unpin::<EofPolicy>();
    send_sync_unpin::<GaveUp>();
    send_sync_unpin::<GiveUpCause>();
    send_sync_unpin::<ReadMode>();
    send_sync_unpin::<Reason>();
    send_sync_unpin::<WriteMode>();
    send_sync_unpin::<TcpConnector>();
    // Goes to another task or thread.
    send_sync_unpin::<staunch::reconnect::ReconnectHandle>();
    send_sync_unpin::<SessionEnd<(), io::Error>>();
    send_sync_unpin::<RetryOutcome<(), io::Error>>();
    send_unpin::<RetryLoop<TcpConnector>>();
    send_sync_unpin::<TcpStream>();
}

#[test]
fn the_run_future_is_send() {
    fn is_send<T: Send>(_: &T) {}
    let fut = RetryLoop::new(TcpConnector::new("127.0.0.1:1"))
        .run(|_io| async { SessionEnd::<(), io::Error>::Done(()) });
    is_send(&fut);
}
