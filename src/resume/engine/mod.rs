//! The session state both ends share: replay buffer, positions, framing, heartbeat. Where a
//! transport comes from is the [`Link`]'s business (the client connects, the server waits for
//! the client to come back).
//!
//! [`Sender`] owns the send side, [`Receiver`] the receive side and [`Heartbeat`] the silence
//! timer; [`Engine`] holds the transport and what they share, and drives them in turn.

mod heartbeat;
mod recv;
mod send;

use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use self::heartbeat::Heartbeat;
use self::recv::Receiver;
use self::send::Sender;
use super::{Config, SessionId};
use crate::reconnect::GaveUp;
use crate::task::WakeBoth;

/// A transport, ready for the handshake.
pub(crate) struct Attach<Io> {
    pub(crate) io: Io,
    /// Server: what the client's hello says; the server answers with a welcome and resends
    /// from there. Client: `None`; the client sends its hello and waits for the welcome.
    pub(crate) peer: Option<Peer>,
}

/// What an end tells the other in its hello or welcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The position it received up to.
    pub(crate) received: u64,
    /// Its replay buffer size.
    pub(crate) buffer: u32,
}

/// Where transports come from.
pub(crate) trait Link {
    type Io: AsyncRead + AsyncWrite + Unpin;
    /// A transport while none is attached. An error ends the session.
    fn poll_attach(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Attach<Self::Io>>>;
    /// A transport that replaces the attached one (the client came back on a new connection
    /// before this end noticed the old one died). Registers `cx` to hear of one.
    fn replacement(&mut self, cx: &mut Context<'_>) -> Option<Attach<Self::Io>>;
    /// The attached transport failed with `error`.
    fn lost(&mut self, error: io::Error);
    /// The session failed for good with `error` (malformed input, a rejected hello, or the
    /// link's own error).
    fn ended(&mut self, _error: &io::Error) {}
    /// A handshake completed.
    fn resumed(&mut self);
    /// The session id the server end owns (`None` on the client).
    fn server_id(&self) -> Option<SessionId>;
}

/// Why a session failed, kept to return it again: a give-up keeps its payload.
#[derive(Debug)]
enum Failure {
    GaveUp(GaveUp),
    Other(io::ErrorKind, String),
}

pub(crate) struct Engine<L: Link> {
    link: L,
    io: Option<L::Io>,
    /// Set on a protocol error or when the link gives up; every later call returns it.
    failed: Option<Failure>,
    id: Option<SessionId>,
    awaiting_welcome: bool,
    /// Bumped when something a waiting caller may care about changed (acks, a new transport).
    generation: u64,
    sender: Sender,
    receiver: Receiver,
    heartbeat: Heartbeat,
    // The read and the write side's wakers, woken together by the transport and the timers: a
    // write may have to read (acks), a read may have to write (acks), and with a split stream
    // the two are polled by different tasks.
    wakers: Arc<WakeBoth>,
    waker: Waker,
}

impl<L: Link> std::fmt::Debug for Engine<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.id)
            .field("connected", &self.io.is_some())
            .field("failed", &self.failed)
            .field("unacked", &self.sender.unacked())
            .field("peer_acked", &self.sender.peer_acked())
            .field("received", &self.receiver.received())
            .finish_non_exhaustive()
    }
}

impl<L: Link> Engine<L> {
    pub(crate) fn new(link: L, config: &Config) -> Self {
        let (wakers, waker) = WakeBoth::new();
        Self {
            id: link.server_id(),
            link,
            io: None,
            failed: None,
            awaiting_welcome: false,
            generation: 0,
            sender: Sender::new(config),
            receiver: Receiver::new(config),
            heartbeat: Heartbeat::new(config.heartbeat),
            waker,
            wakers,
        }
    }

    pub(crate) fn id(&self) -> Option<SessionId> {
        self.id
    }

    pub(crate) fn link(&self) -> &L {
        &self.link
    }

