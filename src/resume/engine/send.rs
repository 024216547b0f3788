//! The send side: the replay buffer, the frames queued for the transport, the peer's acks; and
//! the engine's write operations.

use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::super::frame::{self, Kind, MAX_DATA};
use super::super::replay::Replay;
use super::super::{Config, SessionId};
use super::{Engine, Link};

/// The most replay segments one vectored write takes (with the headers before them).
const SEGMENTS_PER_WRITE: usize = 15;

/// Sending. Positions count bytes; the FIN takes one position after the last byte.
pub(super) struct Sender {
    replay: Replay,
    /// The highest position the peer acknowledged (can be one past the data: the FIN).
    peer_acked: u64,
    /// The FIN went out on this transport (the data sent is the replay buffer's business).
    fin_sent: bool,
    fin_queued: bool,
    /// Encoded control frames and data headers, written before the payload `data_left` refers to.
    out: Vec<u8>,
    out_pos: usize,
    /// Payload bytes of the data frame in flight, taken from `replay` at `sent`.
    data_left: usize,
    ack_due: bool,
    /// The position the last ack sent carried.
    acked_to_peer: u64,
    ping_due: bool,
    ack_requested: bool,
}

impl Sender {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            replay: Replay::new(config.buffer_size),
            peer_acked: 0,
            fin_sent: false,
            fin_queued: false,
            out: Vec::with_capacity(64),
            out_pos: 0,
            data_left: 0,
            ack_due: false,
            acked_to_peer: 0,
            ping_due: false,
            ack_requested: false,
        }
    }

    /// A new transport: what was queued for the old one is dropped.
    pub(super) fn reset(&mut self) {
        self.out.clear();
        self.out_pos = 0;
        self.data_left = 0;
        self.ping_due = false;
        self.ack_requested = false;
    }

    pub(super) fn unacked(&self) -> usize {
        self.replay.len()
    }

    pub(super) fn peer_acked(&self) -> u64 {
        self.peer_acked
    }

    pub(super) fn acked_to_peer(&self) -> u64 {
        self.acked_to_peer
    }

    /// The replay buffer's size, as a hello or a welcome announces it.
    fn buffer_size(&self) -> u32 {
        u32::try_from(self.replay.capacity()).unwrap_or(u32::MAX)
    }

    fn data_end(&self) -> u64 {
        self.replay.end()
    }

    /// The next position to send on this transport.
    fn sent(&self) -> u64 {
        self.replay.sent_position() + u64::from(self.fin_sent)
    }

    fn end(&self) -> u64 {
        self.data_end() + u64::from(self.fin_queued)
    }

    /// Every queued frame and byte is written (and the FIN, once shutdown queued it).
    fn all_sent(&self) -> bool {
        self.out_pos == self.out.len() && self.data_left == 0 && self.sent() == self.end()
    }

    pub(super) fn queue_hello(&mut self, id: Option<SessionId>, received: u64) {
        let buffer = self.buffer_size();
        frame::push_hello(&mut self.out, id, received, buffer);
    }

    /// The welcome carries the position received, so it counts as an ack.
    pub(super) fn queue_welcome(&mut self, id: SessionId, received: u64) {
        let buffer = self.buffer_size();
        frame::push_welcome(&mut self.out, id, received, buffer);
        self.acked_to_peer = received;
        self.ack_due = false;
    }

    pub(super) fn queue_ack(&mut self) {
        self.ack_due = true;
    }

    pub(super) fn ack_queued(&self) -> bool {
        self.ack_due
    }

    pub(super) fn queue_ping(&mut self) {
        self.ping_due = true;
    }

    /// The buffer is full: ask the peer for an ack, once until one comes.
    fn request_ack(&mut self) {
        if !self.ack_requested {
            self.ack_requested = true;
            self.ping_due = true;
        }
    }

    /// The peer received up to `position`: resend from there. `Ok(true)`: that acked bytes not
    /// acked before. Errors are malformed input.
    pub(super) fn resume_from(&mut self, position: u64) -> io::Result<bool> {
        let sent = self.sent();
        if position < self.peer_acked || position > sent {
            return Err(frame::malformed(format!(
                "the peer resumes from position {position}, outside the replayable range {}..={sent}",
                self.peer_acked
            )));
        }
        let data_end = self.data_end();
        self.replay.rewind(position.min(data_end));
        self.fin_sent = position > data_end;
        self.apply_ack(position)
    }

    /// An ack frame: as [`apply_ack`](Self::apply_ack), and an ack request may go out again.
    pub(super) fn acked(&mut self, position: u64) -> io::Result<bool> {
        let advanced = self.apply_ack(position)?;
        self.ack_requested = false;
        Ok(advanced)
    }

    /// `Ok(true)`: the ack freed bytes (or acked the FIN). Errors are malformed input.
    fn apply_ack(&mut self, position: u64) -> io::Result<bool> {
        let sent = self.sent();
        if position > sent {
            return Err(frame::malformed(format!(
                "ack of position {position}, beyond the {sent} sent"
            )));
        }
        if position > self.peer_acked {
            self.replay.ack(position.min(self.data_end()));
            self.peer_acked = position;
            return Ok(true);
        }
        Ok(false)
    }

    /// Queue the next frames at a frame boundary; `false` if there is nothing to send.
    fn refill(&mut self, received: u64, awaiting_welcome: bool) -> bool {
        self.out.clear();
        self.out_pos = 0;
        if awaiting_welcome {
            return false;
        }
        if self.ack_due {
            frame::push_ack(&mut self.out, received);
            self.acked_to_peer = received;
            self.ack_due = false;
        }
        if self.ping_due {
            frame::push_header(&mut self.out, Kind::AckRequest, 0);
            self.ping_due = false;
        }
        let unsent = self.replay.unsent_len();
        if unsent > 0 {
            let n = unsent.min(MAX_DATA);
            frame::push_header(&mut self.out, Kind::Data, n);
            self.data_left = n;
        } else if self.fin_queued && !self.fin_sent {
            frame::push_header(&mut self.out, Kind::Fin, 0);
            self.fin_sent = true;
        }
        !self.out.is_empty()
    }

    /// Write queued frames and data until done (`Ready(Ok)`) or the transport is full. An ack
    /// that is due carries `received`.
    pub(super) fn poll_send<Io: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
        received: u64,
        awaiting_welcome: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos == self.out.len()
                && self.data_left == 0
                && !self.refill(received, awaiting_welcome)
            {
                return Poll::Ready(Ok(()));
            }
            // The headers, then the frame's payload from as many segments as fit in one
            // vectored write.
            let mut slices = [IoSlice::new(&[]); 1 + SEGMENTS_PER_WRITE];
            slices[0] = IoSlice::new(&self.out[self.out_pos..]);
            let data = self.replay.unsent_slices(self.data_left, &mut slices[1..]);
            let slices = match &slices[..=data] {
                [head, rest @ ..] if head.is_empty() => rest,
                all => all,
            };
            let io = Pin::new(&mut *io);
            let n = ready!(match slices {
                [one] => io.poll_write(cx, one),
                many => io.poll_write_vectored(cx, many),
            })?;
            let head = self.out.len() - self.out_pos;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(head);
            self.out_pos += from_head;
            if n > from_head {
                self.replay.sent(n - from_head);
                self.data_left -= n - from_head;
            }
        }
    }
}

