use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;

pin_project! {
    /// Stream for the [`setup_sockets`](crate::ListenExt::setup_sockets) method.
    ///
    /// # Examples
    ///
    /// A socket whose setup fails becomes a per-connection error, which
    /// [`sleep_on_error`](crate::ListenExt::sleep_on_error) skips at once:
    ///
    /// ```
    /// use std::{error::Error, io, time::Duration};
    /// use futures_util::{stream, StreamExt};
    /// use staunch::ListenExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let setup = |n: &u32| match n {
    ///     2 => Err(io::Error::other("setsockopt failed")),
    ///     _ => Ok(()),
    /// };
    /// let accepted = || stream::iter([Ok(1), Ok(2), Ok(3)]);
    /// let items: Vec<_> = accepted().setup_sockets(setup).collect().await;
    /// let error = items[1].as_ref().unwrap_err();
    /// assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    /// assert_eq!(error.source().unwrap().to_string(), "setsockopt failed");
    ///
    /// let start = tokio::time::Instant::now();
    /// let accepts = accepted().setup_sockets(setup).sleep_on_error(Duration::from_millis(100));
    /// assert_eq!(accepts.collect::<Vec<_>>().await, [1, 3]);
    /// assert_eq!(start.elapsed(), Duration::ZERO); // no backoff
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct SetupSockets<S, F> {
        #[pin]
        stream: S,
        setup: F,
    }
}

impl<S, F> SetupSockets<S, F> {
    pub(crate) fn new(stream: S, setup: F) -> Self {
        SetupSockets { stream, setup }
    }

    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly skips the setup hook.",
        into_inner: "dropping the hook."
    );
}

/// The listener inside, so that [`shed_on_emfile`](super::SleepOnError::shed_on_emfile) can
/// reach it through this adapter.
impl<S: AsRef<L>, F, L> AsRef<L> for SetupSockets<S, F> {
    fn as_ref(&self) -> &L {
        self.stream.as_ref()
    }
}

impl<S, F, T> Stream for SetupSockets<S, F>
where
    S: Stream<Item = io::Result<T>>,
    F: FnMut(&T) -> io::Result<()>,
{
    type Item = io::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<T>>> {
        let this = self.project();
        Poll::Ready(match ready!(this.stream.poll_next(cx)) {
            Some(Ok(socket)) => Some(match (this.setup)(&socket) {
                Ok(()) => Ok(socket),
                // A failed setup concerns this socket only: make it a per-connection error, so
                // `sleep_on_error` skips it instead of backing off.
                Err(e) => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    SetupError(e),
                )),
            }),
            other => other,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S, F, T> FusedStream for SetupSockets<S, F>
where
    S: FusedStream<Item = io::Result<T>>,
    F: FnMut(&T) -> io::Result<()>,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug, F> fmt::Debug for SetupSockets<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupSockets")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// The error of a failed socket setup, wrapped in an [`io::Error`] of kind
/// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted); the original is its source.
#[derive(Debug)]
struct SetupError(io::Error);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket setup failed, connection dropped: {}", self.0)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