    /// Something a waiting caller may care about changed: wake both sides to look.
    fn changed(&mut self) {
        self.generation += 1;
        self.wakers.wake_by_ref();
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some(Failure::GaveUp(gave_up)) => Err(gave_up.to_io_error()),
            Some(Failure::Other(kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// End the session: the error is returned now and by every later call.
    fn fail(&mut self, error: io::Error) -> io::Error {
        log_event!(warn, id = ?self.id, %error, "resume: session failed");
        self.failed = Some(match GaveUp::from_io_error(&error) {
            Some(gave_up) => Failure::GaveUp(gave_up.clone()),
            None => Failure::Other(error.kind(), error.to_string()),
        });
        self.io = None;
        self.link.ended(&error);
        self.wakers.wake_by_ref();
        error
    }

    /// The transport failed; the link finds another one.
    fn lose(&mut self, error: io::Error) {
        log_event!(debug, id = ?self.id, %error, "resume: transport lost");
        self.io = None;
        self.link.lost(error);
        self.wakers.wake_by_ref();
    }

    fn attach(&mut self, attach: Attach<L::Io>) -> io::Result<()> {
        self.io = Some(attach.io);
        self.sender.reset();
        self.receiver.reset();
        self.heartbeat.heard();
        self.changed();
        match attach.peer {
            None => {
                self.sender.queue_hello(self.id, self.receiver.received());
                self.awaiting_welcome = true;
            }
            Some(peer) => {
                self.resume_from(peer.received)?;
                self.receiver.peer_buffer(peer.buffer);
                let id = self.id.expect("a server session has an id");
                self.sender.queue_welcome(id, self.receiver.received());
                self.link.resumed();
            }
        }
        Ok(())
    }

    /// The peer received up to `position`: resend from there.
    fn resume_from(&mut self, position: u64) -> io::Result<()> {
        let resumed = self.sender.resume_from(position);
        self.acked(resumed)
    }

    /// What an ack did to the send side: bytes freed wake a waiting writer, malformed input
    /// fails the session.
    fn acked(&mut self, acked: io::Result<bool>) -> io::Result<()> {
        match acked {
            Ok(advanced) => {
                if advanced {
                    self.changed();
                }
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Attach a transport if none is; `Pending` while the link has none.
    fn poll_connected(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_failed()?;
        if let Some(attach) = self.link.replacement(cx) {
            log_event!(debug, id = ?self.id, "resume: transport replaced");
            self.attach(attach)?;
        }
        while self.io.is_none() {
            match ready!(self.link.poll_attach(cx)) {
                Ok(attach) => self.attach(attach)?,
                Err(error) => return Poll::Ready(Err(self.fail(error))),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// One round of work: attach a transport, write what is queued, read what arrived (data
    /// into `dst`), run the heartbeat. `Ready(Ok(n))`: `n` bytes were delivered or (with 0)
    /// something changed that a waiting caller should look at; `Pending`: nothing can move.
    ///
    /// Everything is polled with the waker of both sides; callers register theirs first.
    fn poll_drive(&mut self, mut dst: Option<&mut ReadBuf<'_>>) -> Poll<io::Result<usize>> {
        let waker = self.waker.clone();
        let cx = &mut Context::from_waker(&waker);
        loop {
            let generation = self.generation;
            ready!(self.poll_connected(cx))?;
            if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                self.lose(error);
                continue;
            }
            match self.poll_recv(cx, dst.as_deref_mut()) {
                // Bytes delivered just before a malformed frame: the error comes next call.
                Poll::Ready(Ok(n)) if self.failed.is_some() => return Poll::Ready(Ok(n)),
                Poll::Ready(Ok(n)) => {
                    if n > 0 && self.receiver.ack_wanted(self.sender.acked_to_peer()) {
                        self.sender.queue_ack();
                    }
                    if self.sender.ack_queued() {
                        if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                            self.lose(error);
                        }
                    }
                    if n > 0 || generation != self.generation {
                        return Poll::Ready(Ok(n));
                    }
                    if dst.as_ref().is_some_and(|d| d.remaining() == 0) {
                        return Poll::Ready(Ok(0));
                    }
                    // Stopped at data only the reader can take; it was woken. Meanwhile the
                    // transport's read side was polled (for a close) where there was room, and
                    // the heartbeat runs as on a silent transport: past a full `inbuf` nothing
                    // the peer says (acks, its heartbeat) can be seen, so a reader that takes
                    // nothing for two heartbeats while this end waits costs a reconnect.
                    match self.heartbeat.poll(cx, self.awaiting_welcome) {
                        Poll::Ready(Ok(())) => self.sender.queue_ping(),
                        Poll::Ready(Err(error)) => self.lose(error),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Poll::Ready(Err(error)) => {
                    self.check_failed()?;
                    self.lose(error);
                    // An ack that came just before the close may be all the caller waited
                    // for (the peer's last ack, then its close): let it look before
                    // reconnecting.
                    if generation != self.generation {
                        return Poll::Ready(Ok(0));
                    }
                }
                Poll::Pending => {
                    // An ack request (or a FIN) that came in this round.
                    if self.sender.ack_queued() {
                        if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                            self.lose(error);
                            continue;
                        }
                    }
                    if generation != self.generation {
                        return Poll::Ready(Ok(0));
                    }
                    match self.heartbeat.poll(cx, self.awaiting_welcome) {
                        Poll::Ready(Ok(())) => self.sender.queue_ping(),
                        Poll::Ready(Err(error)) => self.lose(error),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}
