//! Serve hyper, axum and tonic through [staunch]'s accept loop.
//!
//! - [`serve`]: one call for a whole server. It takes a `TcpListener` (or any staunch accept
//!   stream) and a tower service (an axum `Router`, tonic `Routes`, `tower::service_fn`) and
//!   turns on every protection: accept errors such as `EMFILE` back off instead of spinning,
//!   at most 10,000 connections at once (the rest wait in the kernel's backlog), HTTP/1's
//!   header read timeout, a graceful shutdown on Ctrl-C or SIGTERM that lets requests finish
//!   and cuts what is left after a deadline, upgraded connections (WebSocket) counted and
//!   drained with the rest, HTTP/2 streams' handler tasks waited for and cut with their
//!   connection (see [`Executor`]), and counters ([`ServeFuture::stats`]).
//! - [`serve_connection`] (and [`Http::serve_connection`], with settings): one connection, for
//!   a staunch chain of your own (`spawn_serve(n, |io, conn| ..)`).
//! - [`axum::Listener`] (feature `axum`): a staunch stream as an
//!   `axum::serve::Listener`, for code that keeps `axum::serve`.
//! - [`tonic::incoming`] (feature `tonic`): a staunch stream for
//!   tonic's `serve_with_incoming`.
//!
//! # An axum server
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     let report = staunch_http::serve(listener, app).await;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! # What a connection does
//!
//! Each connection speaks HTTP/1.1, or HTTP/2 when the client opens with its preface (h2c, and
//! gRPC), with upgrades. It closes gracefully (HTTP/1: after the response in progress, with
//! `Connection: close`; HTTP/2: GOAWAY, then the calls in flight finish) when:
//!
//! - the listener's shutdown starts, or the listener reclaims it (its
//!   [`Conn`](staunch::listen::Conn) fires);
//! - it reaches its [maximum age](Http::max_connection_age) (with ±10% jitter, then cut after
//!   the [age grace](Http::max_connection_age_grace)), as gRPC's `MAX_CONNECTION_AGE` does;
//! - it has had no request in flight for [`max_idle`](Http::max_idle).
//!
//! A request that was already received when the shutdown starts is answered first (a client
//! taken from the backlog as the port closes gets its response, not an EOF).
//!
//! # Upgraded connections
//!
//! After an HTTP/1 upgrade (a WebSocket, say) hyper hands the socket to the handler's task. Here
//! the connection stays in the listener anyway: the connection future ends only when the
//! upgraded socket is dropped, so it is counted in `active`, holds its slot, and keeps the drain
//! waiting. With [`Http::conn_extension`] (or [`Server::conn_extension`]) every request carries
//! the connection's `Arc<Conn>` as an extension: a WebSocket task awaits `conn.draining()` to
//! send its close frame at the shutdown. At the deadline the listener cuts the connection:
//! every read and write of the upgraded socket fails from then on (kind `ConnectionAborted`),
//! and a task waiting on one is woken.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod doc {
//! use std::sync::Arc;
//! use axum::extract::Extension;
//! use staunch::listen::Conn;
//!
//! async fn ws_like(Extension(conn): Extension<Arc<Conn>>) -> &'static str {
//!     // Hand `conn` to the task that serves the upgraded socket; it awaits
//!     // `conn.draining()` next to its reads, and closes the socket when it fires.
//!     # let _ = conn;
//!     "..."
//! }
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

/// `AsyncRead` and `AsyncWrite` for an I/O wrapper of the axum and tonic adapters: every call
/// goes straight to its pinned `io` field.
#[cfg(any(feature = "axum", feature = "tonic"))]
macro_rules! delegate_io {
    ($wrapper:ident) => {
        impl<T: ::tokio::io::AsyncRead> ::tokio::io::AsyncRead for $wrapper<T> {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.project().io.poll_read(cx, buf)
            }
        }

        impl<T: ::tokio::io::AsyncWrite> ::tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.project().io.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.project().io.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.project().io.poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.project().io.poll_shutdown(cx)
            }
        }
    };
}

mod connection;
mod exec;
mod io;
mod serve;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;

pub use connection::{serve_connection, Error, Http};
pub use exec::Executor;
pub use io::Io;
pub use serve::{serve, FromStream, Incoming, ServeFuture, Server};
