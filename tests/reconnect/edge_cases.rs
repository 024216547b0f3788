//! Regression tests for review findings: wakers with split halves, zero delays, failover with a
//! connect timeout, shutdown reporting a loss, sticky give-up after shutdown, invalid settings.

use crate::support::*;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use staunch::reconnect::{
    Decision, Disconnected, EofPolicy, Failover, GaveUp, Reconnecting, RetryLoop, RetryOutcome,
    SessionEnd,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_test::assert_pending;

#[tokio::test(start_paused = true)]
async fn both_split_halves_are_woken_when_the_reconnect_completes() {
    let (connector, _calls) = refusing(1);
    let conn = Reconnecting::builder(connector)
        .policy(std::iter::repeat(Duration::from_secs(1)))
        .build();
    let (mut rd, mut wr) = conn.split();
    let mut buf = [0; 4];
    let mut read = tokio_test::task::spawn(rd.read(&mut buf));
    assert_pending!(read.poll()); // refused, backing off; the reader waits on the backoff
    let mut write = tokio_test::task::spawn(wr.write(b"x"));
    assert_pending!(write.poll()); // the writer waits on the same backoff
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(write.is_woken(), "the writer must be woken");
    assert!(read.is_woken(), "the reader must be woken too");
}

#[tokio::test]
async fn a_policy_of_zero_delays_is_not_a_busy_loop() {
    // Real clock: a busy loop would make tens of thousands of attempts in 100 ms.
    let (connector, calls) = refusing(usize::MAX);
    let mut conn = Reconnecting::builder(connector)
        .policy(std::iter::repeat(Duration::ZERO))
        .build();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_millis(100), conn.wait_connected()).await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let attempts = calls.load(Ordering::SeqCst);
    eprintln!("{attempts} attempts in {elapsed_ms} ms");
    assert!(
        attempts <= elapsed_ms + 2,
        "{attempts} attempts in {elapsed_ms} ms"
    );
}

#[tokio::test]
async fn the_retry_loop_does_not_busy_loop_on_zero_delays() {
    let (connector, calls) = refusing(usize::MAX);
    let started = std::time::Instant::now();
    let run = RetryLoop::new(connector)
        .policy(std::iter::repeat(Duration::from_secs(1)))
        .on_disconnect(|_, _| Box::pin(async { Decision::RetryAfter(Duration::ZERO) }))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) });
    let _ = tokio::time::timeout(Duration::from_millis(100), run).await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let attempts = calls.load(Ordering::SeqCst);
    eprintln!("{attempts} attempts in {elapsed_ms} ms");
    assert!(
        attempts <= elapsed_ms + 2,
        "{attempts} attempts in {elapsed_ms} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn failover_moves_on_from_a_target_whose_attempt_timed_out() {
    let (dead, dead_calls) = hanging();
    let (up, up_calls) = refusing(0);
    let mut conn = Reconnecting::builder(Failover::new(vec![dead, up]))
        .connect_timeout(Duration::from_secs(1))
        .policy(std::iter::repeat_n(Duration::from_secs(1), 5))
        .build();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!(dead_calls.load(Ordering::SeqCst), 1);
    assert_eq!(up_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_loop_failover_moves_on_after_a_connect_timeout() {
    let (dead, _) = hanging();
    let (up, up_calls) = refusing(0);
    let outcome = RetryLoop::new(Failover::new(vec![dead, up]))
        .connect_timeout(Duration::from_secs(1))
        .policy(std::iter::repeat_n(Duration::from_secs(1), 5))
        .run(|_io| async { SessionEnd::<u8, ()>::Done(7) })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(7)));
    assert_eq!(up_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_a_loss_owed_to_the_writer() {
    let (peers_tx, mut peers) = tokio::sync::mpsc::unbounded_channel();
    let connector = move || {
        let (client, server) = tokio::io::duplex(64);
        let _ = peers_tx.send(server);
        async move { Ok(client) }
    };
    let conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .policy(std::iter::repeat(Duration::from_secs(1)))
        .build();
    let (mut rd, mut wr) = conn.split();
    wr.write_all(b"last words").await.unwrap();
    drop(peers.recv().await); // the peer dies before reading them
    let _ = rd.read(&mut [0; 8]).await.unwrap_err(); // the reader notices
    let err = wr.shutdown().await.unwrap_err();
    let lost = Disconnected::from_io_error(&err).expect("a Disconnected error");
    assert_eq!(lost.unconfirmed_bytes(), 10);
    wr.shutdown().await.unwrap(); // told once; shutting down again closes
}

#[tokio::test(start_paused = true)]
async fn after_a_give_up_a_shutdown_does_not_change_the_error_kind() {
    let (connector, _) = refusing(usize::MAX);
    let mut conn = Reconnecting::builder(connector)
        .policy(std::iter::repeat_n(Duration::from_secs(1), 1))
        .build();
    conn.wait_connected().await.unwrap_err();
    let _ = conn.shutdown().await;
    let err = conn.write(b"x").await.unwrap_err();
    assert!(GaveUp::from_io_error(&err).is_some(), "{err:?}");
}

#[test]
#[should_panic(expected = "connect_timeout")]
fn a_zero_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = Reconnecting::builder(connector).connect_timeout(Duration::ZERO);
}

#[test]
#[should_panic(expected = "idle_timeout")]
fn a_zero_idle_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = Reconnecting::builder(connector).idle_timeout(Duration::ZERO);
}

#[test]
#[should_panic(expected = "connect_timeout")]
fn a_zero_retry_loop_connect_timeout_is_rejected() {
    let (connector, _) = refusing(0);
    let _ = RetryLoop::new(connector).connect_timeout(Duration::ZERO);
}

#[test]
#[should_panic(expected = "keepalive")]
fn a_sub_second_keepalive_is_rejected() {
    // The kernel would reject it on every attempt (EINVAL), and the adapter would retry forever.
    let _ =
        staunch::reconnect::TcpConnector::new("127.0.0.1:1").keepalive(Duration::from_millis(500));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_kernel_rejects_a_zero_keepalive_control() {
    // Control for the test above: a 0 s keepalive makes every connect fail.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let params = socket2::TcpKeepalive::new().with_time(Duration::from_millis(500));
    let err = socket2::SockRef::from(&socket)
        .set_tcp_keepalive(&params)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    drop(listener);
}
