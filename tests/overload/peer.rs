//! `limit_per_peer`: slots held by permits, released on drop, and a flood from one address that
//! cannot keep another address out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::overload::{OverloadExt, RejectReason};
use staunch::ListenExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;

use super::{connect_from, loopback, within};

fn from(peer: &str) -> ((), SocketAddr) {
    ((), peer.parse().unwrap())
}

/// The per-peer limit inside a listener, stepped by hand: the listener hands each permit it
/// takes to the test (through a channel), so the test holds the slots; its stats count the
/// rejections and its hook sees each with its peer.
#[tokio::test(flavor = "current_thread")]
async fn excess_is_dropped_counted_and_reported_and_slots_free_on_drop() {
    let (hooked, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (out, mut permits) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .limit_per_peer(2)
        .map(move |permit| {
            out.send(permit).unwrap();
            async {}
        })
        .listen(10)
        .on_reject(move |event| hooked.send((event.reason(), event.peer())).unwrap());
    let stats = server.stats();
    let mut server = std::pin::pin!(server);
    // Run the listener until `step` is done; it must not end meanwhile.
    macro_rules! driving {
        ($step:expr) => {
            within(Duration::from_secs(5), stringify!($step), async {
                tokio::select! {
                    biased;
                    out = $step => out,
                    () = &mut server => panic!("the listener ended"),
                }
            })
            .await
        };
    }
    // The peers holding slots, read through the listener's stream (`map` over the limit).
    macro_rules! peers {
        () => {
            server
                .as_ref()
                .get_ref()
                .get_ref()
                .expect("still accepting")
                .get_ref()
                .peers()
        };
    }
    let rejected = |reason| stats.snapshot().rejected.get(reason);

    for peer in ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:3", "10.0.0.2:1"] {
        tx.send(from(peer)).unwrap();
    }
    let a = driving!(permits.recv()).unwrap();
    let b = driving!(permits.recv()).unwrap();
    let c = driving!(permits.recv()).unwrap();
    assert_eq!(
        [a.peer(), b.peer(), c.peer()].map(|p| p.unwrap().to_string()),
        ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1"]
    );
    assert_eq!(
        seen.try_recv().unwrap(),
        (RejectReason::PeerLimit, Some("10.0.0.1:3".parse().unwrap()))
    );
    assert!(seen.try_recv().is_err(), "one rejection only");
    assert_eq!(rejected(RejectReason::PeerLimit), 1);
    assert_eq!(stats.snapshot().rejected.total(), 1);
    assert_eq!(peers!(), 2);

    // A freed slot is usable again; a permit split into parts still holds its slot.
    drop(a);
    let (_io, slot) = b.into_parts();
    tx.send(from("10.0.0.1:4")).unwrap();
    tx.send(from("10.0.0.1:5")).unwrap();
    tx.send(from("10.0.0.1:6")).unwrap();
    let d = driving!(permits.recv()).unwrap();
    assert_eq!(d.peer().unwrap().to_string(), "10.0.0.1:4");
    for port in [5, 6] {
        let event = driving!(seen.recv()).unwrap();
        assert_eq!(
            event,
            (
                RejectReason::PeerLimit,
                Some(format!("10.0.0.1:{port}").parse().unwrap())
            )
        );
    }
    assert_eq!(rejected(RejectReason::PeerLimit), 3);
    assert_eq!(stats.snapshot().connections, 4);

    drop((c, d, slot));
    assert_eq!(peers!(), 0, "every slot released");
    drop(tx);
    within(Duration::from_secs(5), "the listener to end", server).await;
    assert!(permits.recv().await.is_none());
    assert_eq!(rejected(RejectReason::PeerLimit), 3);
    assert_eq!(stats.snapshot().rejected.total(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn ipv6_peers_can_share_a_limit_per_prefix() {
    let peers = [
        "[2001:db8:0:1::1]:1",
        "[2001:db8:0:1::2]:1",
        "[2001:db8:0:2::1]:1",
        "[::ffff:10.0.0.1]:1",
        "10.0.0.1:2",
    ];
    let per_address: Vec<_> = stream::iter(peers.map(from))
        .limit_per_peer(1)
        .collect()
        .await;
    assert_eq!(
        per_address.len(),
        4,
        "a mapped IPv4 address is that address"
    );
    let per_64: Vec<_> = stream::iter(peers.map(from))
        .limit_per_peer(1)
        .ipv6_prefix(64)
        .collect()
        .await;
    let kept: Vec<_> = per_64
        .iter()
        .map(|p| p.peer().unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        [
            "[2001:db8:0:1::1]:1",
            "[2001:db8:0:2::1]:1",
            "[::ffff:10.0.0.1]:1"
        ]
    );
}

#[test]
#[should_panic(expected = "limit_per_peer: the limit must be at least 1")]
fn a_zero_limit_panics() {
    let _ = stream::empty::<((), SocketAddr)>().limit_per_peer(0);
}

#[test]
#[should_panic(expected = "ipv6_prefix: 129 bits is more than an address")]
fn a_prefix_over_128_panics() {
    let _ = stream::empty::<((), SocketAddr)>()
        .limit_per_peer(1)
        .ipv6_prefix(129);
}

/// A server on 127.0.0.1, on a thread and runtime of its own, whose connections answer one line
/// with "ok" and then hold until the client closes; at most 10 at once, and at most 2 per peer
/// when `per_peer` is set. It stops when the sender is dropped.
fn flooded(per_peer: bool) -> (SocketAddr, staunch::Stats, oneshot::Sender<()>) {
    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(socket: S) {
        let mut socket = BufReader::new(socket);
        let mut line = String::new();
        if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if socket.get_mut().write_all(b"ok\n").await.is_err() {
            return;
        }
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (listener, addr) = loopback().await;
            let accepts = TcpListenerStream::new(listener)
                .sleep_on_error(Duration::from_millis(10))
                .take_until(stopped);
            if per_peer {
                let server = accepts.limit_per_peer(2).map(serve).listen(10);
                ready.send((addr, server.stats())).unwrap();
                server.await;
            } else {
                let server = accepts.map(serve).listen(10);
                ready.send((addr, server.stats())).unwrap();
                server.await;
            }
        });
    });
    let (addr, stats) = started.recv().unwrap();
    (addr, stats, stop)
}

