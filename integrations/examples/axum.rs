//! An axum `Router` behind staunch's accept loop, served connection by connection with
//! hyper-util's HTTP/1.1 + HTTP/2 builder, with a graceful shutdown that drains requests in flight.
//!
//! ```text
//! cargo run -p staunch-integrations --example axum                    # listens on 127.0.0.1:3000
//! cargo run -p staunch-integrations --example axum -- 127.0.0.1:9000  # or on the address given
//! curl http://127.0.0.1:3000/
//! curl http://127.0.0.1:3000/slow/5000         # answers after 5 s; Ctrl-C meanwhile: it still does
//! ```
//!
//! `axum::serve` owns its accept loop (it sleeps 1 s on `EMFILE`, has no connection limit and no
//! shutdown deadline); `staunch_http::serve` puts staunch's loop in its place, in one call.
//! Stop it with Ctrl-C (or SIGTERM): new connections are refused at once, requests in flight
//! finish, idle keep-alive connections close, and whatever is still running after `GRACE` is cut.

use std::future::IntoFuture as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// After the signal, connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);
/// Connections served at once; more clients wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum behind staunch\n" }))
        .route("/slow/{ms}", get(slow))
}

/// Answers after `ms` milliseconds (at most a minute): a request that is in flight when the
/// shutdown signal comes.
async fn slow(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    tracing::info!(ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slow request done after {ms} ms\n")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let addr = std::env::args().nth(1);
    let addr = addr.as_deref().unwrap_or("127.0.0.1:3000");
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // HTTP/1.1 and HTTP/2, a header read timeout, a drain at Ctrl-C or SIGTERM that cuts what
    // is left after `GRACE` (upgraded connections too). Its signal handlers are installed by
    // `into_future`, before the server announces itself: a signal sent right after "listening
    // on" cannot kill the process by default action.
    let server = staunch_http::serve(listener, app())
        .max_connections(MAX_CONNECTIONS)
        .grace(GRACE)
        .into_future();
    println!("listening on {local}");
    println!("{}", server.await);
    Ok(())
}
