//! Where a [`Listener`](super::Listener) runs its connection futures: [`InTask`] or [`Spawned`].

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use tokio::task::{JoinError, JoinSet};

use super::connection::{ConnectionEnd, ConnectionOutput, Tracked};
use super::stats::ListenShared;

/// Connection futures are polled inside the listener's own task: they need not be `Send`, and it
/// works on a current-thread runtime. The mode of [`listen`](crate::ListenExt::listen).
///
/// # Examples
///
/// Connections that share an `Rc`, which is not `Send`:
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use futures_util::{stream, StreamExt};
/// use staunch::listen::{InTask, Listener};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let served = Rc::new(Cell::new(0));
/// let server: Listener<_, InTask> = stream::iter(0..3)
///     .map(|_| {
///         let served = served.clone();
///         async move { served.set(served.get() + 1) }
///     })
///     .listen(10);
/// server.await;
/// assert_eq!(served.get(), 3);
/// # }
/// ```
#[derive(Debug)]
pub enum InTask {}

/// Every connection future is spawned as its own tokio task, so connections run on every worker
/// thread. The mode of [`spawn_listen`](crate::ListenExt::spawn_listen).
///
/// # Examples
///
/// ```
/// use std::{pin::pin, time::Duration};
/// use futures_util::{stream, FutureExt, StreamExt};
/// use staunch::listen::{Listener, Spawned};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (done, finished) = tokio::sync::oneshot::channel();
/// let server: Listener<_, Spawned> = stream::iter([done])
///     .chain(stream::pending())
///     .map(|done| async move { done.send("served").unwrap() })
///     .spawn_listen(10);
/// let mut server = pin!(server);
/// // Polled once, the listener starts the connection as a task of its own...
/// assert!(server.as_mut().now_or_never().is_none());
/// // ...which runs to its end though the listener is not polled again (in its task, it would
/// // wait for the listener).
/// let finished = tokio::time::timeout(Duration::from_secs(5), finished).await.unwrap();
/// assert_eq!(finished.unwrap(), "served");
/// # }
/// ```
#[derive(Debug)]
pub enum Spawned {}

/// How a [`Listener`](super::Listener) runs connection futures of type `F`: [`InTask`] or
/// [`Spawned`]. Sealed.
///
/// # Examples
///
/// Code for the futures of `listen` and `spawn_listen` alike:
///
/// ```
/// use std::time::Duration;
/// use futures_util::{stream, Stream, StreamExt};
/// use staunch::listen::{Listener, Mode};
/// use staunch::ListenExt;
///
/// fn describe<S: Stream, M: Mode<S::Item>>(listener: &Listener<S, M>) -> String {
///     let (max, limit) = (listener.max_connections(), listener.time_limit());
///     format!("up to {max} connections, time limit {limit:?}")
/// }
///
/// let in_task = stream::iter([1]).map(|_| async {}).listen(10);
/// let spawned = stream::iter([1]).map(|_| async {}).spawn_listen(100);
/// let spawned = spawned.connection_time_limit(Duration::from_secs(30));
/// assert_eq!(describe(&in_task), "up to 10 connections, time limit None");
/// assert_eq!(describe(&spawned), "up to 100 connections, time limit Some(30s)");
/// ```
pub trait Mode<F>: sealed::Sealed<F> {}

impl<F> Mode<F> for InTask
where
    F: Future,
    F::Output: ConnectionOutput,
{
}

impl<F> Mode<F> for Spawned
where
    F: Future + Send + 'static,
    F::Output: ConnectionOutput,
{
}

pub(crate) mod sealed {
    // Sealed: public in a private module on purpose, reachable (not nameable) through `Mode`.
    #![allow(unreachable_pub, private_interfaces)]

    use std::sync::Arc;
    use std::task::{Context, Poll};

    use super::super::connection::{ConnectionEnd, Tracked};
    use super::super::stats::ListenShared;

    pub trait Sealed<F> {
        type Pool: Pool<Connection = F>;
        /// The `ListenExt` method that builds this mode, for panic messages and docs.
        const METHOD: &'static str;
        /// The type alias it is known by, for `Debug`.
        const NAME: &'static str;
    }

