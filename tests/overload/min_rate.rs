//! `MinReadRate`: the rule with scripted I/O and paused time, and 50 trickling clients on real
//! sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use staunch::overload::{MinReadRate, OverloadExt, ReadTooSlow, RejectReason, Rejections};
use staunch::ListenExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{self, Instant};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_test::io::Builder;

use super::{loopback, within};

const GRACE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_peer_is_cut_after_the_grace_and_counted() {
    let rejections = Rejections::new();
    let peer = Builder::new().wait(Duration::from_secs(60)).build();
    let mut conn = MinReadRate::new(peer, 240, GRACE)
        .peer("10.0.0.1:7".parse().unwrap())
        .rejections(rejections.clone());
    let start = Instant::now();
    let error = conn.read(&mut [0; 8]).await.unwrap_err();
    assert_eq!(start.elapsed(), GRACE);
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    let inner = error
        .get_ref()
        .unwrap()
        .downcast_ref::<ReadTooSlow>()
        .unwrap();
    assert_eq!((inner.bytes_per_sec(), inner.grace()), (240, GRACE));
    // Later reads fail the same way, at once, and count once.
    assert!(ReadTooSlow::is(&conn.read(&mut [0; 8]).await.unwrap_err()));
    assert_eq!(rejections.count(RejectReason::MinReadRate), 1);
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
    assert!(ReadTooSlow::is(&error));
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
    assert!(ReadTooSlow::is(&conn.read(&mut buf).await.unwrap_err()));
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
    let rejections = Rejections::new();
    let held = Arc::new(Mutex::new(Vec::new()));
    let (counted, lifetimes) = (rejections.clone(), held.clone());
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(10))
        .limit_per_peer(100)
        .map(move |socket| {
            let (rejections, held) = (counted.clone(), lifetimes.clone());
            async move {
                let start = Instant::now();
                let peer = socket.peer().unwrap();
                let mut conn = MinReadRate::new(socket, 240, GRACE)
                    .peer(peer)
                    .rejections(rejections);
                let mut buf = [0; 256];
                let end = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                };
                held.lock()
                    .unwrap()
                    .push((start.elapsed(), end.map_err(|e| ReadTooSlow::is(&e))));
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
            while rejections.count(RejectReason::MinReadRate) < 50 {
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
