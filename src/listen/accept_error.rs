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
///
/// # Examples
///
/// ```
/// use std::{io, time::Duration};
/// use futures_util::{stream, StreamExt};
/// use staunch::{listen::AcceptAction, ListenExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let error = |kind: io::ErrorKind| -> io::Result<()> { Err(kind.into()) };
/// let (reset, oom) = (io::ErrorKind::ConnectionReset, io::ErrorKind::OutOfMemory);
/// let accepts = stream::iter([error(reset), error(oom), error(oom), Ok(())]);
/// let mut actions = Vec::new();
/// let items: Vec<()> = accepts
///     .sleep_on_error(Duration::from_millis(100))
///     .give_up_after(2)
///     .on_error(|event| actions.push(event.action()))
///     .collect()
///     .await;
/// let backoff = AcceptAction::Backoff(Duration::from_millis(100));
/// assert_eq!(actions, [AcceptAction::Skip, backoff, AcceptAction::GiveUp]);
/// assert!(items.is_empty()); // it ended at the second resource error in a row
/// # }
/// ```
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
///
/// # Examples
///
/// A log line of your own for each error:
///
/// ```
/// use std::{io, time::Duration};
/// use futures_util::{stream, StreamExt};
/// use staunch::ListenExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let errors = [io::ErrorKind::ConnectionAborted, io::ErrorKind::OutOfMemory];
/// let accepts = stream::iter(errors.map(|kind| Err(kind.into()))).chain(stream::iter([Ok(1)]));
/// let mut lines = Vec::new();
/// let items: Vec<u32> = accepts
///     .sleep_on_error(Duration::from_millis(100))
///     .on_error(|event| {
///         let (error, class) = (event.error().kind(), event.class());
///         let (action, in_a_row) = (event.action(), event.consecutive());
///         lines.push(format!("{error:?}: {class:?}, {action:?}, {in_a_row} in a row"));
///     })
///     .collect()
///     .await;
/// assert_eq!(items, [1]);
/// assert_eq!(
///     lines,
///     [
///         "ConnectionAborted: Connection, Skip, 0 in a row",
///         "OutOfMemory: Resource, Backoff(100ms), 1 in a row",
///     ]
/// );
/// # }
/// ```
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
