//! `MinReadRate`: the rule with scripted I/O and paused time, and 50 trickling clients on real
//! sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use staunch::overload::{MinReadRate, OverloadExt, ReadTooSlow, RejectReason};
use staunch::ListenExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{self, Instant};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_test::io::Builder;

use super::{loopback, within};

const GRACE: Duration = Duration::from_secs(5);

/// Made in the synchronous part of a `map` closure, a `MinReadRate` counts into the listener
/// polling the stream: one rejection, however many reads fail after it, with its peer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_peer_is_cut_after_the_grace_and_counted() {
    let peer_addr: std::net::SocketAddr = "10.0.0.1:7".parse().unwrap();
    let (done, outcome) = tokio::sync::oneshot::channel();
    let mut done = Some(done);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let server = futures_util::stream::iter([Builder::new().wait(Duration::from_secs(60)).build()])
        .map(move |peer| {
            let mut conn = MinReadRate::new(peer, 240, GRACE).peer(peer_addr);
            let done = done.take().unwrap();
            async move {
                let start = Instant::now();
                let error = conn.read(&mut [0; 8]).await.unwrap_err();
                let elapsed = start.elapsed();
                // Later reads fail the same way, at once, and count once.
                let again = conn.read(&mut [0; 8]).await.unwrap_err();
                let _ = done.send((elapsed, error, again));
            }
        })
        .listen(1)
        .on_reject(move |e| hook_seen.lock().unwrap().push((e.reason(), e.peer())));
    let stats = server.stats();
    server.await;
    let (elapsed, error, again) = outcome.await.expect("the connection ran to its end");
    assert_eq!(elapsed, GRACE);
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    let inner = error
        .get_ref()
        .unwrap()
        .downcast_ref::<ReadTooSlow>()
        .unwrap();
    assert_eq!((inner.bytes_per_sec(), inner.grace()), (240, GRACE));
    assert_eq!(ReadTooSlow::from_io_error(&error), Some(inner));
    assert!(ReadTooSlow::from_io_error(&again).is_some());
    let s = stats.snapshot();
    assert_eq!(s.rejected.get(RejectReason::MinReadRate), 1, "{s}");
    assert_eq!(s.rejected.total(), 1, "{s}");
    assert_eq!(
        *seen.lock().unwrap(),
        [(RejectReason::MinReadRate, Some(peer_addr))]
    );
}

