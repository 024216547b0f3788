//! `listen` and `spawn_listen`: concurrency bound, backpressure, panic isolation, error swallowing,
//! drain, time limits, graceful shutdown, wake on release. Scripted streams with paused time,
//! except where a real socket is involved.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use staunch::ListenExt;
use tokio::sync::oneshot;
use tokio::time::{self, sleep, Instant};
use tokio_test::{assert_pending, assert_ready, task};

/// A stream that counts how many items were pulled from it and notes when it is dropped.
struct Counted<S> {
    inner: S,
    pulled: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = item {
            self.pulled.fetch_add(1, SeqCst);
        }
        item
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

fn counted<S>(inner: S) -> (Counted<S>, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    (
        Counted {
            inner,
            pulled: pulled.clone(),
            dropped: dropped.clone(),
        },
        pulled,
        dropped,
    )
}

/// Tracks how many connection futures run at once, and the most ever.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Gauge {
    fn run<F: Future>(&self, f: F) -> impl Future<Output = F::Output> {
        let gauge = self.clone();
        async move {
            let n = gauge.now.fetch_add(1, SeqCst) + 1;
            gauge.peak.fetch_max(n, SeqCst);
            let out = f.await;
            gauge.now.fetch_sub(1, SeqCst);
            out
        }
    }
}

