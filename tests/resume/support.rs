//! Shared helpers: a deterministic byte pattern, a two-way transfer, and a transport that can
//! be killed from outside.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The byte at `position` of stream `seed`: a misplaced, lost or doubled byte shows.
pub(crate) fn pattern(seed: u64, position: u64) -> u8 {
    let x =
        (position ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 29) as u8
}

/// Write `len` bytes of stream `seed` in 64 KiB writes, then shut down (which returns once the
/// peer's reader has them all).
pub(crate) async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    seed: u64,
    len: u64,
) -> io::Result<()> {
    let mut chunk = vec![0; 64 * 1024];
    let mut position = 0;
    while position < len {
        let n = chunk.len().min((len - position) as usize);
        for (i, byte) in chunk[..n].iter_mut().enumerate() {
            *byte = pattern(seed, position + i as u64);
        }
        writer.write_all(&chunk[..n]).await?;
        position += n as u64;
    }
    writer.shutdown().await
}

/// Read to the end and check every byte against stream `seed`; returns the count. `progress`
/// sees the running count after every read.
pub(crate) async fn receive<R: AsyncRead + Unpin>(
    reader: &mut R,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    let mut buf = vec![0; 64 * 1024];
    let mut position = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(position);
        }
        for (i, byte) in buf[..n].iter().enumerate() {
            let at = position + i as u64;
            if *byte != pattern(seed, at) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("byte {at} is wrong"),
                ));
            }
        }
        position += n as u64;
        progress(position);
    }
}

/// Send `len` bytes of `send_seed` and receive the peer's `recv_seed` stream at the same time;
/// returns the bytes received.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    send_seed: u64,
    recv_seed: u64,
    len: u64,
    progress: impl FnMut(u64),
) -> io::Result<u64> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (sent, received) = tokio::join!(
        send(&mut writer, send_seed, len),
        receive(&mut reader, recv_seed, progress)
    );
    sent?;
    received
}

/// A handle that kills one transport: the transport is dropped at once (with `SO_LINGER` 0 on a
/// TCP socket, that sends a reset) and every later call on it fails.
#[derive(Debug)]
pub(crate) struct Kill<Io> {
    shared: Arc<Mutex<KillState<Io>>>,
}

#[derive(Debug)]
struct KillState<Io> {
    io: Option<Io>,
    wakers: Vec<Waker>,
}

impl<Io> Clone for Kill<Io> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<Io> Kill<Io> {
    /// Returns whether the transport was still alive.
    pub(crate) fn kill(&self) -> bool {
        let mut state = self.shared.lock().unwrap();
        let alive = state.io.take().is_some();
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        alive
    }
}

/// A transport that a [`Kill`] handle can kill.
#[derive(Debug)]
pub(crate) struct Killable<Io> {
    shared: Arc<Mutex<KillState<Io>>>,
}

impl<Io> Killable<Io> {
    pub(crate) fn new(io: Io) -> (Self, Kill<Io>) {
        let shared = Arc::new(Mutex::new(KillState {
            io: Some(io),
            wakers: Vec::new(),
        }));
        (
            Self {
                shared: shared.clone(),
            },
            Kill { shared },
        )
    }

    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut Io>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        Io: Unpin,
    {
        let mut state = self.shared.lock().unwrap();
        match state.io.as_mut() {
            Some(io) => {
                let poll = f(Pin::new(io), cx);
                if poll.is_pending() && !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                poll
            }
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "killed by the test",
            ))),
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Killable<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(cx, |io, cx| io.poll_read(cx, buf))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Killable<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(cx, |io, cx| io.poll_shutdown(cx))
    }
}
