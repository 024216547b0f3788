//! One accept loop per core with `SO_REUSEPORT`: each thread runs a current-thread runtime with
//! its own listening socket on the same port, the kernel spreads connections across them, and
//! the main thread prints one merged stats line per second.
//!
//! ```text
//! cargo run --example reuseport [ADDR] [THREADS]   # default 127.0.0.1:8081, one per core
//! ```
//! Stop it with Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use staunch::listen::SocketOptions;
use staunch::{ListenExt, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        socket.write_all(&buf[..n]).await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8081").parse()?;
    let threads = match args.next() {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    let listeners = staunch::listen::bind_reuseport(addr, threads)?;
    println!(
        "listening on {} with {threads} accept loops",
        listeners[0].local_addr()?
    );

    let stop = CancellationToken::new();
    let mut all_stats = Vec::new();
    let mut workers = Vec::new();
    for listener in listeners {
        let stop = stop.clone();
        let (stats_tx, stats_rx) = std::sync::mpsc::channel::<Stats>();
        workers.push(std::thread::spawn(move || -> std::io::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let options = SocketOptions::new().nodelay(true);
                let server = TcpListenerStream::new(TcpListener::from_std(listener)?)
                    .setup_sockets(move |socket| options.apply(socket))
                    .sleep_on_error(Duration::from_millis(100))
                    .map(echo)
                    .listen(10_000);
                let _ = stats_tx.send(server.stats());
                server
                    .with_graceful_shutdown(stop.cancelled_owned(), Duration::from_secs(5))
                    .await;
                Ok(())
            })
        }));
        all_stats.push(stats_rx.recv()?);
    }
    let stats = Stats::merged(all_stats);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => eprintln!("{}", stats.snapshot()),
            }
        }
    });
    stop.cancel();
    for worker in workers {
        worker.join().expect("accept loop panicked")?;
    }
    println!("totals: {}", stats.snapshot());
    Ok(())
}
