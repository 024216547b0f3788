//! `axum::serve` over a staunch stream, with the listener's connection limit.

use std::future::IntoFuture;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use staunch::ListenExt;
use tokio::net::TcpStream;
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{bounded, raw_request, IO};

#[tokio::test]
async fn axum_serve_takes_a_staunch_stream_and_its_connection_limit() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let accepted = TcpListenerStream::new(tcp).sleep_on_error(Duration::from_millis(100));
    let listener = staunch_http::axum::Listener::new(accepted)
        .max_connections(1)
        .local_addr(addr);
    let app = Router::new().route("/", get(|| async { "hello" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    assert_eq!(server.local_addr().unwrap(), Some(addr));
    let server = tokio::spawn(server.into_future());

    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(raw_request(&mut first, "/").await.ends_with("hello"));
    // The only slot is the first client's (a keep-alive connection): the second waits.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move { raw_request(&mut second, "/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served past the connection limit");
    drop(first);
    assert!(bounded(IO, waiting).await.unwrap().ends_with("hello"));

    let _ = stop.send(());
    bounded(IO, server).await.unwrap().unwrap();
}
