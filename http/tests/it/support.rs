//! Clients and a server under test, every wait bounded.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use staunch::listen::ShutdownReport;
use staunch::Stats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any one step of a test may take.
pub(crate) const IO: Duration = Duration::from_secs(5);

/// A server of `staunch_http::serve` running in a task, stopped by [`Running::shutdown`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Stats,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ShutdownReport>,
}

/// Bind a loopback port and run `make(listener)`'s server there, shut down by the returned
/// handle.
pub(crate) async fn start<F, S>(make: F) -> Running
where
    F: FnOnce(TcpListener, oneshot::Receiver<()>) -> S,
    S: IntoFuture<Output = ShutdownReport, IntoFuture = staunch_http::ServeFuture>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let server = make(listener, stopped).into_future();
    let stats = server.stats();
    Running {
        addr,
        stats,
        stop: Some(stop),
        task: tokio::spawn(server),
    }
}

impl Running {
    /// Send the shutdown signal.
    pub(crate) fn signal(&mut self) {
        let _ = self.stop.take().expect("signalled twice").send(());
    }

    /// Signal (if not yet) and wait for the report.
    pub(crate) async fn shutdown(mut self) -> ShutdownReport {
        if self.stop.is_some() {
            self.signal();
        }
        bounded(IO, self.task).await.unwrap()
    }
}

/// `future`, or a panic after `limit`.
pub(crate) async fn bounded<F: Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
}

/// An HTTP/1.1 client connection.
pub(crate) async fn http1(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/2 client connection (prior knowledge, h2c), and the task driving it.
pub(crate) async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    JoinHandle<Result<(), hyper::Error>>,
) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

/// A GET of `path`, its response and body.
pub(crate) fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

/// The body of `response`, as text.
pub(crate) async fn text(response: Response<hyper::body::Incoming>) -> String {
    let body = bounded(IO, response.into_body().collect()).await.unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

/// Send a raw HTTP/1.1 request and read its whole response head and body (the body is
/// `Content-Length` delimited).
pub(crate) async fn raw_request(socket: &mut TcpStream, path: &str) -> String {
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = bounded(IO, socket.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "EOF before a whole response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Wait until the server closes `socket` (EOF or reset); `None` if it stays open for `limit`.
pub(crate) async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Option<()> {
    let mut buf = [0; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}
