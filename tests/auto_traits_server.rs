//! Send/Sync/Unpin of the server-side public types, checked at compile time.

use std::future::Ready;
use std::io;

use futures_util::stream::{Empty, Pending};
use staunch::{GracefulShutdown, Listen, SleepOnError, SpawnListen, Stats, StatsSnapshot};
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

#[test]
fn listeners_can_be_spawned() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        use staunch::ListenExt;
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
