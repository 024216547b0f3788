//! The drain signal connections hear at shutdown, the grace-accept window, spread closes, and
//! `take_until` on a full listener. Paused time except where a real socket is involved.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::{listen::Drain, ListenExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{self, sleep, Instant};
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{eventually, wait_until_refused};

/// A connection that is idle until its drain fires (or an hour passes).
async fn idle(drain: Drain) {
    tokio::select! {
        () = drain.draining() => {}
        () = sleep(Duration::from_secs(3600)) => {}
    }
}

#[tokio::test(start_paused = true)]
async fn idle_connections_end_at_the_signal_not_at_the_deadline() {
    for (spawn, with_drain) in [(false, true), (true, true), (true, false)] {
        let drain = Drain::new();
        let accepts = stream::iter(0..5).chain(stream::pending());
        let handle = {
            let drain = drain.clone();
            move |_| idle(drain.clone())
        };
        let signal = sleep(Duration::from_secs(1));
        let grace = Duration::from_secs(30);
        let start = Instant::now();
        let report = if spawn {
            let server = accepts
                .map(handle)
                .spawn_listen(10)
                .with_graceful_shutdown(signal, grace);
            if with_drain {
                server.with_drain(drain).await
            } else {
                server.await // control: nobody starts the drain
            }
        } else {
            let server = accepts
                .map(handle)
                .listen(10)
                .with_graceful_shutdown(signal, grace);
            server.with_drain(drain).await
        };
        if with_drain {
            assert_eq!(start.elapsed(), Duration::from_secs(1), "spawn={spawn}");
            assert_eq!((report.ended, report.cancelled), (5, 0), "{report:?}");
        } else {
            assert_eq!(start.elapsed(), Duration::from_secs(31));
            assert_eq!((report.ended, report.cancelled), (0, 5), "{report:?}");
        }
        assert_eq!(report.open_at_refuse, 5, "{report:?}");
        assert_eq!(report.grace_accepted, 0, "{report:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_drain_can_be_checked_and_started_by_hand() {
    let drain = Drain::new();
    let clone = drain.clone();
    assert!(!clone.is_draining() && !clone.is_started());
    let waiter = tokio::spawn(async move { clone.draining().await });
    sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished());
    drain.start();
    drain.start(); // again: nothing changes
    assert!(drain.is_draining());
    time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("draining() completes at the start")
        .unwrap();
    // A clone made after the start is draining from birth.
    assert!(drain.clone().is_draining());
}

#[tokio::test(start_paused = true)]
async fn close_spread_fires_each_connection_at_its_own_moment_within_the_window() {
    const N: usize = 50;
    let window = Duration::from_secs(10);
    let drain = Drain::with_close_spread(window);
    let ends = Arc::new(Mutex::new(Vec::new()));
    let accepts = stream::iter(0..N).chain(stream::pending());
    let server = accepts
        .map({
            let drain = drain.clone();
            let ends = ends.clone();
            move |_| {
                let drain = drain.clone();
                let ends = ends.clone();
                async move {
                    drain.draining().await;
                    ends.lock().unwrap().push(Instant::now());
                }
            }
        })
        .listen(N)
        .with_graceful_shutdown(sleep(Duration::from_secs(1)), Duration::from_secs(60))
        .with_drain(drain);
    let start = Instant::now();
    let report = server.await;
    assert_eq!(
        (report.ended, report.cancelled),
        (N as u64, 0),
        "{report:?}"
    );
    let signal = start + Duration::from_secs(1);
    let mut offsets: Vec<Duration> = ends.lock().unwrap().iter().map(|t| *t - signal).collect();
    offsets.sort();
    assert!(offsets.iter().all(|o| *o < window), "{offsets:?}");
    // Evenly spread: no two connections at the same moment, no gap wider than 3 slots.
    let slot = window / N as u32;
    for pair in offsets.windows(2) {
        assert!(pair[1] > pair[0], "two closes at once: {offsets:?}");
        assert!(pair[1] - pair[0] < slot * 3, "gap too wide: {offsets:?}");
    }
    assert!(offsets[0] < slot * 3 && window - offsets[N - 1] < slot * 3);
}

/// A line-echo connection: serves lines until the client closes or, once `drain` fires,
/// finishes the line in progress and closes.
async fn line_echo(socket: TcpStream, drain: Drain) -> io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            biased;
            line = lines.next_line() => line?,
            () = drain.draining() => return Ok(()), // idle: close now
        };
        let Some(line) = line else { return Ok(()) };
        write.write_all(format!("{line}\n").as_bytes()).await?;
        if drain.is_draining() {
            return Ok(()); // told to close after the request in progress
        }
    }
}

