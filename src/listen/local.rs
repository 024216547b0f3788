use std::future::Future;

use futures_core::Stream;
use futures_util::stream::FuturesUnordered;
use pin_project_lite::pin_project;

use super::connection::ConnectionOutput;
use super::driver::{Driver, LocalPool};

pin_project! {
    /// Future for the [`listen`](crate::ListenExt::listen) method.
    ///
    /// It polls the accept stream while fewer than `max_connections` connection futures are in
    /// flight, and polls those futures inside its own task, so they need not be `Send` and it
    /// works on a current-thread runtime. It resolves once the stream has ended and every
    /// connection has finished. Dropping it drops every connection still in flight.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Listen<S>
    where
        S: Stream,
        S::Item: Future,
    {
        #[pin]
        driver: Driver<S, LocalPool<S::Item>>,
    }
}

impl<S> Listen<S>
where
    S: Stream,
    S::Item: Future,
    <S::Item as Future>::Output: ConnectionOutput,
{
    #[track_caller]
    pub(crate) fn new(stream: S, max_connections: usize) -> Self {
        Listen {
            driver: Driver::new(stream, FuturesUnordered::new(), max_connections, "listen"),
        }
    }
}

listener_common!(Listen, "listen", where
    S: Stream,
    S::Item: Future,
    <S::Item as Future>::Output: ConnectionOutput,
);
