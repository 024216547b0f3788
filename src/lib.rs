//! Accept loops that keep accepting and clients that keep connected, for tokio.
//!
//! - [`ListenExt::sleep_on_error`] replaces `loop { listener.accept().await? }`: per-connection
//!   errors are skipped at once, resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) back
//!   off instead of spinning, and the stream never ends because of an error.
//! - [`ListenExt::listen`] and [`ListenExt::spawn_listen`] replace `tokio::spawn(handle(socket))`:
//!   at most `n` connections at once with backpressure, failing and panicking connections
//!   isolated and counted, an optional per-connection time limit, and a graceful shutdown with a
//!   deadline ([`Listener::with_graceful_shutdown`](listen::Listener::with_graceful_shutdown)).
//!   The server's types live in [`listen`].
//! - [`handover`] (unix) restarts a server without closing its port: a new process takes over
//!   the listening sockets, the old one drains.
//! - [`reconnect`] keeps clients connected; [`backoff`] holds the retry policies both sides use.
//!
//! # A server
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use staunch::ListenExt;
//! use tokio::net::TcpStream;
//! use tokio_stream::wrappers::TcpListenerStream;
//!
//! async fn handle(socket: TcpStream) -> std::io::Result<()> {
//!     let (mut reader, mut writer) = socket.into_split();
//!     tokio::io::copy(&mut reader, &mut writer).await?;
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     // Like tokio's `TcpListener::bind`, with a backlog of 1024 instead of 128.
//!     let listener = staunch::listen::bind("127.0.0.1:8080".parse().unwrap())?;
//!     let server = TcpListenerStream::new(listener)
//!         .sleep_on_error(Duration::from_millis(100))
//!         .map(handle)
//!         .spawn_listen(10_000)
//!         .connection_time_limit(Duration::from_secs(300));
//!     let stats = server.stats();
//!     let report = server
//!         .with_graceful_shutdown(
//!             async { tokio::signal::ctrl_c().await.unwrap() },
//!             Duration::from_secs(10),
//!         )
//!         .await;
//!     println!("{} (cut at shutdown: {})", stats.snapshot(), report.cancelled);
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
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connector = TcpConnector::new("127.0.0.1:8080").keepalive(Duration::from_secs(30));
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
//! [`with_graceful_drain`](listen::Listener::with_graceful_drain) drains with no deadline: on
//! the signal the port closes at once, and the future resolves when the last connection in
//! flight has finished. Any future is
//! a signal; tokio-util's `CancellationToken` fits as is.
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
//!     .with_graceful_drain(token.clone().cancelled_owned());
//! token.cancel();
//! let report = server.await;
//! assert_eq!(report.cancelled, 0);
//! # Ok(())
//! # }
//! ```
// `deny`, not `forbid`: handing sockets over needs `sendmsg`/`recvmsg` with `SCM_RIGHTS` and
// adopting inherited descriptors (src/handover/{scm,env}.rs), and reading a lost
// connection's send queue needs one ioctl (src/sockopt.rs); only those functions allow it.
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

pub use listen::{is_connection_error, ListenExt, Stats};