#[tokio::test(start_paused = true)]
async fn bound_and_backpressure() {
    let (accepts, pulled, _) = counted(stream::iter(0..10));
    let gauge = Gauge::default();
    let g = gauge.clone();
    let server = accepts
        .map(move |_| g.run(sleep(Duration::from_secs(1))))
        .listen(3);
    let stats = server.stats();
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    assert_eq!(
        pulled.load(SeqCst),
        3,
        "the stream must not be polled while full"
    );
    assert_eq!(stats.active(), 3);
    time::advance(Duration::from_secs(1)).await;
    assert!(
        server.is_woken(),
        "a finished connection must wake the listener"
    );
    assert_pending!(server.poll());
    assert_eq!(pulled.load(SeqCst), 6);
    server.await;
    assert_eq!(gauge.peak.load(SeqCst), 3);
    let s = stats.snapshot();
    assert_eq!(
        (s.connections, s.finished, s.peak_active, s.active),
        (10, 10, 3, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_connection_does_not_stop_the_others() {
    let server = stream::iter(0..6)
        .map(|n| async move {
            sleep(Duration::from_millis(10 * n)).await;
            if n == 2 {
                panic!("connection {n} broke");
            }
        })
        .listen(4);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.finished, s.panicked, s.active), (5, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn spawn_listen_survives_panics_too() {
    let server = stream::iter(0..6)
        .map(|n| async move {
            if n % 3 == 0 {
                panic!("connection {n} broke");
            }
        })
        .spawn_listen(2);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.finished, s.panicked, s.active), (4, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn connection_errors_of_any_displayable_type_are_counted_not_fatal() {
    let io_errors = stream::iter(0..4)
        .map(|n| async move {
            if n % 2 == 0 {
                Err(io::Error::other("boom"))
            } else {
                Ok(())
            }
        })
        .listen(2);
    let stats = io_errors.stats();
    io_errors.await;
    assert_eq!((stats.snapshot().failed, stats.snapshot().finished), (2, 2));

    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let boxed = stream::iter(0..3)
        .map(|_| async { Err::<(), BoxError>("nope".into()) })
        .spawn_listen(2);
    let stats = boxed.stats();
    boxed.await;
    assert_eq!(stats.snapshot().failed, 3);

    let anyhow = stream::iter(0..3)
        .map(|_| async { Err::<(), _>(anyhow::anyhow!("nope")) })
        .listen(2);
    let stats = anyhow.stats();
    anyhow.await;
    assert_eq!(stats.snapshot().failed, 3);
}

#[tokio::test(start_paused = true)]
async fn stream_is_dropped_at_once_when_it_ends_and_connections_drain() {
    let (accepts, _, dropped) = counted(stream::iter([5u64, 10]));
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let server = accepts
        .map(move |secs| {
            let d = d.clone();
            async move {
                sleep(Duration::from_secs(secs)).await;
                d.fetch_add(1, SeqCst);
            }
        })
        .listen(10);
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    assert!(
        dropped.load(SeqCst),
        "the ended stream must be dropped at once"
    );
    time::advance(Duration::from_secs(5)).await;
    assert_pending!(server.poll());
    assert_eq!(done.load(SeqCst), 1);
    time::advance(Duration::from_secs(5)).await;
    assert_ready!(server.poll());
    assert_eq!(done.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn time_limit_cancels_slow_connections() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let start = Instant::now();
    let server = stream::iter([1u64, 100, 2, 100])
        .map(move |secs| {
            let f = f.clone();
            async move {
                sleep(Duration::from_secs(secs)).await;
                f.fetch_add(1, SeqCst);
            }
        })
        .listen(2)
        .connection_time_limit(Duration::from_secs(10));
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.finished, s.timed_out), (2, 2));
    assert_eq!(finished.load(SeqCst), 2);
    // Two slots: the 100 s connections are cut at 10 s each, so the last one ends by ~21 s.
    assert!(
        start.elapsed() <= Duration::from_secs(21),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn spawn_listen_time_limit() {
    let server = stream::iter([1u64, 100])
        .map(|secs| sleep(Duration::from_secs(secs)))
        .spawn_listen(2)
        .connection_time_limit(Duration::from_secs(10));
    let stats = server.stats();
    let start = Instant::now();
    server.await;
    assert_eq!(
        (stats.snapshot().finished, stats.snapshot().timed_out),
        (1, 1)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

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
                    .with_graceful_shutdown(signal, grace)
                    .await
            } else {
                accepts
                    .map(handle)
                    .listen(10)
                    .with_graceful_shutdown(signal, grace)
                    .await
            }
        });
        sleep(Duration::from_secs(5)).await;
        stop.send(()).unwrap();
        let report = report.await.unwrap();
        // At 5 s: the 1 s connection is done, 15 s finishes in grace, 50 s and 500 s are cut at 25 s.
        assert!(report.signalled);
        assert_eq!(
            (report.finished, report.cancelled),
            (1, 2),
            "spawn: {spawn}"
        );
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
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([3u64])
        .chain(stream::pending())
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(4)
        .with_graceful_shutdown(signal, Duration::from_secs(60));
    let start = Instant::now();
    stop.send(()).unwrap();
    let report = server.await;
    // Signalled before the first poll: nothing was accepted, nothing to wait for.
    assert_eq!((report.finished, report.cancelled), (0, 0));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn wake_on_release_cuts_a_resource_backoff_short() {
    // One connection holds a "descriptor" for 1 s; accept then fails with EMFILE; the backoff is
    // 100 s. Chained into `listen`, the backoff ends when the connection does.
    let script = || {
        stream::iter([
            Ok(1u64),
            Err(io::Error::from_raw_os_error(libc::EMFILE)),
            Ok(0),
        ])
    };
    let start = Instant::now();
    let server = script()
        .sleep_on_error(Duration::from_secs(100))
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10);
    let stats = server.stats();
    server.await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let s = stats.snapshot();
    assert_eq!((s.woken_by_release, s.backoffs, s.accepted), (1, 1, 2));

    // Control: the same stream polled from another task (not chained) waits out the full delay.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let accepts = script().sleep_on_error(Duration::from_secs(100));
        tokio::pin!(accepts);
        while let Some(item) = accepts.next().await {
            let _ = tx.send(item).await;
        }
    });
    let start = Instant::now();
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10)
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(100));
}

