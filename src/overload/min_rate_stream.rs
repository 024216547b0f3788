use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;

use super::peer::PeerAddr;
use super::{MinReadRate, Rejections};

pin_project! {
    /// Stream for the [`min_read_rate`](super::OverloadExt::min_read_rate) method: each
    /// accepted connection comes wrapped in a [`MinReadRate`] that knows its peer's address.
    #[must_use = "streams do nothing unless polled"]
    pub struct MinReadRates<S> {
        #[pin]
        stream: S,
        bytes_per_sec: u32,
        grace: Duration,
        rejections: Option<Rejections>,
    }
}

impl<S> MinReadRates<S> {
    #[track_caller]
    pub(crate) fn new(stream: S, bytes_per_sec: u32, grace: Duration) -> Self {
        assert!(
            bytes_per_sec > 0,
            "min_read_rate: the rate must be at least 1 byte a second"
        );
        assert!(
            !grace.is_zero(),
            "min_read_rate: the grace period must be greater than zero"
        );
        MinReadRates {
            stream,
            bytes_per_sec,
            grace,
            rejections: None,
        }
    }

    /// Count every connection failed for reading too slowly into `rejections`, and report it
    /// to its hook with the peer's address.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = Some(rejections);
        self
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, dropping the settings.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> Stream for MinReadRates<S>
where
    S: Stream,
    S::Item: PeerAddr,
{
    type Item = MinReadRate<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        this.stream.poll_next(cx).map(|item| {
            item.map(|io| {
                let peer = io.peer_addr().ok();
                let mut io = MinReadRate::new(io, *this.bytes_per_sec, *this.grace);
                if let Some(peer) = peer {
                    io = io.peer(peer);
                }
                if let Some(rejections) = this.rejections {
                    io = io.rejections(rejections.clone());
                }
                io
            })
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S> FusedStream for MinReadRates<S>
where
    S: FusedStream,
    S::Item: PeerAddr,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug> fmt::Debug for MinReadRates<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinReadRates")
            .field("stream", &self.stream)
            .field("bytes_per_sec", &self.bytes_per_sec)
            .field("grace", &self.grace)
            .field("counted", &self.rejections.is_some())
            .finish()
    }
}
