//! How a `sleep_on_error` stream finds the listener that polls it, through any adapters.
//!
//! A listener cannot see its `SleepOnError` behind `map`, `take_until`, `select` and the like,
//! yet two things need the link: the listener's [`Stats`](super::Stats) include the accept
//! counters, and a backoff on a resource error (`EMFILE`) ends early when one of the listener's
//! connections ends, since that freed a descriptor.
//!
//! So, while a listener polls its stream, it lends its counters to this thread ([`Lender::lend`]:
//! the `Arc` is moved in and back out, no clone, no atomic). A `SleepOnError` polled meanwhile
//! that has no listener yet takes a clone ([`Link::find`], once) and keeps it. A stream polled
//! only outside any listener (say in a task of its own that forwards through a channel) is never
//! linked: its counters stay on its own [`SleepOnError::stats`](super::SleepOnError::stats), and
//! its backoffs run to the end.
//!
//! The link is whole: once linked, the listener reads every counter the stream ever kept, so
//! what was counted before the first poll inside the listener is not lost, and the order in which
//! streams are polled (`select`, `chain`) does not matter.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::stats::{AcceptShared, ListenShared};
use crate::overload::{self, Rejections};

thread_local! {
    /// The counters of the listener polling its stream on this thread right now.
    static POLLING: Cell<Option<Arc<ListenShared>>> = const { Cell::new(None) };
}

/// The listener's side: its counters, lent to the thread while it polls its stream, and its
/// rejection counters, lent the same way for the overload controls (which know nothing of
/// listeners).
#[derive(Debug)]
pub(crate) struct Lender(Option<Arc<ListenShared>>, Option<Rejections>);

impl Lender {
    pub(crate) fn new(shared: Arc<ListenShared>) -> Self {
        let rejections = shared.rejections.clone();
        Lender(Some(shared), Some(rejections))
    }

    /// Run `poll` (the listener polling its stream) with the counters lent to this thread. A
    /// listener polled inside another's stream lends its own and restores the outer one after.
    pub(crate) fn lend<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        struct GiveBack<'a> {
            slot: &'a mut Option<Arc<ListenShared>>,
            outer: Option<Arc<ListenShared>>,
        }
        impl Drop for GiveBack<'_> {
            // Also on unwind, so a panic cannot leave our counters lent.
            fn drop(&mut self) {
                *self.slot = POLLING.with(|p| p.replace(self.outer.take()));
            }
        }
        let outer = POLLING.with(|p| p.replace(self.0.take()));
        let _give_back = GiveBack {
            slot: &mut self.0,
            outer,
        };
        overload::lend(&mut self.1, poll)
    }
}

/// The `SleepOnError` side: the listener it found, if any.
#[derive(Debug, Default)]
pub(crate) struct Link {
    listener: Option<Arc<ListenShared>>,
    /// The listener's release count when the current backoff began.
    releases_at_sleep: u64,
}

impl Link {
    /// Link `accept` to the listener polling on this thread, if there is one and we have none
    /// yet. Cheap once linked; until then one thread-local access per poll.
    pub(crate) fn find(&mut self, accept: &Arc<AcceptShared>) {
        if self.listener.is_some() {
            return;
        }
        let listener = POLLING.with(|p| {
            let lent = p.take();
            let found = lent.clone();
            p.set(lent);
            found
        });
        if let Some(listener) = listener {
            listener.link(accept.clone());
            // A backoff already running counts releases from now.
            self.releases_at_sleep = listener.releases.load(Relaxed);
            self.listener = Some(listener);
        }
    }

    /// The listener's rejection counters, once linked.
    pub(crate) fn rejections(&self) -> Option<&Rejections> {
        self.listener.as_ref().map(|l| &l.rejections)
    }

    pub(crate) fn is_linked(&self) -> bool {
        self.listener.is_some()
    }

    /// The listener's connections running now, for logs.
    pub(crate) fn active(&self) -> Option<usize> {
        self.listener.as_ref().map(|l| l.active.load(Relaxed))
    }

    /// A backoff begins now.
    pub(crate) fn backoff_begins(&mut self) {
        if let Some(l) = &self.listener {
            self.releases_at_sleep = l.releases.load(Relaxed);
        }
    }

    /// `true` if one of the listener's connections ended since the backoff began.
    pub(crate) fn released_since_backoff(&self) -> bool {
        self.listener
            .as_ref()
            .is_some_and(|l| l.releases.load(Relaxed) != self.releases_at_sleep)
    }
}
