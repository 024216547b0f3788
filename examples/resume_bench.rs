//! Overhead of the resumable session layer: throughput of `staunch::resume` against the plain
//! `Reconnecting` adapter (and a bare `TcpStream` for reference) on loopback, 64 KiB writes,
//! one direction, the same bytes for each.
//!
//! ```text
//! cargo run --release --example resume_bench [MiB per run] [runs]
//! ```
//!
//! Each run times the transfer from the first write until the receiver has read every byte
//! (for resume, until `shutdown` has returned, so the last ack's round trip is included). The
//! median of the runs is reported, and the ratio resume / `Reconnecting` (the target is at least
//! 0.9). Not a timed assertion: numbers on a shared machine vary.

use std::time::Instant;

use staunch::reconnect::{Reconnecting, TcpConnector};
use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;

async fn write_all_chunks<W: AsyncWrite + Unpin>(mut writer: W, total: u64) -> std::io::Result<()> {
    let chunk = vec![0x5A; CHUNK];
    let mut sent = 0;
    while sent < total {
        writer.write_all(&chunk).await?;
        sent += CHUNK as u64;
    }
    writer.shutdown().await
}

async fn read_to_end_counting<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        match reader.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Bytes per second through a bare TCP connection.
async fn bare(total: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        read_to_end_counting(socket).await.unwrap()
    });
    let started = Instant::now();
    let client = TcpStream::connect(addr).await.unwrap();
    client.set_nodelay(true).unwrap();
    write_all_chunks(client, total).await.unwrap();
    assert_eq!(server.await.unwrap(), total);
    total as f64 / started.elapsed().as_secs_f64()
}

/// Bytes per second through `Reconnecting` (no disconnects).
async fn reconnecting(total: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        read_to_end_counting(socket).await.unwrap()
    });
    let started = Instant::now();
    let client = Reconnecting::new(TcpConnector::new(addr.to_string()).nodelay(true));
    write_all_chunks(client, total).await.unwrap();
    assert_eq!(server.await.unwrap(), total);
    total as f64 / started.elapsed().as_secs_f64()
}

/// Bytes per second through a resumable session (no disconnects).
async fn resume(total: u64, config: Config) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(config.clone());
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let Ok(Accepted::New(session)) = acceptor.accept(socket).await else {
            panic!("a new session");
        };
        read_to_end_counting(session).await.unwrap()
    });
    let started = Instant::now();
    let connect = move || async move {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        std::io::Result::Ok(socket)
    };
    let client = Client::with_config(connect, std::iter::empty(), config);
    write_all_chunks(client, total).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(server.await.unwrap(), total);
    total as f64 / elapsed.as_secs_f64()
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

#[tokio::main]
async fn main() {
    // RUST_LOG=staunch=debug shows the session's transitions.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(256, |a| a.parse().expect("MiB per run"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("runs"));
    let total = mib * 1024 * 1024;
    let (mut b, mut r, mut s, mut s4) = (vec![], vec![], vec![], vec![]);
    // A third argument runs only the named contender (for profiling).
    let only = args.next();
    let runs_it = |name: &str| only.as_deref().is_none_or(|o| o == name);
    for _ in 0..runs {
        if runs_it("bare") {
            b.push(bare(total).await);
        }
        if runs_it("reconnecting") {
            r.push(reconnecting(total).await);
        }
        if runs_it("resume") {
            s.push(resume(total, Config::default()).await);
            s4.push(resume(total, Config::default().buffer_size(4 * 1024 * 1024)).await);
        }
    }
    if only.is_some() {
        return;
    }
    let gib = |x: f64| x / f64::from(1 << 30);
    let (b, r, s, s4) = (median(b), median(r), median(s), median(s4));
    println!("loopback, {CHUNK}-byte writes, {mib} MiB per run, median of {runs}:");
    println!("  TcpStream                       {:6.2} GiB/s", gib(b));
    println!("  reconnect::Reconnecting         {:6.2} GiB/s", gib(r));
    println!(
        "  resume::Client (100,000 B)      {:6.2} GiB/s  ratio to Reconnecting {:.2}",
        gib(s),
        s / r
    );
    println!(
        "  resume::Client (4 MiB buffer)   {:6.2} GiB/s  ratio to Reconnecting {:.2}",
        gib(s4),
        s4 / r
    );
}