async fn ask(lines: &mut (impl AsyncBufReadExt + Unpin), write: &mut (impl AsyncWriteExt + Unpin)) {
    write.write_all(b"hello\n").await.unwrap();
    let mut reply = String::new();
    lines.read_line(&mut reply).await.unwrap();
    assert_eq!(reply, "hello\n");
}

#[tokio::test]
async fn grace_accept_serves_new_clients_tells_them_to_close_then_refuses() {
    const WINDOW: Duration = Duration::from_millis(300);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = oneshot::channel::<()>();
    let drain = Drain::new();
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .map({
            let drain = drain.clone();
            move |s| line_echo(s, drain.clone())
        })
        .spawn_listen(10)
        .with_graceful_shutdown(signal, Duration::from_secs(10))
        .with_drain(drain)
        .grace_accept(WINDOW);
    let server = tokio::spawn(server);

    // An idle keep-alive client: closed at the signal.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = idle.split();
    ask(&mut BufReader::new(r), &mut w).await;

    let signalled = Instant::now();
    stop.send(()).unwrap();
    let mut buf = [0; 16];
    let read = tokio::io::AsyncReadExt::read(&mut idle, &mut buf);
    let n = time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the idle connection closes at the signal")
        .unwrap();
    assert_eq!(n, 0);

    // During the grace-accept window a new client is served, then told to close.
    let mut late = TcpStream::connect(addr).await.unwrap();
    assert!(signalled.elapsed() < WINDOW, "too slow to test the window");
    let (r, mut w) = late.split();
    let mut r = BufReader::new(r);
    ask(&mut r, &mut w).await;
    let mut rest = String::new();
    let n = time::timeout(Duration::from_secs(5), r.read_line(&mut rest))
        .await
        .expect("the late client is closed after its request")
        .unwrap();
    assert_eq!(n, 0);

    // Then the port closes, at the end of the window.
    wait_until_refused(addr).await;
    let refused_after = signalled.elapsed();
    assert!(refused_after >= WINDOW, "refused after {refused_after:?}");
    assert!(
        refused_after < WINDOW * 4,
        "refused after {refused_after:?}"
    );
    let report = time::timeout(Duration::from_secs(5), server)
        .await
        .expect("every connection closed: done")
        .unwrap();
    assert!(report.grace_accepted >= 1, "{report:?}"); // and probes of `wait_until_refused`
    assert_eq!(report.cancelled, 0, "{report:?}");
    assert_eq!(report.stats.failed, 0, "{report:?}");
}

/// A client that connects, is echoed one line, and holds its connection until told.
async fn held_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = c.split();
    ask(&mut BufReader::new(r), &mut w).await;
    c
}

#[tokio::test]
async fn take_until_closes_the_port_even_when_the_listener_is_full() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = oneshot::channel::<()>();
    let server = TcpListenerStream::new(listener)
        .take_until(signal)
        .sleep_on_error(Duration::from_millis(100))
        .map(|s| line_echo(s, Drain::new()))
        .listen(2);
    let stats = server.stats();
    let server = tokio::spawn(server);

    // Full: two running, a third queued (accepted and held, or in the backlog).
    let first = held_client(addr).await;
    let second = held_client(addr).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"queued\n").await.unwrap();
    // A full listener still polls its stream: it accepts the third and holds it.
    eventually("the third client is accepted", || {
        stats.snapshot().accepted == 3
    })
    .await;
    assert_eq!(stats.snapshot().active, 2);

    let signalled = Instant::now();
    stop.send(()).unwrap();
    wait_until_refused(addr).await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_millis(50),
        "new connects refused after {took:?}"
    );

    // The running connections drain, and so does the one queued before the signal.
    drop((first, second));
    let mut reply = String::new();
    let mut third_reader = BufReader::new(&mut third);
    let read = third_reader.read_line(&mut reply);
    time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the queued client is served once a slot frees")
        .unwrap();
    assert_eq!(reply, "queued\n");
    drop(third);
    time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the listener ends once its connections have")
        .unwrap();
    let s = stats.snapshot();
    assert_eq!((s.active, s.failed, s.cancelled), (0, 0, 0), "{s:?}");
}
