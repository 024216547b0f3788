//! Helpers shared by the listener tests, defined once.

#![allow(dead_code)] // not every module uses every helper

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{self, timeout};

/// The bound on every wait on a real socket.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// Echo one line-less message of up to 64 bytes per read until EOF.
pub(crate) async fn echo(mut socket: TcpStream) -> io::Result<()> {
    let mut buf = [0; 64];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        socket.write_all(&buf[..n]).await?;
    }
}

pub(crate) async fn round_trip(socket: &mut TcpStream, msg: &[u8]) {
    socket.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    timeout(LIMIT, socket.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(buf, msg);
}

/// Poll `check` until it holds, bounded by LIMIT.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Connect until the port refuses, bounded by 10 s: a client caught in the backlog as the
/// listener closes is reset, so only a refusal shows the port is closed.
pub(crate) async fn wait_until_refused(addr: std::net::SocketAddr) {
    let refused = time::timeout(Duration::from_secs(10), async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port stayed open long after the stop signal"
    );
}

pub(crate) fn emfile() -> io::Error {
    io::Error::from_raw_os_error(libc::EMFILE)
}

pub(crate) fn reset() -> io::Error {
    io::ErrorKind::ConnectionReset.into()
}

/// Run `f`, which must panic, and return where the panic was raised (`file:line`).
pub(crate) fn panic_location(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    static SEEN: OnceLock<Mutex<Option<String>>> = OnceLock::new();
    thread_local! {
        static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    SEEN.get_or_init(|| {
        // Installed once, kept for the whole run; it passes every panic on to the previous hook.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if WATCHED.get() {
                if let Some(l) = info.location() {
                    *SEEN.get().unwrap().lock().unwrap() =
                        Some(format!("{}:{}", l.file(), l.line()));
                }
            }
            previous(info);
        }));
        Mutex::new(None)
    });
    WATCHED.set(true);
    let result = std::panic::catch_unwind(f);
    WATCHED.set(false);
    assert!(result.is_err(), "it did not panic");
    SEEN.get()
        .unwrap()
        .lock()
        .unwrap()
        .take()
        .expect("no location")
}

/// An error whose `Display` panics.
#[derive(Debug)]
pub(crate) struct BadDisplay;

impl fmt::Display for BadDisplay {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("this Display panics")
    }
}

impl std::error::Error for BadDisplay {}

/// Run `f` with a `tracing` subscriber that formats every event up to `DEBUG` (into a sink).
pub(crate) fn with_debug_logging<R>(f: impl FnOnce() -> R) -> R {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, f)
}

/// A stream that counts how many items were pulled from it and notes when it is dropped.
pub(crate) struct Counted<S> {
    inner: S,
    pulled: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = item {
            self.pulled.fetch_add(1, SeqCst);
        }
        item
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

pub(crate) fn counted<S>(inner: S) -> (Counted<S>, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    (
        Counted {
            inner,
            pulled: pulled.clone(),
            dropped: dropped.clone(),
        },
        pulled,
        dropped,
    )
}
