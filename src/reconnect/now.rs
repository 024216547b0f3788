//! [`ReconnectHandle`]: cut a backoff short from anywhere.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Wake as _};

use crate::task::NoteWake;

/// Tells a [`Reconnecting`](super::Reconnecting) or a [`RetryLoop`](super::RetryLoop) to
/// reconnect now, from any task or thread: when the network is back (a link came up, the
/// server announced it is up again) waiting out the rest of a long backoff only delays
/// recovery. From [`Reconnecting::reconnect_handle`](super::Reconnecting::reconnect_handle) or
/// [`RetryLoop::reconnect_handle`](super::RetryLoop::reconnect_handle); cheap to clone.
///
/// [`reconnect_now`](Self::reconnect_now) ends the backoff being waited out, or the next one if
/// none is (an attempt in flight goes on; a live connection is kept, and the request applies
/// to the backoff after its loss): the next attempt starts at once, and the backoff starts over
/// as after the loss of a [stable](super::Builder::stable_after) connection (the policy from its
/// first delay, the attempt number from zero). A request is met, and forgotten, once a
/// connection is established; several before that count once. The `on_disconnect` hook still
/// decides after a loss (a request cuts short the wait it chooses), and an adapter that gave up
/// or was shut down stays so. The adapter acts when it is next driven: a read or write waiting
/// on it is woken.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::Reconnecting;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Refused until the test says the server is back.
/// let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
/// let connector = {
///     let up = up.clone();
///     move || {
///         let up = up.load(std::sync::atomic::Ordering::SeqCst);
///         async move {
///             if !up {
///                 return Err(std::io::ErrorKind::ConnectionRefused.into());
///             }
///             Ok(tokio::io::duplex(64).0)
///         }
///     }
/// };
/// let mut conn = Reconnecting::builder(connector)
///     .policy(Constant::new(Duration::from_secs(60)))
///     .build();
/// let handle = conn.reconnect_handle();
/// let start = Instant::now();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     up.store(true, std::sync::atomic::Ordering::SeqCst);
///     handle.reconnect_now(); // the server is back: do not wait out the minute
/// });
/// conn.wait_connected().await.unwrap();
/// assert_eq!(start.elapsed(), Duration::from_secs(1));
/// # }
/// ```
#[derive(Clone)]
pub struct ReconnectHandle {
    request: Arc<NoteWake>,
}

impl ReconnectHandle {
    pub(crate) fn new(request: &Arc<NoteWake>) -> Self {
        ReconnectHandle {
            request: Arc::clone(request),
        }
    }

    /// Start the backoff over and end a backoff being waited out (see the
    /// [type's docs](ReconnectHandle)).
    pub fn reconnect_now(&self) {
        log_event!(debug, "reconnect: asked to reconnect now");
        self.request.wake_by_ref();
    }
}

impl fmt::Debug for ReconnectHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectHandle").finish_non_exhaustive()
    }
}

/// Whether [`ReconnectHandle::reconnect_now`] was called since the last call; `cx` is woken by
/// the next one.
pub(crate) fn requested(request: &NoteWake, cx: &Context<'_>) -> bool {
    request.take(cx.waker())
}
