//! `Reconnecting` against scripted in-memory connections (`tokio::io::duplex`), on paused time:
//! backoff schedules, hooks, exhaustion, and every read/write guarantee of the module docs.

use crate::support::*;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use staunch::backoff::{Constant, Exponential};
use staunch::reconnect::{
    BoxFuture, ConnState, Decision, EofPolicy, Failover, GiveUpCause, ReadMode, Reason,
    Reconnecting, WriteMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready};
use tokio_util::codec::{Framed, LinesCodec};

fn exponential() -> Exponential {
    Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .factor(2.0)
        .build()
        .unwrap()
}

/// Shut `conn` down, then read the server half of the next connection to its end: it got
/// exactly `expected`.
async fn shut_down_and_assert_next_peer_got(
    conn: &mut Reconnecting<Conn>,
    peers: &mut Peers,
    expected: &[u8],
) {
    let mut server = peers.next().await;
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn building_does_not_connect() {
    let (connector, peers) = script([]);
    let conn = Reconnecting::new(connector);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(peers.calls(), 0);
    assert!(matches!(*conn.watch().borrow(), ConnState::Idle));
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
async fn a_failed_write_is_reported_once_with_generation_and_unconfirmed_bytes() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::new(connector);
    conn.write_all(b"hello").await.unwrap();
    conn.confirm();
    conn.write_all(b" world").await.unwrap();
    assert_eq!(conn.unconfirmed_bytes(), 6);
    drop(peers.next().await);

    let err = conn.write_all(b"lost").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    let d = disconnected(&err);
    assert_eq!((d.generation(), d.unconfirmed_bytes()), (1, 6));
    assert!(matches!(d.reason(), Reason::Io(_)));

    // The next write reconnects; the failed buffer is not replayed.
    conn.write_all(b"next").await.unwrap();
    assert_eq!(conn.generation(), 2);
    shut_down_and_assert_next_peer_got(&mut conn, &mut peers, b"next").await;
}

#[tokio::test(start_paused = true)]
async fn retry_mode_writes_the_failed_buffer_to_the_next_connection() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .write_mode(WriteMode::RetryFailedWrite)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    conn.write_all(b"one").await.unwrap();
    drop(peers.next().await);
    conn.write_all(b"two").await.unwrap();
    assert_eq!(conn.generation(), 2);
    shut_down_and_assert_next_peer_got(&mut conn, &mut peers, b"two").await;
}

#[tokio::test(start_paused = true)]
async fn pending_during_reconnect_accepts_nothing_and_keeps_progress() {
    let (connector, mut peers) = script([Plan::Refuse]);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(10)))
        .build();
    {
        let mut write = tokio_test::task::spawn(conn.write(b"abandoned"));
        assert_pending!(write.poll());
    } // the write future is dropped during the backoff
    assert_eq!(conn.unconfirmed_bytes(), 0);
    assert_eq!(peers.calls(), 1);

    let start = Instant::now();
    tokio::time::advance(Duration::from_secs(4)).await;
    conn.write_all(b"kept").await.unwrap();
    // The backoff that was in progress went on: 6 s were left, not a new 10 s.
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(peers.calls(), 2);
    shut_down_and_assert_next_peer_got(&mut conn, &mut peers, b"kept").await;
}

#[tokio::test(start_paused = true)]
async fn vectored_writes_reach_the_connection() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::new(connector);
    assert!(
        !tokio::io::AsyncWrite::is_write_vectored(&conn),
        "no connection yet"
    );
    let bufs = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
    let n = conn.write_vectored(&bufs).await.unwrap();
    // Forwarded from the live connection.
    let inner = tokio::io::AsyncWrite::is_write_vectored(conn.get_mut().unwrap());
    assert_eq!(tokio::io::AsyncWrite::is_write_vectored(&conn), inner);
    assert!(n > 0);
    let mut server = peers.next().await;
    let mut got = vec![0; n];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, &b"abcd"[..n]);
    assert_eq!(conn.unconfirmed_bytes(), n as u64);
}

#[tokio::test(start_paused = true)]
async fn reads_get_one_boundary_signal_then_the_new_connection() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    conn.wait_connected().await.unwrap();
    let mut first = peers.next().await;
    first.write_all(b"abc").await.unwrap();
    drop(first);

    let mut buf = [0; 16];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 3);
    let err = conn.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(disconnected(&err).generation(), 1);
    assert!(matches!(disconnected(&err).reason(), Reason::Eof));

    let read = tokio::spawn(async move {
        let n = conn.read(&mut buf).await.unwrap();
        (conn, buf[..n].to_vec())
    });
    let mut second = peers.next().await;
    second.write_all(b"xyz").await.unwrap();
    let (conn, got) = read.await.unwrap();
    assert_eq!(got, b"xyz");
    assert_eq!(conn.generation(), 2);
}

