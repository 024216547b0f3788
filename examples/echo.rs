//! A TCP echo server: whatever a client sends comes back.
//!
//! ```text
//! cargo run --example echo                      # listens on 127.0.0.1:8080
//! cargo run --example echo -- 127.0.0.1:9000    # or on the address given
//! MAX_CONNECTIONS=2 RUST_LOG=debug cargo run --example echo
//! ```
//!
//! Talk to it with `nc 127.0.0.1 8080`; stop it with Ctrl-C (or SIGTERM): it stops accepting,
//! gives open connections a few seconds to finish, and prints what happened.

use std::io::IsTerminal as _;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context as _;
use staunch::ListenExt;
use tokio::io::{self, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_stream::{wrappers::TcpListenerStream, StreamExt as _};
use tracing_subscriber::EnvFilter;

#[path = "shared/shutdown_signal.rs"]
mod shutdown_signal;
use shutdown_signal::shutdown_signal;

/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// No connection lives longer than this, busy or not (Slowloris: a client that reads our
/// replies very slowly keeps `write_all` waiting, which the idle timeout does not see).
const CONNECTION_TIME_LIMIT: Duration = Duration::from_secs(600);
/// After Ctrl-C, open connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(5);

async fn echo(mut socket: TcpStream) -> io::Result<()> {
    let mut buf = vec![0; 4096];
    loop {
        let n = match timeout(IDLE_TIMEOUT, socket.read(&mut buf)).await {
            Ok(read) => read?,
            Err(_idle) => return Ok(()),
        };
        if n == 0 {
            return Ok(()); // the client closed its side
        }
        socket.write_all(&buf[..n]).await?;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let addr = std::env::args().nth(1);
    let addr = addr.as_deref().unwrap_or("127.0.0.1:8080");
    let max_connections = match std::env::var("MAX_CONNECTIONS") {
        Ok(n) => n
            .parse::<NonZeroUsize>()
            .with_context(|| format!("MAX_CONNECTIONS={n:?}: expected a positive integer"))?,
        Err(_) => NonZeroUsize::new(1024).unwrap(),
    };

    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = shutdown_signal()?;
    println!("listening on {}", listener.local_addr()?);

    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100)) // EMFILE & co.: wait instead of spinning
        .map(echo)
        .spawn_listen(max_connections.get())
        .connection_time_limit(CONNECTION_TIME_LIMIT)
        .with_graceful_shutdown(shutdown, GRACE)
        .await;

    println!("{report}");
    Ok(())
}
