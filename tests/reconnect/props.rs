//! Property test of the write accounting: for any sequence of writes, peer losses and
//! confirmations, every byte a write reported as written was accepted by a live connection (its
//! peer can read it), and every disconnect error counts exactly the bytes written on that
//! connection since it was established or confirmed.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use proptest::prelude::*;
use staunch::backoff::Constant;
use staunch::reconnect::{BoxFuture, Disconnected, Reconnecting, WriteMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    KillPeer,
    Confirm,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (1usize..300).prop_map(Op::Write),
        1 => Just(Op::KillPeer),
        1 => Just(Op::Confirm),
    ];
    prop::collection::vec(op, 1..40)
}

/// Every byte the peer of `generation` can read now.
fn drain(peer: &mut DuplexStream) -> usize {
    let mut total = 0;
    let mut buf = [0; 4096];
    while let Some(Ok(n @ 1..)) = peer.read(&mut buf).now_or_never() {
        total += n;
    }
    total
}

async fn check(ops: Vec<Op>, mode: WriteMode) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let generation = Arc::new(Mutex::new(0u64));
    let connector = move || -> BoxFuture<io::Result<DuplexStream>> {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut g = generation.lock().unwrap();
        *g += 1;
        let _ = tx.send((*g, server));
        Box::pin(async { Ok(client) })
    };
    let mut conn = Reconnecting::builder(connector)
        .policy(Constant::new(Duration::from_secs(1)))
        .write_mode(mode)
        .build();

    let mut peers: HashMap<u64, DuplexStream> = HashMap::new();
    let mut written: HashMap<u64, usize> = HashMap::new();
    let (mut model_gen, mut unconfirmed) = (0u64, 0u64);
    let data = vec![b'x'; 300];
    for op in ops {
        match op {
            Op::Write(n) => match conn.write(&data[..n]).await {
                Ok(k) => {
                    assert!(k > 0 && k <= n);
                    let g = conn.generation();
                    if g != model_gen {
                        (model_gen, unconfirmed) = (g, 0);
                    }
                    *written.entry(g).or_default() += k;
                    unconfirmed += k as u64;
                    assert_eq!(conn.unconfirmed_bytes(), unconfirmed);
                }
                Err(e) => {
                    assert_eq!(mode, WriteMode::Report, "retry mode reported {e:?}");
                    let lost = Disconnected::from_io_error(&e).expect("a disconnect error");
                    assert_eq!(lost.generation(), model_gen);
                    assert_eq!(lost.unconfirmed_bytes(), unconfirmed);
                    unconfirmed = 0;
                }
            },
            Op::KillPeer => {
                while let Ok((g, peer)) = rx.try_recv() {
                    peers.insert(g, peer);
                }
                if let Some(mut peer) = peers.remove(&model_gen) {
                    // Everything reported written reached this connection.
                    assert_eq!(drain(&mut peer), written.remove(&model_gen).unwrap_or(0));
                }
            }
            Op::Confirm => {
                conn.confirm();
                unconfirmed = 0;
            }
        }
    }
    conn.flush().await.ok();
    while let Ok((g, peer)) = rx.try_recv() {
        peers.insert(g, peer);
    }
    for (g, mut peer) in peers {
        assert_eq!(
            drain(&mut peer),
            written.remove(&g).unwrap_or(0),
            "generation {g}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_reported_byte_is_accounted_for(ops in ops(), retry in any::<bool>()) {
        let mode = if retry { WriteMode::RetryFailedWrite } else { WriteMode::Report };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(check(ops, mode));
    }
}
