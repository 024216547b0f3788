//! Graceful per-connection lifetimes: the maximum age (with its jitter and grace) and the
//! idle limit.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{bounded, closed_within, get as request, h2c, raw_request, start, IO};

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow"
            }),
        )
        .route("/never", get(std::future::pending::<&'static str>))
}

const AGE: Duration = Duration::from_millis(400);

/// An idle keep-alive connection closes at its age, give or take 10%; without the setting it
/// stays open (the control).
#[tokio::test]
async fn an_idle_connection_closes_at_its_maximum_age() {
    for max_age in [Some(AGE), None] {
        let server = start(|l, stop| {
            let server = staunch_http::serve(l, app()).with_graceful_shutdown(stop);
            match max_age {
                Some(age) => server.max_connection_age(age),
                None => server,
            }
        })
        .await;
        let opened = Instant::now();
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let response = raw_request(&mut socket, "/").await;
        assert!(response.ends_with("hello"), "{response}");
        let closed = closed_within(&mut socket, AGE * 2).await;
        let at = opened.elapsed();
        match max_age {
            Some(_) => {
                assert!(closed.is_some(), "not closed at its age");
                assert!(at >= AGE.mul_f64(0.9) - Duration::from_millis(20), "{at:?}");
                assert!(
                    at <= AGE.mul_f64(1.1) + Duration::from_millis(200),
                    "{at:?}"
                );
            }
            None => assert!(closed.is_none(), "closed without an age limit"),
        }
        let report = server.shutdown().await;
        assert_eq!((report.stats.failed, report.cancelled), (0, 0), "{report}");
    }
}

/// At its age, a connection with a request in progress finishes it with `Connection: close`;
/// one still busy after the age grace is cut.
#[tokio::test]
async fn at_its_age_a_busy_connection_finishes_then_one_too_slow_is_cut() {
    let server = start(|l, stop| {
        staunch_http::serve(l, app())
            .with_graceful_shutdown(stop)
            .max_connection_age(Duration::from_millis(200))
            .max_connection_age_grace(Duration::from_millis(800))
    })
    .await;
    let opened = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let mut never = TcpStream::connect(server.addr).await.unwrap();
    never
        .write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // The age comes while /slow runs (it takes 600 ms).
    let response = raw_request(&mut slow, "/slow").await;
    assert!(response.ends_with("slow"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(closed_within(&mut slow, IO).await.is_some());

    // /never is cut at about 200 ms + 800 ms.
    assert!(closed_within(&mut never, IO).await.is_some());
    let at = opened.elapsed();
    assert!(at >= Duration::from_millis(900), "{at:?}");
    assert!(at <= Duration::from_millis(1500), "{at:?}");
    let report = server.shutdown().await;
    // The cut is an error of its connection, counted and logged.
    assert_eq!(
        (report.stats.finished, report.stats.failed),
        (1, 1),
        "{report}"
    );
}

/// HTTP/2: at its age the server sends GOAWAY, and the idle client connection ends.
#[tokio::test]
async fn an_h2_connection_gets_goaway_at_its_age() {
    let server = start(|l, stop| {
        staunch_http::serve(l, app())
            .with_graceful_shutdown(stop)
            .max_connection_age(AGE)
    })
    .await;
    let opened = Instant::now();
    let (mut h2, driver) = h2c(server.addr).await;
    let response = bounded(IO, h2.send_request(request("/"))).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    bounded(IO, driver).await.unwrap().unwrap();
    let at = opened.elapsed();
    assert!(at >= AGE.mul_f64(0.9) - Duration::from_millis(20), "{at:?}");
    let report = server.shutdown().await;
    assert_eq!(
        (report.stats.finished, report.stats.failed),
        (1, 0),
        "{report}"
    );
}

/// A connection closes after `max_idle` without a request in flight, counted from the end of
/// its last response; a request that runs longer than `max_idle` is not interrupted.
#[tokio::test]
async fn max_idle_counts_only_time_without_a_request_in_flight() {
    const IDLE: Duration = Duration::from_millis(300);
    let server = start(|l, stop| {
        staunch_http::serve(l, app())
            .with_graceful_shutdown(stop)
            .max_idle(IDLE)
    })
    .await;

    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    // 600 ms in flight, twice the idle limit.
    let response = raw_request(&mut busy, "/slow").await;
    assert!(response.ends_with("slow"), "{response}");
    assert!(
        !response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    let answered = Instant::now();
    assert!(closed_within(&mut busy, IO).await.is_some());
    let idle_for = answered.elapsed();
    assert!(idle_for >= IDLE - Duration::from_millis(20), "{idle_for:?}");
    assert!(
        idle_for <= IDLE + Duration::from_millis(300),
        "{idle_for:?}"
    );

    let report = server.shutdown().await;
    assert_eq!(
        (report.stats.finished, report.stats.failed),
        (1, 0),
        "{report}"
    );
}
