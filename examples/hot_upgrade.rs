//! An echo server that upgrades itself without closing its port: on SIGHUP it starts a new copy
//! of its binary, hands it the listening socket, and drains.
//!
//! ```text
//! cargo run --example hot_upgrade -- 127.0.0.1:8080   # listening on 127.0.0.1:8080 pid 100
//! kill -HUP 100     # listening on 127.0.0.1:8080 pid 101 (took over from 100)
//!                   # drained: 3 finished, 0 cancelled    (pid 100 exits 0)
//! kill -HUP 101     # and so on; SIGINT or SIGTERM stops the one serving
//! ```
//!
//! - The new process is a child of the old one, in the same session and process group: it
//!   outlives the old one (nothing kills a child when its parent exits) and stays on the same
//!   terminal, so Ctrl-C and a hangup reach it as they would reach the old one. An interactive
//!   shell, though, takes the terminal back when the process it started exits: after an
//!   upgrade, stop the server with `kill -TERM NEWPID`. (A service manager follows the new
//!   process instead; see the `staunch::handover` docs for systemd.)
//! - The new process is ready when it has taken over the socket; only then does the old one
//!   stop accepting. If the new one exits or is not ready within `READY_WITHIN`, the old one
//!   says so on stderr and keeps serving.
//! - The old process drains with the usual graceful shutdown: open connections get `GRACE`
//!   to finish.

use std::io::IsTerminal as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use staunch::handover::{take_over, Handover};
use staunch::ListenExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tokio_stream::{wrappers::TcpListenerStream, StreamExt as _};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Set in the new process's environment: the ticket to take the socket over with.
const TAKE_OVER_FROM: &str = "HOT_UPGRADE_TAKE_OVER_FROM";
/// The name the socket is handed over under.
const SOCKET_NAME: &str = "echo";
/// After the new process is ready, connections to the old one get this long to finish.
const GRACE: Duration = Duration::from_secs(10);
/// A new process that is not ready by then is killed, and the old one keeps serving.
const READY_WITHIN: Duration = Duration::from_secs(30);

async fn echo(socket: TcpStream) -> std::io::Result<()> {
    let (mut reader, mut writer) = socket.into_split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG as `info` or `info,staunch=debug` (as in the echo example).
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
    // Handlers first: a signal sent right after the "listening on" line must not kill us.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let (listener, ready) = match std::env::var_os(TAKE_OVER_FROM) {
        Some(ticket) => {
            let (mut listeners, ready) = take_over(&ticket).await?;
            let listener = TcpListener::from_std(listeners.take_tcp(SOCKET_NAME)?)?;
            (listener, Some(ready))
        }
        None => {
            let addr = std::env::args().nth(1);
            let addr = addr.as_deref().unwrap_or("127.0.0.1:8080");
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            (listener, None)
        }
    };
    let addr = listener.local_addr()?;
    // Our own descriptor of the socket, to offer to the next process.
    let socket = listener.as_fd().try_clone_to_owned()?;

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        TcpListenerStream::new(listener)
            .sleep_on_error(Duration::from_millis(100))
            .map(echo)
            .spawn_listen(1024)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .grace(GRACE),
    );

    let pid = std::process::id();
    match ready {
        Some(ready) => {
            // The old process started us and waits for this: it is still our parent.
            let old = std::os::unix::process::parent_id();
            // Printed before the old process hears of it, so that its "drained" line follows.
            println!("listening on {addr} pid {pid} (took over from {old})");
            ready.ready().await?;
        }
        None => println!("listening on {addr} pid {pid}"),
    }

    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => match upgrade(&socket).await {
                Ok(()) => break,
                Err(e) => eprintln!("upgrade failed, still serving: {e:#}"),
            },
        }
    }
    drop(socket);
    let _ = stop.send(());
    let report = server.await?;
    println!(
        "drained: {} finished, {} cancelled",
        report.ended, report.cancelled
    );
    Ok(())
}

/// Start the new process and hand it `socket`; `Ok` once it is ready.
async fn upgrade(socket: &OwnedFd) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("hot_upgrade-{}.sock", std::process::id()));
    let handover = Handover::bind(&path)
        .with_context(|| format!("cannot listen for the new process at {}", path.display()))?;
    let mut child = tokio::process::Command::new(executable()?)
        .args(std::env::args_os().skip(1))
        .env(TAKE_OVER_FROM, handover.ticket())
        // Sockets a service manager passed are ours; the new process gets them from us.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .spawn()
        .context("cannot start the new process")?;
    let sockets = [(SOCKET_NAME, socket.as_fd())];
    tokio::select! {
        offered = handover.offer(&sockets) => {
            offered.context("handing over the socket")?;
            Ok(())
        }
        exit = child.wait() => bail!("the new process exited before it was ready: {}", exit?),
        () = tokio::time::sleep(READY_WITHIN) => {
            let _ = child.kill().await;
            bail!("the new process was not ready within {READY_WITHIN:?}")
        }
    }
}

/// This program's file, even after a new build replaced it (which is the point of upgrading).
fn executable() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Linux names a replaced executable "PATH (deleted)"; the new build is at PATH.
    Ok(
        match exe.to_str().and_then(|e| e.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        },
    )
}