/// Control: one made inside the connection's `async` block, outside the listener's poll of its
/// stream, logs its rejection only: the listener counts nothing, its hook sees nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_one_made_inside_the_connection_future_is_not_counted() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let failed = Arc::new(Mutex::new(None));
    let server = futures_util::stream::iter([Builder::new().wait(Duration::from_secs(60)).build()])
        .map({
            let failed = failed.clone();
            move |peer| {
                let failed = failed.clone();
                async move {
                    let mut conn = MinReadRate::new(peer, 240, GRACE);
                    let error = conn.read(&mut [0; 8]).await.unwrap_err();
                    *failed.lock().unwrap() = Some(ReadTooSlow::from_io_error(&error).is_some());
                }
            }
        })
        .listen(1)
        .on_reject(move |e| hook_seen.lock().unwrap().push((e.reason(), e.peer())));
    let stats = server.stats();
    server.await;
    assert_eq!(*failed.lock().unwrap(), Some(true), "the read was cut");
    let s = stats.snapshot();
    assert_eq!(s.rejected.get(RejectReason::MinReadRate), 0, "{s}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_trickle_is_cut_soon_after_the_grace() {
    let mut script = Builder::new();
    for _ in 0..6 {
        script.read(b"x").wait(Duration::from_secs(1));
    }
    script.wait(Duration::from_secs(60));
    let mut conn = MinReadRate::new(script.build(), 240, GRACE);
    let start = Instant::now();
    let mut read = 0;
    let error = loop {
        match conn.read(&mut [0; 8]).await {
            Ok(n) => read += n,
            Err(e) => break e,
        }
    };
    assert!(ReadTooSlow::from_io_error(&error).is_some());
    // 5 s of grace plus 1/240 s for each byte read after the first (which came with the
    // credit still full).
    assert_eq!(read, 6);
    let expected = GRACE + Duration::from_nanos(5 * 1_000_000_000 / 240);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= expected && elapsed <= expected + Duration::from_millis(1),
        "cut after {elapsed:?}, expected {expected:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn time_spent_away_from_reading_does_not_count() {
    let mut conn = MinReadRate::new(Builder::new().read(b"a").read(b"b").build(), 240, GRACE);
    let mut buf = [0; 8];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
    time::sleep(Duration::from_secs(60)).await; // the handler works on what it read
    assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fast_start_cannot_be_banked_for_a_long_silence() {
    // 100 kB at once would buy 416 s at 240 B/s; the credit is capped at the grace.
    let big = vec![0; 100_000];
    let peer = Builder::new()
        .read(&big)
        .wait(Duration::from_secs(60))
        .build();
    let mut conn = MinReadRate::new(peer, 240, GRACE);
    let mut buf = vec![0; 100_000];
    conn.read_exact(&mut buf).await.unwrap();
    let start = Instant::now();
    assert!(ReadTooSlow::from_io_error(&conn.read(&mut buf).await.unwrap_err()).is_some());
    assert_eq!(start.elapsed(), GRACE);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_peer_above_the_rate_is_never_cut() {
    let mut script = Builder::new();
    for _ in 0..100 {
        script.read(&[0; 30]).wait(Duration::from_millis(100)); // 300 B/s
    }
    let mut conn = MinReadRate::new(script.build(), 240, GRACE);
    let mut buf = [0; 64];
    let mut read = 0;
    while read < 3000 {
        read += conn.read(&mut buf).await.unwrap();
    }
}

#[test]
#[should_panic(expected = "MinReadRate::new: the rate must be at least 1 byte a second")]
fn a_zero_rate_panics() {
    let _ = MinReadRate::new(tokio::io::empty(), 0, GRACE);
}

#[test]
#[should_panic(expected = "MinReadRate::new: the grace period must be greater than zero")]
fn a_zero_grace_panics() {
    let _ = MinReadRate::new(tokio::io::empty(), 1, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_trickling_clients_cannot_hold_their_slots_past_grace_plus_one_second() {
    let _serial = super::serial().await;
    const GRACE: Duration = Duration::from_secs(1);
    let (listener, addr) = loopback().await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let lifetimes = held.clone();
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10))
        .limit_per_peer(100)
        .map(move |socket| {
            let held = lifetimes.clone();
            // Made here, in the listener's poll of its stream: it counts into the listener.
            let peer = socket.peer();
            let mut conn = MinReadRate::new(socket, 240, GRACE);
            if let Some(peer) = peer {
                conn = conn.peer(peer);
            }
            async move {
                let start = Instant::now();
                let mut buf = [0; 256];
                let end = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                };
                held.lock().unwrap().push((
                    start.elapsed(),
                    end.map_err(|e| ReadTooSlow::from_io_error(&e).is_some()),
                ));
            }
        })
        .listen(200);
    let stats = server.stats();
    let server = tokio::spawn(server);

    let trickle = |bytes: usize, every: Duration| {
        tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            loop {
                if socket.write_all(&vec![b'x'; bytes]).await.is_err() {
                    return start.elapsed();
                }
                time::sleep(every).await;
                if start.elapsed() > GRACE + Duration::from_millis(1500) {
                    return start.elapsed(); // never cut
                }
            }
        })
    };
    let slow: Vec<_> = (0..50)
        .map(|_| trickle(1, Duration::from_secs(1)))
        .collect();
    // Control: a client at 1,000 B/s is not cut.
    let fast = trickle(100, Duration::from_millis(100));

    within(
        Duration::from_secs(3),
        "the slow clients' slots to free",
        async {
            while stats.snapshot().rejected.get(RejectReason::MinReadRate) < 50 {
                time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    let lifetimes = held.lock().unwrap().clone();
    assert_eq!(lifetimes.len(), 50, "only the slow connections ended");
    for (lifetime, end) in &lifetimes {
        assert_eq!(*end, Err(true), "not ended by the minimum rate");
        assert!(
            *lifetime >= GRACE && *lifetime <= GRACE + Duration::from_secs(1),
            "a slow client held its slot for {lifetime:?}"
        );
    }
    assert_eq!(stats.active(), 1, "only the fast client is still served");
    let fast_lived = within(Duration::from_secs(4), "the fast client", fast)
        .await
        .unwrap();
    assert!(
        fast_lived > GRACE + Duration::from_millis(1500),
        "the fast client was cut"
    );
    for client in slow {
        client.abort();
    }
    server.abort();
}

/// `min_read_rate` on the accept stream: a silent client on loopback is cut after the grace and
/// counted in the listener's stats with its address; a client that sends its request at once
/// (the control) is served.
#[tokio::test]
async fn min_read_rate_on_the_stream_cuts_a_silent_client_and_counts_it_in_stats() {
    let _serial = super::serial().await;
    let (listener, addr) = loopback().await;
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    let grace = Duration::from_millis(300);
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10))
        .min_read_rate(1000, grace)
        .map(|mut socket| async move {
            let mut request = Vec::new();
            socket.read_to_end(&mut request).await?;
            socket.write_all(b"ok").await
        })
        .listen(10)
        .on_reject(move |event| seen.lock().unwrap().push((event.reason(), event.peer())));
    let stats = server.stats();
    let server = tokio::spawn(server);

    let mut fast = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    fast.write_all(&[b'x'; 2000]).await.unwrap();
    fast.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within(
        grace,
        "the fast client's answer",
        fast.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    assert_eq!(answer, b"ok");

    let start = Instant::now();
    let mut rest = Vec::new();
    // Cut: EOF or a reset, without an answer.
    let _ = within(
        grace * 4,
        "the silent client's cut",
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(rest.is_empty(), "the silent client was answered");
    eprintln!(
        "silent client cut {:?} after the fast one was served",
        start.elapsed()
    );
    let s = stats.snapshot();
    assert_eq!(
        (
            s.rejected.get(RejectReason::MinReadRate),
            s.failed,
            s.finished
        ),
        (1, 1, 1),
        "{s}"
    );
    assert_eq!(s.rejected.total(), 1, "{s}");
    assert_eq!(
        *peers.lock().unwrap(),
        [(RejectReason::MinReadRate, Some(silent_addr))]
    );
    server.abort();
}