/// 50 attackers on 127.0.0.1, on a thread and runtime of their own, each reconnecting the
/// moment its connection is cut (or fails), until `stop`.
fn attack(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let attacker = move |stop: Arc<AtomicBool>| async move {
        while !stop.load(SeqCst) {
            let Ok(Ok(mut socket)) =
                tokio::time::timeout(Duration::from_secs(1), connect_from([127, 0, 0, 1], addr))
                    .await
            else {
                continue;
            };
            let _ = socket.write_all(b"attack\n").await;
            // Served: hold the slot until told to stop. Cut: reconnect at once.
            let mut buf = [0; 64];
            loop {
                tokio::select! {
                    read = socket.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {
                        if stop.load(SeqCst) {
                            return;
                        }
                    }
                }
            }
        }
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let attackers: Vec<_> = (0..50)
                .map(|_| tokio::spawn(attacker(stop.clone())))
                .collect();
            for attacker in attackers {
                attacker.await.unwrap();
            }
        });
    })
}

/// How long a client on 127.0.0.`host` takes to be served (connect, send a line, read "ok"), or
/// `None` if not within `limit`.
async fn probe(host: u8, addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let served = async {
        let mut socket = connect_from([127, 0, 0, host], addr).await.unwrap();
        socket.write_all(b"hello\n").await.unwrap();
        let mut reply = [0; 3];
        socket.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ok\n");
        start.elapsed()
    };
    tokio::time::timeout(limit, served).await.ok()
}

/// Wait for `done` to hold, polling every 5 ms, for at most `limit`.
async fn until(limit: Duration, what: &str, done: impl Fn() -> bool) {
    within(limit, what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_from_one_address_cannot_keep_another_out() {
    let _serial = super::serial().await;
    let (addr, stats, server) = flooded(true);
    let cut = || stats.snapshot().rejected.get(RejectReason::PeerLimit);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = attack(addr, stop.clone());
    let start = Instant::now();
    until(Duration::from_secs(10), "the flood to start", || {
        cut() >= 200
    })
    .await;
    eprintln!("200 cuts in {:?}", start.elapsed());
    let mut waits = Vec::new();
    // Each probe from an address of its own: the server may not yet have seen the previous
    // one close, and 2 per peer applies to them too.
    for host in 2..12 {
        let wait = probe(host, addr, Duration::from_secs(2)).await;
        waits.push(wait.expect("the client on 127.0.0.x was not served within 2 s"));
        tokio::time::sleep(Duration::from_millis(20)).await; // spread the probes over the flood
    }
    stop.store(true, SeqCst);
    tokio::task::spawn_blocking(move || attackers.join().unwrap())
        .await
        .unwrap();
    let cut_during = cut();
    let worst = waits.iter().max().unwrap();
    eprintln!(
        "served in {waits:?} during a flood of {cut_during} cuts in {:?}",
        start.elapsed()
    );
    assert!(
        *worst <= Duration::from_millis(50),
        "served in {waits:?} during the flood; the worst is over 50 ms"
    );

    // The attackers' slots were released when their connections ended: 127.0.0.1 gets in again.
    until(Duration::from_secs(5), "slots to be released", || {
        stats.active() == 0
    })
    .await;
    let mut again = Vec::new();
    for _ in 0..2 {
        let mut socket = connect_from([127, 0, 0, 1], addr).await.unwrap();
        socket.write_all(b"back\n").await.unwrap();
        let mut reply = [0; 3];
        within(
            Duration::from_secs(2),
            "127.0.0.1 to be served again",
            async { socket.read_exact(&mut reply).await.unwrap() },
        )
        .await;
        again.push(socket);
    }
    assert_eq!(cut(), cut_during);
    drop(server);
}

#[tokio::test(flavor = "current_thread")]
async fn control_without_the_per_peer_limit_the_flood_keeps_the_client_out() {
    let _serial = super::serial().await;
    let (addr, stats, server) = flooded(false);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = attack(addr, stop.clone());
    until(
        Duration::from_secs(10),
        "the attackers to fill the slots",
        || stats.active() == 10,
    )
    .await;
    let wait = probe(2, addr, Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    drop(server);
    tokio::task::spawn_blocking(move || attackers.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        wait, None,
        "the client was served although every slot was held"
    );
}
