//! The hooks: `on_connect` before user traffic, `on_disconnect` deciding what follows a failure
//! (with the connector in hand), the context they see, and the wakers behind them.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::backoff::Constant;
use staunch::reconnect::{BoxFuture, ConnState, Decision, GiveUpCause, Reason, Reconnecting};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_test::{assert_pending, assert_ready};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn hooks_run_in_order_with_context() {
    let (connector, mut peers) = script([Plan::Refuse]);
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (on_disc, on_conn) = (Arc::clone(&log), Arc::clone(&log));
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect(move |ctx, _connector| {
            on_disc.lock().unwrap().push(format!(
                "disconnect attempt={} total={} gen={} reason={:?} elapsed={:?} uptime={:?}",
                ctx.attempt(),
                ctx.total_attempts(),
                ctx.generation(),
                ctx.reason().map(Reason::kind),
                ctx.elapsed(),
                ctx.uptime(),
            ));
            Box::pin(async { Decision::Retry })
        })
        .on_connect(move |ctx, mut io| {
            on_conn.lock().unwrap().push(format!(
                "connect attempt={} gen={}",
                ctx.attempt(),
                ctx.generation()
            ));
            Box::pin(async move {
                // The handshake goes out before any user byte.
                io.write_all(b"HELLO\n").await?;
                Ok(io)
            })
        })
        .build();

    conn.write_all(b"data\n").await.unwrap();
    let mut server = peers.next().await;
    let mut buf = [0; 11];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HELLO\ndata\n");

    // Up for the default stable period (10 s): its loss starts a new outage at attempt 0.
    tokio::time::advance(Duration::from_secs(10)).await;
    drop(server);
    conn.write_all(b"more\n").await.unwrap_err();
    conn.write_all(b"again\n").await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "disconnect attempt=1 total=1 gen=0 reason=Some(ConnectionRefused) elapsed=0ns uptime=None",
            "connect attempt=2 gen=1",
            "disconnect attempt=0 total=2 gen=1 reason=Some(BrokenPipe) elapsed=0ns uptime=Some(10s)",
            "connect attempt=1 gen=2",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_handshake_counts_as_a_failed_attempt() {
    let (connector, peers) = script([]);
    let mut first = true;
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_connect(move |_, io| {
            let fail = std::mem::take(&mut first);
            Box::pin(async move {
                if fail {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, "bad token"));
                }
                Ok(io)
            })
        })
        .build();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!(
        peers.calls(),
        2,
        "the failed handshake's connection is not used"
    );
}

#[tokio::test(start_paused = true)]
async fn disconnect_hook_can_change_the_connector() {
    let (connector, mut peers) = script([Plan::Refuse, Plan::Refuse]);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .on_disconnect(|_, connector| {
            // Swap in a connector that succeeds at once.
            let mut slot = Some(tokio::io::duplex(64).0);
            *connector = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
                let io = slot
                    .take()
                    .ok_or_else(|| io::ErrorKind::ConnectionRefused.into());
                Box::pin(async move { io })
            });
            Box::pin(async { Decision::Retry })
        })
        .build();
    assert_eq!(conn.wait_connected().await.unwrap(), 1);
    assert_eq!(
        peers.calls(),
        1,
        "the second attempt used the new connector"
    );
    assert!(peers.rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_disconnect_hook_can_give_up() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .on_disconnect(|_, _| Box::pin(async { Decision::GiveUp }))
        .build();
    conn.wait_connected().await.unwrap();
    drop(peers.next().await);
    conn.write_all(b"x").await.unwrap_err();
    let err = conn.write_all(b"x").await.unwrap_err();
    assert_eq!(gave_up(&err).cause(), GiveUpCause::Hook);
    assert_eq!(peers.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn watch_shows_disconnected_while_the_hook_runs() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .on_disconnect(|_, _| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Decision::Retry
            })
        })
        .build();
    let state = conn.watch();
    conn.wait_connected().await.unwrap();
    drop(peers.next().await);
    conn.write_all(b"x").await.unwrap_err();
    {
        let mut connect = tokio_test::task::spawn(conn.wait_connected());
        assert_pending!(connect.poll());
        match &*state.borrow() {
            ConnState::Failed {
                generation: 1,
                reason: Reason::Io(e),
            } => {
                assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    assert_eq!(conn.wait_connected().await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_hooks_register_wakers() {
    // Connect timeout.
    let (connector, _peers) = script([Plan::Hang]);
    let mut conn = Reconnecting::builder(connector)
        .connect_timeout(Duration::from_secs(5))
        .build();
    let mut task = tokio_test::task::spawn(conn.wait_connected());
    assert_pending!(task.poll());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(task.is_woken(), "the connect timeout must wake the task");
    assert_pending!(task.poll()); // now backing off
    drop(task);
    assert!(matches!(
        conn.state(),
        ConnState::Backoff {
            reason: Reason::ConnectTimeout(_),
            ..
        }
    ));

    // Idle timeout.
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .idle_timeout(Duration::from_secs(7))
        .build();
    conn.wait_connected().await.unwrap();
    let _peer = peers.next().await;
    let mut buf = [0; 4];
    let mut task = tokio_test::task::spawn(conn.read(&mut buf));
    assert_pending!(task.poll());
    tokio::time::advance(Duration::from_secs(7)).await;
    assert!(task.is_woken(), "the idle timeout must wake the task");
    assert!(assert_ready!(task.poll()).is_err());
    drop(task);

    // A disconnect hook that waits.
    let (connector, _peers) = script([Plan::Refuse]);
    let mut conn = Reconnecting::builder(connector)
        .on_disconnect(|_, _| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Decision::GiveUp
            })
        })
        .build();
    let mut task = tokio_test::task::spawn(conn.wait_connected());
    assert_pending!(task.poll());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(task.is_woken(), "the hook's future must wake the task");
    assert!(assert_ready!(task.poll()).is_err());
}
