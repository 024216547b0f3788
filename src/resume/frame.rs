//! The wire format: a 5-byte header (kind, big-endian `u32` payload length) and a payload.

use std::io;

use super::SessionId;

/// The protocol version a hello carries.
pub(crate) const VERSION: u8 = 1;
/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 5;
/// The largest data payload; a longer frame is malformed. Large, so that a bulk transfer pays
/// for a header (and the receiver for a read of it) rarely: while the transport is backed up,
/// the sender gathers what was written meanwhile into one frame.
pub(crate) const MAX_DATA: usize = 1024 * 1024;
/// Bytes in a whole hello frame.
pub(crate) const HELLO_LEN: usize = HEADER_LEN + 29;

/// What a frame is; the byte value is the header's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Hello = 1,
    Welcome = 2,
    Reject = 3,
    Data = 4,
    Ack = 5,
    AckRequest = 6,
    Fin = 7,
}

/// Why a server turned a hello away: the payload of a reject frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectReason {
    UnknownSession = 1,
    UnsupportedVersion = 2,
    /// The server holds as many sessions as it may: a client tries again later.
    Full = 3,
}

impl RejectReason {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::UnknownSession),
            2 => Some(Self::UnsupportedVersion),
            3 => Some(Self::Full),
            _ => None,
        }
    }

    pub(crate) fn to_error(self) -> io::Error {
        match self {
            Self::UnknownSession => io::Error::new(
                io::ErrorKind::NotFound,
                "resume: the server does not know this session (wrong id, or it expired)",
            ),
            Self::UnsupportedVersion => io::Error::new(
                io::ErrorKind::Unsupported,
                "resume: the peer does not speak this protocol version",
            ),
            Self::Full => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "resume: the server holds its limit of sessions (resume::Config::max_sessions)",
            ),
        }
    }
}

/// A malformed-input error: the session it arrived on is closed.
pub(crate) fn malformed(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("resume protocol: {}", what.into()),
    )
}

/// Check a header; return the frame's kind and payload length.
pub(crate) fn parse_header(header: &[u8]) -> io::Result<(Kind, usize)> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let (kind, ok) = match header[0] {
        1 => (Kind::Hello, len == 29),
        2 => (Kind::Welcome, len == 28),
        3 => (Kind::Reject, len == 1),
        4 => {
            if len > MAX_DATA {
                return Err(malformed(format!(
                    "data frame of {len} bytes, more than the limit of {MAX_DATA}"
                )));
            }
            (Kind::Data, len > 0)
        }
        5 => (Kind::Ack, len == 8),
        6 => (Kind::AckRequest, len == 0),
        7 => (Kind::Fin, len == 0),
        other => return Err(malformed(format!("unknown frame kind {other}"))),
    };
    if ok {
        Ok((kind, len))
    } else {
        Err(malformed(format!(
            "{kind:?} frame with a payload of {len} bytes"
        )))
    }
}

pub(crate) fn push_header(out: &mut Vec<u8>, kind: Kind, len: usize) {
    out.push(kind as u8);
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

pub(crate) fn push_hello(out: &mut Vec<u8>, id: Option<SessionId>, received: u64, buffer: u32) {
    push_header(out, Kind::Hello, 29);
    out.push(VERSION);
    out.extend_from_slice(&id.map_or([0; 16], |id| id.0));
    out.extend_from_slice(&received.to_be_bytes());
    out.extend_from_slice(&buffer.to_be_bytes());
}

pub(crate) fn push_welcome(out: &mut Vec<u8>, id: SessionId, received: u64, buffer: u32) {
    push_header(out, Kind::Welcome, 28);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&received.to_be_bytes());
    out.extend_from_slice(&buffer.to_be_bytes());
}

pub(crate) fn push_ack(out: &mut Vec<u8>, received: u64) {
    push_header(out, Kind::Ack, 8);
    out.extend_from_slice(&received.to_be_bytes());
}

pub(crate) fn reject_frame(reason: RejectReason) -> [u8; HEADER_LEN + 1] {
    [Kind::Reject as u8, 0, 0, 0, 1, reason as u8]
}

pub(crate) fn u64_at(payload: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&payload[at..at + 8]);
    u64::from_be_bytes(bytes)
}

pub(crate) fn u32_at(payload: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&payload[at..at + 4]);
    u32::from_be_bytes(bytes)
}

pub(crate) fn id_at(payload: &[u8], at: usize) -> SessionId {
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&payload[at..at + 16]);
    SessionId(bytes)
}

/// A parsed hello: the protocol version, the session to resume (`None`: a new one), the
/// position the client has received up to, and the client's replay buffer size.
#[derive(Debug)]
pub(crate) struct Hello {
    pub(crate) version: u8,
    pub(crate) id: Option<SessionId>,
    pub(crate) received: u64,
    pub(crate) buffer: u32,
}

pub(crate) fn parse_hello(frame: &[u8; HELLO_LEN]) -> io::Result<Hello> {
    let (kind, _) = parse_header(&frame[..HEADER_LEN])?;
    if kind != Kind::Hello {
        return Err(malformed(format!("expected a hello, got a {kind:?} frame")));
    }
    let payload = &frame[HEADER_LEN..];
    let id = id_at(payload, 1);
    Ok(Hello {
        version: payload[0],
        id: (id.0 != [0; 16]).then_some(id),
        received: u64_at(payload, 17),
        buffer: u32_at(payload, 25),
    })
}
