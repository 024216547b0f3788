use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::peer::{PeerAddr, DROP_BUDGET};
use super::rate::Schedule;
use super::reject::{reject, RejectReason, Rejections};

pin_project! {
    /// Stream for the [`LimitRate::reject_excess`](super::LimitRate::reject_excess) method.
    #[must_use = "streams do nothing unless polled"]
    pub struct RejectExcess<S> {
        #[pin]
        stream: S,
        schedule: Schedule,
        rejections: Option<Rejections>,
    }
}

impl<S> RejectExcess<S> {
    pub(super) fn new(stream: S, schedule: Schedule) -> Self {
        RejectExcess {
            stream,
            schedule,
            rejections: None,
        }
    }

    /// Count every connection closed over the rate into `rejections`, as
    /// [`RejectReason::RateLimit`], with its peer's address.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = Some(rejections);
        self
    }

    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly bypasses the limit.",
        into_inner: "dropping the limiter."
    );
}

impl<S> Stream for RejectExcess<S>
where
    S: Stream,
    S::Item: PeerAddr,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        for _ in 0..DROP_BUDGET {
            let Some(item) = ready!(this.stream.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let now = Instant::now();
            if this.schedule.due().is_none_or(|due| now >= due) {
                // Charged from when the token was due if it came a moment ago, so that the
                // gap before the next arrival does not lower the rate under a flood.
                this.schedule.take(now, true);
                return Poll::Ready(Some(item));
            }
            // Over the rate: close it at once (a FIN, or a reset if the client had already sent
            // data) so that the client learns now, instead of waiting in the backlog.
            let peer = item.peer_addr().ok();
            drop(item);
            reject(this.rejections.as_ref(), RejectReason::RateLimit, peer);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Connections over the rate are dropped: nothing is promised.
        (0, self.stream.size_hint().1)
    }
}

impl<S> FusedStream for RejectExcess<S>
where
    S: FusedStream,
    S::Item: PeerAddr,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug> fmt::Debug for RejectExcess<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectExcess")
            .field("stream", &self.stream)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}
