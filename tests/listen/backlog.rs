//! Clients queued in the kernel's backlog when a graceful shutdown closes the port: taken and
//! served (`take_backlog`), not reset. Real sockets; Linux, where the accept queue's length is
//! read from `/proc/net/tcp`.
#![cfg(target_os = "linux")]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use staunch::listen::{Conn, ShutdownReport};
use staunch::ListenExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{eventually, LIMIT};

const CLIENTS: usize = 10;
const SLOTS: usize = 2;

/// What a client saw after writing its request.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Answered,
    /// A clean close with no answer.
    Eof,
    Reset,
}

/// The length of the accept queue of the socket listening on `addr` (for a listening socket,
/// `/proc/net/tcp` shows it as `rx_queue`).
fn accept_queue(addr: SocketAddr) -> usize {
    let local = format!("0100007F:{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1] == local && f[3] == "0A")
        .map(|f| usize::from_str_radix(f[4].split(':').nth(1).unwrap(), 16).unwrap())
        .expect("the listening socket in /proc/net/tcp")
}

/// A server with `SLOTS` slots whose connections read a request, then stall until their `Conn`
/// fires (at the shutdown), then answer; `CLIENTS` clients, so that most wait in the kernel's
/// backlog when the shutdown starts. Returns what each client saw, how many were queued at the signal, and the
/// report.
async fn shutdown_with_a_full_backlog(
    clients: usize,
    take: Option<usize>,
    spawn: bool,
) -> (Vec<Seen>, usize, ShutdownReport) {
    let n = clients;
    let listener = staunch::listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = |mut socket: TcpStream, conn: Conn| async move {
        let mut request = [0; 6];
        socket.read_exact(&mut request).await?;
        conn.draining().await;
        socket.write_all(b"bye\n").await?;
        io::Result::Ok(())
    };
    let (stop, signal) = oneshot::channel::<()>();
    let accepts = TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(10));
    let (server, stats) = if spawn {
        let server = accepts.spawn_serve(SLOTS, handle);
        let stats = server.stats();
        let server = server.with_graceful_shutdown(signal).grace(LIMIT);
        let server = match take {
            Some(n) => server.take_backlog(n),
            None => server,
        };
        (tokio::spawn(server), stats)
    } else {
        let server = accepts.serve(SLOTS, handle);
        let stats = server.stats();
        let server = server.with_graceful_shutdown(signal).grace(LIMIT);
        let server = match take {
            Some(n) => server.take_backlog(n),
            None => server,
        };
        (tokio::spawn(server), stats)
    };

    let mut clients = Vec::new();
    for _ in 0..n {
        let mut socket = timeout(LIMIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        socket.write_all(b"hello\n").await.unwrap();
        clients.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            match timeout(LIMIT, socket.read_to_end(&mut answer)).await {
                Ok(Ok(_)) if answer == b"bye\n" => Seen::Answered,
                Ok(Ok(_)) if answer.is_empty() => Seen::Eof,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Seen::Reset,
                other => panic!("unexpected: {other:?} {answer:?}"),
            }
        }));
    }
    // Every handshake has completed: each client is either taken by the listener (in a slot,
    // or held for one) or queued in the kernel.
    eventually("every client accepted or queued", || {
        stats.snapshot().accepted as usize + accept_queue(addr) == n
    })
    .await;
    let queued = accept_queue(addr);
    stop.send(()).unwrap();
    let report = timeout(LIMIT, server).await.unwrap().unwrap();
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.unwrap());
    }
    (seen, queued, report)
}

fn count(seen: &[Seen], what: Seen) -> usize {
    seen.iter().filter(|s| **s == what).count()
}

#[tokio::test]
async fn clients_queued_at_shutdown_are_served_not_reset() {
    for spawn in [false, true] {
        let (seen, queued, report) = shutdown_with_a_full_backlog(CLIENTS, None, spawn).await;
        assert!(
            queued >= CLIENTS - SLOTS - 4,
            "queued {queued}, spawn {spawn}"
        );
        assert_eq!(count(&seen, Seen::Answered), CLIENTS, "{seen:?} {report}");
        assert_eq!(report.backlog_taken, queued as u64, "{report}");
        assert_eq!((report.ended, report.cancelled), (CLIENTS as u64, 0));
        assert_eq!(report.stats.connections, CLIENTS as u64, "{report}");
    }
}

/// More clients queued than tokio's cooperative budget lets a task accept in one go (128).
#[tokio::test]
async fn a_backlog_longer_than_the_runtime_budget_is_taken_whole() {
    const MANY: usize = 300;
    let (seen, queued, report) = shutdown_with_a_full_backlog(MANY, None, true).await;
    assert!(queued >= MANY - SLOTS - 4, "queued {queued}");
    assert_eq!(report.backlog_taken, queued as u64, "{report}");
    assert_eq!(count(&seen, Seen::Answered), MANY, "{report}");
}

/// The control: taking none, the close resets every client still queued.
#[tokio::test]
async fn without_taking_the_backlog_queued_clients_are_reset() {
    let (seen, queued, report) = shutdown_with_a_full_backlog(CLIENTS, Some(0), false).await;
    assert!(queued >= CLIENTS - SLOTS - 4, "queued {queued}");
    assert_eq!(count(&seen, Seen::Reset), queued, "{seen:?} {report}");
    assert_eq!(count(&seen, Seen::Answered), CLIENTS - queued, "{seen:?}");
    assert_eq!(report.backlog_taken, 0);
}

/// The bound: the first `n` queued clients are served, the rest reset by the close.
#[tokio::test]
async fn the_backlog_taken_is_bounded() {
    let (seen, queued, report) = shutdown_with_a_full_backlog(CLIENTS, Some(3), true).await;
    assert!(queued > 3, "queued {queued}");
    assert_eq!(report.backlog_taken, 3, "{report}");
    assert_eq!(count(&seen, Seen::Reset), queued - 3, "{seen:?} {report}");
    assert_eq!(count(&seen, Seen::Answered), CLIENTS - queued + 3);
    assert_eq!(count(&seen, Seen::Eof), 0);
}
