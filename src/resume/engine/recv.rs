//! The receive side: the frame buffer, the position handed to the reader, when to ack; and the
//! engine's read operation and its handling of control frames.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::super::frame::{self, Kind, RejectReason, HEADER_LEN};
use super::super::Config;
use super::heartbeat::Heartbeat;
use super::{Engine, Link};

/// Ack after the reader has taken a quarter of the peer's replay buffer (announced in the hello
/// and the welcome): the peer can go on writing while the ack travels, and is woken by an ack
/// only when it frees a good share of its buffer. Sooner when the peer asks (its buffer is full).
const ACK_SHARE: u64 = 4;
/// Bytes read at once when a header is due and frames are small (payloads go straight into the
/// caller's buffer).
const INBUF_LEN: usize = 32 * 1024;
/// A data frame at least this long counts as large: the next header is read on its own, so
/// that the payload after it goes straight into the caller's buffer instead of being copied.
const LARGE_FRAME: usize = 8 * 1024;

/// Receiving.
pub(super) struct Receiver {
    /// The peer asked for an ack: ack again as soon as the reader takes more bytes.
    peer_waiting: bool,
    /// Bytes handed to the reader (plus one once the peer's FIN arrived).
    received: u64,
    /// Ack when the reader has taken this many bytes since the last ack.
    ack_every: u64,
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
}

/// Where [`Receiver::poll_recv`] stopped.
pub(super) enum Step {
    /// At a data frame's payload with nowhere to put it (no `dst`, or a full one).
    AtData,
    /// Bytes were delivered, or more are needed from the transport.
    Stopped,
    /// A control frame, for the engine to handle before it calls again.
    Control(Control),
    /// Malformed input: the session fails.
    Malformed(io::Error),
}

/// A control frame's kind and payload (the longest a header allows, a hello's, is 29 bytes).
pub(super) struct Control {
    kind: Kind,
    payload: [u8; 29],
    len: usize,
}

