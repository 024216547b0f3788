//! The `Conn` handle connections of `serve`/`spawn_serve` hear at shutdown, the grace-accept
//! window, spread closes, and `take_until` on a full listener. Paused time except where a real
//! socket is involved.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use staunch::{listen::Conn, ListenExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{self, sleep, Instant};
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{eventually, wait_until_refused};

/// A connection that is idle until its handle fires (or an hour passes).
async fn idle(conn: Conn) {
    tokio::select! {
        () = conn.draining() => {}
        () = sleep(Duration::from_secs(3600)) => {}
    }
}

/// A connection that does not listen to its handle: it runs its hour.
async fn deaf(_conn: Conn) {
    sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_connections_end_at_the_signal_not_at_the_deadline() {
    for (spawn, listening) in [(false, true), (true, true), (true, false)] {
        let accepts = stream::iter(0..5).chain(stream::pending());
        let signal = sleep(Duration::from_secs(1));
        let grace = Duration::from_secs(30);
        let start = Instant::now();
        let report = match (spawn, listening) {
            (false, _) => {
                accepts
                    .serve(10, |_, conn| idle(conn))
                    .with_graceful_shutdown(signal)
                    .grace(grace)
                    .await
            }
            (true, true) => {
                accepts
                    .spawn_serve(10, |_, conn| idle(conn))
                    .with_graceful_shutdown(signal)
                    .grace(grace)
                    .await
            }
            // Control: connections that do not listen to their handle are cut at the deadline.
            (true, false) => {
                accepts
                    .spawn_serve(10, |_, conn| deaf(conn))
                    .with_graceful_shutdown(signal)
                    .grace(grace)
                    .await
            }
        };
        if listening {
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

/// What a connection saw of its handle: before the signal, once `draining()` completed, and,
/// for one accepted after the signal (in a grace-accept window), at birth.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Seen {
    /// `(is_draining, is_shutting_down)` when the connection started.
    at_start: (bool, bool),
    /// The same once `draining()` completed, and how long after the start of the test.
    at_drain: (bool, bool),
    drained_at: Duration,
}

#[tokio::test(start_paused = true)]
async fn a_conn_can_be_checked_and_awaited() {
    for spawn in [false, true] {
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let seen = seen.clone();
            move |_: u64, conn: Conn| {
                let seen = seen.clone();
                async move {
                    let at_start = (conn.is_draining(), conn.is_shutting_down());
                    conn.draining().await;
                    conn.draining().await; // again: at once
                    let at_drain = (conn.is_draining(), conn.is_shutting_down());
                    seen.lock().unwrap().push(Seen {
                        at_start,
                        at_drain,
                        drained_at: start.elapsed(),
                    });
                }
            }
        };
        // One connection at 0 s, one at 2 s, after the signal at 1 s, inside the grace-accept
        // window.
        let accepts = stream::iter([0u64, 2])
            .then(move |at| async move {
                time::sleep_until(start + Duration::from_secs(at)).await;
                at
            })
            .chain(stream::pending());
        let signal = sleep(Duration::from_secs(1));
        let report = if spawn {
            accepts
                .spawn_serve(10, handle)
                .with_graceful_shutdown(signal)
                .grace(Duration::from_secs(30))
                .grace_accept(Duration::from_secs(5))
                .await
        } else {
            accepts
                .serve(10, handle)
                .with_graceful_shutdown(signal)
                .grace(Duration::from_secs(30))
                .grace_accept(Duration::from_secs(5))
                .await
        };
        assert_eq!(
            (report.ended, report.cancelled, report.grace_accepted),
            (2, 0, 1),
            "spawn={spawn}: {report:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                // Not draining until the signal, then both.
                Seen {
                    at_start: (false, false),
                    at_drain: (true, true),
                    drained_at: Duration::from_secs(1),
                },
                // Made after the signal: draining from birth.
                Seen {
                    at_start: (true, true),
                    at_drain: (true, true),
                    drained_at: Duration::from_secs(2),
                },
            ],
            "spawn={spawn}"
        );
    }
}

/// With a close spread, `is_shutting_down` turns true for every connection at the signal, and
/// `is_draining` only at its own moment in the window.
#[tokio::test(start_paused = true)]
async fn with_a_close_spread_shutting_down_comes_first_and_draining_at_its_moment() {
    const N: usize = 20;
    let window = Duration::from_secs(10);
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let report = stream::iter(0..N)
        .chain(stream::pending())
        .serve(N, {
            let seen = seen.clone();
            move |_, conn| {
                let seen = seen.clone();
                async move {
                    // Look just after the signal, which comes at 1 s.
                    time::sleep_until(start + Duration::from_millis(1001)).await;
                    let noticed = (start.elapsed(), conn.is_shutting_down(), conn.is_draining());
                    conn.draining().await;
                    seen.lock().unwrap().push((noticed, start.elapsed()));
                }
            }
        })
        .with_graceful_shutdown(sleep(Duration::from_secs(1)))
        .grace(Duration::from_secs(60))
        .close_spread(window)
        .await;
    assert_eq!(
        (report.ended, report.cancelled),
        (N as u64, 0),
        "{report:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), N);
    let signal = Duration::from_secs(1);
    let mut draining_at_once = 0;
    for ((looked_at, shutting_down, draining), drained_at) in seen {
        assert_eq!(looked_at, Duration::from_millis(1001));
        assert!(shutting_down, "the shutdown had started");
        draining_at_once += usize::from(draining);
        assert!(
            drained_at >= signal && drained_at < signal + window,
            "{drained_at:?}"
        );
    }
    // 1 ms into a 10 s window, at most one of 20 has reached its moment.
    assert!(
        draining_at_once <= 1,
        "{draining_at_once} of {N} were draining 1 ms after the signal: no spread"
    );
}

#[tokio::test(start_paused = true)]
async fn close_spread_fires_each_connection_at_its_own_moment_within_the_window() {
    const N: usize = 50;
    let window = Duration::from_secs(10);
    let ends = Arc::new(Mutex::new(Vec::new()));
    let accepts = stream::iter(0..N).chain(stream::pending());
    let server = accepts
        .serve(N, {
            let ends = ends.clone();
            move |_, conn| {
                let ends = ends.clone();
                async move {
                    conn.draining().await;
                    ends.lock().unwrap().push(Instant::now());
                }
            }
        })
        .with_graceful_shutdown(sleep(Duration::from_secs(1)))
        .grace(Duration::from_secs(60))
        .close_spread(window);
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

/// A line-echo connection: serves lines until the client closes or, once `conn` fires,
/// finishes the line in progress and closes.
async fn line_echo(socket: TcpStream, conn: Conn) -> io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            biased;
            line = lines.next_line() => line?,
            () = conn.draining() => return Ok(()), // idle: close now
        };
        let Some(line) = line else { return Ok(()) };
        write.write_all(format!("{line}\n").as_bytes()).await?;
        if conn.is_draining() {
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
    let server = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .spawn_serve(10, line_echo)
        .with_graceful_shutdown(signal)
        .grace(Duration::from_secs(10))
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
        .serve(2, line_echo);
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
