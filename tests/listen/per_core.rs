//! `listen::per_core`: one accept loop per thread on `SO_REUSEPORT` sockets, merged stats, one
//! shutdown.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use staunch::listen::{per_core, PerCore};
use staunch::ListenExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::addr;

const IO: Duration = Duration::from_secs(5);

/// Reply with the name of the thread that serves the connection, then hold it until the client
/// closes. The handler holds an `Rc`: connection futures need not be `Send`.
fn start(threads: usize) -> PerCore {
    per_core(addr("127.0.0.1:0"), threads, |listener| {
        let name = Rc::new(std::thread::current().name().unwrap_or("?").to_owned());
        TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .map(move |mut socket: tokio::net::TcpStream| {
                let name = name.clone();
                async move {
                    socket.write_all(format!("{name}\n").as_bytes()).await?;
                    let mut buf = [0; 16];
                    while socket.read(&mut buf).await? != 0 {}
                    std::io::Result::Ok(())
                }
            })
            .listen(1000)
    })
    .expect("per_core")
}

fn connect(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect_timeout(&addr, IO).expect("connect");
    s.set_read_timeout(Some(IO)).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).expect("read the greeting") == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    (s, String::from_utf8(line).unwrap())
}

/// Connect until refused (the loops have closed their sockets); bounded.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + IO;
    loop {
        match TcpStream::connect_timeout(&addr, IO) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => assert!(Instant::now() < deadline, "{addr} still accepts"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_loop_serves_and_the_stats_are_merged() {
    let server = start(2);
    assert_eq!(server.threads(), 2);
    let mut served_by = Vec::new();
    // 64 connections from distinct ports: the kernel hashes each to one of the two sockets, so
    // all of them on one loop has a chance of 2^-63.
    for _ in 0..64 {
        let (s, name) = connect(server.local_addr());
        served_by.push(name);
        drop(s);
    }
    for loop_name in ["staunch-per-core-0", "staunch-per-core-1"] {
        assert!(
            served_by.iter().any(|n| n == loop_name),
            "{loop_name} served nothing: {served_by:?}"
        );
    }
    let stats = server.stats();
    let report = server.shutdown(IO);
    assert!(report.signalled, "{report}");
    let s = report.stats;
    assert_eq!((s.accepted, s.connections, s.active), (64, 64, 0), "{s}");
    assert_eq!(s.finished + s.failed, 64, "{s}");
    assert_eq!(stats.snapshot(), s, "the handle and the report agree");
}

#[test]
fn shutdown_closes_every_socket_lets_a_connection_finish_within_the_grace_period() {
    let server = start(2);
    let addr = server.local_addr();
    let (client, _) = connect(addr);
    let shutdown = std::thread::spawn(move || server.shutdown(IO));
    // Every loop has closed its socket: new clients are refused, not left in a backlog.
    wait_until_refused(addr);
    drop(client);
    let report = shutdown.join().unwrap();
    // Probes that connected before a socket closed may have been accepted too.
    assert!(
        report.ended >= 1,
        "the client ended after the signal: {report}"
    );
    assert_eq!(report.cancelled, 0, "{report}");
    let s = report.stats;
    assert_eq!(
        (s.finished + s.failed, s.active),
        (s.connections, 0),
        "{report}"
    );
}

#[test]
fn shutdown_cancels_what_outlives_the_grace_period_on_every_loop() {
    let server = start(2);
    // Enough connections that both loops hold some (see above).
    let clients: Vec<_> = (0..32).map(|_| connect(server.local_addr())).collect();
    let names: std::collections::HashSet<_> = clients.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let started = Instant::now();
    let report = server.shutdown(Duration::from_millis(200));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < IO, "{:?}", started.elapsed());
    assert_eq!((report.ended, report.cancelled), (0, 32), "{report}");
    assert_eq!((report.stats.cancelled, report.stats.active), (32, 0));
    // The connections were closed by the server.
    for (mut s, _) in clients {
        let mut b = [0u8; 1];
        assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    }
}

#[test]
fn dropping_the_handle_stops_the_loops() {
    let server = start(2);
    let addr = server.local_addr();
    drop(server);
    wait_until_refused(addr);
}

#[test]
fn zero_threads_is_an_error() {
    let e = per_core(addr("127.0.0.1:0"), 0, |listener| {
        TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .map(|_socket| async {})
            .listen(1)
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn a_panic_in_setup_stops_the_other_loops_and_goes_on_in_the_caller() {
    let result = catch_unwind(AssertUnwindSafe(|| {
        per_core(addr("127.0.0.1:0"), 3, |listener| {
            let local = listener.local_addr().unwrap();
            if std::thread::current().name() == Some("staunch-per-core-1") {
                panic!("setup failed on {local}");
            }
            TcpListenerStream::new(listener)
                .sleep_on_error(Duration::from_millis(100))
                .map(|_socket| async {})
                .listen(1)
        })
    }));
    let panic = result.expect_err("the setup panic reaches the caller");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.starts_with("setup failed on 127.0.0.1:"),
        "{message}"
    );
    // The loop started before the panic was stopped and its socket closed.
    let addr: SocketAddr = message["setup failed on ".len()..].parse().unwrap();
    wait_until_refused(addr);
}
