//! An upgraded connection (the way a WebSocket is served) through a shutdown: counted while
//! the handler's task holds it, told to close by its `Conn`, cut at the deadline.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Request};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use staunch::listen::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::{bounded, closed_within, start, IO};

/// `/echo` upgrades to a protocol that echoes bytes. A polite handler says "bye" and closes
/// when its connection is told to; a rude one ignores it. Each reports how its task ended.
fn app(polite: bool, ended: mpsc::UnboundedSender<io::Result<()>>) -> Router {
    let handler = move |Extension(conn): Extension<Arc<Conn>>, mut request: Request| {
        let ended = ended.clone();
        async move {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.expect("upgrade"));
                let mut buf = [0; 64];
                let result = async {
                    loop {
                        tokio::select! {
                            n = io.read(&mut buf) => match n? {
                                0 => return Ok(()),
                                n => io.write_all(&buf[..n]).await?,
                            },
                            () = conn.draining(), if polite => {
                                io.write_all(b"bye").await?;
                                return Ok(());
                            }
                        }
                    }
                }
                .await;
                let _ = ended.send(result);
            });
            Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(Body::empty())
                .unwrap()
        }
    };
    Router::new().route("/echo", get(handler))
}

/// Upgrade a new connection to the echo protocol and check that it echoes.
async fn upgraded(addr: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        bounded(IO, socket.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket.write_all(b"ping").await.unwrap();
    let mut echo = [0; 4];
    bounded(IO, socket.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"ping");
    socket
}

#[tokio::test]
async fn an_upgraded_connection_is_counted_and_told_to_close_at_the_shutdown() {
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let server = start(|l, stop| {
        staunch_http::serve(l, app(true, ended_tx))
            .conn_extension(true)
            .with_graceful_shutdown(stop)
            .grace(Duration::from_secs(10))
    })
    .await;
    let mut socket = upgraded(server.addr).await;
    // hyper's connection has handed the socket over; the listener still counts it.
    let s = server.stats.snapshot();
    assert_eq!((s.active, s.finished), (1, 0), "{s}");

    let started = Instant::now();
    let stats = server.stats.clone();
    let report = tokio::spawn(server.shutdown());
    let mut bye = [0; 3];
    bounded(IO, socket.read_exact(&mut bye)).await.unwrap();
    assert_eq!(&bye, b"bye");
    assert!(closed_within(&mut socket, IO).await.is_some());
    bounded(IO, ended.recv()).await.unwrap().unwrap();
    let report = bounded(IO, report).await.unwrap();
    // Ended by the app at the signal, long before the 10 s deadline.
    assert!(started.elapsed() < Duration::from_secs(2), "{report}");
    assert_eq!((report.ended, report.cancelled), (1, 0), "{report}");
    assert_eq!(stats.snapshot().active, 0);
}

#[tokio::test]
async fn an_upgraded_connection_that_ignores_the_shutdown_is_cut_at_the_deadline() {
    const GRACE: Duration = Duration::from_millis(500);
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let server = start(|l, stop| {
        staunch_http::serve(l, app(false, ended_tx))
            .conn_extension(true)
            .with_graceful_shutdown(stop)
            .grace(GRACE)
    })
    .await;
    let mut socket = upgraded(server.addr).await;
    assert_eq!(server.stats.snapshot().active, 1);

    let started = Instant::now();
    let report = tokio::spawn(server.shutdown());
    // The handler's task, blocked in a read, is woken by the cut and fails...
    let error = bounded(IO, ended.recv()).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted, "{error}");
    assert!(started.elapsed() >= GRACE - Duration::from_millis(20));
    // ...which drops the socket: the client sees it close.
    assert!(closed_within(&mut socket, IO).await.is_some());
    let report = bounded(IO, report).await.unwrap();
    assert_eq!((report.ended, report.cancelled), (0, 1), "{report}");
}
