//! The session state both ends share: replay buffer, positions, framing, heartbeat. Where a
//! transport comes from is the [`Link`]'s business (the client connects, the server waits for
//! the client to come back).

use std::future::Future;
use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::frame::{self, Kind, RejectReason, HEADER_LEN, MAX_DATA};
use super::replay::Replay;
use super::{Config, SessionId};

/// Ack after the reader has taken a quarter of the peer's replay buffer (announced in the hello
/// and the welcome): the peer can go on writing while the ack travels, and is woken by an ack
/// only when it frees a good share of its buffer. Sooner when the peer asks (its buffer is full).
const ACK_SHARE: u64 = 4;
/// Bytes read at once when a header is due and frames are small (payloads go straight into the
/// caller's buffer).
const INBUF_LEN: usize = 32 * 1024;
/// The most replay segments one vectored write takes (with the headers before them).
const SEGMENTS_PER_WRITE: usize = 15;
/// A data frame at least this long counts as large: the next header is read on its own, so
/// that the payload after it goes straight into the caller's buffer instead of being copied.
const LARGE_FRAME: usize = 8 * 1024;

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
    /// The attached transport failed.
    fn lost(&mut self);
    /// A handshake completed.
    fn resumed(&mut self);
    /// The session id the server end owns (`None` on the client).
    fn server_id(&self) -> Option<SessionId>;
}

/// The read and the write side's wakers, woken together by the transport and the timers: a
/// write may have to read (acks), a read may have to write (acks), and with a split stream the
/// two are polled by different tasks.
#[derive(Debug, Default)]
struct Wakers {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Wakers {
    fn register(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake(slot: &Mutex<Option<Waker>>) {
        let waker = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Self::wake(&self.read);
        Self::wake(&self.write);
    }
}

/// The heartbeat: silent for one period, ask for an ack; silent for another, the transport is
/// dead (a partition raises no error by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Idle,
    UntilPing,
    UntilDead,
}

pub(crate) struct Engine<L: Link> {
    link: L,
    io: Option<L::Io>,
    /// Set on a protocol error or when the link gives up; every later call returns it.
    failed: Option<(io::ErrorKind, String)>,
    id: Option<SessionId>,
    awaiting_welcome: bool,
    /// Bumped when something a waiting caller may care about changed (acks, a new transport).
    generation: u64,

    // Sending. Positions count bytes; the FIN takes one position after the last byte.
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
    ping_due: bool,
    ack_requested: bool,

    // Receiving.
    /// The peer asked for an ack: ack again as soon as the reader takes more bytes.
    peer_waiting: bool,
    /// Bytes handed to the reader (plus one once the peer's FIN arrived).
    received: u64,
    /// Ack when the reader has taken this many bytes since the last ack.
    ack_every: u64,
    acked_to_peer: u64,
    peer_fin: bool,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    /// Payload bytes of the data frame being received.
    in_data_left: usize,
    /// Bytes still missing from the frame being parsed (header, or a control frame's payload).
    in_need: usize,
    /// The last data frame was large: read only the next header, not what follows it.
    large_frames: bool,

