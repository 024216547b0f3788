//! `ReconnectHandle::reconnect_now` on paused time with scripted connectors: it cuts a backoff
//! short and starts it over, for `Reconnecting` and `RetryLoop`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use staunch::backoff::Constant;
use staunch::reconnect::{ConnState, EofPolicy, Reconnecting, RetryLoop, RetryOutcome, SessionEnd};
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, Instant};

use crate::support::*;

/// 10 s, 20 s, 40 s, ...: where the policy is tells in the delays.
fn doubling() -> impl Iterator<Item = Duration> + Clone + Send + 'static {
    (0..).map(|n| Duration::from_secs(10 << n))
}

/// Refused three times, then connects; with `cut_at`, `reconnect_now` at that time. When it
/// connected, and the state seen just after the cut.
async fn connect_through_refusals(cut_at: Option<Duration>) -> (Duration, Option<ConnState>) {
    let (connector, calls) = refusing(3);
    let mut conn = Reconnecting::builder(connector).policy(doubling()).build();
    let handle = conn.reconnect_handle();
    let state = conn.watch();
    let start = Instant::now();
    let connecting = tokio::spawn(async move { conn.wait_connected().await.map(|_| conn) });
    let mut after_cut = None;
    if let Some(at) = cut_at {
        sleep(at).await;
        handle.reconnect_now();
        sleep(Duration::from_secs(1)).await;
        after_cut = Some(state.borrow().clone());
    }
    let conn = connecting.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(conn.generation(), 1);
    (start.elapsed(), after_cut)
}

#[tokio::test(start_paused = true)]
async fn reconnect_now_cuts_a_backoff_short_and_starts_it_over() {
    // Attempts at 0 and 10 s are refused; at 15 s, 5 s into the 20 s backoff, the call: the
    // third attempt runs at once and is refused, the policy is back at its first delay (10 s,
    // attempt number 2 of a new count), and the fourth connects at 25 s.
    let (connected, after_cut) = connect_through_refusals(Some(Duration::from_secs(15))).await;
    assert_eq!(connected, Duration::from_secs(25));
    assert!(
        matches!(
            after_cut,
            Some(ConnState::Backoff { attempt: 2, delay, .. }) if delay == Duration::from_secs(10)
        ),
        "{after_cut:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_reconnect_now_the_backoff_runs_its_course() {
    // Control: 10 + 20 + 40 s.
    let (connected, _) = connect_through_refusals(None).await;
    assert_eq!(connected, Duration::from_secs(70));
}

#[tokio::test(start_paused = true)]
async fn a_live_connection_is_kept_and_the_backoff_after_its_loss_is_skipped() {
    let (connector, mut peers) = accepting();
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(60)))
        .eof_policy(EofPolicy::Reconnect)
        .build();
    let handle = conn.reconnect_handle();
    conn.wait_connected().await.unwrap();
    let first = peers.recv().await.unwrap();
    handle.reconnect_now();
    handle.reconnect_now(); // counts once
    sleep(Duration::from_secs(1)).await;
    assert!(matches!(
        conn.state(),
        ConnState::Connected { generation: 1 }
    ));
    drop(first);
    disconnected(&conn.read(&mut [0; 8]).await.unwrap_err());
    let start = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::ZERO, "not the 60 s backoff");
    // Met by that connection: the next loss waits out the backoff again.
    drop(peers.recv().await.unwrap());
    disconnected(&conn.read(&mut [0; 8]).await.unwrap_err());
    let start = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_given_up_adapter_stays_given_up() {
    let (connector, calls) = refusing(usize::MAX);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)).take(1))
        .build();
    gave_up(&conn.wait_connected().await.unwrap_err());
    conn.reconnect_handle().reconnect_now();
    gave_up(&conn.wait_connected().await.unwrap_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn reconnect_now_cuts_a_retry_loop_s_backoff_short() {
    let (connector, calls) = refusing(1);
    let retry = RetryLoop::new(connector).policy(Constant::new(Duration::from_secs(60)));
    let handle = retry.reconnect_handle();
    let start = Instant::now();
    let running = tokio::spawn(retry.run(|_io| async { SessionEnd::<(), ()>::Done(()) }));
    sleep(Duration::from_secs(1)).await;
    handle.reconnect_now();
    assert!(matches!(running.await.unwrap(), RetryOutcome::Done(())));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "not the 60 s backoff"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
