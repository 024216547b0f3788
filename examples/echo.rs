//! A TCP echo server: whatever a client sends comes back.
//!
//! ```text
//! cargo run --example echo                      # listens on 127.0.0.1:8080
//! cargo run --example echo -- 127.0.0.1:9000    # or on the address given
//! MAX_CONNECTIONS=2 RUST_LOG=debug cargo run --example echo
//! ```
//!
//! Talk to it with `nc 127.0.0.1 8080`; stop it with Ctrl-C (or SIGTERM): it stops accepting,
//! closes idle connections at once, gives busy ones a few seconds to finish, and prints what
//! happened.

use std::io::IsTerminal as _;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context as _;
use staunch::{listen::Conn, ListenExt};
use tokio::io::{self, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// No connection lives longer than this, busy or not (Slowloris: a client that reads our
/// replies very slowly keeps `write_all` waiting, which the idle timeout does not see).
const CONNECTION_TIME_LIMIT: Duration = Duration::from_secs(600);
/// After Ctrl-C, busy connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(5);

/// Echo until the client closes, goes idle for too long, or the server shuts down (`conn`
/// fires): an idle connection closes at once, a busy one after the reply in progress.
async fn echo(mut socket: TcpStream, conn: Conn) -> io::Result<()> {
    let mut buf = vec![0; 4096];
    loop {
        let n = tokio::select! {
            // The read first: a client taken from the backlog as the port closed has sent its
            // message while the shutdown has already started; it gets its reply.
            biased;
            read = timeout(IDLE_TIMEOUT, socket.read(&mut buf)) => match read {
                Ok(read) => read?,
                Err(_idle) => return Ok(()),
            },
            () = conn.draining() => return Ok(()),
        };
        if n == 0 {
            return Ok(()); // the client closed its side
        }
        socket.write_all(&buf[..n]).await?;
        if conn.is_draining() {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG as `info` or `info,staunch=debug` (no span or field filters: tracing-subscriber's
    // `env-filter` feature would add a regex engine to the build).
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives
            .parse::<Targets>()
            .with_context(|| format!("RUST_LOG={directives:?}"))?,
        Err(_) => Targets::new().with_default(tracing::Level::INFO),
    };
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(log).with(filter).init();

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

    // Each connection gets its `Conn`, which fires at the signal: idle ones close at once.
    let report = TcpListenerStream::new(listener)
        .sleep_on_error(Duration::from_millis(100)) // EMFILE & co.: wait instead of spinning
        .spawn_serve(max_connections.get(), echo)
        .connection_time_limit(CONNECTION_TIME_LIMIT)
        .with_graceful_shutdown(shutdown)
        .grace(GRACE)
        .await;

    println!("{report}");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, before the
/// server announces itself, so a signal sent right after "listening on" cannot kill the process
/// by default action (`tokio::signal::ctrl_c()` would install its handler only when first polled).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            ctrl_c.recv().await;
        })
    }
}
