//! `RetryLoop` on paused time with scripted connectors.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::backoff::{Constant, Exponential};
use staunch::reconnect::{
    BoxFuture, Decision, GiveUpCause, Reason, RetryLoop, RetryOutcome, SessionEnd,
};
use tokio::io::DuplexStream;
use tokio::time::Instant;

use crate::support::scripted_kinds;

fn exponential() -> Exponential {
    Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One line per hook call: attempt, whether a session ended (rather than an attempt failing),
/// whether the session had been up, the next delay.
type Log = Arc<Mutex<Vec<(u32, bool, bool, Duration)>>>;

fn ended(ctx: &staunch::reconnect::HookContext) -> bool {
    matches!(ctx.reason(), Some(Reason::SessionEnded))
}

#[tokio::test(start_paused = true)]
async fn connect_failures_are_retried_until_the_policy_gives_up() {
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let (conn, calls) = scripted_kinds(vec![refused; 10]);
    let start = Instant::now();
    let outcome = RetryLoop::new(conn)
        .policy(Constant::new(Duration::from_secs(1)).take(3))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    match outcome {
        RetryOutcome::GaveUp {
            gave_up,
            session_error: None,
        } => {
            // Four connection attempts: the first and one after each of the three delays.
            assert_eq!(gave_up.attempts(), 4);
            assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
            let last = gave_up.last_reason().unwrap();
            assert!(
                matches!(last, Reason::ConnectFailed(e) if e.kind() == io::ErrorKind::ConnectionRefused)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*calls.lock().unwrap(), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_connect_error_stops_at_once() {
    let (conn, calls) = scripted_kinds(vec![Some(io::ErrorKind::PermissionDenied)]);
    let outcome = RetryLoop::new(conn)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    let RetryOutcome::GaveUp { gave_up, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(gave_up.cause(), GiveUpCause::Fatal);
    assert_eq!(gave_up.attempts(), 1);
    assert!(
        matches!(gave_up.last_reason(), Some(Reason::ConnectFailed(e)) if e.kind() == io::ErrorKind::PermissionDenied)
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_connect_if_replaces_the_classification() {
    // The same name, shape and default as `Reconnecting`'s `Builder::retry_connect_if`.
    let (conn, calls) = scripted_kinds(vec![Some(io::ErrorKind::PermissionDenied); 2]);
    let outcome = RetryLoop::new(conn)
        .policy(Constant::new(Duration::from_secs(1)))
        .retry_connect_if(|_| true)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())), "{outcome:?}");
    assert_eq!(*calls.lock().unwrap(), 3);

    let (conn, calls) = scripted_kinds(vec![Some(io::ErrorKind::ConnectionRefused)]);
    let outcome = RetryLoop::new(conn)
        .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(
        matches!(&outcome, RetryOutcome::GaveUp { gave_up, .. } if gave_up.cause() == GiveUpCause::Fatal),
        "{outcome:?}"
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn sessions_run_until_one_is_done_or_fatal() {
    let (conn, _) = scripted_kinds(vec![]);
    let mut n = 0;
    let outcome = RetryLoop::new(conn)
        .policy(Constant::new(Duration::from_secs(1)))
        .run(|_io| {
            n += 1;
            let this = n;
            async move {
                match this {
                    1 => SessionEnd::Reconnect,
                    2 => SessionEnd::Retry("flaky"),
                    _ => SessionEnd::Done(this),
                }
            }
        })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(3)));

    let (conn, _) = scripted_kinds(vec![]);
    let outcome = RetryLoop::new(conn)
        .run(|_io| async { SessionEnd::<(), _>::Fatal("bad credentials") })
        .await;
    match outcome {
        RetryOutcome::GaveUp {
            gave_up,
            session_error: Some("bad credentials"),
        } => {
            assert_eq!(gave_up.cause(), GiveUpCause::Fatal);
            assert!(matches!(gave_up.last_reason(), Some(Reason::SessionEnded)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_hook_gets_the_context() {
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let (conn, _) = scripted_kinds(vec![refused, None, None, None]);
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let start = Instant::now();
    let mut n = 0;
    let outcome = RetryLoop::new(conn)
        .policy(exponential())
        .on_disconnect(move |ctx, _connector| {
            assert!(ctx.elapsed() <= start.elapsed());
            seen.lock().unwrap().push((
                ctx.attempt(),
                ended(ctx),
                ctx.uptime().is_some(),
                ctx.next_delay().unwrap(),
            ));
            Box::pin(async { Decision::Retry })
        })
        .run(|_io| {
            n += 1;
            let this = n;
            async move {
                match this {
                    1 => SessionEnd::Retry("dropped"),
                    2 => SessionEnd::Reconnect,
                    _ => SessionEnd::Done(()),
                }
            }
        })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())));
    let ms = Duration::from_millis;
    assert_eq!(
        *log.lock().unwrap(),
        [
            (1, false, false, ms(100)),
            (2, true, true, ms(200)),
            (3, true, true, ms(400)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_backoff_resets_only_after_a_stable_session() {
    let (conn, _) = scripted_kinds(vec![]);
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let mut n = 0u32;
    let outcome = RetryLoop::new(conn)
        .policy(exponential())
        .stable_after(Duration::from_secs(30))
        .on_disconnect(move |ctx, _connector| {
            seen.lock().unwrap().push((
                ctx.attempt(),
                ended(ctx),
                false,
                ctx.next_delay().unwrap(),
            ));
            Box::pin(async { Decision::Retry })
        })
        .run(|_io| {
            n += 1;
            let this = n;
            async move {
                // Sessions 1-3 flap at once; session 4 stays up for 31 s; session 5 flaps; 6 ends.
                if this == 4 {
                    tokio::time::sleep(Duration::from_secs(31)).await;
                }
                if this == 6 {
                    SessionEnd::Done(())
                } else {
                    SessionEnd::<(), ()>::Reconnect
                }
            }
        })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())));
    let delays: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.0, e.3.as_millis()))
        .collect();
    // A flapping server gets ever longer delays; the stable session starts them over (and the
    // attempt count: 0 attempts in the outage its loss began).
    assert_eq!(delays, [(1, 100), (2, 200), (3, 400), (0, 100), (1, 200)]);
}

#[tokio::test(start_paused = true)]
async fn the_hook_can_give_up_or_choose_the_delay() {
    let (conn, calls) = scripted_kinds(vec![Some(io::ErrorKind::ConnectionRefused); 5]);
    let start = Instant::now();
    let outcome = RetryLoop::new(conn)
        .on_disconnect(|ctx, _connector| {
            let decision = if ctx.attempt() < 2 {
                Decision::RetryAfter(Duration::from_secs(7))
            } else {
                Decision::GiveUp
            };
            Box::pin(async move { decision })
        })
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    let RetryOutcome::GaveUp { gave_up, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(gave_up.cause(), GiveUpCause::Hook);
    assert_eq!(gave_up.attempts(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_a_delay_and_a_session() {
    let (conn, _) = scripted_kinds(vec![Some(io::ErrorKind::ConnectionRefused)]);
    let start = Instant::now();
    let outcome = RetryLoop::new(conn)
        .policy(Constant::new(Duration::from_secs(3600)))
        .cancel_on(tokio::time::sleep(Duration::from_secs(2)))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    match outcome {
        RetryOutcome::GaveUp { gave_up, .. } => {
            assert_eq!(gave_up.cause(), GiveUpCause::Cancelled);
            assert!(matches!(
                gave_up.last_reason(),
                Some(Reason::ConnectFailed(_))
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    let (conn, _) = scripted_kinds(vec![]);
    let start = Instant::now();
    let outcome = RetryLoop::new(conn)
        .cancel_on(tokio::time::sleep(Duration::from_secs(2)))
        .run(|_io| async { std::future::pending::<SessionEnd<(), ()>>().await })
        .await;
    match outcome {
        RetryOutcome::GaveUp { gave_up, .. } => {
            assert_eq!(gave_up.cause(), GiveUpCause::Cancelled);
            assert!(gave_up.last_reason().is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_times_out_and_is_retried() {
    let mut first = true;
    let conn = move || -> BoxFuture<io::Result<DuplexStream>> {
        if std::mem::take(&mut first) {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async { Ok(tokio::io::duplex(64).0) })
        }
    };
    let start = Instant::now();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let outcome = RetryLoop::new(conn)
        .connect_timeout(Duration::from_secs(5))
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect(move |ctx, _connector| {
            if let Some(reason) = ctx.reason() {
                seen.lock().unwrap().push(reason.kind());
            }
            Box::pin(async { Decision::Retry })
        })
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())));
    assert_eq!(*errors.lock().unwrap(), [io::ErrorKind::TimedOut]);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}
