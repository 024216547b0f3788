//! The retry core, seen through `Reconnecting`: the backoff follows the policy and starts over only
//! after a connection stayed up for the stable period (a flapping server gets growing delays),
//! attempts are counted per outage, connect and give-up timeouts, cancellation, a sticky give-up,
//! and the give-up on connect errors that retrying cannot fix. Paused time and in-memory
//! connections, except the `TcpConnector` checks (real clock).

use crate::support::*;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_test::assert_ready;

use staunch::backoff::{Constant, Exponential};
use staunch::reconnect::{
    BoxFuture, ConnState, Decision, GiveUpCause, Reason, Reconnecting, TcpConnector,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_test::assert_pending;

/// 1 s, 2 s, 4 s, … up to 60 s, no jitter.
fn doubling() -> Exponential {
    Exponential::builder()
        .min(Duration::from_secs(1))
        .max(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Wait for the adapter to give up, failing (not hanging) if it goes on retrying.
async fn give_up(conn: &mut Reconnecting<Conn>) -> io::Error {
    tokio::time::timeout(Duration::from_secs(60), conn.wait_connected())
        .await
        .expect("still retrying after a minute")
        .unwrap_err()
}

/// What one reconnect after a lost connection looked like.
#[derive(Debug, PartialEq)]
struct Cycle {
    /// `Backoff { attempt, delay }` as published while the adapter waited.
    backoff: (u32, Duration),
    /// How long `wait_connected` took.
    waited: Duration,
}

/// Connect (the first time), then `cycles` times: keep the connection up for `uptime`, lose it,
/// and reconnect, recording the published backoff and the time the reconnect took.
async fn flap(
    conn: &mut Reconnecting<Conn>,
    servers: &mut mpsc::UnboundedReceiver<DuplexStream>,
    cycles: usize,
    uptime: Duration,
) -> Vec<Cycle> {
    let state = conn.watch();
    conn.wait_connected().await.unwrap();
    let mut log = Vec::new();
    for _ in 0..cycles {
        let server = servers.recv().await.unwrap();
        tokio::time::advance(uptime).await;
        drop(server);
        conn.write_all(b"x").await.unwrap_err(); // the loss, reported once
        let start = Instant::now();
        let mut wait = tokio_test::task::spawn(conn.wait_connected());
        assert_pending!(wait.poll());
        let backoff = match &*state.borrow() {
            ConnState::Backoff { attempt, delay, .. } => (*attempt, *delay),
            other => panic!("expected Backoff, got {other:?}"),
        };
        wait.await.unwrap();
        log.push(Cycle {
            backoff,
            waited: start.elapsed(),
        });
    }
    log
}

fn cycles(backoffs: &[(u32, u64)]) -> Vec<Cycle> {
    backoffs
        .iter()
        .map(|&(attempt, secs)| Cycle {
            backoff: (attempt, Duration::from_secs(secs)),
            waited: Duration::from_secs(secs),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_flapping_server_gets_growing_delays() {
    let (connector, mut servers) = accepting();
    let mut conn = Reconnecting::builder(connector).policy(doubling()).build();
    // Every connection is lost at once: the default 10 s stable period is never reached, so the
    // attempt number and the delay go on growing across connections.
    let log = flap(&mut conn, &mut servers, 6, Duration::ZERO).await;
    assert_eq!(
        log,
        cycles(&[(2, 1), (3, 2), (4, 4), (5, 8), (6, 16), (7, 32)])
    );
    assert_eq!(conn.generation(), 7);
}

#[tokio::test(start_paused = true)]
async fn control_with_no_stable_period_a_flapping_server_is_hit_every_first_delay() {
    // The behaviour before `stable_after` existed, still available with a zero period: the
    // check above would catch it.
    let (connector, mut servers) = accepting();
    let mut conn = Reconnecting::builder(connector)
        .policy(doubling())
        .stable_after(Duration::ZERO)
        .build();
    let log = flap(&mut conn, &mut servers, 4, Duration::ZERO).await;
    assert_eq!(log, cycles(&[(1, 1), (1, 1), (1, 1), (1, 1)]));
}

#[tokio::test(start_paused = true)]
async fn a_connection_up_for_the_stable_period_starts_the_backoff_over() {
    let (connector, mut servers) = accepting();
    let mut conn = Reconnecting::builder(connector)
        .policy(doubling())
        .stable_after(Duration::from_secs(30))
        .build();
    // Three connections lost at once: 1, 2, 4 s.
    let log = flap(&mut conn, &mut servers, 3, Duration::ZERO).await;
    assert_eq!(log, cycles(&[(2, 1), (3, 2), (4, 4)]));
    // One that stays up just short of the period does not reset: 8 s next.
    let log = flap(&mut conn, &mut servers, 1, Duration::from_millis(29_999)).await;
    assert_eq!(log, cycles(&[(5, 8)]));
    // One that stays up for the period does: back to attempt 1 and 1 s, then growing again.
    let log = flap(&mut conn, &mut servers, 1, Duration::from_secs(30)).await;
    assert_eq!(log, cycles(&[(1, 1)]));
    let log = flap(&mut conn, &mut servers, 2, Duration::ZERO).await;
    assert_eq!(log, cycles(&[(2, 2), (3, 4)]));
}

#[tokio::test(start_paused = true)]
async fn the_hook_context_counts_attempts_and_time_across_flapping_connections() {
    let (connector, mut servers) = accepting();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect(move |ctx, _| {
            log.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.elapsed(), ctx.uptime()));
            Box::pin(async { Decision::Retry })
        })
        .build();
    // Up 2 s each (under the default 10 s), then up 10 s.
    flap(&mut conn, &mut servers, 3, Duration::from_secs(2)).await;
    flap(&mut conn, &mut servers, 1, Duration::from_secs(10)).await;
    let secs = Duration::from_secs;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            // The outage began with the first attempt at t = 0; each lost connection counts.
            (1, secs(2), Some(secs(2))),
            (2, secs(5), Some(secs(2))),
            (3, secs(8), Some(secs(2))),
            // Stable: a new outage, starting at this loss.
            (0, secs(0), Some(secs(10))),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_policy_that_ends_gives_up_on_a_flapping_server() {
    let (connector, mut servers) = accepting();
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)).take(3))
        .build();
    for _ in 0..4 {
        conn.wait_connected().await.unwrap();
        drop(servers.recv().await.unwrap());
        conn.write_all(b"x").await.unwrap_err();
    }
    let err = give_up(&mut conn).await;
    let g = gave_up(&err);
    assert_eq!(g.cause(), GiveUpCause::PolicyExhausted);
    assert_eq!(g.attempts(), 4, "four connections, none stable");
    assert_eq!(conn.generation(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_input_connect_error_gives_up_after_one_attempt() {
    let (connector, calls) = failing(io::ErrorKind::InvalidInput);
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let runs = Arc::clone(&hook_runs);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect(move |_, _| {
            runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Decision::Retry })
        })
        .build();
    let state = conn.watch();
    let start = Instant::now();
    let err = give_up(&mut conn).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "no backoff");
    let g = gave_up(&err);
    assert_eq!(g.cause(), GiveUpCause::Fatal);
    assert_eq!(g.attempts(), 1);
    assert!(
        matches!(g.last_reason(), Some(Reason::ConnectFailed(e)) if e.kind() == io::ErrorKind::InvalidInput),
        "{g:?}"
    );
    assert_eq!(g.last_reason().unwrap().kind(), io::ErrorKind::InvalidInput);
    assert!(matches!(&*state.borrow(), ConnState::GaveUp(g) if g.cause() == GiveUpCause::Fatal));

    // Sticky, like every give-up: the same error, and no more attempts.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        assert_eq!(
            gave_up(&conn.write(b"x").await.unwrap_err()).cause(),
            GiveUpCause::Fatal
        );
        assert_eq!(
            gave_up(&conn.read(&mut [0; 4]).await.unwrap_err()).cause(),
            GiveUpCause::Fatal
        );
        assert_eq!(
            gave_up(&conn.flush().await.unwrap_err()).cause(),
            GiveUpCause::Fatal
        );
        assert_eq!(
            gave_up(&conn.wait_connected().await.unwrap_err()).cause(),
            GiveUpCause::Fatal
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        hook_runs.load(Ordering::SeqCst),
        0,
        "no on_disconnect for a fatal error"
    );
}

#[tokio::test(start_paused = true)]
async fn permission_denied_and_unsupported_are_fatal_too() {
    for kind in [io::ErrorKind::PermissionDenied, io::ErrorKind::Unsupported] {
        let (connector, calls) = failing(kind);
        let mut conn = Reconnecting::new(connector);
        let err = give_up(&mut conn).await;
        assert_eq!(gave_up(&err).cause(), GiveUpCause::Fatal, "{kind:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn control_a_refused_connection_keeps_being_retried() {
    for kind in [
        io::ErrorKind::ConnectionRefused,
        io::ErrorKind::NotFound, // a Unix socket not there yet, a name with no address
        io::ErrorKind::Other,
    ] {
        let (connector, calls) = failing(kind);
        let mut conn = Reconnecting::builder(connector)
            .policy(Constant::new(Duration::from_secs(1)))
            .build();
        let waited =
            tokio::time::timeout(Duration::from_millis(60_500), conn.wait_connected()).await;
        assert!(waited.is_err(), "{kind:?}: still retrying after a minute");
        assert_eq!(calls.load(Ordering::SeqCst), 61, "{kind:?}");
        assert!(
            matches!(conn.state(), ConnState::Backoff { attempt: 62, .. }),
            "{kind:?}: {:?}",
            conn.state()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_connect_if_replaces_the_classification() {
    // Retry everything: InvalidInput no longer gives up.
    let (connector, calls) = failing(io::ErrorKind::InvalidInput);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .retry_connect_if(|_| true)
        .build();
    let _ = tokio::time::timeout(Duration::from_millis(10_500), conn.wait_connected()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 11);

    // Give up on a refusal.
    let (connector, calls) = failing(io::ErrorKind::ConnectionRefused);
    let mut conn = Reconnecting::builder(connector)
        .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        .build();
    let err = give_up(&mut conn).await;
    assert_eq!(gave_up(&err).cause(), GiveUpCause::Fatal);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn handshake_errors_and_connect_timeouts_are_not_fatal() {
    // The classification applies to the connector's errors only.
    let (connector, mut servers) = accepting();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&handshakes);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_connect(move |_, io| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < 2 {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, "bad token"));
                }
                Ok(io)
            })
        })
        .build();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!(handshakes.load(Ordering::SeqCst), 3);
    drop(servers.recv().await);

    let hang: Conn =
        Box::new(|| -> BoxFuture<io::Result<DuplexStream>> { Box::pin(std::future::pending()) });
    let mut conn = Reconnecting::builder(hang)
        .policy(Constant::new(Duration::from_secs(1)))
        .connect_timeout(Duration::from_secs(1))
        .build();
    let waited = tokio::time::timeout(Duration::from_secs(30), conn.wait_connected()).await;
    assert!(waited.is_err(), "timeouts are retried");
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_of_the_background_first_attempt_gives_up_too() {
    let (connector, calls) = failing(io::ErrorKind::InvalidInput);
    let mut conn = Reconnecting::builder(connector).build_and_connect_in_background();
    let err = give_up(&mut conn).await;
    assert_eq!(gave_up(&err).cause(), GiveUpCause::Fatal);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tcp_connector_to_an_address_with_no_port_gives_up() {
    // Real clock, no network: "localhost" has no port, which fails before any lookup.
    let mut conn = Reconnecting::builder(TcpConnector::new("localhost"))
        .policy(Constant::new(Duration::from_millis(10)))
        .build();
    let err = tokio::time::timeout(Duration::from_secs(5), conn.wait_connected())
        .await
        .expect("gives up at once")
        .unwrap_err();
    let g = gave_up(&err);
    assert_eq!(g.cause(), GiveUpCause::Fatal);
    assert_eq!(g.attempts(), 1);
    assert_eq!(g.last_reason().unwrap().kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("Fatal"), "{err}");
}

#[test]
fn tcp_connector_to_a_name_that_does_not_resolve_keeps_trying() {
    // Real clock and the system resolver. `.invalid` never resolves (RFC 6761); whether the
    // resolver answers at once or is slow here, the adapter must not give up. The runtime is shut
    // down without waiting for a lookup still blocking a thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = rt.block_on(async {
        let mut conn = Reconnecting::builder(TcpConnector::new("no-such-host.invalid:80"))
            .policy(Constant::new(Duration::from_millis(200)))
            .build();
        let waited = tokio::time::timeout(Duration::from_secs(1), conn.wait_connected()).await;
        assert!(waited.is_err(), "{waited:?}");
        conn.state()
    });
    rt.shutdown_background();
    assert!(!matches!(state, ConnState::GaveUp(_)), "{state:?}");
}

#[tokio::test(start_paused = true)]
async fn reads_see_the_loss_of_a_flapping_connection_once_each_time() {
    // The boundary signal still comes once per lost connection when the backoff goes on.
    let (connector, mut servers) = accepting();
    let mut conn = Reconnecting::builder(connector)
        .policy(doubling())
        .eof_policy(staunch::reconnect::EofPolicy::Reconnect)
        .build();
    let mut buf = [0; 8];
    for generation in 1..=3 {
        assert_eq!(conn.wait_connected().await.unwrap(), generation);
        drop(servers.recv().await.unwrap());
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_follows_the_policy_and_starts_over_after_a_stable_connection() {
    let (connector, mut peers) = script([Plan::Refuse, Plan::Refuse, Plan::Refuse]);
    let mut conn = Reconnecting::builder(connector)
        .policy(exponential())
        .build();

    let start = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    // 100 + 200 + 400 ms of backoff before the fourth attempt.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
    assert_eq!(peers.calls(), 4);

    // Lose the connection after it stayed up for the (default, 10 s) stable period: the policy
    // starts over at 100 ms, not 800 ms. (A connection lost sooner would not reset it; see
    // tests/reconnect_stable_and_fatal.rs.)
    let server = peers.next().await;
    tokio::time::advance(Duration::from_secs(10)).await;
    drop(server);
    let err = conn.write_all(b"x").await.unwrap_err();
    assert_eq!(disconnected(&err).generation(), 1);
    let start = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn exhaustion_is_sticky_and_makes_no_more_attempts() {
    let (connector, peers) = script([Plan::Refuse; 10]);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)).take(2))
        .build();
    let err = conn.wait_connected().await.unwrap_err();
    let g = gave_up(&err);
    assert_eq!(g.cause(), GiveUpCause::PolicyExhausted);
    assert_eq!(g.attempts(), 3);
    assert!(matches!(g.last_reason(), Some(Reason::ConnectFailed(_))));
    assert_eq!(peers.calls(), 3);

    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        gave_up(&conn.write(b"x").await.unwrap_err());
        gave_up(&conn.read(&mut [0; 4]).await.unwrap_err());
        gave_up(&conn.flush().await.unwrap_err());
        gave_up(&conn.wait_connected().await.unwrap_err());
        // Even operations that need no connection report the give-up.
        gave_up(&conn.write(b"").await.unwrap_err());
        gave_up(&conn.read(&mut []).await.unwrap_err());
    }
    gave_up(&conn.shutdown().await.unwrap_err());
    assert_eq!(peers.calls(), 3);
    assert!(matches!(*conn.watch().borrow(), ConnState::GaveUp(_)));
}

