//! `Builder::build_and_connect_in_background`: the first attempt starts at build time, runs
//! without the adapter being polled, and keeps every guarantee of a lazy start.

use crate::support::*;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use staunch::reconnect::{
    BoxFuture, ConnState, Decision, GaveUp, GiveUpCause, Reason, Reconnecting,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn the_first_attempt_runs_without_the_adapter_being_polled() {
    let (connector, calls, done, mut peers) = slow(Duration::from_secs(2), 0);
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hooked);
    let mut conn = Reconnecting::builder(connector)
        .on_connect(move |_, io| {
            h.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(io) })
        })
        .build_and_connect_in_background();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the attempt starts at build time"
    );
    assert!(matches!(conn.state(), ConnState::Connecting { attempt: 1 }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the attempt completed in the background"
    );
    assert_eq!(
        hooked.load(Ordering::SeqCst),
        0,
        "on_connect runs when the result is taken up"
    );

    let before = Instant::now();
    conn.write_all(b"hi").await.unwrap();
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "the first write did not wait"
    );
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(conn.generation(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let mut got = [0; 2];
    peers
        .recv()
        .await
        .unwrap()
        .read_exact(&mut got)
        .await
        .unwrap();
    assert_eq!(&got, b"hi");
}

#[tokio::test(start_paused = true)]
async fn a_lazy_build_makes_the_first_write_wait_control() {
    let (connector, calls, _done, _peers) = slow(Duration::from_secs(2), 0);
    let mut conn = Reconnecting::builder(connector).build();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let before = Instant::now();
    conn.write_all(b"hi").await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_attempt_goes_through_the_hook_and_the_backoff() {
    let (connector, calls, _done, _peers) = slow(Duration::from_secs(1), 1);
    let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = Arc::clone(&reasons);
    let mut conn = Reconnecting::builder(connector)
        .policy(std::iter::repeat(Duration::from_secs(5)))
        .on_disconnect(move |ctx, _| {
            r.lock().unwrap().push(ctx.reason().cloned());
            Box::pin(async { Decision::Retry })
        })
        .build_and_connect_in_background();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    // 5 s backoff after the refusal is taken up, then a 1 s attempt.
    assert_eq!(before.elapsed(), Duration::from_secs(6));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let reasons = reasons.lock().unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(
        matches!(&reasons[0], Some(Reason::ConnectFailed(e)) if e.kind() == io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test(start_paused = true)]
async fn the_connect_timeout_counts_from_the_build() {
    let (connector, calls, _done, _peers) = slow(Duration::from_secs(3600), 0);
    let mut conn = Reconnecting::builder(connector)
        .connect_timeout(Duration::from_secs(2))
        .policy(std::iter::empty())
        .build_and_connect_in_background();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = Instant::now();
    let err = conn.wait_connected().await.unwrap_err();
    assert_eq!(before.elapsed(), Duration::ZERO);
    let gave_up = GaveUp::from_io_error(&err).unwrap();
    assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
    assert!(matches!(
        gave_up.last_reason(),
        Some(Reason::ConnectTimeout(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A connector whose attempt never completes and reports when it is dropped.
fn watched_hang() -> (Conn, Arc<AtomicBool>) {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&dropped);
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let flag = Flag(Arc::clone(&d));
        Box::pin(async move {
            let _flag = flag;
            std::future::pending().await
        })
    });
    (connector, dropped)
}

#[tokio::test(start_paused = true)]
async fn dropping_the_adapter_aborts_the_background_attempt() {
    let (connector, dropped) = watched_hang();
    let conn = Reconnecting::builder(connector).build_and_connect_in_background();
    tokio::task::yield_now().await;
    assert!(!dropped.load(Ordering::SeqCst));
    drop(conn);
    tokio::task::yield_now().await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the spawned attempt must be aborted"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_cancellation_abort_the_background_attempt() {
    let (connector, dropped) = watched_hang();
    let mut conn = Reconnecting::builder(connector).build_and_connect_in_background();
    conn.shutdown().await.unwrap();
    tokio::task::yield_now().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(conn.state(), ConnState::ShutDown));

    let (connector, dropped) = watched_hang();
    let mut conn = Reconnecting::builder(connector)
        .cancel_on(tokio::time::sleep(Duration::from_secs(1)))
        .build_and_connect_in_background();
    let err = conn.wait_connected().await.unwrap_err();
    assert_eq!(
        GaveUp::from_io_error(&err).unwrap().cause(),
        GiveUpCause::Cancelled
    );
    tokio::task::yield_now().await;
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "connector exploded")]
async fn a_panic_in_the_background_attempt_reaches_the_caller() {
    let connector = || async {
        panic!("connector exploded");
        #[allow(unreachable_code)]
        Ok(tokio::io::duplex(1).0)
    };
    let mut conn = Reconnecting::builder(connector).build_and_connect_in_background();
    let _ = conn.wait_connected().await;
}

#[test]
#[should_panic]
fn outside_a_runtime_it_panics() {
    let _ = Reconnecting::builder(|| async { Ok(tokio::io::duplex(1).0) })
        .build_and_connect_in_background();
}
