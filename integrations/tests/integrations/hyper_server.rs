//! examples/hyper.rs with hyper-util's HTTP/1.1 and HTTP/2 clients.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{Example, IO};

/// `GRACE` in examples/hyper.rs.
const GRACE: Duration = Duration::from_secs(10);

#[test]
fn hyper_serves_http1_and_http2_and_closes_idle_connections_on_sigint() {
    let server = Example::start("hyper", &["127.0.0.1:0"], &[]);
    let url: hyper::Uri = format!("http://{}/", server.addr()).parse().unwrap();

    // The clients keep their connections open (idle, in their pools) through the signal: the
    // runtime lives until the end of the test.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http1 = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let http2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    rt.block_on(async {
        for (client, version) in [
            (&http1, hyper::Version::HTTP_11),
            (&http2, hyper::Version::HTTP_2),
        ] {
            for _ in 0..3 {
                let get = async {
                    let response = client.get(url.clone()).await.unwrap();
                    assert_eq!(response.status(), 200);
                    assert_eq!(response.version(), version);
                    response.into_body().collect().await.unwrap().to_bytes()
                };
                let body = tokio::time::timeout(IO, get)
                    .await
                    .expect("request timed out");
                assert_eq!(body, "hello from staunch\n", "{version:?}");
            }
        }
    });

    // hyper's graceful shutdown closes the idle keep-alive connections (one or more per
    // client, as its pool decides) at once, so the server exits before its grace period ends
    // and cuts nothing; without it they would be cancelled at the deadline.
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let took = signalled.elapsed();
    assert!(took < GRACE, "exited {took:?} after the signal: {exit:?}");
    let report = exit.report();
    let t = &report.totals;
    assert!(t["accepted"] >= 2, "{exit:?}");
    assert_eq!(
        report.finished, t["accepted"],
        "all were open at the signal: {exit:?}"
    );
    assert_eq!(report.cancelled, 0, "{exit:?}");
    assert_eq!((t["finished"], t["failed"]), (t["accepted"], 0), "{exit:?}");
    drop(rt);
}

#[test]
fn hyper_exits_cleanly_when_signalled_as_soon_as_it_listens() {
    // A signal right after "listening on" must be handled, not kill the process: the example
    // installs its handlers before printing that line.
    let server = Example::start("hyper", &["127.0.0.1:0"], &[]);
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(IO);
    exit.assert_success();
    let report = exit.report();
    assert_eq!((report.finished, report.cancelled), (0, 0), "{exit:?}");
    assert_eq!(report.totals["accepted"], 0, "{exit:?}");
}
