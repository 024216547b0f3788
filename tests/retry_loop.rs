//! `RetryLoop` on paused time with scripted connectors.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::backoff::{Constant, Exponential};
use staunch::reconnect::{BoxFuture, Failure, RetryLoop, RetryOutcome, RetryReason, SessionEnd};
use tokio::io::DuplexStream;
use tokio::time::Instant;

type Conn = Box<dyn FnMut() -> BoxFuture<io::Result<DuplexStream>> + Send>;

/// Connect attempts follow `script` (`Some(kind)` fails with that kind, `None` succeeds; past the
/// end, attempts succeed); also returns the number of calls.
fn connector(script: Vec<Option<io::ErrorKind>>) -> (Conn, Arc<Mutex<usize>>) {
    let calls = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&calls);
    let conn: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let mut n = counter.lock().unwrap();
        let outcome = script.get(*n).copied().flatten();
        *n += 1;
        Box::pin(async move {
            match outcome {
                Some(kind) => Err(kind.into()),
                None => Ok(tokio::io::duplex(64).0),
            }
        })
    });
    (conn, calls)
}

fn exponential() -> Exponential {
    Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One line per delay callback: attempt, reason, has error, proposed delay.
type Log = Arc<Mutex<Vec<(u32, RetryReason, bool, Duration)>>>;

#[tokio::test(start_paused = true)]
async fn connect_failures_are_retried_until_the_policy_gives_up() {
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let (conn, calls) = connector(vec![refused; 10]);
    let start = Instant::now();
    let outcome = RetryLoop::<_, ()>::new(conn)
        .policy(Constant::new(Duration::from_secs(1)).take(3))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    match outcome {
        RetryOutcome::GaveUp {
            attempts,
            last_error: Some(Failure::Connect(e)),
        } => {
            assert_eq!(attempts, 4);
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*calls.lock().unwrap(), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_connect_error_stops_at_once() {
    let (conn, calls) = connector(vec![Some(io::ErrorKind::PermissionDenied)]);
    let outcome = RetryLoop::<_, ()>::new(conn)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(
        matches!(outcome, RetryOutcome::Fatal(Failure::Connect(ref e)) if e.kind() == io::ErrorKind::PermissionDenied)
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_connect_if_replaces_the_classification() {
    // The same name, shape and default as `Reconnecting`'s `Builder::retry_connect_if`.
    let (conn, calls) = connector(vec![Some(io::ErrorKind::PermissionDenied); 2]);
    let outcome = RetryLoop::<_, ()>::new(conn)
        .policy(Constant::new(Duration::from_secs(1)))
        .retry_connect_if(|_| true)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())), "{outcome:?}");
    assert_eq!(*calls.lock().unwrap(), 3);

    let (conn, calls) = connector(vec![Some(io::ErrorKind::ConnectionRefused)]);
    let outcome = RetryLoop::<_, ()>::new(conn)
        .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(
        matches!(outcome, RetryOutcome::Fatal(Failure::Connect(_))),
        "{outcome:?}"
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn sessions_run_until_one_is_done_or_fatal() {
    let (conn, _) = connector(vec![]);
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

    let (conn, _) = connector(vec![]);
    let outcome = RetryLoop::new(conn)
        .run(|_io| async { SessionEnd::<(), _>::Fatal("bad credentials") })
        .await;
    assert!(matches!(
        outcome,
        RetryOutcome::Fatal(Failure::Session("bad credentials"))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_delay_callback_gets_the_context() {
    let refused = Some(io::ErrorKind::ConnectionRefused);
    let (conn, _) = connector(vec![refused, None, None, None]);
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let start = Instant::now();
    let mut n = 0;
    let outcome = RetryLoop::new(conn)
        .policy(exponential())
        .on_delay(move |ctx| {
            assert!(ctx.elapsed() <= start.elapsed());
            seen.lock().unwrap().push((
                ctx.attempt(),
                ctx.reason(),
                ctx.error().is_some(),
                ctx.proposed_delay(),
            ));
            Some(ctx.proposed_delay())
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
            (1, RetryReason::ConnectFailed, true, ms(100)),
            (2, RetryReason::SessionEnded, true, ms(200)),
            (3, RetryReason::SessionEnded, false, ms(400)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_backoff_resets_only_after_a_stable_session() {
    let (conn, _) = connector(vec![]);
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let mut n = 0u32;
    let outcome = RetryLoop::new(conn)
        .policy(exponential())
        .stable_after(Duration::from_secs(30))
        .on_delay(move |ctx| {
            seen.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.reason(), false, ctx.proposed_delay()));
            Some(ctx.proposed_delay())
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
    // A flapping server gets ever longer delays; the stable session starts them over.
    assert_eq!(delays, [(1, 100), (2, 200), (3, 400), (1, 100), (2, 200)]);
}

#[tokio::test(start_paused = true)]
async fn the_delay_callback_can_give_up() {
    let (conn, calls) = connector(vec![Some(io::ErrorKind::ConnectionRefused); 5]);
    let outcome = RetryLoop::<_, ()>::new(conn)
        .on_delay(|ctx| (ctx.attempt() < 2).then_some(ctx.proposed_delay()))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(outcome, RetryOutcome::GaveUp { attempts: 2, .. }));
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_a_delay_and_a_session() {
    let (conn, _) = connector(vec![Some(io::ErrorKind::ConnectionRefused)]);
    let start = Instant::now();
    let outcome = RetryLoop::<_, ()>::new(conn)
        .policy(Constant::new(Duration::from_secs(3600)))
        .cancel_on(tokio::time::sleep(Duration::from_secs(2)))
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(
        outcome,
        RetryOutcome::Cancelled {
            last_error: Some(Failure::Connect(_))
        }
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    let (conn, _) = connector(vec![]);
    let start = Instant::now();
    let outcome = RetryLoop::<_, ()>::new(conn)
        .cancel_on(tokio::time::sleep(Duration::from_secs(2)))
        .run(|_io| async { std::future::pending::<SessionEnd<(), ()>>().await })
        .await;
    assert!(matches!(
        outcome,
        RetryOutcome::Cancelled { last_error: None }
    ));
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
    let outcome = RetryLoop::<_, ()>::new(conn)
        .connect_timeout(Duration::from_secs(5))
        .policy(Constant::new(Duration::from_secs(1)))
        .on_delay(move |ctx| {
            if let Some(Failure::Connect(e)) = ctx.error() {
                seen.lock().unwrap().push(e.kind());
            }
            Some(ctx.proposed_delay())
        })
        .run(|_io| async { SessionEnd::<(), ()>::Done(()) })
        .await;
    assert!(matches!(outcome, RetryOutcome::Done(())));
    assert_eq!(*errors.lock().unwrap(), [io::ErrorKind::TimedOut]);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}
