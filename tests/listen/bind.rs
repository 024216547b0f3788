//! Listener features on real loopback sockets: many addresses as one changeable stream,
//! SO_REUSEPORT accept loops with merged stats, and per-socket setup.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use staunch::backoff::Exponential;
use staunch::listen::AddrState;
use staunch::SocketOptions;
use staunch::{ListenExt, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{addr, echo, eventually, round_trip, LIMIT};

#[tokio::test]
async fn bind_many_follows_the_address_set() {
    let (accepts, handle) = staunch::listen::bind_many([addr("127.0.0.1:0")]);
    let server = tokio::spawn(
        accepts
            .sleep_on_error(Duration::from_millis(10))
            .map(echo)
            .listen(100),
    );
    let first = handle.bound()[0];
    let mut held = TcpStream::connect(first).await.unwrap();
    round_trip(&mut held, b"one").await;

    // Add a second address (another loopback IP).
    handle.set([addr("127.0.0.1:0"), addr("127.0.0.2:0")]);
    assert_eq!(handle.bound().len(), 2);
    let second = *handle.bound().iter().find(|a| **a != first).unwrap();
    let mut c = TcpStream::connect(second).await.unwrap();
    round_trip(&mut c, b"two").await;

    // Remove the first: it is closed at once, but the connection accepted from it goes on.
    handle.set([addr("127.0.0.2:0")]);
    assert_eq!(handle.bound(), [second]);
    let refused = TcpStream::connect(first).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    round_trip(&mut held, b"still here").await;

    // An empty set and no handle left: the stream ends and the server drains and stops.
    handle.set([]);
    drop(handle);
    drop((held, c));
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_many_closes_a_removed_address_even_while_full() {
    let (accepts, handle) = staunch::listen::bind_many([addr("127.0.0.1:0")]);
    let port = handle.bound()[0];
    let server = tokio::spawn(
        accepts
            .sleep_on_error(Duration::from_millis(10))
            .map(echo)
            .listen(1),
    );
    let mut held = TcpStream::connect(port).await.unwrap();
    round_trip(&mut held, b"fills the only slot").await;
    handle.set([]);
    let refused = TcpStream::connect(port).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    round_trip(&mut held, b"untouched").await;
    drop(handle);
    drop(held);
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_many_retries_a_failed_bind() {
    let squatter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wanted = squatter.local_addr().unwrap();
    let policy = Exponential::builder()
        .min(Duration::from_millis(10))
        .max(Duration::from_millis(50))
        .build()
        .unwrap();
    let (accepts, handle) = staunch::listen::bind_many([]);
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let accepts = accepts.bind_backoff(policy).on_bind_error(move |a, e| {
        assert_eq!((a, e.kind()), (wanted, io::ErrorKind::AddrInUse));
        f.fetch_add(1, SeqCst);
    });
    let server = tokio::spawn(
        accepts
            .sleep_on_error(Duration::from_millis(10))
            .map(echo)
            .listen(10),
    );
    handle.set([wanted]);
    eventually("the bind failure is retried and reported", || {
        matches!(
            handle.status().get(&wanted),
            Some(AddrState::Failing { attempts, .. }) if *attempts >= 2
        ) && failures.load(SeqCst) >= 2
    })
    .await;
    assert!(
        !server.is_finished(),
        "a failed bind must not end the stream"
    );
    drop(squatter);
    eventually("bound once the port is free", || handle.bound() == [wanted]).await;
    let mut c = TcpStream::connect(wanted).await.unwrap();
    round_trip(&mut c, b"hello").await;
    server.abort();
}

#[test]
fn reuseport_accept_loops_share_a_port_and_merge_stats() {
    let listeners = staunch::listen::bind_reuseport(addr("127.0.0.1:0"), 2).unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    let mut stops = Vec::new();
    let mut all = Vec::new();
    let mut threads = Vec::new();
    for listener in listeners {
        let (stop, signal) = oneshot::channel::<()>();
        let (stats_tx, stats_rx) = std::sync::mpsc::channel::<Stats>();
        stops.push(stop);
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let server = TcpListenerStream::new(listener)
                    .sleep_on_error(Duration::from_millis(10))
                    .take_until(signal)
                    .map(echo)
                    .listen(100);
                stats_tx.send(server.stats()).unwrap();
                server.await;
            })
        }));
        all.push(stats_rx.recv().unwrap());
    }
    let per_loop = all.clone();
    let merged = Stats::merged(all);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for i in 0..100u32 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            round_trip(&mut c, &i.to_be_bytes()).await;
        }
        eventually("every connection finished", || {
            merged.snapshot().finished == 100
        })
        .await;
    });
    for stop in stops {
        let _ = stop.send(());
    }
    for t in threads {
        t.join().unwrap();
    }
    let s = merged.snapshot();
    assert_eq!(
        (s.accepted, s.connections, s.finished, s.active),
        (100, 100, 100, 0)
    );
    // The kernel spreads connections by hash: with 100, both loops get some.
    for (i, one) in per_loop.iter().enumerate() {
        assert!(one.snapshot().finished > 0, "loop {i} got no connection");
    }
}

