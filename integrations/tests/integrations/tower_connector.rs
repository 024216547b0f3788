//! staunch's retry core as the connector of hyper-util's legacy client and of tonic's
//! `Endpoint::connect_with_connector` (`ConnectService`, feature `tower`), each against a real
//! server on loopback that listens only once the first attempt was refused.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::Uri;
use hyper_util::rt::{TokioExecutor, TokioIo};
use staunch::backoff::Constant;
use staunch::reconnect::{BoxFuture, Connect, ConnectService, RetryLoop, TcpConnector};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;
use tonic::codegen::http::uri::PathAndQuery;
use tower_service::Service;

use crate::grpc::greeter;
use crate::harness::IO;

/// A `TcpConnector` that counts its attempts and says when one was refused.
#[derive(Clone)]
struct Counted {
    tcp: TcpConnector,
    attempts: Arc<AtomicUsize>,
    refused: Arc<Notify>,
}

impl Connect for Counted {
    type Io = TcpStream;
    type Future = BoxFuture<io::Result<TcpStream>>;

    fn connect(&mut self) -> Self::Future {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let attempt = self.tcp.connect();
        let refused = Arc::clone(&self.refused);
        Box::pin(async move {
            let result = attempt.await;
            if result.is_err() {
                refused.notify_one();
            }
            result
        })
    }
}

fn set_uri(connector: &mut Counted, uri: &Uri) -> io::Result<()> {
    connector.tcp.set_uri(uri)
}

/// hyper and tonic read and write through `hyper::rt`: the connection in `TokioIo`.
#[derive(Clone)]
struct Hyper(ConnectService<Counted>);

impl Service<Uri> for Hyper {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(TokioIo::new) })
    }
}

/// The connector, its attempt counter and refusal signal, and a loopback port that refuses
/// until the returned socket listens (bound, so nobody else takes it).
/// `retries` after the first attempt.
fn setup(retries: usize) -> (Hyper, Arc<AtomicUsize>, Arc<Notify>, TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let counted = Counted {
        tcp: TcpConnector::new("unset:1"),
        attempts: Arc::default(),
        refused: Arc::default(),
    };
    let (attempts, refused) = (counted.attempts.clone(), counted.refused.clone());
    let service = RetryLoop::new(counted)
        .policy(Constant::new(Duration::from_millis(20)).take(retries))
        .connect_timeout(IO)
        .into_service()
        .with_target(set_uri);
    (Hyper(service), attempts, refused, socket, addr)
}

#[tokio::test]
async fn hyper_util_s_legacy_client_connects_through_the_retry_core() {
    let (connector, attempts, refused, socket, addr) = setup(usize::MAX);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let request = tokio::spawn(async move { client.get(uri).await });
    // Only once an attempt was refused does the server listen.
    timeout(IO, refused.notified()).await.unwrap();
    let listener = socket.listen(16).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let hello = hyper::service::service_fn(|_req| async {
            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from("hello"))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), hello)
            .await;
    });
    let response = timeout(IO, request).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    assert!(attempts.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn tonic_s_channel_connects_through_the_retry_core() {
    let (connector, attempts, refused, socket, addr) = setup(usize::MAX);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let connecting = tokio::spawn(async move { endpoint.connect_with_connector(connector).await });
    timeout(IO, refused.notified()).await.unwrap();
    let listener: TcpListener = socket.listen(16).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(greeter::GreeterServer)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = timeout(IO, connecting).await.unwrap().unwrap().unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let reply = timeout(
        IO,
        client.unary(
            tonic::Request::new("staunch".to_owned()),
            PathAndQuery::from_static(greeter::SAY_HELLO),
            greeter::StringCodec,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.into_inner(), "hello, staunch");
    assert!(attempts.load(Ordering::SeqCst) >= 2);
    server.abort();
}

#[tokio::test]
async fn without_retries_the_legacy_client_fails_control() {
    // Control: the same request with a policy that gives up after the first attempt fails, so
    // the tests above show the retries, not a server that was up in time.
    let (connector, attempts, _refused, _socket, addr) = setup(0);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let err = timeout(IO, client.get(uri)).await.unwrap().unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut chain = String::new();
    while let Some(e) = source {
        chain.push_str(&format!("{e}; "));
        source = e.source();
    }
    assert!(chain.contains("gave up reconnecting"), "{chain}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}
