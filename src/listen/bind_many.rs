use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{sleep, Sleep};

use crate::backoff::Exponential;

/// The backlog each bound socket gets.
const BACKLOG: u32 = 1024;

pin_project! {
    /// One accept stream over a set of addresses that can change while it runs (tk-listen's
    /// `BindMany`), from [`bind_many`].
    ///
    /// - Every address in the latest set given is bound (with `SO_REUSEADDR`) and accepted from,
    ///   in turn, so a busy address cannot starve the others.
    /// - An address removed from the set is closed at once: it stops accepting, and connections
    ///   already accepted from it are not touched (they are not owned by this stream).
    /// - A bind that fails (address in use, address not local yet) is logged and retried with
    ///   exponential backoff (100 ms doubling to 10 s, or [`bind_backoff`](BindMany::bind_backoff));
    ///   it never ends the stream. [`status`](BindMany::status) tells which addresses are bound and
    ///   which are failing.
    /// - Items are `io::Result<TcpStream>`: accept errors are passed on for
    ///   [`sleep_on_error`](crate::ListenExt::sleep_on_error) to classify.
    /// - The stream ends when the address stream has ended and the last set was empty.
    #[must_use = "streams do nothing unless polled"]
    pub struct BindMany<A> {
        #[pin]
        addresses: A,
        addresses_done: bool,
        bound: Vec<(SocketAddr, TcpListener)>,
        failing: Vec<Failing>,
        policy: Exponential,
        next: usize,
        status: BindStatus,
    }
}

struct Failing {
    addr: SocketAddr,
    policy: Exponential,
    retry: Pin<Box<Sleep>>,
}

/// Where one address of a [`BindMany`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrState {
    /// Bound and accepting.
    Bound {
        /// The socket's local address (with the real port where port 0 was asked for).
        local: SocketAddr,
    },
    /// The last bind failed; it is retried after `retry_in`.
    Failing {
        /// The bind error, as text.
        error: String,
        /// Failed attempts so far.
        attempts: u32,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
}

/// A handle to the state of every address of a [`BindMany`], readable while it runs.
#[derive(Debug, Clone, Default)]
pub struct BindStatus {
    inner: Arc<Mutex<BTreeMap<SocketAddr, AddrState>>>,
}

impl BindStatus {
    /// Every address of the current set and its state.
    pub fn snapshot(&self) -> BTreeMap<SocketAddr, AddrState> {
        self.lock().clone()
    }

    /// The local addresses bound and accepting now (with the real port where port 0 was asked
    /// for).
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                AddrState::Bound { local } => Some(*local),
                AddrState::Failing { .. } => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, AddrState>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accept on every address of the latest set `addresses` yields; see [`BindMany`].
///
/// A fixed set is `futures_util::stream::iter([set])` (chained with `stream::pending()` so the
/// set stays open after the stream of sets has ended); a set that changes is, for example, a
/// `tokio_stream::wrappers::WatchStream` over a `tokio::sync::watch` channel of address lists.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::ListenExt;
/// use tokio::sync::watch;
/// use tokio_stream::wrappers::WatchStream;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let first: Vec<std::net::SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
/// let (set_addresses, addresses) = watch::channel(first);
/// let accepts = staunch::bind_many(WatchStream::new(addresses));
/// let status = accepts.status();
/// let server = tokio::spawn(
///     accepts
///         .sleep_on_error(Duration::from_millis(100))
///         .map(|_socket| async { std::io::Result::Ok(()) })
///         .listen(100),
/// );
/// // Later: serve on another address too, or on none (the server then stops accepting).
/// set_addresses.send_replace(vec![]);
/// drop(set_addresses);
/// server.await.unwrap();
/// assert!(status.bound().is_empty());
/// # Ok(())
/// # }
/// ```
pub fn bind_many<A, I>(addresses: A) -> BindMany<A>
where
    A: Stream<Item = I>,
    I: IntoIterator<Item = SocketAddr>,
{
    BindMany {
        addresses,
        addresses_done: false,
        bound: Vec::new(),
        failing: Vec::new(),
        policy: Exponential::builder()
            .min(Duration::from_millis(100))
            .max(Duration::from_secs(10))
            .build()
            .expect("valid default bind backoff"),
        next: 0,
        status: BindStatus::default(),
    }
}

impl<A> BindMany<A> {
    /// Retry failed binds with this policy instead of the default (100 ms doubling to 10 s).
    pub fn bind_backoff(mut self, policy: Exponential) -> Self {
        self.policy = policy;
        self
    }