#[test]
fn reuseport_rejects_zero() {
    let e = staunch::listen::bind_reuseport(addr("127.0.0.1:0"), 0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn setup_sockets_applies_options_and_skips_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = SocketOptions::new()
        .nodelay(true)
        .keepalive(Duration::from_secs(30));
    let mut first = true;
    let server = TcpListenerStream::new(listener)
        .setup_sockets(move |socket| {
            if std::mem::take(&mut first) {
                return Err(io::Error::other("setup refused this one"));
            }
            options.apply(socket)
        })
        .sleep_on_error(Duration::from_secs(100))
        .map(|mut socket: TcpStream| async move {
            let ok = socket.nodelay()? && socket2::SockRef::from(&socket).keepalive()?;
            socket.write_all(if ok { b"y" } else { b"n" }).await
        })
        .listen(10);
    let stats = server.stats();
    let server = tokio::spawn(server);

    // The first socket's setup fails: it is dropped (the client sees EOF) and skipped at once.
    let mut dropped = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0; 1];
    let n = timeout(LIMIT, dropped.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the socket whose setup failed must be closed");
    let mut served = TcpStream::connect(addr).await.unwrap();
    timeout(LIMIT, served.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"y", "options were not applied");
    let s = stats.snapshot();
    assert_eq!((s.connection_errors, s.backoffs, s.accepted), (1, 0, 1));
    server.abort();
}

#[tokio::test]
async fn the_chain_serves_ipv6_loopback_and_bind_many_mixes_families() {
    // Skip (with a note) where the machine has no IPv6 loopback.
    let Ok(v6) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no ::1 on this machine; skipped");
        return;
    };
    let v6_addr = v6.local_addr().unwrap();
    let server = tokio::spawn(
        TcpListenerStream::new(v6)
            .sleep_on_error(Duration::from_millis(10))
            .map(echo)
            .listen(10),
    );
    let mut c = TcpStream::connect(v6_addr).await.unwrap();
    round_trip(&mut c, b"over ::1").await;
    server.abort();

    // One stream over both families on the same port number (IPV6_V6ONLY keeps them apart).
    let (accepts, handle) = staunch::listen::bind_many([addr("127.0.0.1:0")]);
    let port = handle.bound()[0].port();
    handle.set([
        addr("127.0.0.1:0"),
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
    ]);
    assert_eq!(handle.bound().len(), 2, "{:?}", handle.status());
    let server = tokio::spawn(
        accepts
            .sleep_on_error(Duration::from_millis(10))
            .map(echo)
            .listen(10),
    );
    let mut a = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut b = TcpStream::connect(("::1", port)).await.unwrap();
    round_trip(&mut a, b"v4").await;
    round_trip(&mut b, b"v6").await;
    server.abort();
}

