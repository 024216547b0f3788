//! `listen` and `spawn_listen`: concurrency bound, backpressure, panic isolation, error swallowing,
//! drain, time limits, graceful shutdown, wake on release. Scripted streams with paused time,
//! except where a real socket is involved.

use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::ListenExt;
use tokio::time::{self, sleep, Instant};
use tokio_test::{assert_pending, assert_ready, task};

use crate::support::{counted, with_debug_logging, BadDisplay};

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
    // Full: the stream is polled once more (so that it could end), and the connection it gave
    // is held, not started; then not again, since the stream did not ask to be.
    assert_eq!(
        pulled.load(SeqCst),
        4,
        "while full, at most one connection is taken in hand"
    );
    assert_pending!(server.poll());
    assert_eq!(pulled.load(SeqCst), 4);
    assert_eq!(stats.active(), 3);
    time::advance(Duration::from_secs(1)).await;
    assert!(
        server.is_woken(),
        "a finished connection must wake the listener"
    );
    assert_pending!(server.poll());
    // Three ended: the held one started, and ended at once (its `sleep` was made, by `map`, when
    // it was accepted, a second ago); three more started, and one more is held.
    assert_eq!(pulled.load(SeqCst), 8);
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

#[test]
fn debug_logging_a_connection_error_whose_display_panics_does_not_kill_the_listener() {
    with_debug_logging(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = stream::iter(0..3)
                .map(|_| async { Err::<(), _>(BadDisplay) })
                .listen(2);
            let stats = server.stats();
            server.await;
            assert_eq!(stats.snapshot().failed, 3);
        });
    });
}

#[tokio::test]
async fn a_panic_in_the_map_closure_is_caught_and_counted() {
    let handle = |n: u32| {
        // Like `s.peer_addr().unwrap()` on a client that already reset.
        assert!(n % 3 != 0, "handler setup failed for {n}");
        async {}
    };
    let server = stream::iter(0..10).map(handle).listen(2);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!(
        (s.connections, s.panicked, s.finished, s.active),
        (10, 4, 6, 0)
    );

    let server = stream::iter(0..10).map(handle).spawn_listen(2);
    let stats = server.stats();
    server.await;
    let s = stats.snapshot();
    assert_eq!((s.connections, s.panicked, s.finished), (10, 4, 6));
}

#[test]
fn a_stream_that_only_panics_is_let_through_after_ten_thousand_panics() {
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let broken = stream::poll_fn(
        move |_| -> std::task::Poll<Option<std::future::Ready<()>>> {
            counter.fetch_add(1, SeqCst);
            panic!("resumed after panicking");
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let server = broken.listen(1);
    let stats = server.stats();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(server)));
    assert!(outcome.is_err());
    assert_eq!(polls.load(SeqCst), 10_000);
    // Every panic but the last, let through, was counted.
    assert_eq!(stats.snapshot().panicked, 9_999);
}

#[test]
fn rejected_arguments_panic_at_the_callers_line() {
    let here = std::panic::Location::caller().file();
    for at in [
        crate::support::panic_location(|| {
            drop(stream::empty::<std::future::Ready<()>>().listen(0))
        }),
        crate::support::panic_location(|| {
            drop(stream::empty::<std::future::Ready<()>>().spawn_listen(0))
        }),
        crate::support::panic_location(|| {
            drop(
                stream::empty::<std::future::Ready<()>>()
                    .listen(1)
                    .connection_time_limit(Duration::ZERO),
            )
        }),
        crate::support::panic_location(|| {
            let _ = stream::empty::<io::Result<()>>()
                .sleep_on_error(Duration::from_secs(1))
                .give_up_after(0);
        }),
    ] {
        assert!(at.starts_with(here), "{at}");
    }
}
