//! examples/tonic with a tonic client (`Channel` + `tonic::client::Grpc`), in both of its modes.

use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::{Example, IO};

/// The service and its codec, shared with the example: the client half of what code generation
/// would give.
#[allow(dead_code)] // the server half is the example's (and tower_connector.rs's)
#[path = "../../examples/tonic/greeter.rs"]
pub(crate) mod greeter;

use greeter::{StringCodec, SAY_HELLO};

/// `GRACE` in examples/tonic/main.rs.
const GRACE: Duration = Duration::from_secs(10);

/// Calls through one channel (one HTTP/2 connection): a greeting, many at once, a handler
/// error, and a method the server does not have.
async fn exercise(addr: std::net::SocketAddr) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(IO)
        .timeout(IO)
        .connect()
        .await
        .expect("connect");
    let mut client = tonic::client::Grpc::new(channel);
    let say_hello = |name: &str| {
        let mut client = client.clone();
        let name = name.to_owned();
        async move {
            client.ready().await.unwrap();
            client
                .unary(
                    Request::new(name),
                    PathAndQuery::from_static(SAY_HELLO),
                    StringCodec,
                )
                .await
                .map(|r| r.into_inner())
        }
    };

    assert_eq!(say_hello("staunch").await.unwrap(), "hello, staunch");

    // Calls multiplexed on the connection.
    let calls: Vec<_> = (0..20)
        .map(|i| tokio::spawn(say_hello(&format!("client {i}"))))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), format!("hello, client {i}"));
    }

    // A status from the handler reaches the client as is.
    let status = say_hello("").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "say who you are");

    // An unknown method of the service, and an unknown service.
    for path in ["/staunch.Greeter/SayGoodbye", "/other.Service/Call"] {
        client.ready().await.unwrap();
        let status = client
            .unary::<_, String, _>(
                Request::new(String::new()),
                PathAndQuery::from_static(path),
                StringCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    // The channel (and its connection) stays open through the signal: the server must close it.
    std::mem::forget(client);
}

#[test]
fn tonic_served_connection_by_connection_through_spawn_serve() {
    let server = Example::start("tonic", &["127.0.0.1:0"], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { tokio::time::timeout(IO * 3, exercise(server.addr())).await })
        .expect("the calls timed out");

    // The client's connection is still open and idle: hyper's graceful shutdown sends GOAWAY
    // and closes it at once, so the server exits well before its grace period and cuts nothing.
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    assert!(signalled.elapsed() < GRACE, "{exit:?}");
    let report = exit.report();
    let t = &report.totals;
    assert_eq!(report.cancelled, 0, "{exit:?}");
    // One HTTP/2 connection carried every call.
    assert_eq!(
        (t["accepted"], t["finished"], t["failed"]),
        (1, 1, 0),
        "{exit:?}"
    );
    drop(rt);
}

#[test]
fn tonic_serve_with_incoming_fed_by_sleep_on_error() {
    let mut server = Example::start("tonic", &["127.0.0.1:0", "serve-with-incoming"], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { tokio::time::timeout(IO * 3, exercise(server.addr())).await })
        .expect("the calls timed out");

    server.signal(libc::SIGTERM);
    let line = server.wait_stdout("shutdown: accept totals: ", GRACE);
    let totals = crate::harness::parse_totals(&line);
    assert_eq!(totals["accepted"], 1, "{line}");
    let exit = server.wait_exit(GRACE);
    exit.assert_success();
    drop(rt);
}