#[tokio::test]
async fn bind_many_closes_its_port_at_shutdown_while_a_handle_lives() {
    let (accepts, handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
    let addr = handle.bound()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = accepts
        .sleep_on_error(Duration::from_millis(10))
        .map(|_s| async {})
        .listen(4)
        .with_graceful_shutdown(rx)
        .grace(Duration::from_secs(1));
    let server = tokio::spawn(server);
    tx.send(()).unwrap();
    server.await.unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "port still open after shutdown");
    assert!(handle.bound().is_empty(), "status: {:?}", handle.status());
}

#[tokio::test]
async fn on_bind_error_sees_the_first_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let (accepts, handle) = staunch::listen::bind_many([addr]);
    let _accepts = accepts.on_bind_error(move |_, _| {
        counter.fetch_add(1, SeqCst);
    });
    let attempts = match handle.status()[&addr] {
        staunch::listen::AddrState::Failing { attempts, .. } => attempts,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(seen.load(SeqCst), attempts as usize);
}

/// Connect `clients` at once to a listener nobody accepts from; how many took over `slow`.
async fn slow_connects(listener: &TcpListener, clients: usize, slow: Duration) -> usize {
    let addr = listener.local_addr().unwrap();
    let connects = (0..clients).map(|_| async move {
        let connected = timeout(slow, TcpStream::connect(addr)).await;
        connected.map(|c| c.unwrap())
    });
    let results = futures_util::future::join_all(connects).await;
    results.iter().filter(|r| r.is_err()).count()
}

#[tokio::test]
async fn bind_has_a_backlog_that_holds_a_burst_against_a_stalled_server() {
    const CLIENTS: usize = 250;
    const SLOW: Duration = Duration::from_millis(500);
    let listener = staunch::listen::bind(addr("127.0.0.1:0")).unwrap();
    assert_eq!(slow_connects(&listener, CLIENTS, SLOW).await, 0);

    // Control: tokio's own bind (backlog 128) leaves some of the burst waiting for SYN
    // retransmits (on Linux; other kernels may queue differently).
    if cfg!(target_os = "linux") {
        let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(slow_connects(&control, CLIENTS, SLOW).await > 0);
    }
}

#[tokio::test]
async fn bind_with_backlog_sets_a_small_backlog_too() {
    let listener = staunch::listen::bind_with_backlog(addr("127.0.0.1:0"), 4).unwrap();
    assert!(slow_connects(&listener, 50, Duration::from_millis(300)).await > 0);
}

#[tokio::test]
async fn bind_many_retries_with_any_backoff_policy() {
    /// 10 ms delays, counting how many were asked for.
    #[derive(Clone)]
    struct Counting(Arc<AtomicUsize>);
    impl Iterator for Counting {
        type Item = Duration;
        fn next(&mut self) -> Option<Duration> {
            self.0.fetch_add(1, SeqCst);
            Some(Duration::from_millis(10))
        }
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let delays = Arc::new(AtomicUsize::new(0));
    let (accepts, handle) = staunch::listen::bind_many([]);
    let accepts = accepts.bind_backoff(Counting(delays.clone()));
    handle.set([busy]);
    let server = tokio::spawn(
        accepts
            .sleep_on_error(Duration::from_millis(10))
            .map(|_socket| async {})
            .listen(1),
    );
    eventually("five retries", || delays.load(SeqCst) >= 5).await;
    let attempts = match &handle.status()[&busy] {
        AddrState::Failing { attempts, .. } => *attempts as usize,
        other => panic!("{other:?}"),
    };
    assert!(attempts >= 5, "{attempts}");
    server.abort();
}

#[tokio::test]
async fn a_port_in_use_is_named_in_the_error() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    let error = staunch::listen::bind(taken).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(
        error.to_string().contains(&taken.to_string()),
        "the address is not in the message: {error}"
    );
}
