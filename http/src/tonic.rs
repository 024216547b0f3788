//! [`incoming`]: a staunch accept stream for tonic's `serve_with_incoming`.
//!
//! tonic's server wants I/O that implements its
//! [`Connected`] trait. staunch's wrappers
//! ([`PeerPermit`](staunch::overload::PeerPermit), [`MinReadRate`](staunch::overload::MinReadRate))
//! cannot implement it here: the trait is tonic's and the types are staunch's, and Rust's
//! orphan rule lets only a crate that owns one of them write the impl (and staunch's core does
//! not depend on tonic). So [`incoming`] wraps every item in [`ConnectedIo`], this crate's own
//! type, which implements it for any [`Io`], with the peer's address as tonic's
//! `remote_addr()`.
//!
//! tonic's server owns the connections: staunch deals with accept errors and applies the
//! stream's controls, but there is no connection limit and no shutdown deadline (tonic waits
//! for every connection). To get those, serve tonic's `Routes` with [`serve`](crate::serve)
//! instead:
//!
//! ```ignore
//! let routes = tonic::service::Routes::new(GreeterServer::new(MyGreeter)).prepare();
//! staunch_http::serve(listener, routes).await;
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::{Incoming, Io};

/// `incoming` (a listener, or a staunch stream: see [`Incoming`]) as the stream tonic's
/// `Server::serve_with_incoming` and `serve_with_incoming_shutdown` take.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use staunch::overload::OverloadExt;
/// use staunch::ListenExt;
/// use tokio_stream::wrappers::TcpListenerStream;
///
/// # async fn run(router: tonic::transport::server::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
/// let accepted = TcpListenerStream::new(tcp)
///     .sleep_on_error(Duration::from_millis(100))
///     .limit_per_peer(16);
/// router
///     .serve_with_incoming_shutdown(staunch_http::tonic::incoming(accepted), async {
///         tokio::signal::ctrl_c().await.unwrap()
///     })
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn incoming<I: Incoming>(incoming: I) -> ConnectedStream<I::Stream> {
    ConnectedStream {
        stream: incoming.into_stream(),
    }
}

pin_project! {
    /// The stream of [`incoming`].
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct ConnectedStream<S> {
        #[pin]
        stream: S,
    }
}

impl<S> Stream for ConnectedStream<S>
where
    S: Stream,
    S::Item: Io,
{
    type Item = io::Result<ConnectedIo<S::Item>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx).map(|item| {
            item.map(|io| {
                let peer = io.peer();
                Ok(ConnectedIo { io, peer })
            })
        })
    }
}

pin_project! {
    /// A connection of [`incoming`]: its I/O, and tonic's [`Connected`] (the peer's address).
    #[derive(Debug)]
    pub struct ConnectedIo<T> {
        #[pin]
        io: T,
        peer: Option<SocketAddr>,
    }
}

impl<T> ConnectedIo<T> {
    /// The connection's I/O.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T> Connected for ConnectedIo<T> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: None,
            remote_addr: self.peer,
        }
    }
}

delegate_io!(ConnectedIo);
