//! `Reconnecting`'s read/write guarantees against scripted in-memory connections
//! (`tokio::io::duplex`), on paused time: what a write returns, the read boundary, splice and
//! retry modes, the EOF policy, local shutdown, idle timeout.

use crate::support::*;
use std::io;
use std::time::Duration;

use futures_util::StreamExt;
use staunch::backoff::Constant;
use staunch::reconnect::{ConnState, EofPolicy, ReadMode, Reason, Reconnecting, WriteMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_test::assert_pending;
use tokio_util::codec::{Framed, LinesCodec};

#[tokio::test(start_paused = true)]
async fn building_does_not_connect() {
    let (connector, peers) = script([]);
    let conn = Reconnecting::new(connector);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(peers.calls(), 0);
    assert!(matches!(*conn.watch().borrow(), ConnState::Idle));
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
    let lost = staunch::reconnect::Disconnected::from_io_error(&err).expect("a Disconnected error");
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
    assert!(
        staunch::reconnect::GaveUp::from_io_error(&err).is_some(),
        "{err:?}"
    );
}