#[tokio::test(start_paused = true)]
async fn splice_mode_joins_connections_without_a_marker() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .read_mode(ReadMode::Splice)
        .build();
    let feeder = tokio::spawn(async move {
        let mut first = peers.next().await;
        first.write_all(b"foo").await.unwrap();
        drop(first);
        let mut second = peers.next().await;
        second.write_all(b"bar").await.unwrap();
        second
    });
    let mut buf = [0; 6];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"foobar");
    assert_eq!(conn.generation(), 2);
    drop(feeder.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn eof_is_end_of_stream_by_default_and_writes_go_on() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::new(connector);
    conn.wait_connected().await.unwrap();
    let mut server = peers.next().await;
    server.shutdown().await.unwrap(); // half-close: the server still reads

    let mut buf = [0; 8];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
    assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
    conn.write_all(b"still here").await.unwrap();
    let mut got = [0; 10];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"still here");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(peers.calls(), 1);
    assert_eq!(conn.generation(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_zero_capacity_read_is_not_eof() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .build();
    conn.wait_connected().await.unwrap();
    let mut server = peers.next().await;
    assert_eq!(conn.read(&mut []).await.unwrap(), 0);
    server.write_all(b"z").await.unwrap();
    let mut buf = [0; 1];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"z");
    assert_eq!((conn.generation(), peers.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn local_shutdown_never_starts_a_reconnect() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .build();
    conn.wait_connected().await.unwrap();
    let mut server = peers.next().await;
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    // Half-close: the server can still answer, and the client still reads.
    server.write_all(b"bye").await.unwrap();
    drop(server);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut buf));
    let err = read.await.expect("no reconnect loop").unwrap_err();
    assert_eq!(buf, b"bye");
    assert_eq!(disconnected(&err).generation(), 1);
    // The lost connection is not replaced: reads see end of stream, writes fail.
    let mut small = [0; 4];
    let read = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut small));
    assert_eq!(
        read.await
            .expect("end of stream, not a new connection")
            .unwrap(),
        0
    );
    assert_eq!(
        conn.write(b"x").await.unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(peers.calls(), 1);
    assert!(matches!(*conn.watch().borrow(), ConnState::ShutDown));
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_backoff_stops_reconnecting() {
    let (connector, peers) = script([Plan::Refuse; 3]);
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    {
        let mut connect = tokio_test::task::spawn(conn.wait_connected());
        assert_pending!(connect.poll());
    }
    conn.shutdown().await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(conn.wait_connected().await.is_err());
    assert_eq!(peers.calls(), 1);
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
async fn the_idle_timeout_notices_a_silent_peer() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .idle_timeout(Duration::from_secs(10))
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    conn.wait_connected().await.unwrap();
    let mut silent = peers.next().await;
    silent.write_all(b"a").await.unwrap();
    let start = Instant::now();
    let mut buf = [0; 4];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
    let err = conn.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(
        matches!(disconnected(&err).reason(), Reason::IdleTimeout(d) if *d == Duration::from_secs(10))
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(conn.wait_connected().await.unwrap(), 2);
    drop(silent);
}

#[tokio::test(start_paused = true)]
async fn split_halves_each_learn_of_a_loss_once() {
    let (connector, mut peers) = script([]);
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    conn.wait_connected().await.unwrap();
    let (mut rd, mut wr) = conn.split();
    wr.write_all(b"request").await.unwrap();
    let mut first = peers.next().await;
    let mut got = [0; 7];
    first.read_exact(&mut got).await.unwrap();
    drop(first);

    // The reader notices the loss and is told.
    let err = rd.read(&mut [0; 8]).await.unwrap_err();
    assert_eq!(disconnected(&err).generation(), 1);
    // The writer had written on that connection: it is told too, once, with the count.
    let err = wr.write_all(b"x").await.unwrap_err();
    assert_eq!(disconnected(&err).generation(), 1);
    assert_eq!(disconnected(&err).unconfirmed_bytes(), 7);
    wr.write_all(b"retry").await.unwrap();
    let mut second = peers.next().await;
    let mut got = [0; 5];
    second.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"retry");
}

#[tokio::test(start_paused = true)]
async fn a_codec_can_reset_at_the_boundary() {
    let (connector, mut peers) = script([]);
    let conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .policy(Constant::new(Duration::from_secs(1)))
        .build();
    let mut framed = Framed::new(conn, LinesCodec::new());
    framed.get_mut().write_all(b"hi\n").await.unwrap();
    let mut first = peers.next().await;
    first.write_all(b"one\ntw").await.unwrap(); // half a line, then the connection dies
    drop(first);
    assert_eq!(framed.next().await.unwrap().unwrap(), "one");
    let err = framed.next().await.unwrap().unwrap_err();
    let tokio_util::codec::LinesCodecError::Io(err) = err else {
        panic!("{err:?}")
    };
    // One handle, one report: it counts what was written on the lost connection.
    assert_eq!(disconnected(&err).unconfirmed_bytes(), 3);

    // Rebuild the codec: the half line from the old connection is gone.
    let mut framed = Framed::new(framed.into_inner(), LinesCodec::new());
    let server = tokio::spawn(async move {
        let mut second = peers.next().await;
        second.write_all(b"three\n").await.unwrap();
        second
    });
    // The loss was reported to this handle already: the write is not told again.
    framed.get_mut().write_all(b"again\n").await.unwrap();
    assert_eq!(framed.next().await.unwrap().unwrap(), "three");
    drop(server.await.unwrap());
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
