//! The heartbeat: it notices a transport that went silent, which a partition never reports.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The heartbeat: silent for one period, ask for an ack; silent for another, the transport is
/// dead (a partition raises no error by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Idle,
    UntilPing,
    UntilDead,
}

pub(super) struct Heartbeat {
    period: Duration,
    watch: Watch,
    /// Made on first use, so that a session can be built outside a runtime.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Heartbeat {
    pub(super) fn new(period: Duration) -> Self {
        Self {
            period,
            watch: Watch::Idle,
            timer: None,
        }
    }

    /// The transport spoke (or is new): the silence starts over.
    pub(super) fn heard(&mut self) {
        self.watch = Watch::Idle;
    }

    fn arm(&mut self, deadline: Instant) {
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer
            .as_mut()
            .map_or(Poll::Ready(()), |t| t.as_mut().poll(cx))
    }

    /// Run the heartbeat while the transport is silent. `Ready(Ok)`: an ack request is due
    /// (never while `awaiting_welcome`: the client sends nothing before the welcome);
    /// `Ready(Err)`: the transport is dead.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        awaiting_welcome: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.watch {
                Watch::Idle => {
                    self.arm(Instant::now() + self.period);
                    self.watch = Watch::UntilPing;
                }
                Watch::UntilPing => {
                    ready!(self.poll_timer(cx));
                    self.arm(Instant::now() + self.period);
                    self.watch = Watch::UntilDead;
                    if !awaiting_welcome {
                        return Poll::Ready(Ok(()));
                    }
                }
                Watch::UntilDead => {
                    ready!(self.poll_timer(cx));
                    self.watch = Watch::Idle;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "resume: the peer was silent for two heartbeats",
                    )));
                }
            }
        }
    }
}