    /// The running connections, and the counters they end in. Dropping a pool counts every
    /// connection it still holds, so the stats add up (`connections == active + every ending`).
    pub trait Pool {
        type Connection;
        fn new(shared: Arc<ListenShared>) -> Self;
        fn shared(&self) -> &Arc<ListenShared>;
        fn len(&self) -> usize;
        fn push(&mut self, connection: Tracked<Self::Connection>);
        /// Count every connection that ended; `Ready` when none is left.
        fn poll_endings(&mut self, cx: &mut Context<'_>) -> Poll<()>;
        /// Cancel every connection (counted as cancelled, now or as their tasks end).
        fn cancel_all(&mut self);
    }

    pub(crate) fn record_all(shared: &ListenShared, ending: ConnectionEnd, n: usize) {
        for _ in 0..n {
            ending.record(shared);
        }
    }
}

use sealed::{record_all, Pool};

impl<F> sealed::Sealed<F> for InTask
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Pool = InTaskPool<F>;
    const METHOD: &'static str = "listen";
    const NAME: &'static str = "Listen";
}

impl<F> sealed::Sealed<F> for Spawned
where
    F: Future + Send + 'static,
    F::Output: ConnectionOutput,
{
    type Pool = SpawnedPool<F>;
    const METHOD: &'static str = "spawn_listen";
    const NAME: &'static str = "SpawnListen";
}

#[allow(unreachable_pub, missing_debug_implementations)] // named by `Sealed::Pool` only
pub struct InTaskPool<F> {
    connections: FuturesUnordered<Tracked<F>>,
    shared: Arc<ListenShared>,
}

#[allow(private_interfaces)] // see `sealed`
impl<F> Pool for InTaskPool<F>
where
    F: Future,
    F::Output: ConnectionOutput,
{
    type Connection = F;

    fn new(shared: Arc<ListenShared>) -> Self {
        InTaskPool {
            connections: FuturesUnordered::new(),
            shared,
        }
    }

    fn shared(&self) -> &Arc<ListenShared> {
        &self.shared
    }

    fn len(&self) -> usize {
        self.connections.len()
    }

    fn push(&mut self, connection: Tracked<F>) {
        self.connections.push(connection);
    }

    fn poll_endings(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(ending) = self.connections.poll_next_unpin(cx) {
            match ending {
                Some(ending) => ending.record(&self.shared),
                None => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }

    fn cancel_all(&mut self) {
        record_all(
            &self.shared,
            ConnectionEnd::Cancelled,
            self.connections.len(),
        );
        self.connections.clear();
    }
}

impl<F> Drop for InTaskPool<F> {
    fn drop(&mut self) {
        // Futures that completed were removed when polled: the rest are cut.
        record_all(
            &self.shared,
            ConnectionEnd::Cancelled,
            self.connections.len(),
        );
    }
}

#[allow(unreachable_pub, missing_debug_implementations)] // named by `Sealed::Pool` only
pub struct SpawnedPool<F> {
    tasks: JoinSet<ConnectionEnd>,
    shared: Arc<ListenShared>,
    _connection: PhantomData<fn(F)>,
}

#[allow(private_interfaces)] // see `sealed`
impl<F> Pool for SpawnedPool<F>
where
    F: Future + Send + 'static,
    F::Output: ConnectionOutput,
{
    type Connection = F;

    fn new(shared: Arc<ListenShared>) -> Self {
        SpawnedPool {
            tasks: JoinSet::new(),
            shared,
            _connection: PhantomData,
        }
    }

    fn shared(&self) -> &Arc<ListenShared> {
        &self.shared
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn push(&mut self, connection: Tracked<F>) {
        self.tasks.spawn(connection);
    }

    fn poll_endings(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(joined) = self.tasks.poll_join_next(cx) {
            match joined {
                Some(joined) => ending_of(joined).record(&self.shared),
                None => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }

    fn cancel_all(&mut self) {
        // Aborted tasks end as cancelled through `poll_endings`.
        self.tasks.abort_all();
    }
}

impl<F> Drop for SpawnedPool<F> {
    fn drop(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            ending_of(joined).record(&self.shared);
        }
        // Dropping the set aborts the rest.
        record_all(&self.shared, ConnectionEnd::Cancelled, self.tasks.len());
    }
}

fn ending_of(joined: Result<ConnectionEnd, JoinError>) -> ConnectionEnd {
    match joined {
        Ok(ending) => ending,
        // Panics are caught inside `Tracked`; a join error here means the task was aborted.
        Err(e) if e.is_panic() => ConnectionEnd::Panicked,
        Err(_) => ConnectionEnd::Cancelled,
    }
}
