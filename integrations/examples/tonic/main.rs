//! A gRPC server (tonic) behind staunch's accept loop, with no code generation (see
//! `greeter.rs`).
//!
//! ```text
//! cargo run -p staunch-integrations --example tonic  # 127.0.0.1:50051
//! cargo run -p staunch-integrations --example tonic -- 127.0.0.1:9000  # or the address given
//! cargo run -p staunch-integrations --example tonic -- 127.0.0.1:9000 serve-with-incoming  # tonic's own server
//! ```
//!
//! Two ways to put staunch in front of tonic:
//!
//! - **`staunch_http::serve`** (the default): staunch owns the connections, so its limit,
//!   stats, per-connection isolation and shutdown deadline apply; tonic's `Routes` (every
//!   service, as `Server::builder().add_service(..)` would route them) is served on each.
//! - **`serve_with_incoming`**: tonic's server owns the connections and staunch only feeds it
//!   accepted sockets (`sleep_on_error` keeps `EMFILE` from spinning tonic's accept loop;
//!   `staunch_http::tonic::incoming` gives them tonic's `Connected`). No connection limit, no
//!   deadline: tonic waits for every connection at shutdown.
//!
//! Stop it with Ctrl-C (or SIGTERM).

mod greeter;

use std::future::IntoFuture as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use staunch::ListenExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tracing_subscriber::EnvFilter;

use crate::greeter::GreeterServer;

/// After the signal, connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);
/// Connections served at once (each multiplexes many calls).
const MAX_CONNECTIONS: usize = 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:50051".into());
    let mode = args.next();
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    match mode.as_deref() {
        None | Some("spawn-serve") => {
            // All the services, routed by name; add more with `.add_service(..)`.
            let routes = Routes::new(GreeterServer).prepare();
            // At the signal every connection sends GOAWAY and finishes its calls. Keepalive
            // pings find dead peers that would otherwise hold a connection slot.
            let server = staunch_http::serve(listener, routes)
                .max_connections(MAX_CONNECTIONS)
                .hyper(|b| {
                    b.http2().keep_alive_interval(Duration::from_secs(30));
                })
                .grace(GRACE)
                .into_future();
            println!("listening on {local}");
            println!("{}", server.await);
        }
        Some("serve-with-incoming") => {
            let signal = shutdown_signal()?;
            println!("listening on {local}");
            let accepted =
                TcpListenerStream::new(listener).sleep_on_error(Duration::from_millis(100));
            let stats = accepted.stats();
            tonic::transport::Server::builder()
                .add_service(GreeterServer)
                .serve_with_incoming_shutdown(staunch_http::tonic::incoming(accepted), signal)
                .await?;
            println!("shutdown: accept totals: {}", stats.snapshot());
        }
        Some(other) => anyhow::bail!("unknown mode {other:?}: spawn-serve or serve-with-incoming"),
    }
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