#[tokio::test(start_paused = true)]
async fn stats_link_through_adapters() {
    let (_stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([Ok(1u64), Err(io::ErrorKind::ConnectionReset.into()), Ok(2)])
        .sleep_on_error(Duration::from_millis(10))
        .take_until(signal)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .filter(|_| async { true })
        .listen(1);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!(
        (s.accepted, s.connection_errors, s.connections, s.finished),
        (2, 1, 2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn listen_runs_non_send_futures() {
    let shared = Rc::new(std::cell::Cell::new(0));
    let s = shared.clone();
    stream::iter(0..5)
        .map(move |n| {
            let s = s.clone();
            async move { s.set(s.get() + n) }
        })
        .listen(2)
        .await;
    assert_eq!(shared.get(), 10);
}

#[test]
#[should_panic(expected = "listen: max_connections must be at least 1")]
fn listen_zero_is_rejected() {
    drop(stream::empty::<std::future::Ready<()>>().listen(0));
}

#[test]
#[should_panic(expected = "spawn_listen: max_connections must be at least 1")]
fn spawn_listen_zero_is_rejected() {
    drop(stream::empty::<std::future::Ready<()>>().spawn_listen(0));
}

#[test]
#[should_panic(expected = "connection_time_limit: the limit must be greater than zero")]
fn zero_time_limit_is_rejected() {
    drop(
        stream::empty::<std::future::Ready<()>>()
            .listen(1)
            .connection_time_limit(Duration::ZERO),
    );
}

#[test]
fn spawn_listen_uses_every_worker_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Two connections that each block their thread until the other has started: they can only
    // both succeed if they run on different threads at once. Bounded by a 5 s deadline.
    let arrived = Arc::new(AtomicUsize::new(0));
    let met = Arc::new(AtomicUsize::new(0));
    let (a, m) = (arrived.clone(), met.clone());
    let server = stream::iter(0..2)
        .map(move |_| {
            let (a, m) = (a.clone(), m.clone());
            async move {
                a.fetch_add(1, SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while a.load(SeqCst) < 2 && std::time::Instant::now() < deadline {
                    std::hint::spin_loop();
                }
                if a.load(SeqCst) == 2 {
                    m.fetch_add(1, SeqCst);
                }
            }
        })
        .spawn_listen(2);
    rt.block_on(async { tokio::spawn(server).await }).unwrap();
    assert_eq!(met.load(SeqCst), 2, "connections did not run in parallel");
}

#[test]
fn spawn_listen_bound_holds_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gauge = Gauge::default();
    let g = gauge.clone();
    let server = stream::iter(0..200)
        .map(move |n| g.run(sleep(Duration::from_micros(100 + n % 7 * 50))))
        .spawn_listen(5);
    let stats = server.stats();
    rt.block_on(async { time::timeout(Duration::from_secs(20), server).await })
        .expect("spawn_listen did not finish");
    assert!(
        gauge.peak.load(SeqCst) <= 5,
        "peak {}",
        gauge.peak.load(SeqCst)
    );
    assert_eq!(stats.snapshot().finished, 200);
    assert!(stats.snapshot().peak_active <= 5);
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
async fn link_survives_select_when_the_other_side_yields_first() {
    let a = stream::iter([Ok(1u64)]).sleep_on_error(Duration::from_secs(100));
    let b = stream::iter([Err(io::Error::from_raw_os_error(libc::EMFILE)), Ok(0)])
        .sleep_on_error(Duration::from_secs(100));
    let start = Instant::now();
    let server = stream::select(a, b)
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(10);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.accepted, s.backoffs, s.woken_by_release), (2, 1, 1));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "b's backoff was not cut short"
    );
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_drops_the_stream_at_the_signal_even_when_full() {
    let (accepts, _, dropped) = counted(stream::iter([100u64, 100]).chain(stream::pending()));
    let (stop, signal) = oneshot::channel::<()>();
    let server = accepts
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(1)
        .with_graceful_shutdown(signal, Duration::from_secs(10));
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
    assert_eq!((report.finished, report.cancelled), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_grace_of_duration_max_means_no_deadline() {
    let (stop, signal) = oneshot::channel::<()>();
    let server = stream::iter([1_000_000u64])
        .chain(stream::pending())
        .map(|secs| sleep(Duration::from_secs(secs)))
        .listen(1)
        .with_graceful_shutdown(signal, Duration::MAX);
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    stop.send(()).unwrap();
    assert_pending!(server.poll());
    time::advance(Duration::from_secs(999_999)).await;
    assert_pending!(server.poll());
    time::advance(Duration::from_secs(1)).await;
    let report = assert_ready!(server.poll());
    assert_eq!((report.finished, report.cancelled), (1, 0));
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
async fn an_always_ready_stream_does_not_starve_the_runtime() {
    let server = stream::repeat_with(|| std::future::ready(())).listen(10);
    let stats = server.stats();
    let mut server = task::spawn(server);
    assert_pending!(server.poll());
    assert!(server.is_woken(), "it must ask to be polled again");
    let accepted = stats.snapshot().connections;
    assert!(
        accepted > 0 && accepted <= 64,
        "{accepted} accepts in one poll"
    );
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
        .with_graceful_shutdown(signal, LIMIT);
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
    assert_eq!((report.finished, report.cancelled), (1, 0));
}

/// Connect until the port refuses, bounded by 10 s: a client caught in the backlog as the
/// listener closes is reset, so only a refusal shows the port is closed.
async fn wait_until_refused(addr: std::net::SocketAddr) {
    let refused = time::timeout(Duration::from_secs(10), async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port stayed open long after the stop signal"
    );
}
