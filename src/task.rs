//! Task plumbing shared by the server and client halves: the wakers that fan one wake-up out
//! to several waiting tasks, and a task handle that aborts on drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

/// The last waker of each half of a connection that two tasks may use at once (a reader and a
/// writer). Inner futures keep only the last waker they were polled with, so they are polled
/// with this one, which wakes both halves: neither misses progress that the other drove.
#[derive(Default)]
pub(crate) struct WakeBoth {
    pub(crate) read: AtomicWaker,
    pub(crate) write: AtomicWaker,
}

impl WakeBoth {
    /// A waker for both halves, and the handle to register them with.
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let both = Arc::new(WakeBoth::default());
        (both.clone(), Waker::from(both))
    }
}

impl Wake for WakeBoth {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.read.wake();
        self.write.wake();
    }
}

/// A waker that notes that it was woken, then wakes the task registered with it: for a task
/// that must tell whether an inner future asked to be polled again.
#[derive(Default)]
pub(crate) struct NoteWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl NoteWake {
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let wake = Arc::new(NoteWake::default());
        (wake.clone(), Waker::from(wake))
    }

    /// Whether it was woken since the last call; `task` is woken next time.
    pub(crate) fn take(&self, task: &Waker) -> bool {
        self.task.register(task);
        self.take_woken()
    }

    /// Whether it was woken since the last call, for a task that will not wait for it.
    pub(crate) fn take_woken(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for NoteWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        // `wake` takes the waker out; the owner registers again on every `take`.
        self.task.wake();
    }
}

/// A spawned task that is aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
