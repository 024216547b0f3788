use std::future::Future;

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::task::JoinSet;

use super::connection::ConnectionOutput;
use super::driver::{Driver, SpawnPool};

pin_project! {
    /// Future for the [`spawn_listen`](crate::ListenExt::spawn_listen) method.
    ///
    /// Like [`Listen`](crate::Listen), but every connection future is spawned as its own tokio
    /// task, so connections run on every worker thread of a multi-thread runtime while this
    /// future keeps the count and polls the accept stream. It must be polled inside a tokio
    /// runtime. Dropping it aborts every connection task still running.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct SpawnListen<S>
    where
        S: Stream,
    {
        #[pin]
        driver: Driver<S, SpawnPool>,
    }
}

impl<S> SpawnListen<S>
where
    S: Stream,
    S::Item: Future + Send + 'static,
    <S::Item as Future>::Output: ConnectionOutput,
{
    #[track_caller]
    pub(crate) fn new(stream: S, max_connections: usize) -> Self {
        SpawnListen {
            driver: Driver::new(stream, JoinSet::new(), max_connections, "spawn_listen"),
        }
    }
}

listener_common!(SpawnListen, "spawn_listen", where
    S: Stream,
    S::Item: Future + Send + 'static,
    <S::Item as Future>::Output: ConnectionOutput,
);
