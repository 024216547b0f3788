//! The connected hot path allocates nothing: reads and writes through a connected `Reconnecting`
//! allocate exactly what the same reads and writes on the bare connection allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use staunch::reconnect::Reconnecting;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Counts the allocations of the current thread; everything else goes to the system allocator.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Echo everything on `server`, in a task of its own: the client's reads wait (`Pending`) for
/// every reply, as on a real network.
fn echo(server: tokio::io::DuplexStream) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(server);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
}

/// Allocations made by 1,000 round trips of 64 bytes over `client`.
async fn round_trips<C: AsyncRead + AsyncWrite + Unpin>(client: &mut C) -> u64 {
    let out = [7u8; 64];
    let mut back = [0u8; 64];
    let before = allocations();
    for _ in 0..1000 {
        client.write_all(&out).await.unwrap();
        client.read_exact(&mut back).await.unwrap();
    }
    allocations() - before
}

#[test]
fn the_connected_hot_path_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The bare connection, for the baseline (the echo task's own allocations included).
        let (mut client, server) = tokio::io::duplex(4096);
        let _bare_echo = echo(server);
        let bare = round_trips(&mut client).await;

        let (client, server) = tokio::io::duplex(4096);
        let _echo = echo(server);
        let mut slot = Some(client);
        let mut conn = Reconnecting::builder(move || {
            let io = slot
                .take()
                .ok_or(std::io::ErrorKind::ConnectionRefused.into());
            async move { io }
        })
        // Every read waits, so the idle timer is armed 1,000 times: it must be reset, not
        // allocated anew.
        .idle_timeout(std::time::Duration::from_secs(60))
        .build();
        conn.wait_connected().await.unwrap();
        round_trips(&mut conn).await; // warm-up: the idle timer is allocated once per connection
        let adapted = round_trips(&mut conn).await;
        eprintln!("allocations over 1,000 round trips: bare {bare}, through the adapter {adapted}");
        // Per-operation allocations would count in the thousands.
        assert!(
            adapted <= bare,
            "the adapter allocated on the connected path: {adapted} > {bare}"
        );
    });
}