    /// A handle to the state of every address.
    pub fn status(&self) -> BindStatus {
        self.status.clone()
    }

    /// The local addresses of the sockets bound now (with real ports).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl<A, I> BindMany<A>
where
    A: Stream<Item = I>,
    I: IntoIterator<Item = SocketAddr>,
{
    /// Make the bound and failing sets match `wanted`.
    fn reconcile(self: Pin<&mut Self>, wanted: I) {
        let this = self.project();
        let wanted: Vec<SocketAddr> = wanted.into_iter().collect();
        let mut status = this.status.lock();
        this.bound.retain(|(addr, _)| {
            let keep = wanted.contains(addr);
            if !keep {
                status.remove(addr);
                log_event!(info, %addr, "bind_many: address removed, closing it");
            }
            keep
        });
        this.failing.retain(|f| {
            let keep = wanted.contains(&f.addr);
            if !keep {
                status.remove(&f.addr);
            }
            keep
        });
        for addr in wanted {
            let known = this.bound.iter().any(|(a, _)| *a == addr)
                || this.failing.iter().any(|f| f.addr == addr);
            if known {
                continue;
            }
            try_bind(
                addr,
                this.policy.clone(),
                this.bound,
                this.failing,
                &mut status,
            );
        }
    }
}

fn try_bind(
    addr: SocketAddr,
    mut policy: Exponential,
    bound: &mut Vec<(SocketAddr, TcpListener)>,
    failing: &mut Vec<Failing>,
    status: &mut BTreeMap<SocketAddr, AddrState>,
) {
    match bind(addr) {
        Ok(listener) => {
            let local = listener.local_addr().unwrap_or(addr);
            log_event!(info, %addr, %local, "bind_many: bound");
            bound.push((addr, listener));
            status.insert(addr, AddrState::Bound { local });
        }
        Err(error) => {
            // The default policy never ends; a user policy that ends keeps its last delay.
            let retry_in = policy.next().unwrap_or(Duration::from_secs(10));
            log_event!(
                warn,
                %addr,
                error = %error,
                retry_ms = retry_in.as_millis() as u64,
                "bind_many: bind failed, will retry"
            );
            status.insert(
                addr,
                AddrState::Failing {
                    error: error.to_string(),
                    attempts: policy.attempts(),
                    retry_in,
                },
            );
            failing.push(Failing {
                addr,
                policy,
                retry: Box::pin(sleep(retry_in)),
            });
        }
    }
}

impl<A, I> Stream for BindMany<A>
where
    A: Stream<Item = I>,
    I: IntoIterator<Item = SocketAddr>,
{
    type Item = io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The newest address set wins.
        while !self.addresses_done {
            match self.as_mut().project().addresses.poll_next(cx) {
                Poll::Ready(Some(set)) => self.as_mut().reconcile(set),
                Poll::Ready(None) => *self.as_mut().project().addresses_done = true,
                Poll::Pending => break,
            }
        }
        let this = self.project();
        let mut i = 0;
        while i < this.failing.len() {
            if this.failing[i].retry.as_mut().poll(cx).is_ready() {
                let f = this.failing.swap_remove(i);
                let mut status = this.status.lock();
                try_bind(f.addr, f.policy, this.bound, this.failing, &mut status);
            } else {
                i += 1;
            }
        }
        let n = this.bound.len();
        for k in 0..n {
            let at = (*this.next + k) % n;
            if let Poll::Ready(result) = this.bound[at].1.poll_accept(cx) {
                *this.next = (at + 1) % n;
                return Poll::Ready(Some(result.map(|(socket, _)| socket)));
            }
        }
        if *this.addresses_done && this.bound.is_empty() && this.failing.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<A, I> FusedStream for BindMany<A>
where
    A: Stream<Item = I>,
    I: IntoIterator<Item = SocketAddr>,
{
    fn is_terminated(&self) -> bool {
        self.addresses_done && self.bound.is_empty() && self.failing.is_empty()
    }
}

impl<A> fmt::Debug for BindMany<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindMany")
            .field("status", &self.status.snapshot())
            .field("addresses_done", &self.addresses_done)
            .finish_non_exhaustive()
    }
}
