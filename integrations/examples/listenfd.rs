//! Socket activation: serve on a listening socket passed by systemd (or `systemfd` during
//! development) through the `listenfd` crate, and bind one when none was passed.
//!
//! ```text
//! cargo run -p staunch-integrations --example listenfd  # nothing passed: binds 127.0.0.1:8080
//! systemfd --no-pid -s tcp::127.0.0.1:8080 -- cargo watch -x 'run --example listenfd'
//!                                                  # the port stays open across rebuilds
//! nc 127.0.0.1 8080                                # from another terminal: an echo server
//! ```
//!
//! Under systemd, a `.socket` unit owns the port (`ListenStream=127.0.0.1:8080`) and starts the
//! service on the first connection; clients that connect while it starts or restarts wait in the
//! backlog instead of being refused. The protocol is `LISTEN_FDS` (how many sockets, from fd 3
//! on) and `LISTEN_PID` (the process they are meant for, so a child does not take them too).
//!
//! Stop it with Ctrl-C (or SIGTERM).

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use listenfd::ListenFd;
use staunch::ListenExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{wrappers::TcpListenerStream, StreamExt as _};
use tracing_subscriber::EnvFilter;

/// After the signal, connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(5);

async fn echo(socket: TcpStream) -> std::io::Result<()> {
    let (mut reader, mut writer) = socket.into_split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // Before the runtime starts its threads: `from_env` removes the LISTEN_* variables from the
    // environment (so children do not see them), and changing the environment is only sound
    // while the process has one thread.
    let mut fds = ListenFd::from_env();
    let inherited = fds
        .take_tcp_listener(0)
        .context("the socket passed as fd 3 is not a TCP listener")?;

    tokio::runtime::Runtime::new()?.block_on(async {
        let (listener, origin) = match inherited {
            Some(listener) => {
                // Sockets are passed as they are; tokio needs a non-blocking one.
                listener.set_nonblocking(true)?;
                (
                    TcpListener::from_std(listener)?,
                    "passed by the service manager",
                )
            }
            None => {
                let addr = std::env::args().nth(1);
                let addr = addr.as_deref().unwrap_or("127.0.0.1:8080");
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                (listener, "bound: no socket was passed")
            }
        };
        let signal = shutdown_signal()?;
        println!("listening on {} ({origin})", listener.local_addr()?);

        let report = TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .map(echo)
            .spawn_listen(1024)
            .with_graceful_shutdown(signal)
            .grace(GRACE)
            .await;
        println!("{report}");
        Ok(())
    })
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
