//! An HTTP server: hyper 1 behind staunch's accept loop, speaking HTTP/1.1 and HTTP/2 (prior
//! knowledge, "h2c") on the same port.
//!
//! ```text
//! cargo run -p staunch-integrations --example hyper                    # listens on 127.0.0.1:3000
//! cargo run -p staunch-integrations --example hyper -- 127.0.0.1:9000  # or on the address given
//! curl http://127.0.0.1:3000/
//! curl --http2-prior-knowledge http://127.0.0.1:3000/
//! ```
//!
//! `staunch_http::serve` runs it: staunch's accept loop, a connection limit, HTTP/1's header read
//! timeout, and a drain at Ctrl-C (or SIGTERM) with a deadline.

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// After Ctrl-C, open connections get this long to finish before they are cut.
const GRACE: Duration = Duration::from_secs(10);

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello from staunch\n")))
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

    // A hyper-style handler is a tower service with `tower::service_fn`. HTTP/1.1, and HTTP/2
    // when the client opens with its preface. `into_future` installs the signal handlers before
    // the server announces itself.
    let server = staunch_http::serve(listener, tower::service_fn(hello))
        .max_connections(1024)
        .grace(GRACE)
        .into_future();
    println!("listening on {local}");
    println!("{}", server.await);
    Ok(())
}
