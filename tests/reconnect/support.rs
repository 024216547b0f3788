//! The scripted connectors and assertions every client test shares, defined once.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::backoff::Exponential;
use staunch::reconnect::{BoxFuture, Disconnected, GaveUp, Reconnecting};
use tokio::io::DuplexStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub(crate) type Conn = Box<dyn FnMut() -> BoxFuture<io::Result<DuplexStream>> + Send>;

/// What one connection attempt does; attempts beyond the script succeed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    Refuse,
    Hang,
}

/// The test's side of a scripted connector: how often it was called, and the server half of
/// every connection it made.
pub(crate) struct Peers {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) rx: mpsc::UnboundedReceiver<DuplexStream>,
}

impl Peers {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) async fn next(&mut self) -> DuplexStream {
        self.rx.recv().await.expect("connector dropped")
    }
}

pub(crate) fn script(plans: impl IntoIterator<Item = Plan>) -> (Conn, Peers) {
    let plans = Arc::new(Mutex::new(plans.into_iter().collect::<VecDeque<_>>()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counter = Arc::clone(&calls);
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        counter.fetch_add(1, Ordering::SeqCst);
        match plans.lock().unwrap().pop_front() {
            Some(Plan::Refuse) => Box::pin(async { Err(io::ErrorKind::ConnectionRefused.into()) }),
            Some(Plan::Hang) => Box::pin(std::future::pending()),
            None => {
                let (client, server) = tokio::io::duplex(1024);
                let _ = tx.send(server);
                Box::pin(async { Ok(client) })
            }
        }
    });
    (connector, Peers { calls, rx })
}

pub(crate) fn disconnected(e: &io::Error) -> &Disconnected {
    Disconnected::from_io_error(e).unwrap_or_else(|| panic!("not a Disconnected error: {e:?}"))
}

pub(crate) fn gave_up(e: &io::Error) -> &GaveUp {
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e:?}");
    GaveUp::from_io_error(e).unwrap_or_else(|| panic!("not a GaveUp error: {e:?}"))
}

/// Refuses the first `refusals` attempts, then connects; returns the call counter.
pub(crate) fn refusing(refusals: usize) -> (Conn, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if n < refusals {
            Box::pin(async { Err(io::ErrorKind::ConnectionRefused.into()) })
        } else {
            let (client, server) = tokio::io::duplex(64);
            std::mem::forget(server);
            Box::pin(async { Ok(client) })
        }
    });
    (connector, calls)
}

/// A connector whose attempts never complete (a blackholed host).
pub(crate) fn hanging() -> (Conn, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    });
    (connector, calls)
}

/// A connector that always connects; the test holds the server halves and decides how long each
/// connection lives.
pub(crate) fn accepting() -> (Conn, mpsc::UnboundedReceiver<DuplexStream>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let (client, server) = tokio::io::duplex(64);
        let _ = tx.send(server);
        Box::pin(async { Ok(client) })
    });
    (connector, rx)
}

/// A connector that always fails with `kind`; returns the call counter.
pub(crate) fn failing(kind: io::ErrorKind) -> (Conn, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Err(io::Error::new(kind, "scripted connect error")) })
    });
    (connector, calls)
}

/// Attempts take `delay`; the first `refusals` are refused. Counts calls and completed attempts.
pub(crate) fn slow(
    delay: Duration,
    refusals: usize,
) -> (
    Conn,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<DuplexStream>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (c, d) = (Arc::clone(&calls), Arc::clone(&done));
    let connector: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let (d, tx) = (Arc::clone(&d), tx.clone());
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            d.fetch_add(1, Ordering::SeqCst);
            if n < refusals {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            let (client, server) = tokio::io::duplex(64);
            let _ = tx.send(server);
            Ok(client)
        })
    });
    (connector, calls, done, rx)
}

/// Connect attempts follow `script` (`Some(kind)` fails with that kind, `None` succeeds; past the
/// end, attempts succeed); also returns the number of calls.
pub(crate) fn scripted_kinds(script: Vec<Option<io::ErrorKind>>) -> (Conn, Arc<Mutex<usize>>) {
    let calls = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&calls);
    let conn: Conn = Box::new(move || -> BoxFuture<io::Result<DuplexStream>> {
        let mut n = counter.lock().unwrap();
        let outcome = script.get(*n).copied().flatten();
        *n += 1;
        Box::pin(async move {
            match outcome {
                Some(kind) => Err(kind.into()),
                None => Ok(tokio::io::duplex(64).0),
            }
        })
    });
    (conn, calls)
}

pub(crate) fn exponential() -> Exponential {
    Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .factor(2.0)
        .build()
        .unwrap()
}

/// Shut `conn` down, then read the server half of the next connection to its end: it got
/// exactly `expected`.
pub(crate) async fn shut_down_and_assert_next_peer_got(
    conn: &mut Reconnecting<Conn>,
    peers: &mut Peers,
    expected: &[u8],
) {
    let mut server = peers.next().await;
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expected);
}
