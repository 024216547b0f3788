//! [`Listener`]: a staunch accept stream as an [`axum::serve::Listener`], for code that keeps
//! `axum::serve`.
//!
//! `axum::serve(staunch_http::axum::Listener::new(stream), app)` gets staunch's accept side:
//! accept errors dealt with by `sleep_on_error` (instead of axum's 1 s sleep), every overload
//! control in the stream (`limit_per_peer`, `limit_rate`, `min_read_rate`, ...), and a
//! connection limit. axum still owns the connections, so there is no shutdown deadline, no
//! idle close at the shutdown for connections that never send a request, and upgraded
//! connections are not tracked: [`serve`](crate::serve) has all of those.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt as _;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Incoming, Io};

/// The default of [`Listener::max_connections`].
const MAX_CONNECTIONS: usize = 10_000;

/// A staunch accept stream (or a listener, see [`Incoming`]) as an
/// [`axum::serve::Listener`], with a connection limit.
///
/// The address it yields is the peer's, when known. Its [`local_addr`](axum::serve::Listener::local_addr)
/// is the one given with [`local_addr`](Listener::local_addr) (a stream does not know it).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use staunch::overload::OverloadExt;
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let local = tcp.local_addr()?;
/// let accepted = TcpListenerStream::new(tcp)
///     .sleep_on_error(Duration::from_millis(100))
///     .limit_per_peer(16);
/// let listener = staunch_http::axum::Listener::new(accepted)
///     .max_connections(1024)
///     .local_addr(local);
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap() })
///     .await
/// # }
/// ```
pub struct Listener<S> {
    stream: Pin<Box<S>>,
    slots: Arc<Semaphore>,
    max: usize,
    local_addr: Option<SocketAddr>,
}

impl<S> Listener<S> {
    /// A listener over `incoming`'s accept stream, with at most 10,000 connections at once.
    pub fn new<I>(incoming: I) -> Self
    where
        I: Incoming<Stream = S>,
    {
        Listener {
            stream: Box::pin(incoming.into_stream()),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            max: MAX_CONNECTIONS,
            local_addr: None,
        }
    }

    /// Serve at most `n` connections at once: `accept` waits for one to end before it takes
    /// the next client from the stream (the others wait in the kernel's backlog).
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero, or above tokio's semaphore limit (`usize::MAX >> 3`).
    #[track_caller]
    pub fn max_connections(mut self, n: usize) -> Self {
        assert!(
            n > 0 && n <= Semaphore::MAX_PERMITS,
            "staunch_http::axum::Listener::max_connections: {n} is not between 1 and {}",
            Semaphore::MAX_PERMITS
        );
        self.slots = Arc::new(Semaphore::new(n));
        self.max = n;
        self
    }

    /// The address `local_addr` reports.
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Connections served now.
    pub fn active(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

impl<S> axum::serve::Listener for Listener<S>
where
    S: futures_core::Stream + Send + 'static,
    S::Item: Io,
{
    type Io = Limited<S::Item>;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the listener's semaphore is never closed");
        match self.stream.next().await {
            Some(io) => {
                let peer = io.peer();
                (
                    Limited {
                        io,
                        _permit: permit,
                    },
                    peer,
                )
            }
            // axum's `accept` cannot end: a stream that gave up (`give_up_after`) accepts no
            // more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match self.local_addr {
            Some(addr) => Ok(Some(addr)),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "staunch_http::axum::Listener: no local address given (set it with `local_addr`)",
            )),
        }
    }
}

impl<S> fmt::Debug for Listener<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("available_slots", &self.slots.available_permits())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A connection of [`Listener`]: its I/O, holding one of the listener's slots until it is
    /// dropped.
    pub struct Limited<T> {
        #[pin]
        io: T,
        _permit: OwnedSemaphorePermit,
    }
}

impl<T> Limited<T> {
    /// The connection's I/O.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: fmt::Debug> fmt::Debug for Limited<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limited").field("io", &self.io).finish()
    }
}

delegate_io!(Limited);