impl Receiver {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            peer_waiting: false,
            received: 0,
            // Until the peer says: a quarter of ours.
            ack_every: (config.buffer_size as u64 / ACK_SHARE).max(1),
            peer_fin: false,
            inbuf: vec![0; INBUF_LEN].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            in_data_left: 0,
            in_need: HEADER_LEN,
            large_frames: false,
        }
    }

    /// A new transport: a partial frame from the old one is dropped.
    pub(super) fn reset(&mut self) {
        self.in_start = 0;
        self.in_end = 0;
        self.in_data_left = 0;
        self.in_need = HEADER_LEN;
        self.peer_waiting = false;
    }

    pub(super) fn received(&self) -> u64 {
        self.received
    }

    /// The peer's replay buffer holds `bytes`: ack often enough that it never waits for one.
    pub(super) fn peer_buffer(&mut self, bytes: u32) {
        self.ack_every = (u64::from(bytes) / ACK_SHARE).max(1);
    }

    /// The reader took bytes: whether that calls for an ack, given the last one carried
    /// `acked_to_peer`.
    pub(super) fn ack_wanted(&mut self, acked_to_peer: u64) -> bool {
        let wanted = self.peer_waiting || self.received - acked_to_peer >= self.ack_every;
        if wanted {
            self.peer_waiting = false;
        }
        wanted
    }

    /// Read and parse frames; data goes into `dst`, its length added to `delivered`. Never
    /// `Pending` once `delivered` is above 0. Errors are the transport's.
    pub(super) fn poll_recv<Io: AsyncRead + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
        mut dst: Option<&mut ReadBuf<'_>>,
        delivered: &mut usize,
        awaiting_welcome: bool,
        heartbeat: &mut Heartbeat,
    ) -> Poll<io::Result<Step>> {
        loop {
            if self.in_data_left > 0 {
                let Some(dst) = dst.as_deref_mut().filter(|d| d.remaining() > 0) else {
                    if *delivered == 0 {
                        self.poll_spare(io, cx, heartbeat)?;
                    }
                    return Poll::Ready(Ok(Step::AtData));
                };
                if self.in_end > self.in_start {
                    let k = (self.in_end - self.in_start)
                        .min(self.in_data_left)
                        .min(dst.remaining());
                    dst.put_slice(&self.inbuf[self.in_start..self.in_start + k]);
                    self.in_start += k;
                    self.in_data_left -= k;
                    self.received += k as u64;
                    *delivered += k;
                    continue;
                }
                if *delivered > 0 {
                    return Poll::Ready(Ok(Step::Stopped));
                }
                // The payload goes straight into the caller's buffer, and with it the next
                // frame's header where the buffer has room for it (one read instead of two);
                // the header is moved to `inbuf`, which is empty here.
                let k = (self.in_data_left + HEADER_LEN).min(dst.remaining());
                let mut direct = ReadBuf::new(dst.initialize_unfilled_to(k));
                ready!(Pin::new(&mut *io).poll_read(cx, &mut direct))?;
                let read = direct.filled();
                if read.is_empty() {
                    return Poll::Ready(Err(closed()));
                }
                let n = read.len().min(self.in_data_left);
                let header = &read[n..];
                self.inbuf[..header.len()].copy_from_slice(header);
                (self.in_start, self.in_end) = (0, header.len());
                dst.advance(n);
                heartbeat.heard();
                self.in_data_left -= n;
                self.received += n as u64;
                *delivered += n;
                return Poll::Ready(Ok(Step::Stopped));
            }
            match self.parse_frame(awaiting_welcome) {
                Ok(Some(Parsed::Data)) => continue,
                Ok(Some(Parsed::Control(control))) => {
                    return Poll::Ready(Ok(Step::Control(control)))
                }
                Ok(None) => {}
                Err(error) => return Poll::Ready(Ok(Step::Malformed(error))),
            }
            if *delivered > 0 {
                return Poll::Ready(Ok(Step::Stopped));
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
            ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(closed()));
            }
            self.in_end += n;
            heartbeat.heard();
        }
    }

    /// Stopped at data nobody takes yet: read on into `inbuf`'s spare room, so that a close or
    /// a reset is seen (and the peer heard) while the reader is away, with at most `inbuf`
    /// buffered. A full `inbuf` reads nothing: then only the heartbeat watches the transport.
    /// `Ok` when the read is pending, `inbuf` is full or bytes came; errors are the transport's.
    fn poll_spare<Io: AsyncRead + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
        heartbeat: &mut Heartbeat,
    ) -> io::Result<()> {
        loop {
            if self.in_end == INBUF_LEN {
                if self.in_start == 0 {
                    return Ok(());
                }
                self.inbuf.copy_within(self.in_start..self.in_end, 0);
                self.in_end -= self.in_start;
                self.in_start = 0;
            }
            let mut buf = ReadBuf::new(&mut self.inbuf[self.in_end..]);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => return Ok(()),
                Poll::Ready(result) => result?,
            }
            let n = buf.filled().len();
            if n == 0 {
                return Err(closed());
            }
            self.in_end += n;
            heartbeat.heard();
        }
    }

    /// Take the next frame header (and a control frame's payload) from `inbuf`: `Ok(None)`
    /// when more bytes are needed. Errors are malformed input.
    fn parse_frame(&mut self, awaiting_welcome: bool) -> io::Result<Option<Parsed>> {
        let buffered = self.in_end - self.in_start;
        if buffered < HEADER_LEN {
            self.in_need = HEADER_LEN - buffered;
            return Ok(None);
        }
        let header = &self.inbuf[self.in_start..self.in_start + HEADER_LEN];
        let (kind, len) = frame::parse_header(header)?;
        if kind == Kind::Data {
            if awaiting_welcome || self.peer_fin {
                return Err(frame::malformed("data before the welcome or after the FIN"));
            }
            self.in_start += HEADER_LEN;
            self.in_data_left = len;
            self.large_frames = len >= LARGE_FRAME;
            return Ok(Some(Parsed::Data));
        }
        if buffered < HEADER_LEN + len {
            self.in_need = HEADER_LEN + len - buffered;
            return Ok(None);
        }
        let mut payload = [0; 29];
        let start = self.in_start + HEADER_LEN;
        payload[..len].copy_from_slice(&self.inbuf[start..start + len]);
        self.in_start = start + len;
        Ok(Some(Parsed::Control(Control { kind, payload, len })))
    }
}

