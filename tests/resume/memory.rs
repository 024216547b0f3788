//! Replay memory is bounded in memory, not only in bytes: small writes, each sent at once and
//! none acknowledged, keep the client's heap within twice its buffer. Measured by a counting
//! allocator, on this thread only, over a transport that allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use staunch::resume::{Client, Config};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Counts the heap bytes the current thread holds; everything goes to the system allocator.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: nothing to count once the thread's locals are gone.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// A server that welcomes and then only takes bytes: it never acknowledges, never answers, and
/// allocates nothing.
struct Sink {
    welcome: &'static [u8],
}

const WELCOME: [u8; 33] = {
    let mut frame = [0; 33];
    frame[0] = 2;
    frame[4] = 28;
    frame[5] = 7;
    // Received position 0; the server's buffer: 100,000 (0x0186A0).
    frame[30] = 0x01;
    frame[31] = 0x86;
    frame[32] = 0xA0;
    frame
};

impl AsyncRead for Sink {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.welcome.is_empty() {
            // Silent from now on (the test polls once, never waits).
            return Poll::Pending;
        }
        let n = self.welcome.len().min(buf.remaining());
        buf.put_slice(&self.welcome[..n]);
        self.welcome = &self.welcome[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const BUFFER: usize = 100_000;

/// The heap a client takes, from its first write on, to hold a full buffer of `write`-byte
/// writes, each sent at once.
fn heap_for_a_full_buffer(write: usize) -> isize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut sink = Some(Sink { welcome: &WELCOME });
    let connector =
        move || std::future::ready(sink.take().ok_or(io::ErrorKind::ConnectionRefused.into()));
    let mut client = Client::builder(connector)
        .policy(std::iter::empty())
        .config(Config::default().buffer_size(BUFFER))
        .build();
    let data = vec![7; write];
    // Counted from the first write: connecting and the welcome (by the first flush) too.
    let before = live();
    assert_eq!(client.write(&data).now_or_never().unwrap().unwrap(), write);
    client.flush().now_or_never().unwrap().unwrap();
    assert!(client.session_id().is_some(), "welcomed");
    let mut written = write;
    while let Some(n) = client.write(&data).now_or_never() {
        written += n.unwrap();
        assert!(written <= BUFFER, "no more than the buffer is taken");
    }
    assert_eq!(written, BUFFER, "the buffer fills, then a write waits");
    let heap = live() - before;
    drop(client);
    heap
}

#[test]
fn small_writes_sent_one_by_one_cost_at_most_twice_the_buffer() {
    for write in [1, 10, 1000] {
        let heap = heap_for_a_full_buffer(write);
        eprintln!(
            "{write}-byte writes: {heap} heap bytes for {BUFFER} unacknowledged ({:.2}x)",
            heap as f64 / BUFFER as f64
        );
        assert!(
            heap <= 2 * BUFFER as isize,
            "{write}-byte writes: {heap} heap bytes for {BUFFER} unacknowledged ({:.1}x)",
            heap as f64 / BUFFER as f64
        );
    }
}