#[tokio::test(start_paused = true)]
async fn cancellation_cuts_a_backoff_short() {
    let (connector, peers) = script([Plan::Refuse]);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(3600)))
        .cancel_on(cancel.clone().cancelled_owned())
        .build();
    let start = Instant::now();
    let task = tokio::spawn(async move { conn.wait_connected().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(gave_up(&err).cause(), GiveUpCause::Cancelled);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(peers.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_attempt_times_out() {
    let (connector, _peers) = script([Plan::Hang]);
    let mut conn = Reconnecting::builder(connector)
        .connect_timeout(Duration::from_secs(5))
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    let state = conn.watch();
    let start = Instant::now();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    drop(state);

    // Control: without a timeout the same script never connects.
    let (connector, _peers) = script([Plan::Hang]);
    let mut conn = Reconnecting::new(connector);
    let waited = tokio::time::timeout(Duration::from_secs(3600), conn.wait_connected()).await;
    assert!(waited.is_err());
}

#[tokio::test(start_paused = true)]
async fn watch_shows_backoff_with_the_reason_and_wakes_the_task() {
    let (connector, _peers) = script([Plan::Refuse]);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    let state = conn.watch();
    let mut task = tokio_test::task::spawn(conn.wait_connected());
    assert_pending!(task.poll());
    match &*state.borrow() {
        ConnState::Backoff {
            attempt,
            delay,
            reason,
        } => {
            assert_eq!(*attempt, 2);
            assert_eq!(*delay, Duration::from_secs(1));
            assert!(
                matches!(reason, Reason::ConnectFailed(e) if e.kind() == io::ErrorKind::ConnectionRefused)
            );
        }
        other => panic!("expected Backoff, got {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(task.is_woken(), "the backoff sleep must register the waker");
    assert_eq!(assert_ready!(task.poll()).unwrap(), 1);
    drop(task);
    assert!(matches!(
        *state.borrow(),
        ConnState::Connected { generation: 1 }
    ));
}
