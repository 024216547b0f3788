//! [`Executor`]: hyper's executor, with the tasks of a connection (its HTTP/2 streams' handlers)
//! tied to it.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// The tasks of the connection being polled on this thread: `None` outside a connection,
    /// `Some(None)` in one that has spawned nothing yet.
    static SCOPE: RefCell<Option<Option<Arc<Tasks>>>> = const { RefCell::new(None) };
}

/// hyper's executor for [`Http`](crate::Http): the tasks hyper spawns while serving a connection
/// (a handler for each HTTP/2 stream, and the pipe of an HTTP/2 `CONNECT`) run on tokio's
/// workers as with hyper-util's `TokioExecutor`, but belong to the connection. When the
/// connection is cut (the listener's shutdown deadline, the
/// [age grace](crate::Http::max_connection_age_grace)) their futures are dropped with it, before
/// the listener counts it ended; when it closes gracefully it waits for them.
///
/// Outside a connection served by this crate it spawns on tokio, as `TokioExecutor` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let tasks = SCOPE.with(|scope| {
            let mut scope = scope.borrow_mut();
            let tasks = scope.as_mut()?;
            Some(tasks.get_or_insert_with(Default::default).clone())
        });
        match tasks {
            Some(tasks) => tasks.spawn(future),
            None => {
                tokio::spawn(future);
            }
        }
    }
}

/// A connection's tasks. Each runs on a tokio task of its own, its future in a slot that the
/// connection can empty (dropping the future) at the cut.
#[derive(Default)]
pub(crate) struct Tasks {
    slots: Mutex<Vec<Weak<Mutex<Option<Task>>>>>,
    /// Woken as a task ends.
    ended: AtomicWaker,
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks").finish_non_exhaustive()
    }
}

impl Tasks {
    fn spawn<F>(self: &Arc<Self>, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = Scoped::task(self.clone(), async move {
            future.await;
        });
        let slot = Arc::new(Mutex::new(Some(Box::pin(task) as Task)));
        {
            let mut slots = lock(&self.slots);
            // Forget the tasks that have ended.
            slots.retain(|s| s.strong_count() > 0);
            slots.push(Arc::downgrade(&slot));
        }
        let tasks = self.clone();
        tokio::spawn(std::future::poll_fn(move |cx| {
            let mut task = lock(&slot);
            let Some(running) = task.as_mut() else {
                return Poll::Ready(());
            };
            let polled = running.as_mut().poll(cx);
            if polled.is_ready() {
                *task = None;
                drop(task);
                tasks.ended.wake();
            }
            polled
        }));
    }

    /// Drop every task's future now (a task being polled on another thread first finishes
    /// that poll).
    fn cut(&self) {
        let slots = std::mem::take(&mut *lock(&self.slots));
        for slot in slots.iter().filter_map(Weak::upgrade) {
            let task = lock(&slot).take();
            drop(task);
        }
    }

    /// Whether every task has ended.
    fn is_empty(&self) -> bool {
        let mut slots = lock(&self.slots);
        slots.retain(|s| s.upgrade().is_some_and(|slot| lock(&slot).is_some()));
        slots.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pin_project! {
    /// A future polled in a connection's scope: what it spawns through [`Executor`] belongs to
    /// the connection. The connection's own (`owner`) cuts the tasks when dropped.
    pub(crate) struct Scoped<F> {
        #[pin]
        future: F,
        tasks: Option<Arc<Tasks>>,
        owner: bool,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.owner {
                if let Some(tasks) = this.tasks.take() {
                    tasks.cut();
                }
            }
        }
    }
}

impl<F> Scoped<F> {
    /// The connection's future.
    pub(crate) fn connection(future: F) -> Self {
        Scoped {
            future,
            tasks: None,
            owner: true,
        }
    }

    fn task(tasks: Arc<Tasks>, future: F) -> Self {
        Scoped {
            future,
            tasks: Some(tasks),
            owner: false,
        }
    }

    /// The future inside.
    pub(crate) fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().future
    }

    /// Completes when every task the connection spawned has ended (they run on tokio's
    /// workers, not here).
    pub(crate) fn poll_tasks(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(tasks) = self.project().tasks else {
            return Poll::Ready(());
        };
        tasks.ended.register(cx.waker());
        if tasks.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = SCOPE.with(|scope| scope.replace(Some(this.tasks.take())));
        let _restore = Restore {
            tasks: this.tasks,
            outer,
        };
        this.future.poll(cx)
    }
}

/// Puts back, even when the poll panics, the connection's tasks and the scope found before.
struct Restore<'a> {
    tasks: &'a mut Option<Arc<Tasks>>,
    outer: Option<Option<Arc<Tasks>>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let ours = SCOPE.with(|scope| scope.replace(self.outer.take()));
        *self.tasks = ours.flatten();
    }
}
