//! tonic: `Routes` through the one-call server, and tonic's own server fed by
//! `staunch_http::tonic::incoming`, each with a tonic client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use staunch::overload::OverloadExt;
use staunch::ListenExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::Channel;

use crate::support::{bounded, IO};

#[allow(dead_code)] // its server half is the example's
#[path = "../../../integrations/examples/tonic/greeter.rs"]
mod greeter;
use greeter::StringCodec;

const WHO: &str = "/staunch.Peer/Who";

/// A service that answers each call with the caller's address as tonic sees it.
#[derive(Clone, Copy)]
struct Peer;

impl NamedService for Peer {
    const NAME: &'static str = "staunch.Peer";
}

impl UnaryService<String> for Peer {
    type Response = String;
    type Future = BoxFuture<tonic::Response<String>, tonic::Status>;
    fn call(&mut self, request: tonic::Request<String>) -> Self::Future {
        let peer = format!("{:?}", request.remote_addr());
        Box::pin(async move { Ok(tonic::Response::new(peer)) })
    }
}

impl Service<http::Request<tonic::body::Body>> for Peer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move { Ok(Grpc::new(StringCodec).unary(Peer, request).await) })
    }
}

/// Call `Who` over a new channel; the answer, and the client's own address.
async fn who(addr: SocketAddr) -> String {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(IO)
        .timeout(IO)
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(String::new()),
            PathAndQuery::from_static(WHO),
            StringCodec,
        )
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn tonic_routes_through_the_one_call_server() {
    let routes = tonic::service::Routes::new(Peer).prepare();
    let server = crate::support::start(|l, stop| {
        staunch_http::serve(l, routes).with_graceful_shutdown(stop)
    })
    .await;
    let answer = bounded(IO, who(server.addr)).await;
    // tonic's `remote_addr()` works: the server put `TcpConnectInfo` in the request.
    assert!(answer.starts_with("Some(127.0.0.1:"), "{answer}");
    let report = server.shutdown().await;
    assert_eq!(
        (report.stats.connections, report.cancelled),
        (1, 0),
        "{report}"
    );
}

#[tokio::test]
async fn tonic_serve_with_incoming_takes_a_staunch_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Any staunch stage, here `limit_per_peer`, whose items (`PeerPermit`) are staunch's.
    let accepted = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100))
        .limit_per_peer(4);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Peer)
            .serve_with_incoming_shutdown(staunch_http::tonic::incoming(accepted), async {
                let _ = stopped.await;
            }),
    );
    let answer = bounded(IO, who(addr)).await;
    assert!(answer.starts_with("Some(127.0.0.1:"), "{answer}");
    let _ = stop.send(());
    bounded(IO, server).await.unwrap().unwrap();
}
