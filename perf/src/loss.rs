//! Scenario 6's loss-correctness row: a writer's connection is reset `RESETS` times by a peer that
//! has stopped reading (so the kernels hold written bytes), then the bytes the writes accepted are
//! compared with the bytes the peer received, and with what each adapter reported lost.
//!
//! Both ends run in this process; the listener stays up, only the connections are reset
//! (`SO_LINGER` 0), so every adapter reconnects at once and with equal backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use staunch::reconnect::Disconnected;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::client::{self, Backoff};

/// Connections reset per run.
pub(crate) const RESETS: u64 = 10;
/// Bytes each reset connection's peer reads before it stops reading.
const PER_CONNECTION: u64 = 1 << 20;

/// One run's tally.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    /// Bytes the adapter's writes reported as written.
    pub(crate) written: u64,
    /// Bytes the peer's reader received, over all connections.
    pub(crate) received: u64,
    /// Bytes the adapter said may be lost (staunch: `Disconnected::unconfirmed_bytes`).
    pub(crate) reported: u64,
    /// Bytes the kernel said were never acknowledged (staunch on Linux:
    /// `Disconnected::kernel_unacked_bytes`).
    pub(crate) kernel: u64,
    /// Write calls that failed (their bytes are not counted as written).
    pub(crate) errors: u64,
}

impl Tally {
    pub(crate) fn lost(&self) -> u64 {
        self.written.saturating_sub(self.received)
    }
}

pub(crate) async fn run(kind: &str) -> Tally {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicU64::new(0));
    let resets_done = Arc::new(AtomicBool::new(false));
    let last_started = Arc::new(AtomicBool::new(false));
    let server = {
        let (received, resets_done, last_started) =
            (received.clone(), resets_done.clone(), last_started.clone());
        tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            for _ in 0..RESETS {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut got = 0;
                while got < PER_CONNECTION {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n as u64,
                    }
                }
                received.fetch_add(got, Relaxed);
                // Stop reading while the writer fills both kernels' buffers, then reset.
                tokio::time::sleep(Duration::from_millis(20)).await;
                SockRef::from(&socket)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            resets_done.store(true, Relaxed);
            let (mut socket, _) = listener.accept().await.unwrap();
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        received.fetch_add(n as u64, Relaxed);
                        last_started.store(true, Relaxed);
                    }
                }
            }
        })
    };
    let mut w = client::connect(kind, port, Backoff::Equal)
        .await
        .expect("connect");
    let chunk = vec![1u8; 64 * 1024];
    let mut tally = Tally::default();
    let bound = tokio::time::Instant::now() + Duration::from_secs(60);
    while !last_started.load(Relaxed) && tokio::time::Instant::now() < bound {
        match tokio::time::timeout(Duration::from_millis(500), w.write(&chunk)).await {
            Err(_) => {}
            Ok(Ok(n)) => tally.written += n as u64,
            Ok(Err(e)) => {
                tally.errors += 1;
                if let Some(loss) = Disconnected::from_io_error(&e) {
                    tally.reported += loss.unconfirmed_bytes();
                    tally.kernel += loss.kernel_unacked_bytes().unwrap_or(0);
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
    drop(w);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        resets_done.load(Relaxed),
        "{kind}: the resets did not finish"
    );
    tally.received = received.load(Relaxed);
    tally
}
