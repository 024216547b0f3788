//! What a [`SleepOnError`](super::SleepOnError) tells its error hook about each accept error.

use std::io;
use std::time::Duration;

use super::ErrorClass;

pub(crate) mod hook {
    #![allow(unreachable_pub)] // sealed: public in a private module on purpose

    use super::AcceptErrorEvent;

    /// The error hook of a [`SleepOnError`](crate::listen::SleepOnError): `()` for none, or the closure
    /// given to [`on_error`](crate::listen::SleepOnError::on_error).
    pub trait ErrorHook {
        /// `true` for `()`, the absent hook.
        const IS_NONE: bool = false;
        fn call(&mut self, event: &AcceptErrorEvent<'_>);
    }

    impl ErrorHook for () {
        const IS_NONE: bool = true;
        fn call(&mut self, _: &AcceptErrorEvent<'_>) {}
    }

    impl<F: FnMut(&AcceptErrorEvent<'_>)> ErrorHook for F {
        fn call(&mut self, event: &AcceptErrorEvent<'_>) {
            self(event)
        }
    }
}

use hook::ErrorHook;

/// What [`SleepOnError`](super::SleepOnError) does about one accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptAction {
    /// Per-connection error: accept again at once.
    Skip,
    /// Wait this long (or until one of the listener's own connections ends) before accepting again.
    Backoff(Duration),
    /// The give-up limit was reached: the stream ends.
    GiveUp,
}

/// One accept error, as seen by the [`on_error`](super::SleepOnError::on_error) hook.
#[derive(Debug)]
pub struct AcceptErrorEvent<'a> {
    error: &'a io::Error,
    class: ErrorClass,
    action: AcceptAction,
    consecutive: u32,
}

impl AcceptErrorEvent<'_> {
    /// The error `accept` returned.
    pub fn error(&self) -> &io::Error {
        self.error
    }

    /// How it was classified.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// What the stream does about it.
    pub fn action(&self) -> AcceptAction {
        self.action
    }

    /// Backed-off errors in a row, this one included (0 for a skipped per-connection error).
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }
}

/// Call the hook with one error.
pub(super) fn report<H: ErrorHook>(
    hook: &mut H,
    error: &io::Error,
    class: ErrorClass,
    action: AcceptAction,
    consecutive: u32,
) {
    hook.call(&AcceptErrorEvent {
        error,
        class,
        action,
        consecutive,
    });
}
