//! Reclaiming idle HTTP/1 keep-alive connections near the limit with hyper, which has no public
//! idle hook: a small I/O wrapper marks the connection idle until its first request, and again
//! once a response has been flushed, and busy when request bytes arrive. It shares the
//! connection's `Conn` with the handler, which closes the connection when the handle fires.
//! In-process, on loopback, with hyper-util's client.

use std::convert::Infallible;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use staunch::listen::Conn;
use staunch::overload::RejectReason;
use staunch::ListenExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_stream::wrappers::TcpListenerStream;

/// A connection that tells its `Conn` when it is idle: until request bytes arrive, and from a
/// completed flush (a response written out) until the next ones. A flush in the middle of a
/// streamed response marks it idle too early; if it is then reclaimed, hyper's graceful
/// shutdown still finishes that response before closing, so nothing is cut.
struct IdleIo {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl IdleIo {
    fn new(io: TcpStream, conn: Arc<Conn>) -> Self {
        conn.set_idle(true); // waiting for the first request
        IdleIo { io, conn }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.set_idle(false);
        }
        read
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.conn.set_idle(true);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello\n")))
}

/// Serve one HTTP/1 connection; when its `Conn` fires (a shutdown, or reclaimed while idle),
/// shut it down gracefully: an idle keep-alive connection closes at once.
async fn serve(stream: TcpStream, conn: Conn) -> hyper::Result<()> {
    let conn = Arc::new(conn);
    let io = IdleIo::new(stream, conn.clone());
    let mut connection = pin!(hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service_fn(hello)));
    tokio::select! {
        biased;
        done = connection.as_mut() => return done,
        () = conn.draining() => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// A limit of 2 and two keep-alive clients, each holding an idle pooled connection: with
/// reclaim, a third client is served at once (the first idle connection was asked to close);
/// without (the control), it waits for a slot. It waits too, and the test fails, if `IdleIo`
/// does not mark the connection idle after a response: none is idle when the next client comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_is_served_while_keep_alive_connections_fill_the_limit() {
    for reclaim in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: hyper::Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .spawn_serve(2, serve);
        let server = if reclaim {
            server.reclaim_idle()
        } else {
            server
        };
        let stats = server.stats();
        let server = tokio::spawn(server);

        // Separate clients, so each holds its own pooled connection.
        let clients: Vec<_> = (0..3)
            .map(|_| Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>())
            .collect();
        let get = |client: &Client<_, Empty<Bytes>>| {
            let request = client.get(url.clone());
            async move {
                let response = request.await?;
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(body)
            }
        };
        for client in &clients[..2] {
            let body = tokio::time::timeout(Duration::from_secs(5), get(client))
                .await
                .expect("a client below the limit")
                .unwrap();
            assert_eq!(body, "hello\n");
        }
        let third = tokio::time::timeout(Duration::from_millis(1000), get(&clients[2])).await;
        let s = stats.snapshot();
        let reclaimed = s.rejected.get(RejectReason::Reclaimed);
        if reclaim {
            let body = third.expect("the third client, with reclaim").unwrap();
            assert_eq!(body, "hello\n");
            assert_eq!(s.peak_active, 2, "{s}");
            assert!(reclaimed >= 1, "{s}");
        } else {
            assert!(third.is_err(), "served without a free slot: {s}");
            assert_eq!((s.active, reclaimed), (2, 0), "{s}");
        }
        server.abort();
    }
}