/// A frame [`Receiver::parse_frame`] took.
enum Parsed {
    /// A data frame's header: its payload comes next.
    Data,
    Control(Control),
}

impl<L: Link> Engine<L> {
    /// Read and handle frames; data goes into `dst`. `Ready(Ok(n))`: `n` bytes delivered, or 0
    /// when stopped at a data frame with nowhere to put it (or a full `dst`). Errors: the caller
    /// checks `failed` to tell a protocol error (fatal) from a transport one.
    pub(super) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        mut dst: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<usize>> {
        let mut delivered = 0;
        loop {
            let io = self.io.as_mut().expect("receiving needs a transport");
            let step = ready!(self.receiver.poll_recv(
                io,
                cx,
                dst.as_deref_mut(),
                &mut delivered,
                self.awaiting_welcome,
                &mut self.heartbeat,
            ))?;
            let error = match step {
                Step::AtData => {
                    if dst.is_none() {
                        self.wakers.read.wake();
                    }
                    return Poll::Ready(Ok(delivered));
                }
                Step::Stopped => return Poll::Ready(Ok(delivered)),
                Step::Control(control) => {
                    match self.handle_control(control.kind, &control.payload[..control.len]) {
                        // The reader sees the end of stream before anything after the FIN.
                        Ok(()) if self.receiver.peer_fin && dst.is_some() => {
                            return Poll::Ready(Ok(delivered))
                        }
                        Ok(()) => continue,
                        Err(error) => error,
                    }
                }
                Step::Malformed(error) => self.fail(error),
            };
            // Bytes already delivered are the caller's; the error comes next time.
            return Poll::Ready(if delivered > 0 {
                Ok(delivered)
            } else {
                Err(error)
            });
        }
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
                self.receiver.peer_buffer(frame::u32_at(payload, 24));
                self.changed();
                self.link.resumed();
                log_event!(debug, id = ?self.id, "resume: session (re)joined");
            }
            Kind::Reject if client && self.awaiting_welcome => {
                let error = match RejectReason::from_byte(payload[0]) {
                    // Not this session's fault: a lost connection, tried again after a delay.
                    Some(RejectReason::Full) => return Err(RejectReason::Full.to_error()),
                    Some(reason) => reason.to_error(),
                    None => frame::malformed(format!("unknown reject reason {}", payload[0])),
                };
                return Err(self.fail(error));
            }
            Kind::Ack => {
                let acked = self.sender.acked(frame::u64_at(payload, 0));
                self.acked(acked)?;
            }
            Kind::AckRequest => {
                self.sender.queue_ack();
                self.receiver.peer_waiting = true;
            }
            Kind::Fin if !self.receiver.peer_fin => {
                self.receiver.peer_fin = true;
                self.receiver.received += 1;
                self.sender.queue_ack();
                self.changed();
            }
            _ => return Err(self.fail(frame::malformed(format!("an unexpected {kind:?} frame")))),
        }
        Ok(())
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.wakers.read.register(cx.waker());
        loop {
            self.check_failed()?;
            let receiver = &self.receiver;
            if buf.remaining() == 0 || (receiver.peer_fin && receiver.in_data_left == 0) {
                if receiver.peer_fin && self.io.is_some() {
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
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "resume: the transport closed")
}
