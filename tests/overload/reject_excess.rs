//! `limit_rate(..).reject_excess()`: the excess closed at once and counted, with paused time
//! and on real sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::overload::{OverloadExt, RejectReason};
use staunch::ListenExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::{loopback, within};

fn peer(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], n))
}

/// Items arriving at `at_ms` (milliseconds after the start) through `limit_rate(n, 1 s)` with
/// `burst`, rejecting the excess, in a listener (whose stats count the rejections, and whose
/// hook sees them): when each passed item passed, and the peers rejected.
async fn pass(at_ms: Vec<u64>, n: u32, burst: u32) -> (Vec<u64>, Vec<Option<SocketAddr>>) {
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let passed = Arc::new(Mutex::new(Vec::new()));
    let server = stream::iter(at_ms.into_iter().enumerate())
        .then(|(i, at)| async move {
            sleep_until(start + Duration::from_millis(at)).await;
            ((), peer(i as u16))
        })
        .limit_rate(n, Duration::from_secs(1))
        .burst(burst)
        .reject_excess()
        .map({
            let passed = passed.clone();
            move |_| {
                // When the listener took it from the stream.
                passed
                    .lock()
                    .unwrap()
                    .push(start.elapsed().as_millis() as u64);
                async {}
            }
        })
        .listen(1000)
        .on_reject(move |e| hook_seen.lock().unwrap().push((e.reason(), e.peer())));
    let stats = server.stats();
    server.await;
    let seen: Vec<_> = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(r, _)| *r == RejectReason::RateLimit),
        "{seen:?}"
    );
    let s = stats.snapshot();
    assert_eq!(s.rejected.get(RejectReason::RateLimit), seen.len() as u64);
    assert_eq!(s.rejected.total(), seen.len() as u64);
    let passed = passed.lock().unwrap().clone();
    assert_eq!(s.connections, passed.len() as u64);
    (passed, seen.into_iter().map(|(_, p)| p).collect())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn items_over_the_rate_are_rejected_with_their_peer() {
    // One every 100 ms for 1 s, at 5 a second: every other one passes.
    let (passed, rejected) = pass((0..10).map(|i| i * 100).collect(), 5, 1).await;
    assert_eq!(passed, [0, 200, 400, 600, 800]);
    assert_eq!(
        rejected,
        [1, 3, 5, 7, 9].map(|i| Some(peer(i))),
        "the odd ones, with their addresses"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn items_at_the_rate_all_pass_and_a_burst_is_allowed_after_a_quiet_spell() {
    // At exactly the rate: nothing is rejected.
    let (passed, rejected) = pass((0..5).map(|i| i * 200).collect(), 5, 1).await;
    assert_eq!((passed.len(), rejected.len()), (5, 0));
    // Burst 3: five at once pass three; after a quiet second, three again.
    let (passed, rejected) = pass(vec![0, 0, 0, 0, 0, 2000, 2000, 2000, 2000], 2, 3).await;
    assert_eq!(passed, [0, 0, 0, 2000, 2000, 2000]);
    assert_eq!(rejected, [3, 4, 8].map(|i| Some(peer(i))));
}

/// Without `burst`, `reject_excess` allows a burst of `REJECT_EXCESS_BURST`: of ten clients
/// arriving at once, four pass (with `burst(1)` set, one).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reject_excess_defaults_to_a_burst_of_four_unless_one_is_set() {
    let passed = |burst: Option<u32>| async move {
        let limit =
            stream::iter((0..10).map(|i| ((), peer(i)))).limit_rate(2, Duration::from_secs(1));
        let limit = match burst {
            Some(b) => limit.burst(b),
            None => limit,
        };
        let server = limit.reject_excess().map(|_| async {}).listen(10);
        let stats = server.stats();
        server.await;
        let s = stats.snapshot();
        (s.connections, s.rejected.get(RejectReason::RateLimit))
    };
    assert_eq!(staunch::overload::REJECT_EXCESS_BURST, 4);
    assert_eq!(passed(None).await, (4, 6));
    assert_eq!(passed(Some(1)).await, (1, 9));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_without_reject_excess_the_excess_waits() {
    let start = Instant::now();
    let passed: Vec<u64> = stream::iter(0..4)
        .limit_rate(2, Duration::from_secs(1))
        .map(|_| start.elapsed().as_millis() as u64)
        .collect()
        .await;
    assert_eq!(passed, [0, 500, 1000, 1500]);
}

/// Clients connect in a loop from 4 tasks, about 1000 a second each (each connection reset at
/// once by its client, so no port is left in `TIME_WAIT`), until `stop`, at most 3000 each.
fn flood(to: SocketAddr, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                for _ in 0..3000 {
                    if stop.load(SeqCst) {
                        break;
                    }
                    if let Ok(stream) = TcpStream::connect(to).await {
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect()
}

/// Under a flood on loopback, 51 connections pass at 50 a second: 1 s, within 10%. The rest are
/// closed and counted, with their addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sockets_pass_at_the_rate_within_ten_percent_and_the_rest_are_counted() {
    let _serial = super::serial().await;
    let (listener, addr) = loopback().await;
    let stop = Arc::new(AtomicBool::new(false));
    let flooders = flood(addr, stop.clone());
    let peers = Arc::new(Mutex::new(0u64));
    let hook_peers = peers.clone();
    // Each connection the listener takes from the stream reports when.
    let (passes, mut passed) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio_stream::wrappers::TcpListenerStream::new(listener)
        .map(|r| r.expect("accept on loopback"))
        .limit_rate(50, Duration::from_secs(1))
        .burst(1) // the strictest spacing, for the timing below
        .reject_excess()
        .map(move |_socket| {
            let _ = passes.send(Instant::now());
            async {}
        })
        .listen(1000)
        .on_reject(move |e| {
            if e.peer().is_some() {
                *hook_peers.lock().unwrap() += 1;
            }
        });
    let stats = server.stats();
    let server = tokio::spawn(server);
    let elapsed = within(Duration::from_secs(5), "51 passes at 50/s", async {
        let first = passed.recv().await.unwrap();
        let mut last = first;
        for _ in 0..50 {
            last = passed.recv().await.unwrap();
        }
        last - first
    })
    .await;
    stop.store(true, SeqCst);
    for f in flooders {
        f.await.unwrap();
    }
    let rejected = stats.snapshot().rejected.get(RejectReason::RateLimit);
    server.abort();
    eprintln!("51 passes at 50/s took {elapsed:?}; {rejected} rejected meanwhile");
    assert!(
        (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(&elapsed),
        "51 passes at 50/s took {elapsed:?}, not 1 s +-10%"
    );
    // The flood was a flood: far more were rejected than passed, with their addresses (a
    // client reset before we looked has none).
    assert!(
        rejected > 500,
        "only {rejected} rejected: no flood to measure against"
    );
    assert!(*peers.lock().unwrap() > 0);
}
