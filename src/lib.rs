//! Accept loops that keep accepting and clients that keep connected, for tokio.
//!
//! - [`ListenExt::sleep_on_error`] replaces `loop { listener.accept().await? }`: per-connection
//!   errors are skipped at once, resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) back
//!   off instead of spinning, and the stream never ends because of an error.
//! - [`ListenExt::spawn_serve`] (and [`serve`](ListenExt::serve), in one task) replaces
//!   `tokio::spawn(handle(socket))`: at most `n` connections at once with backpressure, failing
//!   and panicking connections isolated and counted, an optional per-connection time limit,
//!   and one graceful shutdown with a deadline
//!   ([`with_graceful_shutdown`](listen::Listener::with_graceful_shutdown)). Each connection's
//!   handler gets a [`Conn`](listen::Conn), the handle that tells it when to close: at the
//!   shutdown, or when the listener reclaims it while idle near its limit. The server's types
//!   live in [`listen`]; [`ListenExt::spawn_listen`] and [`ListenExt::listen`] run handlers that
//!   need no handle.
//! - [`overload`] limits the accept rate, the connections per peer and slow readers; every
//!   rejection is counted by reason in the listener's [`Stats`].
//! - [`handover`] (unix) restarts a server without closing its port: a new process takes over
//!   the listening sockets, the old one drains.
//! - [`reconnect`] keeps clients connected; [`resume`] adds a framed session that resends what
//!   a lost connection dropped, so nothing is lost; [`backoff`] holds the retry policies both
//!   sides use.
//!
//! # A server
//!
//! An echo server: idle clients are closed at once at Ctrl-C, busy ones get 10 s to finish.
//!
//! ```no_run
//! use std::time::Duration;
//! use staunch::{listen::Conn, ListenExt};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//! use tokio_stream::wrappers::TcpListenerStream;
//!
//! async fn handle(mut socket: TcpStream, conn: Conn) -> std::io::Result<()> {
//!     let mut buf = [0; 4096];
//!     loop {
//!         let n = tokio::select! {
//!             n = socket.read(&mut buf) => n?,
//!             () = conn.draining() => return Ok(()), // shutting down, and idle: close now
//!         };
//!         if n == 0 {
//!             return Ok(());
//!         }
//!         socket.write_all(&buf[..n]).await?;
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     // Like tokio's `TcpListener::bind`, with a backlog of 1024 instead of 128.
//!     let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
//!     let report = TcpListenerStream::new(listener)
//!         .sleep_on_error(Duration::from_millis(100))
//!         .spawn_serve(10_000, handle)
//!         .connection_time_limit(Duration::from_secs(300))
//!         .with_graceful_shutdown(tokio::signal::ctrl_c())
//!         .grace(Duration::from_secs(10))
//!         .await;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! # A client that reconnects
//!
//! [`reconnect::Reconnecting`] is an `AsyncRead + AsyncWrite` connection that reconnects with
//! backoff when the peer goes away, and never reports bytes as written that a live connection
//! did not accept: each loss is reported once, with the bytes that may not have arrived (see the
//! [`reconnect`] module docs for exactly what is retried and reported). Choose what the peer's
//! close means: a long-lived client wants [`EofPolicy::Reconnect`](reconnect::EofPolicy); the
//! default, `End`, ends the stream as a plain socket does.
//!
//! ```no_run
//! use std::time::Duration;
//! use staunch::backoff::{Exponential, Jitter};
//! use staunch::reconnect::{EofPolicy, Reconnecting, TcpConnector};
//! use staunch::SocketOptions;
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = SocketOptions::new().keepalive(Duration::from_secs(30));
//! let connector = TcpConnector::new("127.0.0.1:8080").socket_options(options);
//! let mut conn = Reconnecting::builder(connector)
//!     .policy(Exponential::builder().jitter(Jitter::Proportional(0.2)).build()?)
//!     .connect_timeout(Duration::from_secs(3))
//!     .eof_policy(EofPolicy::Reconnect) // a server restart means "reconnect", not "done"
//!     .build(); // returns at once; the first operation connects
//! conn.write_all(b"PING\r\n").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Shutdown without a deadline
//!
//! Without [`grace`](listen::GracefulShutdown::grace), the shutdown has no deadline: on the
//! signal the port closes at once, and the future resolves when the last connection in flight
//! has finished. Any future is a signal; tokio-util's `CancellationToken` fits as is.
//!
//! ```
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use staunch::ListenExt;
//! use tokio_stream::wrappers::TcpListenerStream;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let token = CancellationToken::new();
//! let server = TcpListenerStream::new(listener)
//!     .sleep_on_error(Duration::from_millis(100))
//!     .map(|_socket| async { std::io::Result::Ok(()) })
//!     .listen(100)
//!     .with_graceful_shutdown(token.clone().cancelled_owned());
//! token.cancel();
//! let report = server.await;
//! assert_eq!(report.cancelled, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Safety
//!
//! The crate is `#![deny(unsafe_code)]`. The only functions that allow it are in the unix
//! system-call layer, each with a `// SAFETY:` comment: `sendmsg`/`recvmsg` with `SCM_RIGHTS`
//! (`handover/scm.rs`), adopting inherited descriptors (`handover/env.rs`), placing them
//! between fork and exec (`handover/exec.rs`), and one `ioctl` reading a lost connection's
//! send queue (`sockopt.rs`).
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod log;
#[macro_use]
mod macros;
#[macro_use]
mod sockopt;

pub mod backoff;
#[cfg(unix)]
pub mod handover;
pub mod listen;
pub mod overload;
pub mod reconnect;
pub mod resume;
mod task;

pub use listen::{is_connection_error, ListenExt, Stats};
pub use overload::OverloadExt;
pub use sockopt::SocketOptions;
