//! The client's retries, on the retry core of `reconnect`, on paused time over in-memory
//! transports: the backoff starts over only after a stable period, and the client gives up with
//! a `GaveUp` (policy ended, hook, cancellation, connect timeout), publishing its state.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::backoff::{Constant, Exponential};
use staunch::reconnect::{ConnState, Decision, GaveUp, GiveUpCause, Reason};
use staunch::resume::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

type Connector = Box<dyn FnMut() -> std::future::Ready<io::Result<DuplexStream>> + Send>;

fn welcome() -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 28];
    frame.extend_from_slice(&[7; 16]);
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.extend_from_slice(&100_000u32.to_be_bytes());
    frame
}

/// A connector to a server that welcomes every hello and hangs up `hold` later; `times`
/// records when each connection was made.
fn welcome_and_drop(times: Arc<Mutex<Vec<Instant>>>, hold: Duration) -> Connector {
    Box::new(move || {
        times.lock().unwrap().push(Instant::now());
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut hello = [0; 34];
            if server.read_exact(&mut hello).await.is_ok() {
                let _ = server.write_all(&welcome()).await;
                tokio::time::sleep(hold).await;
            }
        });
        std::future::ready(Ok(client))
    })
}

fn refused() -> Connector {
    Box::new(|| std::future::ready(Err(io::ErrorKind::ConnectionRefused.into())))
}

fn exponential() -> Exponential {
    Exponential::builder()
        .min(Duration::from_secs(1))
        .max(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The gaps, in whole seconds, between the first five connections to a server that welcomes
/// and hangs up `hold` later (less than two heartbeats), with a 20 s stable period.
async fn gaps_between_connections(hold: Duration) -> Vec<u64> {
    let times = Arc::default();
    let mut client = Client::builder(welcome_and_drop(Arc::clone(&times), hold))
        .policy(exponential())
        .stable_after(Duration::from_secs(20))
        .build();
    let reading = async {
        while times.lock().unwrap().len() < 5 {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.read(&mut [0; 16])).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(600), reading)
        .await
        .expect("five connections");
    let times = times.lock().unwrap();
    times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_server_that_welcomes_and_drops_gets_ever_longer_delays() {
    let gaps = gaps_between_connections(Duration::ZERO).await;
    assert_eq!(gaps[..4], [1, 2, 4, 8], "not the first delay every time");
    // Control: connections that stay up for the stable period start the backoff over.
    let gaps = gaps_between_connections(Duration::from_secs(25)).await;
    assert_eq!(gaps[..4], [26, 26, 26, 26]);
}

/// The error every operation returns once the client gave up, and its payload.
fn gave_up(error: &io::Error) -> &GaveUp {
    assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
    GaveUp::from_io_error(error).unwrap_or_else(|| panic!("a GaveUp payload: {error}"))
}

#[tokio::test(start_paused = true)]
async fn an_ended_policy_gives_up_with_the_last_reason_and_every_call_says_so() {
    let mut client = Client::builder(refused())
        .policy(Constant::new(Duration::from_secs(1)).take(2))
        .build();
    let started = Instant::now();
    let error = client.write_all(b"x").await.and(client.flush().await);
    let error = error.expect_err("no connection ever");
    let gave_up = gave_up(&error);
    assert_eq!(gave_up.cause(), GiveUpCause::PolicyExhausted);
    assert_eq!(gave_up.attempts(), 3);
    assert!(
        matches!(gave_up.last_reason(), Some(Reason::ConnectFailed(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{gave_up}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(matches!(client.state(), ConnState::GaveUp(_)));
    let again = client.read(&mut [0; 4]).await.unwrap_err();
    assert_eq!(gave_up_cause(&again), GiveUpCause::PolicyExhausted);
}

fn gave_up_cause(error: &io::Error) -> GiveUpCause {
    gave_up(error).cause()
}

#[tokio::test(start_paused = true)]
async fn a_connect_attempt_is_bounded_by_connect_timeout() {
    let mut client = Client::builder(std::future::pending::<io::Result<DuplexStream>>)
        .policy(std::iter::empty())
        .connect_timeout(Duration::from_secs(3))
        .build();
    let started = Instant::now();
    let error = client.read(&mut [0; 4]).await.unwrap_err();
    let gave_up = gave_up(&error);
    assert!(
        matches!(gave_up.last_reason(), Some(Reason::ConnectTimeout(d)) if *d == Duration::from_secs(3)),
        "{gave_up}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn cancel_on_cuts_a_backoff_short() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut client = Client::builder(refused())
        .policy(Constant::new(Duration::from_secs(3600)))
        .cancel_on(async move {
            let _ = stopped.await;
        })
        .build();
    let task = tokio::spawn(async move { client.read(&mut [0; 4]).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(gave_up_cause(&error), GiveUpCause::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not after the hour"
    );
}

#[tokio::test(start_paused = true)]
async fn on_disconnect_sees_each_loss_and_can_give_up() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let times = Arc::default();
    let mut client = Client::builder(welcome_and_drop(times, Duration::from_secs(5)))
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect({
            let seen = seen.clone();
            move |ctx, _connector| {
                seen.lock()
                    .unwrap()
                    .push((ctx.attempt(), ctx.generation(), ctx.uptime()));
                let give_up = ctx.generation() >= 2;
                Box::pin(async move {
                    if give_up {
                        Decision::GiveUp
                    } else {
                        Decision::RetryAfter(Duration::from_secs(7))
                    }
                })
            }
        })
        .build();
    let state = client.watch();
    let started = Instant::now();
    let error = client.read(&mut [0; 4]).await.unwrap_err();
    assert_eq!(gave_up_cause(&error), GiveUpCause::Hook);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, 1, Some(Duration::from_secs(5))),
            (2, 2, Some(Duration::from_secs(5)))
        ]
    );
    // Up 5 s, the hook's 7 s, up 5 s.
    assert_eq!(started.elapsed(), Duration::from_secs(17));
    assert!(matches!(*state.borrow(), ConnState::GaveUp(_)));
}

#[tokio::test(start_paused = true)]
async fn the_state_is_connected_from_the_welcome() {
    let times = Arc::default();
    let mut client = Client::builder(welcome_and_drop(times, Duration::from_secs(60))).build();
    assert!(matches!(client.state(), ConnState::Idle));
    let mut state = client.watch();
    let reading = tokio::spawn(async move {
        let _ = client.read(&mut [0; 4]).await;
        client
    });
    let connected = state
        .wait_for(|s| matches!(s, ConnState::Connected { .. }))
        .await
        .unwrap()
        .clone();
    assert!(matches!(connected, ConnState::Connected { generation: 1 }));
    reading.abort();
}
