//! `Failover` between connectors: it moves on after a failure or a timed-out attempt and stays
//! with a target that worked, under `Reconnecting` and `RetryLoop`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use staunch::backoff::Constant;
use staunch::reconnect::{Failover, Reconnecting, RetryLoop, RetryOutcome, SessionEnd};
use tokio::io::AsyncWriteExt;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn failover_moves_on_after_a_failure_and_stays_after_a_success() {
    let (down, down_peers) = script([Plan::Refuse; 100]);
    let (up, mut up_peers) = script([]);
    let failover = Failover::new(vec![down, up]);
    assert_eq!(failover.current(), 0);
    let mut conn = Reconnecting::builder(failover)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!((down_peers.calls(), up_peers.calls()), (1, 1));
    assert_eq!(conn.connector_mut().current(), 1);

    // After a loss, the target that worked last is tried first.
    drop(up_peers.next().await);
    conn.write_all(b"x").await.unwrap_err();
    assert_eq!(conn.wait_connected().await.unwrap(), 2);
    assert_eq!((down_peers.calls(), up_peers.calls()), (1, 2));
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
