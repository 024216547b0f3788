//! Loss reports with split halves: each loss is reported once to each half that used the lost
//! connection, with its own counts, and never about a connection the half did not use.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use proptest::prelude::*;
use staunch::backoff::Constant;
use staunch::reconnect::{BoxFuture, Disconnected, EofPolicy, Reconnecting};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::support::*;
use tokio_test::assert_pending;

/// A connector handing out duplex pairs; the server halves arrive on the receiver.
fn pairs() -> (Conn, mpsc::UnboundedReceiver<DuplexStream>) {
    accepting()
}

#[tokio::test(start_paused = true)]
async fn a_split_writer_is_told_about_the_connection_it_used_not_a_later_one() {
    let (connector, mut servers) = pairs();
    let conn = Reconnecting::builder(connector)
        .policy(Constant::new(std::time::Duration::from_millis(10)))
        .eof_policy(EofPolicy::Reconnect)
        .build();
    let (mut rd, mut wr) = conn.split();
    wr.write_all(b"hello").await.unwrap(); // 5 bytes on connection 1
    drop(servers.recv().await.unwrap());
    let err = rd.read(&mut [0; 8]).await.unwrap_err();
    let lost = disconnected(&err);
    assert_eq!(
        (lost.generation(), lost.unconfirmed_bytes()),
        (1, 0),
        "the reader wrote nothing"
    );
    // Connection 2 is lost under the reader as well.
    let reading = tokio::spawn(async move {
        let err = rd.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(disconnected(&err).generation(), 2);
        let mut got = [0; 3];
        rd.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"3rd");
    });
    drop(servers.recv().await.unwrap());
    let mut third = servers.recv().await.unwrap();
    third.write_all(b"3rd").await.unwrap();
    reading.await.unwrap();
    // The writer used connection 1 only: it is told about connection 1, with its 5 bytes.
    let err = wr.write_all(b"x").await.unwrap_err();
    let lost = disconnected(&err);
    assert_eq!(
        (lost.generation(), lost.unconfirmed_bytes()),
        (1, 5),
        "{lost}"
    );
    wr.write_all(b"x").await.unwrap();
    let mut got = [0; 1];
    third.read_exact(&mut got).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unsplit_adapter_reports_a_loss_once() {
    let (connector, mut servers) = pairs();
    let mut conn = Reconnecting::builder(connector)
        .eof_policy(EofPolicy::Reconnect)
        .build();
    conn.write_all(b"four").await.unwrap();
    drop(servers.recv().await.unwrap());
    let err = conn.read(&mut [0; 8]).await.unwrap_err();
    assert_eq!(disconnected(&err).unconfirmed_bytes(), 4);
    // Control for the old bug: the write side is not told the same loss again.
    conn.write_all(b"more").await.unwrap();
    assert_eq!(conn.generation(), 2);
}

/// One step of the property test.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write(u8),
    Read,
    /// The server drops the current connection.
    Lose,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (1u8..20).prop_map(Op::Write),
            Just(Op::Read),
            Just(Op::Lose),
        ],
        1..40,
    )
}

/// What the test's side saw: every report per half, the bytes each server received.
#[derive(Default)]
struct Seen {
    /// Per half (0 read, 1 write): (generation, unconfirmed) of each report.
    reports: [Vec<(u64, u64)>; 2],
    /// Per half: the generations it used (a successful operation on that connection; a write
    /// while there is none waits for the next one).
    used: [Vec<u64>; 2],
    written_ok: u64,
}

async fn check(ops: Vec<Op>) {
    let (connector, mut servers) = pairs();
    let conn = Reconnecting::builder(connector)
        .policy(Constant::new(std::time::Duration::from_millis(1)))
        .eof_policy(EofPolicy::Reconnect)
        .build();
    let (mut rd, mut wr) = conn.split();
    // Bytes each connection's server received, by generation.
    let mut received: HashMap<u64, u64> = HashMap::new();
    let mut current: Option<DuplexStream> = None;
    let mut seen = Seen::default();
    let mut generation = 0u64;
    for op in ops {
        match op {
            Op::Write(n) => {
                let buf = vec![b'x'; n as usize];
                match wr.write(&buf).await {
                    Ok(k) => {
                        seen.written_ok += k as u64;
                        seen.used[1].push(generation + u64::from(current.is_none()));
                    }
                    Err(e) => {
                        let d = Disconnected::from_io_error(&e).expect("a loss report");
                        seen.reports[1].push((d.generation(), d.unconfirmed_bytes()));
                    }
                }
            }
            Op::Read => {
                let Some(server) = current.as_mut() else {
                    continue;
                };
                server.write_all(b"r").await.unwrap();
                match rd.read(&mut [0; 1]).await {
                    Ok(1) => seen.used[0].push(generation),
                    Ok(n) => panic!("read {n}"),
                    Err(e) => {
                        let d = Disconnected::from_io_error(&e).expect("a loss report");
                        seen.reports[0].push((d.generation(), d.unconfirmed_bytes()));
                    }
                }
            }
            Op::Lose => drop(current.take()),
        }
        // Take up any new connection the adapter made, and what the servers received.
        while let Ok(server) = servers.try_recv() {
            current = Some(server);
            generation += 1;
        }
        if let Some(server) = current.as_mut() {
            *received.entry(generation).or_default() += drain(server).await;
        }
    }
    // A report may still be owed to the writer: the next write collects it.
    drop(current.take());
    if let Ok(Err(e)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), wr.write(b"z")).await
    {
        let d = Disconnected::from_io_error(&e).expect("a loss report");
        seen.reports[1].push((d.generation(), d.unconfirmed_bytes()));
    }
    for half in 0..2 {
        // No loss reported twice to a half.
        let mut gens: Vec<_> = seen.reports[half].iter().map(|r| r.0).collect();
        let before = gens.len();
        gens.dedup();
        assert_eq!(
            gens.len(),
            before,
            "half {half} told twice: {:?}",
            seen.reports[half]
        );
        // No report names a connection the half did not use.
        for (g, _) in &seen.reports[half] {
            assert!(
                seen.used[half].contains(g),
                "half {half} told about {g}, used {:?}",
                seen.used[half]
            );
        }
    }
    assert!(
        seen.reports[0].iter().all(|r| r.1 == 0),
        "the reader wrote nothing"
    );
    // Unconfirmed bytes reported + bytes received on the connections not reported = bytes the
    // writer was told were written.
    let unconfirmed: u64 = seen.reports[1].iter().map(|r| r.1).sum();
    let reported: Vec<u64> = seen.reports[1].iter().map(|r| r.0).collect();
    let unreported: u64 = received
        .iter()
        .filter(|(g, _)| !reported.contains(g))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        unconfirmed + unreported,
        seen.written_ok,
        "{:?}",
        seen.reports[1]
    );
}

/// Read what the server half has got so far (the write side of the test only writes `r`s).
async fn drain(server: &mut DuplexStream) -> u64 {
    let mut total = 0;
    let mut buf = [0; 256];
    loop {
        match tokio::time::timeout(std::time::Duration::ZERO, server.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n as u64,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn reports_are_exact_under_any_interleaving(ops in ops()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(check(ops));
    }
}

#[allow(dead_code)]
fn _uses(_: BoxFuture<io::Result<DuplexStream>>) {}

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
