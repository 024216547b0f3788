//! Send/Sync/Unpin of the server-side public types, checked at compile time.

use std::future::Ready;
use std::io;

use futures_util::stream::{Empty, Pending};
use staunch::listen::{
    AcceptAction, AcceptErrorEvent, AddrState, BindHandle, BindMany, ErrorClass, GracefulShutdown,
    Listen, SetupSockets, ShutdownReport, SleepOnError, SpawnListen, StatsSnapshot,
};
use staunch::{ListenExt, SocketOptions, Stats};
use tokio::sync::oneshot;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}

type Conn = Ready<io::Result<()>>;

#[test]
fn server_types_are_send_where_their_parts_are() {
    send::<SleepOnError<TcpListenerStream>>();
    send::<SleepOnError<UnixListenerStream>>();
    send::<Listen<Empty<Conn>>>();
    send::<SpawnListen<Empty<Conn>>>();
    send::<GracefulShutdown<Listen<Pending<Conn>>, oneshot::Receiver<()>>>();
    send::<GracefulShutdown<SpawnListen<Pending<Conn>>, oneshot::Receiver<()>>>();
    send::<Stats>();
    sync::<Stats>();
    send::<StatsSnapshot>();
    sync::<StatsSnapshot>();
    unpin::<Stats>();
}

type Setup = fn(&tokio::net::TcpStream) -> io::Result<()>;

#[test]
fn sync_and_unpin_where_their_parts_are() {
    // Streams and listeners are Sync when their parts are (no boxed hook inside).
    sync::<SleepOnError<TcpListenerStream>>();
    sync::<Listen<Empty<Conn>>>();
    sync::<SpawnListen<Empty<Conn>>>();
    send::<SetupSockets<TcpListenerStream, Setup>>();
    sync::<SetupSockets<TcpListenerStream, Setup>>();
    unpin::<SetupSockets<TcpListenerStream, Setup>>();
    send::<BindMany>();
    sync::<BindMany>();
    unpin::<BindMany>();
    send::<BindHandle>();
    sync::<BindHandle>();
    send::<AddrState>();
    sync::<AddrState>();
    send::<ShutdownReport>();
    sync::<ShutdownReport>();
    send::<SocketOptions>();
    sync::<SocketOptions>();
    send::<staunch::listen::Conn>();
    sync::<staunch::listen::Conn>();
    send::<ErrorClass>();
    send::<AcceptAction>();
    sync::<AcceptErrorEvent<'static>>();
    // A hook that is not Send (an Rc counter) is fine under `listen` on one thread.
    let counter = std::rc::Rc::new(std::cell::Cell::new(0));
    let _ = futures_util::stream::empty::<io::Result<()>>()
        .sleep_on_error(std::time::Duration::from_secs(1))
        .on_error(move |_| counter.set(counter.get() + 1));
}

#[test]
fn listeners_can_be_spawned() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TcpListenerStream::new(listener)
            .sleep_on_error(std::time::Duration::from_millis(10))
            .map(|_socket| async { io::Result::Ok(()) })
            .spawn_listen(4);
        // `tokio::spawn` requires Send + 'static: this is the point of the test.
        let handle = tokio::spawn(server);
        handle.abort();
    });
}

/// Fails to compile if `$t` is `Unpin` (tokio-stream's `AmbiguousIfImpl` trick: with `Unpin`,
/// two impls apply and the call is ambiguous).
macro_rules! assert_not_unpin {
    ($t:ty) => {
        const _: fn() = || {
            #[allow(dead_code)]
            trait AmbiguousIfUnpin<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfUnpin<()> for T {}
            impl<T: ?Sized + Unpin> AmbiguousIfUnpin<u8> for T {}
            let _ = <$t as AmbiguousIfUnpin<_>>::some_item;
        };
    };
}

// Documented: `SleepOnError` holds a `Sleep`, so it is `!Unpin` whatever its parts.
assert_not_unpin!(SleepOnError<Empty<io::Result<()>>>);
assert_not_unpin!(SleepOnError<TcpListenerStream>);
// `GracefulShutdown` holds its deadline's `Sleep` too.
assert_not_unpin!(GracefulShutdown<Listen<Pending<Conn>>, oneshot::Receiver<()>>);

#[test]
fn listeners_are_unpin_when_their_stream_is() {
    unpin::<Listen<Empty<Conn>>>();
    unpin::<SpawnListen<Empty<Conn>>>();
    send::<staunch::listen::Listener<Empty<Conn>, staunch::listen::InTask>>();
}

/// A connection's wait for its handle can be held across an `.await` in a spawned handler.
#[allow(dead_code)]
fn conn_draining_is_send(conn: &staunch::listen::Conn) {
    fn send_value<T: Send>(_: &T) {}
    send_value(&conn.draining());
}