    heartbeat: Duration,
    watch: Watch,
    /// Made on first use, so that a session can be built outside a runtime.
    timer: Option<Pin<Box<Sleep>>>,
    wakers: Arc<Wakers>,
    waker: Waker,
}

impl<L: Link> std::fmt::Debug for Engine<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.id)
            .field("connected", &self.io.is_some())
            .field("failed", &self.failed)
            .field("unacked", &self.replay.len())
            .field("peer_acked", &self.peer_acked)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl<L: Link> Engine<L> {
    pub(crate) fn new(link: L, config: &Config) -> Self {
        let wakers = Arc::new(Wakers::default());
        Self {
            id: link.server_id(),
            link,
            io: None,
            failed: None,
            awaiting_welcome: false,
            generation: 0,
            replay: Replay::new(config.buffer_size),
            peer_acked: 0,
            fin_sent: false,
            fin_queued: false,
            out: Vec::with_capacity(64),
            out_pos: 0,
            data_left: 0,
            ack_due: false,
            ping_due: false,
            ack_requested: false,
            peer_waiting: false,
            received: 0,
            // Until the peer says: a quarter of ours.
            ack_every: (config.buffer_size as u64 / ACK_SHARE).max(1),
            acked_to_peer: 0,
            peer_fin: false,
            inbuf: vec![0; INBUF_LEN].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            in_data_left: 0,
            in_need: HEADER_LEN,
            large_frames: false,
            heartbeat: config.heartbeat,
            watch: Watch::Idle,
            timer: None,
            waker: Waker::from(wakers.clone()),
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

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// End the session: the error is returned now and by every later call.
    fn fail(&mut self, error: io::Error) -> io::Error {
        log_event!(warn, id = ?self.id, %error, "resume: session failed");
        self.failed = Some((error.kind(), error.to_string()));
        self.io = None;
        self.wakers.wake_by_ref();
        error
    }

    /// The transport failed; the link finds another one.
    fn lose(&mut self, error: io::Error) {
        log_event!(debug, id = ?self.id, %error, "resume: transport lost");
        let _ = error;
        self.io = None;
        self.link.lost();
        self.wakers.wake_by_ref();
    }

    fn attach(&mut self, attach: Attach<L::Io>) -> io::Result<()> {
        self.io = Some(attach.io);
        self.out.clear();
        self.out_pos = 0;
        self.data_left = 0;
        self.in_start = 0;
        self.in_end = 0;
        self.in_data_left = 0;
        self.in_need = HEADER_LEN;
        self.ping_due = false;
        self.ack_requested = false;
        self.peer_waiting = false;
        self.watch = Watch::Idle;
        self.changed();
        let buffer = u32::try_from(self.replay.capacity()).unwrap_or(u32::MAX);
        match attach.peer {
            None => {
                frame::push_hello(&mut self.out, self.id, self.received, buffer);
                self.awaiting_welcome = true;
            }
            Some(peer) => {
                self.resume_from(peer.received)?;
                self.peer_buffer(peer.buffer);
                let id = self.id.expect("a server session has an id");
                frame::push_welcome(&mut self.out, id, self.received, buffer);
                self.acked_to_peer = self.received;
                self.ack_due = false;
                self.link.resumed();
            }
        }
        Ok(())
    }

    /// The peer's replay buffer holds `bytes`: ack often enough that it never waits for one.
    fn peer_buffer(&mut self, bytes: u32) {
        self.ack_every = (u64::from(bytes) / ACK_SHARE).max(1);
    }

    /// The peer received up to `position`: resend from there.
    fn resume_from(&mut self, position: u64) -> io::Result<()> {
        let sent = self.sent();
        if position < self.peer_acked || position > sent {
            return Err(self.fail(frame::malformed(format!(
                "the peer resumes from position {position}, outside the replayable range {}..={sent}",
                self.peer_acked
            ))));
        }
        let data_end = self.data_end();
        self.replay.rewind(position.min(data_end));
        self.fin_sent = position > data_end;
        self.apply_ack(position)
    }

    fn apply_ack(&mut self, position: u64) -> io::Result<()> {
        let sent = self.sent();
        if position > sent {
            return Err(self.fail(frame::malformed(format!(
                "ack of position {position}, beyond the {sent} sent"
            ))));
        }
        if position > self.peer_acked {
            self.replay.ack(position.min(self.data_end()));
            self.peer_acked = position;
            self.changed();
        }
        Ok(())
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

    /// Queue the next frames at a frame boundary; `false` if there is nothing to send.
    fn refill(&mut self) -> bool {
        self.out.clear();
        self.out_pos = 0;
        if self.awaiting_welcome {
            return false;
        }
        if self.ack_due {
            frame::push_ack(&mut self.out, self.received);
            self.acked_to_peer = self.received;
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

    /// Write queued frames and data until done (`Ready(Ok)`) or the transport is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos == self.out.len() && self.data_left == 0 && !self.refill() {
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
            let io = Pin::new(self.io.as_mut().expect("sending needs a transport"));
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

    /// Read and handle frames; data goes into `dst`. `Ready(Ok(n))`: `n` bytes delivered, or 0
    /// when stopped at a data frame with nowhere to put it (or a full `dst`). Errors: the caller
    /// checks `failed` to tell a protocol error (fatal) from a transport one.
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        mut dst: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<usize>> {
        let mut delivered = 0;
        loop {
            if self.in_data_left > 0 {
                let Some(dst) = dst.as_deref_mut().filter(|d| d.remaining() > 0) else {
                    if dst.is_none() {
                        Wakers::wake(&self.wakers.read);
                    }
                    return Poll::Ready(Ok(delivered));
                };
                if self.in_end > self.in_start {
                    let k = (self.in_end - self.in_start)
                        .min(self.in_data_left)
                        .min(dst.remaining());
                    dst.put_slice(&self.inbuf[self.in_start..self.in_start + k]);
                    self.in_start += k;
                    self.in_data_left -= k;
                    self.received += k as u64;
                    delivered += k;
                    continue;
                }
                if delivered > 0 {
                    return Poll::Ready(Ok(delivered));
                }
                // The payload goes straight into the caller's buffer, and with it the next
                // frame's header where the buffer has room for it (one read instead of two);
                // the header is moved to `inbuf`, which is empty here.
                let k = (self.in_data_left + HEADER_LEN).min(dst.remaining());
                let mut direct = ReadBuf::new(dst.initialize_unfilled_to(k));
                let io = Pin::new(self.io.as_mut().expect("receiving needs a transport"));
                ready!(io.poll_read(cx, &mut direct))?;
                let read = direct.filled();
                if read.is_empty() {
                    return Poll::Ready(Err(closed()));
                }
                let n = read.len().min(self.in_data_left);
                let header = &read[n..];
                self.inbuf[..header.len()].copy_from_slice(header);
                (self.in_start, self.in_end) = (0, header.len());
                dst.advance(n);
                self.watch = Watch::Idle;
                self.in_data_left -= n;
                self.received += n as u64;
                return Poll::Ready(Ok(n));
            }
            match self.parse_frame() {
                // The reader sees the end of stream before anything after the FIN.
                Ok(true) if self.peer_fin && dst.is_some() => return Poll::Ready(Ok(delivered)),
                Ok(true) => continue,
                Ok(false) => {}
                // Bytes already delivered are the caller's; the error comes next time.
                Err(_) if delivered > 0 => return Poll::Ready(Ok(delivered)),
                Err(error) => return Poll::Ready(Err(error)),
            }
            if delivered > 0 {
                return Poll::Ready(Ok(delivered));
            }
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
            let limit = if self.large_frames {
                self.in_end + self.in_need
            } else {
                INBUF_LEN
            };
            let mut buf = ReadBuf::new(&mut self.inbuf[self.in_end..limit]);
            let io = Pin::new(self.io.as_mut().expect("receiving needs a transport"));
            ready!(io.poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(closed()));
            }
            self.in_end += n;
            self.watch = Watch::Idle;
        }
    }

    /// Take the next frame header (and a control frame's payload) from `inbuf`: `Ok(false)`
    /// when more bytes are needed. Errors fail the session.
    fn parse_frame(&mut self) -> io::Result<bool> {
        let buffered = self.in_end - self.in_start;
        if buffered < HEADER_LEN {
            self.in_need = HEADER_LEN - buffered;
            return Ok(false);
        }
        let header = &self.inbuf[self.in_start..self.in_start + HEADER_LEN];
        let (kind, len) = frame::parse_header(header).map_err(|e| self.fail(e))?;
        if kind == Kind::Data {
            if self.awaiting_welcome || self.peer_fin {
                return Err(self.fail(frame::malformed("data before the welcome or after the FIN")));
            }
            self.in_start += HEADER_LEN;
            self.in_data_left = len;
            self.large_frames = len >= LARGE_FRAME;
            return Ok(true);
        }
        if buffered < HEADER_LEN + len {
            self.in_need = HEADER_LEN + len - buffered;
            return Ok(false);
        }
        let mut payload = [0; 29];
        let start = self.in_start + HEADER_LEN;
        payload[..len].copy_from_slice(&self.inbuf[start..start + len]);
        self.in_start = start + len;
        self.handle_control(kind, &payload[..len])?;
        Ok(true)
    }

    fn handle_control(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        let client = self.link.server_id().is_none();
        if self.awaiting_welcome && !matches!(kind, Kind::Welcome | Kind::Reject) {
            return Err(self.fail(frame::malformed(format!(
                "a {kind:?} frame before the welcome"
            ))));
        }
        match kind {
            Kind::Welcome if client && self.awaiting_welcome => {
                let id = frame::id_at(payload, 0);
                if self.id.is_some_and(|ours| ours != id) {
                    return Err(self.fail(frame::malformed("a welcome for another session")));
                }
                self.id = Some(id);
                self.awaiting_welcome = false;
                self.resume_from(frame::u64_at(payload, 16))?;
                self.peer_buffer(frame::u32_at(payload, 24));
                self.changed();
                self.link.resumed();
                log_event!(debug, id = ?self.id, "resume: session (re)joined");
            }
            Kind::Reject if client && self.awaiting_welcome => {
                let error = match RejectReason::from_byte(payload[0]) {
                    Some(reason) => reason.to_error(),
                    None => frame::malformed(format!("unknown reject reason {}", payload[0])),
                };
                return Err(self.fail(error));
            }
            Kind::Ack => {
                self.apply_ack(frame::u64_at(payload, 0))?;
                self.ack_requested = false;
            }
            Kind::AckRequest => {
                self.ack_due = true;
                self.peer_waiting = true;
            }
            Kind::Fin if !self.peer_fin => {
                self.peer_fin = true;
                self.received += 1;
                self.ack_due = true;
                self.changed();
            }
            _ => return Err(self.fail(frame::malformed(format!("an unexpected {kind:?} frame")))),
        }
        Ok(())
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

    /// Run the heartbeat while the transport is silent. `Ready(Ok)`: an ack request was
    /// queued; `Ready(Err)`: the transport is dead.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.watch {
                Watch::Idle => {
                    self.arm(Instant::now() + self.heartbeat);
                    self.watch = Watch::UntilPing;
                }
                Watch::UntilPing => {
                    ready!(self.poll_timer(cx));
                    self.arm(Instant::now() + self.heartbeat);
                    self.watch = Watch::UntilDead;
                    if !self.awaiting_welcome {
                        self.ping_due = true;
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
                    if n > 0
                        && (self.peer_waiting
                            || self.received - self.acked_to_peer >= self.ack_every)
                    {
                        self.ack_due = true;
                        self.peer_waiting = false;
                    }
                    if self.ack_due {
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
                    // Stopped at data only the reader can take; it was woken.
                    return Poll::Pending;
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
                    if self.ack_due {
                        if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                            self.lose(error);
                            continue;
                        }
                    }
                    if generation != self.generation {
                        return Poll::Ready(Ok(0));
                    }
                    match self.poll_watch(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => self.lose(error),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Wakers::register(&self.wakers.read, cx.waker());
        loop {
            self.check_failed()?;
            if buf.remaining() == 0 || (self.peer_fin && self.in_data_left == 0) {
                if self.peer_fin && self.io.is_some() {
                    // Best effort: get the FIN's ack out.
                    let _ = self.poll_drive(None);
                }
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_drive(Some(buf)))? > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx, buf.is_empty()))?;
        let n = self.replay.push(buf);
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
            self.replay.push_bytes(bytes);
            self.start_sending();
        }
        Poll::Ready(Ok(()))
    }

    /// Wait until a write can be taken: the replay buffer has room (or `empty`: the write
    /// takes none). Errors: the session failed, or it was shut down.
    fn poll_room(&mut self, cx: &mut Context<'_>, empty: bool) -> Poll<io::Result<()>> {
        Wakers::register(&self.wakers.write, cx.waker());
        loop {
            self.check_failed()?;
            if self.fin_queued {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "resume: write after shutdown",
                )));
            }
            if self.replay.free() > 0 || empty {
                return Poll::Ready(Ok(()));
            }
            if !self.ack_requested {
                self.ack_requested = true;
                self.ping_due = true;
            }
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
        Wakers::register(&self.wakers.write, cx.waker());
        loop {
            let progress = self.poll_drive(None);
            self.check_failed()?;
            let all_sent =
                self.out_pos == self.out.len() && self.data_left == 0 && self.sent() == self.end();
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
        Wakers::register(&self.wakers.write, cx.waker());
        self.fin_queued = true;
        loop {
            self.check_failed()?;
            if self.peer_acked == self.end() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_drive(None))?;
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "resume: the transport closed")
}
