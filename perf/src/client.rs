//! Scenario 6: reconnecting clients (this process) against a sink server child that is killed
//! and restarted on the same port.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_tether::{Context as TetherContext, PinFut, Resolver, Tether};
use staunch::backoff::Constant;
use staunch::reconnect::{Reconnecting, TcpConnector};
use stubborn_io::{ReconnectOptions, StubbornTcpStream};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::addr;
use crate::sys::ChildServer;

/// The backoff every adapter gets: a constant delay, no jitter, no limit.
pub(crate) const DELAY: Duration = Duration::from_millis(50);

pub(crate) const CLIENTS: [&str; 4] = [
    "bare TcpStream",
    "staunch Reconnecting",
    "io-tether",
    "stubborn-io",
];

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// io-tether's resolver: wait `DELAY`, then retry, forever.
struct SleepResolver;

impl<C> Resolver<C> for SleepResolver {
    fn disconnected(&mut self, _: &TetherContext, _: &mut C) -> PinFut<bool> {
        Box::pin(async {
            tokio::time::sleep(DELAY).await;
            true
        })
    }
}

/// io-tether's resolver from its documentation's basic example: retry at once, forever (the
/// crate has no default policy).
struct RetryAtOnce;

impl<C> Resolver<C> for RetryAtOnce {
    fn disconnected(&mut self, _: &TetherContext, _: &mut C) -> PinFut<bool> {
        Box::pin(async { true })
    }
}

/// Which backoff the adapters get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backoff {
    /// Every adapter waits `DELAY` between attempts.
    Equal,
    /// Each adapter's own documented default: staunch 100 ms × 2 up to 10 s, ±10 %; io-tether
    /// has none, its documentation's basic resolver retries at once; stubborn-io
    /// `ReconnectOptions::new()`, 4 s × 2 up to 30 min, ±5 %.
    Defaults,
}

pub(crate) async fn connect(kind: &str, port: u16, backoff: Backoff) -> std::io::Result<Writer> {
    let a: SocketAddr = addr(port);
    let equal = backoff == Backoff::Equal;
    Ok(match kind {
        "bare TcpStream" => Box::pin(TcpStream::connect(a).await?),
        "staunch Reconnecting" => {
            let builder = Reconnecting::builder(TcpConnector::new(a.to_string()));
            let mut c = if equal {
                builder.policy(Constant::new(DELAY)).build()
            } else {
                builder.build()
            };
            c.wait_connected().await?;
            Box::pin(c)
        }
        "io-tether" if equal => Box::pin(Tether::connect_tcp(a, SleepResolver).await?),
        "io-tether" => Box::pin(Tether::connect_tcp(a, RetryAtOnce).await?),
        "stubborn-io" => {
            let options = if equal {
                ReconnectOptions::new()
                    .with_retries_generator(|| std::iter::repeat(DELAY))
                    .with_exit_if_first_connect_fails(true)
            } else {
                ReconnectOptions::new()
            };
            Box::pin(StubbornTcpStream::connect_with_options(a, options).await?)
        }
        other => panic!("unknown client {other}"),
    })
}

/// Write 64 KiB chunks for `duration`; bytes per second.
pub(crate) async fn throughput(kind: &str, port: u16, duration: Duration) -> f64 {
    let mut w = connect(kind, port, Backoff::Equal)
        .await
        .expect("connect to sink");
    let chunk = vec![7u8; 64 * 1024];
    let start = Instant::now();
    let mut total = 0u64;
    while start.elapsed() < duration {
        if tokio::time::timeout(Duration::from_secs(5), w.write_all(&chunk))
            .await
            .is_err()
        {
            break;
        }
        total += chunk.len() as u64;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let _ = w.shutdown().await;
    rate
}

/// Restart the sink `restarts` times under a client that writes one byte every millisecond;
/// for each restart, the time from the new server's READY to its first byte received.
pub(crate) fn restart_latencies(
    rt: &tokio::runtime::Runtime,
    kind: &str,
    restarts: usize,
    backoff: Backoff,
) -> Vec<Duration> {
    let mut server = ChildServer::spawn("sink", &[]);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, kind) = (stop.clone(), kind.to_string());
        rt.spawn(async move {
            let mut w = connect(&kind, port, backoff).await.expect("first connect");
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Relaxed) && Instant::now() < deadline {
                // Errors (the adapter reporting a lost connection) are expected; go on writing.
                let _ = tokio::time::timeout(Duration::from_secs(2), w.write_all(&[1])).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut out = Vec::new();
    if server
        .expect_line("FIRST", Duration::from_secs(5))
        .is_none()
    {
        eprintln!("  {kind}: no first byte on the first server");
    }
    for r in 0..restarts {
        server.kill();
        // Outage lengths spread over two backoff periods so the restart falls at every phase.
        std::thread::sleep(Duration::from_millis(150 + (r as u64 * 37) % 100));
        server = ChildServer::spawn("sink", &["--port".into(), port.to_string()]);
        // stubborn-io's default waits 4 s and more.
        match server.expect_line("FIRST", Duration::from_secs(15)) {
            Some((at, _)) => out.push(at.saturating_duration_since(server.ready_at)),
            None => eprintln!("  {kind}: no byte within 15 s after restart {r}"),
        }
    }
    stop.store(true, Relaxed);
    let _ = rt.block_on(writer);
    drop(server);
    out
}
