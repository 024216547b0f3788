//! examples/axum.rs with hyper-util's client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{wait_until_refused, Example, IO};

/// `GRACE` in examples/axum.rs.
const GRACE: Duration = Duration::from_secs(10);
/// How long the in-flight request takes.
const SLOW: Duration = Duration::from_millis(1500);

#[test]
fn axum_drains_a_request_in_flight_at_sigterm_and_refuses_new_connections() {
    let mut server = Example::start(
        "axum",
        &["127.0.0.1:0"],
        &[("RUST_LOG", "info,staunch=debug")],
    );
    let addr = server.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    // A plain request first: the router answers through staunch's loop.
    let body = rt.block_on(async {
        let get = client.get(format!("http://{addr}/").parse().unwrap());
        let response = tokio::time::timeout(IO, get).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap().to_bytes()
    });
    assert_eq!(body, "hello from axum behind staunch\n");

    // A slow request, on its own connection, in flight when the signal comes.
    let uri: hyper::Uri = format!("http://{addr}/slow/{}", SLOW.as_millis())
        .parse()
        .unwrap();
    let slow = rt.spawn({
        let client = client.clone();
        async move {
            let response = client.get(uri).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body, Instant::now())
        }
    });
    server.wait_stderr("slow request started", IO);
    // And a client that has connected but not sent a byte yet (given time to be accepted).
    let mut silent = std::net::TcpStream::connect_timeout(&addr, IO).unwrap();
    silent.set_read_timeout(Some(IO)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);

    // The listening socket closes at once, while the slow request is still running...
    let probes = wait_until_refused(addr);
    assert!(
        !slow.is_finished() && signalled.elapsed() < SLOW,
        "the port closed only after the slow request ended"
    );
    // ...and the slow request still completes, with its full response.
    let (status, body, done) = rt
        .block_on(async { tokio::time::timeout(GRACE, slow).await })
        .expect("the in-flight request did not complete")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("slow request done after {} ms\n", SLOW.as_millis())
    );
    assert!(done.duration_since(signalled) < GRACE);

    // The silent client was closed at the signal, not left until the grace period ends.
    let mut nothing = Vec::new();
    let read = std::io::Read::read_to_end(&mut silent, &mut nothing);
    assert!(read.is_ok() && nothing.is_empty(), "{read:?} {nothing:?}");

    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let report = exit.report();
    // Nothing was cut and nothing failed: the in-flight request, the idle keep-alive connection
    // and the silent one all ended within the grace period (hyper closes idle ones at once).
    assert_eq!(report.cancelled, 0, "{exit:?}");
    assert!(report.finished >= 1, "{exit:?}");
    // Including any probe of `wait_until_refused` the server accepted just before it closed
    // its port: a connection that ends before its first byte is not a failure.
    assert_eq!(
        report.totals["failed"], 0,
        "{exit:?} ({probes} probes connected)"
    );
    // The server exited as soon as the slow request was done, not at the end of the grace period.
    assert!(signalled.elapsed() < GRACE, "{exit:?}");
    drop(rt);
}
