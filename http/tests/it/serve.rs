//! The one-call server with an axum `Router`: HTTP/1.1 and h2c, what requests carry, and the
//! shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Extension};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use hyper::Version;
use staunch::listen::Conn;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::support::{
    bounded, closed_within, get as request, h2c, http1, raw_request, start, text, IO,
};

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/conn",
            get(|Extension(conn): Extension<Arc<Conn>>| async move {
                format!("draining: {}", conn.is_draining())
            }),
        )
}

#[tokio::test]
async fn an_axum_router_over_http1_and_h2c_in_one_call() {
    let server = start(|l, stop| {
        staunch_http::serve(l, app())
            .conn_extension(true)
            .with_graceful_shutdown(stop)
    })
    .await;

    let mut h1 = http1(server.addr).await;
    let response = bounded(IO, h1.send_request(request("/"))).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(text(response).await, "hello");
    // The same connection again: keep-alive.
    let response = bounded(IO, h1.send_request(request("/conn")))
        .await
        .unwrap();
    assert_eq!(text(response).await, "draining: false");

    let (mut h2, _driver) = h2c(server.addr).await;
    let response = bounded(IO, h2.send_request(request("/"))).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(text(response).await, "hello");

    // axum's `ConnectInfo` is the client's address, with a plain `Router`.
    let socket = TcpStream::connect(server.addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut socket = socket;
    let response = raw_request(&mut socket, "/peer").await;
    assert!(response.ends_with(&local.to_string()), "{response}");

    assert_eq!(server.stats.snapshot().active, 3);
    // At the signal every idle connection closes at once: nothing is cut.
    let started = Instant::now();
    let report = server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "{report}");
    assert_eq!(
        (report.signalled, report.ended, report.cancelled),
        (true, 3, 0),
        "{report}"
    );
    assert_eq!(
        (report.stats.connections, report.stats.failed),
        (3, 0),
        "{report}"
    );
    assert!(closed_within(&mut socket, IO).await.is_some());
}

/// Requests carry the connection's `Arc<Conn>` only with `conn_extension(true)`, over HTTP/1.1
/// and HTTP/2 alike.
#[tokio::test]
async fn requests_carry_the_conn_only_with_conn_extension() {
    for on in [false, true] {
        let app = Router::new().route(
            "/",
            get(|request: axum::extract::Request| async move {
                request
                    .extensions()
                    .get::<Arc<Conn>>()
                    .is_some()
                    .to_string()
            }),
        );
        let server = start(|l, stop| {
            let server = staunch_http::serve(l, app).with_graceful_shutdown(stop);
            // Off is the default: leave it unset.
            if on {
                server.conn_extension(true)
            } else {
                server
            }
        })
        .await;
        let mut h1 = http1(server.addr).await;
        let response = bounded(IO, h1.send_request(request("/"))).await.unwrap();
        assert_eq!(
            text(response).await,
            on.to_string(),
            "HTTP/1.1, conn_extension({on})"
        );
        let (mut h2, _driver) = h2c(server.addr).await;
        let response = bounded(IO, h2.send_request(request("/"))).await.unwrap();
        assert_eq!(
            text(response).await,
            on.to_string(),
            "HTTP/2, conn_extension({on})"
        );
        server.shutdown().await;
    }
}

/// A request in flight at the signal is answered, with `Connection: close`; one that outlives
/// the grace period is cut.
#[tokio::test]
async fn the_shutdown_answers_requests_in_flight_and_cuts_at_the_deadline() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let app = Router::new().route(
        "/wait",
        get({
            let release = release.clone();
            move |Extension(conn): Extension<Arc<Conn>>| async move {
                started_tx.send(()).unwrap();
                release.acquire().await.unwrap().forget();
                // Answer once the drain has reached the connection (one poll later: hyper's
                // connection future runs this handler, then hears of the drain).
                conn.draining().await;
                tokio::task::yield_now().await;
                "done"
            }
        }),
    );
    let mut server = start(|l, stop| {
        staunch_http::serve(l, app)
            .conn_extension(true)
            .with_graceful_shutdown(stop)
            .grace(Duration::from_millis(500))
    })
    .await;

    let mut answered = TcpStream::connect(server.addr).await.unwrap();
    let mut cut = TcpStream::connect(server.addr).await.unwrap();
    let answered = tokio::spawn(async move {
        let response = raw_request(&mut answered, "/wait").await;
        (response, closed_within(&mut answered, IO).await)
    });
    bounded(IO, started.recv()).await.unwrap();
    let cut = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        cut.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        closed_within(&mut cut, IO).await
    });
    bounded(IO, started.recv()).await.unwrap();

    server.signal();
    // Let one of the two finish; the other never does.
    release.add_permits(1);
    let (response, closed) = bounded(IO, answered).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(response.ends_with("done"), "{response}");
    assert!(closed.is_some(), "not closed after its response");

    let started = Instant::now();
    assert!(bounded(IO, cut).await.unwrap().is_some(), "never cut");
    let report = server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "{report}");
    assert_eq!((report.ended, report.cancelled), (1, 1), "{report}");
}

/// hyper runs each HTTP/2 stream's handler in a task of its own: the cut at the deadline must
/// reach it too, not only the connection, whether the handler is still running or its response
/// body is being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_at_the_deadline_drops_http2_handlers() {
    // On two workers, and a few times: without the tie, whether the handler had been dropped
    // by the time of the report depended on which worker ran first.
    for path in ["/handler", "/body"].repeat(3) {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (dropped_tx, mut dropped) = oneshot::channel();
        let guard = Arc::new(std::sync::Mutex::new(Some(Dropped(Some(dropped_tx)))));
        let app = Router::new()
            .route(
                "/handler",
                get({
                    let (started_tx, guard) = (started_tx.clone(), guard.clone());
                    move || async move {
                        let _guard = guard.lock().unwrap().take();
                        started_tx.send(()).unwrap();
                        std::future::pending::<()>().await;
                    }
                }),
            )
            .route(
                "/body",
                get(move || async move {
                    let guard = guard.lock().unwrap().take();
                    started_tx.send(()).unwrap();
                    // Sent by hyper's stream task after the handler has returned; never ends.
                    let body =
                        stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"x")) })
                            .chain(stream::pending())
                            .map(move |chunk| {
                                let _ = &guard;
                                chunk
                            });
                    axum::body::Body::from_stream(body)
                }),
            );
        let server = start(|l, stop| {
            staunch_http::serve(l, app)
                .with_graceful_shutdown(stop)
                .grace(Duration::from_millis(100))
        })
        .await;
        let (mut send, _client) = h2c(server.addr).await;
        let _call = tokio::spawn(async move { send.send_request(request(path)).await });
        bounded(IO, started.recv()).await.unwrap();

        let report = server.shutdown().await;
        assert_eq!(report.cancelled, 1, "{path}: {report}");
        // Dropped with its connection, before the listener reports.
        assert!(
            matches!(dropped.try_recv(), Ok(())),
            "{path}: the handler outlived the cut of its connection"
        );
    }
}

/// Signals when it is dropped.
struct Dropped(Option<oneshot::Sender<()>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.take().map(|tx| tx.send(()));
    }
}

/// Bad settings are refused with a message that names them.
#[test]
#[should_panic(expected = "max_connections: must be at least 1")]
fn zero_connections_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _ = staunch_http::serve(l, app()).max_connections(0);
    });
}

#[test]
#[should_panic(expected = "max_idle: the limit must be greater than zero")]
fn zero_idle_is_refused() {
    let _ = staunch_http::Http::new().max_idle(Duration::ZERO);
}