impl<L: Link> Engine<L> {
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = self.io.as_mut().expect("sending needs a transport");
        let received = self.receiver.received();
        self.sender
            .poll_send(io, cx, received, self.awaiting_welcome)
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx, buf.is_empty()))?;
        let n = self.sender.replay.push(buf);
        self.start_sending();
        Poll::Ready(Ok(n))
    }

    /// Queue `bytes` without copying them; `Ready` once all of them are queued.
    pub(crate) fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        while !bytes.is_empty() {
            ready!(self.poll_room(cx, false))?;
            self.sender.replay.push_bytes(bytes);
            self.start_sending();
        }
        Poll::Ready(Ok(()))
    }

    /// Wait until a write can be taken: the replay buffer has room (or `empty`: the write
    /// takes none). Errors: the session failed, or it was shut down.
    fn poll_room(&mut self, cx: &mut Context<'_>, empty: bool) -> Poll<io::Result<()>> {
        self.wakers.write.register(cx.waker());
        loop {
            self.check_failed()?;
            if self.sender.fin_queued {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "resume: write after shutdown",
                )));
            }
            if self.sender.replay.free() > 0 || empty {
                return Poll::Ready(Ok(()));
            }
            self.sender.request_ack();
            ready!(self.poll_drive(None))?;
        }
    }

    /// Start sending what was just written; a full transport or a failure is handled later.
    fn start_sending(&mut self) {
        if self.io.is_some() {
            let _ = self.poll_drive(None);
        }
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wakers.write.register(cx.waker());
        loop {
            let progress = self.poll_drive(None);
            self.check_failed()?;
            let all_sent = self.sender.all_sent();
            if let (Some(io), false, true) = (self.io.as_mut(), self.awaiting_welcome, all_sent) {
                match ready!(Pin::new(io).poll_flush(cx)) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(error) => {
                        self.lose(error);
                        continue;
                    }
                }
            }
            ready!(progress)?;
        }
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wakers.write.register(cx.waker());
        self.sender.fin_queued = true;
        loop {
            self.check_failed()?;
            if self.sender.peer_acked == self.sender.end() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_drive(None))?;
        }
    }
}
