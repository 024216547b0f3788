//! One accept loop per core with `SO_REUSEPORT` (`staunch::listen::per_core`): each thread runs
//! a current-thread runtime with its own listening socket on the same port, the kernel spreads
//! connections across them, and the main thread prints one merged stats line per second.
//!
//! ```text
//! cargo run --example reuseport [ADDR] [THREADS]   # default 127.0.0.1:8081, one per core
//! ```
//! Stop it with Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use staunch::ListenExt;
use staunch::SocketOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::TcpListenerStream;

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
    // One thread per loop, each with a current-thread runtime and its own SO_REUSEPORT socket;
    // this closure builds each thread's loop.
    let server = staunch::listen::per_core(addr, threads, |listener| {
        let options = SocketOptions::new().nodelay(true);
        TcpListenerStream::new(listener)
            .setup_sockets(move |socket| options.apply(socket))
            .sleep_on_error(Duration::from_millis(100))
            .map(echo)
            .listen(10_000)
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Installed once, before "listening on": a Ctrl-C right after that line does not kill the
    // process, and one that comes with a tick is not lost (as it can be with a `ctrl_c()` made
    // anew on each turn of the loop).
    let mut interrupt = {
        let _runtime = rt.enter();
        signal(SignalKind::interrupt())?
    };
    println!("listening on {}", server.local_addr());
    eprintln!("{threads} accept loops");

    let stats = server.stats();
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = tick.tick() => eprintln!("{}", stats.snapshot()),
            }
        }
    });
    println!("{}", server.shutdown(Duration::from_secs(5)));
    Ok(())
}
