//! Graceful shutdown: stop accepting at the signal, drain within the grace period (or with no
//! deadline), cut the rest, and the report. Paused time except where a real socket is involved.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::ListenExt;
use tokio::sync::oneshot;
use tokio::time::{self, sleep, Instant};

use crate::support::{counted, wait_until_refused};
use tokio_test::{assert_pending, assert_ready, task};

/// A connection future that notes when it is dropped (cancelled or done).
fn connection(secs: u64, dropped: Arc<AtomicUsize>) -> impl Future<Output = ()> {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    async move {
        let _guard = Guard(dropped);
        sleep(Duration::from_secs(secs)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_drains_then_cuts_at_the_deadline() {
    for spawn in [false, true] {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let (stop, signal) = oneshot::channel::<()>();
        let accepts = stream::iter([1u64, 15, 50, 500]).chain(stream::pending());
        let handle = move |secs| connection(secs, d.clone());
        let start = Instant::now();
        let grace = Duration::from_secs(20);
        let report = tokio::spawn(async move {
            if spawn {
                accepts
                    .map(handle)
                    .spawn_listen(10)
                    .with_graceful_shutdown(signal)
                    .grace(grace)
                    .await
            } else {
                accepts
                    .map(handle)
                    .listen(10)
                    .with_graceful_shutdown(signal)
                    .grace(grace)
                    .await
            }
        });
        sleep(Duration::from_secs(5)).await;
        stop.send(()).unwrap();
        let report = report.await.unwrap();
        // At 5 s: the 1 s connection is done, 15 s finishes in grace, 50 s and 500 s are cut at 25 s.
        assert!(report.signalled);
        assert_eq!((report.ended, report.cancelled), (1, 2), "spawn: {spawn}");
        assert_eq!(start.elapsed(), Duration::from_secs(25), "spawn: {spawn}");
        assert_eq!(
            dropped.load(SeqCst),
            4,
            "every connection dropped, spawn: {spawn}"
        );
        let s = report.stats;
        assert_eq!(
            s.connections,
            s.finished + s.failed + s.panicked + s.timed_out + s.cancelled
        );
    }
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_without_stragglers_returns_early() {
    // `take_backlog(0)`: the connection the stream has ready is not taken (see the next test).
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([3u64])
        .chain(stream::pending())
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(4)
        .with_graceful_shutdown(signal)
        .grace(Duration::from_secs(60))
        .take_backlog(0);
    let start = Instant::now();
    stop.send(()).unwrap();
    let report = server.await;
    // Signalled before the first poll: nothing was accepted, nothing to wait for.
    assert_eq!((report.ended, report.cancelled), (0, 0));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_takes_the_connections_ready_when_the_port_closes() {
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([3u64, 4, 5, 6])
        .chain(stream::pending())
        // The sleep starts with the connection, not when the stream yields it.
        .map(|secs| async move { sleep(Duration::from_secs(secs)).await })
        .listen(1)
        .with_graceful_shutdown(signal)
        .grace(Duration::from_secs(60))
        .take_backlog(3);
    let start = Instant::now();
    stop.send(()).unwrap();
    let report = server.await;
    // Signalled before the first poll: what the stream had ready (a backlog) is served, up to
    // the bound, one at a time (one slot).
    assert_eq!(report.backlog_taken, 3);
    assert_eq!((report.ended, report.cancelled), (3, 0));
    assert_eq!(start.elapsed(), Duration::from_secs(3 + 4 + 5));
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_drops_the_stream_at_the_signal_even_when_full() {
    let (accepts, _, dropped) = counted(stream::iter([100u64, 100]).chain(stream::pending()));
    let (stop, signal) = oneshot::channel::<()>();
    let server = accepts
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(1)
        .with_graceful_shutdown(signal)
        .grace(Duration::from_secs(10));
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    assert!(!dropped.load(SeqCst));
    stop.send(()).unwrap();
    assert!(server.is_woken());
    assert_pending!(server.poll());
    assert!(
        dropped.load(SeqCst),
        "the stream must be dropped at the signal, full or not"
    );
    time::advance(Duration::from_secs(10)).await;
    let report = assert_ready!(server.poll());
    // The running connection, and the one accepted while full and held for a free slot.
    assert_eq!((report.ended, report.cancelled), (0, 2));
    assert_eq!(report.open_at_refuse, 1);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_without_a_grace_has_no_deadline() {
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([1_000_000u64])
        .chain(stream::pending())
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(1)
        .with_graceful_shutdown(signal);
    // No `.grace(..)`: the shutdown waits for every connection.
    assert_eq!(server.grace_period(), None);
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    stop.send(()).unwrap();
    assert_pending!(server.poll());
    time::advance(Duration::from_secs(999_999)).await;
    assert_pending!(server.poll());
    time::advance(Duration::from_secs(1)).await;
    let report = assert_ready!(server.poll());
    assert_eq!((report.ended, report.cancelled), (1, 0));
}

#[tokio::test]
async fn graceful_shutdown_refuses_new_clients_at_once_even_when_full() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::wrappers::TcpListenerStream;
    const LIMIT: Duration = Duration::from_secs(10);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = oneshot::channel::<()>();
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10))
        .map(|mut socket: TcpStream| async move {
            socket.write_all(b"hi").await?;
            let mut buf = [0; 5];
            socket.read_exact(&mut buf).await?;
            socket.write_all(&buf).await
        })
        .listen(1)
        .with_graceful_shutdown(signal)
        .grace(LIMIT);
    let server = tokio::spawn(server);
    let mut held = TcpStream::connect(addr).await.unwrap();
    let mut hi = [0; 2];
    time::timeout(LIMIT, held.read_exact(&mut hi))
        .await
        .unwrap()
        .unwrap();
    stop.send(()).unwrap();
    wait_until_refused(addr).await;
    held.write_all(b"hello").await.unwrap();
    let mut buf = [0; 5];
    time::timeout(LIMIT, held.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let report = time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!((report.ended, report.cancelled), (1, 0));
}

#[tokio::test]
async fn new_clients_are_refused_once_accepting_stops() {
    const LIMIT: Duration = Duration::from_secs(10);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::wrappers::TcpListenerStream;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(
        TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(10))
            .take_until(signal)
            .map(|mut socket: TcpStream| async move {
                // Echo one message, slowly enough that it is still in flight at shutdown.
                let mut buf = [0; 5];
                socket.read_exact(&mut buf).await?;
                socket.write_all(&buf).await?;
                io::Result::Ok(())
            })
            .listen(10),
    );
    let mut in_flight = time::timeout(LIMIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    // Make sure the server has accepted it: a round trip on a second connection.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe.write_all(b"probe").await.unwrap();
    let mut buf = [0; 5];
    time::timeout(LIMIT, probe.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();

    stop.send(()).unwrap();
    // Once the listener is dropped, connecting is refused (not left hanging in a backlog).
    wait_until_refused(addr).await;
    assert!(
        !server.is_finished(),
        "the in-flight connection must drain first"
    );

    in_flight.write_all(b"hello").await.unwrap();
    time::timeout(LIMIT, in_flight.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello");
    time::timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_a_listener_settles_the_stats() {
    for spawn in [false, true] {
        let make = || {
            stream::iter([1u64, 100, 100])
                .chain(stream::pending())
                .map(|secs| sleep(Duration::from_secs(secs)))
        };
        let stats = if spawn {
            let server = make().spawn_listen(10);
            let stats = server.stats();
            let _ = time::timeout(Duration::from_secs(5), server).await;
            stats
        } else {
            let server = make().listen(10);
            let stats = server.stats();
            let _ = time::timeout(Duration::from_secs(5), server).await;
            stats
        };
        let s = stats.snapshot();
        assert_eq!(
            (s.connections, s.active, s.finished, s.cancelled),
            (3, 0, 1, 2),
            "spawn: {spawn}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_taking_the_backlog_is_counted_and_ends_the_taking() {
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([0u64, 1, 2])
        .chain(stream::pending())
        .map(|secs| {
            assert!(secs > 0, "a bad connection");
            sleep(Duration::from_secs(secs))
        })
        .listen(4)
        .with_graceful_shutdown(signal)
        .grace(Duration::from_secs(60));
    stop.send(()).unwrap();
    let report = server.await;
    // The panic is counted as a connection that panicked; the stream is dropped there, with
    // the connections after it.
    assert_eq!(report.backlog_taken, 0);
    assert_eq!(report.stats.panicked, 1);
    assert_eq!((report.stats.connections, report.cancelled), (1, 0));
}
