use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, ReadBuf};

use super::reject::{Ambient, RejectReason};

/// How many connections over the limit one `poll_next` closes in a row before it yields to the
/// runtime, so that a flood of them cannot starve other tasks.
pub(super) const DROP_BUDGET: u32 = 64;

/// An accepted connection whose peer address can be read: what
/// [`limit_per_peer`](super::OverloadExt::limit_per_peer) needs from its items.
///
/// # Examples
///
/// A connection whose client address came from a proxy (say, a PROXY protocol header):
///
/// ```
/// use std::{io, net::SocketAddr};
/// use futures_util::{stream, StreamExt};
/// use staunch::overload::{OverloadExt, PeerAddr};
///
/// struct Proxied {
///     client: SocketAddr,
/// }
///
/// impl PeerAddr for Proxied {
///     fn peer_addr(&self) -> io::Result<SocketAddr> {
///         Ok(self.client)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = "10.0.0.1:1000".parse().unwrap();
/// let mut accepted = stream::iter([Proxied { client }, Proxied { client }]).limit_per_peer(1);
/// let first = accepted.next().await.unwrap();
/// assert_eq!(first.peer(), Some(client));
/// assert!(accepted.next().await.is_none()); // the second was closed, and the stream ended
/// # }
/// ```
pub trait PeerAddr {
    /// The address of the remote end.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

impl PeerAddr for tokio::net::TcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::peer_addr(self)
    }
}

impl PeerAddr for std::net::TcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        std::net::TcpStream::peer_addr(self)
    }
}

/// What `TcpListener::accept` returns: the address is known without a system call.
impl<T> PeerAddr for (T, SocketAddr) {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.1)
    }
}

impl<T> PeerAddr for PeerPermit<T> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "peer address unknown"))
    }
}

/// The live connections of every peer, shared by a [`LimitPerPeer`] and its permits.
#[derive(Debug)]
struct Peers {
    max: usize,
    live: Mutex<HashMap<IpAddr, usize>>,
}

impl Peers {
    fn live(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic elsewhere cannot leave a count half-written: every update is one statement.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot for `key`, unless it holds `max` already.
    fn acquire(&self, key: IpAddr) -> bool {
        let mut live = self.live();
        let count = live.entry(key).or_insert(0);
        if *count < self.max {
            *count += 1;
            true
        } else {
            false
        }
    }

    fn release(&self, key: IpAddr) {
        let mut live = self.live();
        if let Some(count) = live.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                live.remove(&key);
            }
        }
    }
}

/// One peer's slot; dropping it frees the slot.
struct Slot {
    peers: Arc<Peers>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.peers.release(self.key);
    }
}

pin_project! {
    /// An accepted connection holding one of its peer's slots of a
    /// [`limit_per_peer`](super::OverloadExt::limit_per_peer) stream, until it is dropped.
    ///
    /// It derefs to the connection and reads and writes through it, so most handlers take it
    /// as is (hyper's `TokioIo::new(permit)` works). To get the connection itself, split it
    /// with [`into_parts`](PeerPermit::into_parts) and keep the slot alive as long as the
    /// connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    /// let mut accepted = stream::iter([("first", peer), ("second", peer)]).limit_per_peer(1);
    /// let permit = accepted.next().await.unwrap();
    /// assert_eq!((permit.0, permit.peer()), ("first", Some(peer))); // derefs to the connection
    /// let (connection, slot) = permit.into_parts();
    /// drop(connection);
    /// assert_eq!(accepted.peers(), 1); // the slot is held until it is dropped
    /// drop(slot);
    /// assert_eq!(accepted.peers(), 0);
    /// assert_eq!(accepted.next().await.unwrap().0, "second");
    /// # }
    /// ```
    pub struct PeerPermit<T> {
        #[pin]
        io: T,
        peer: Option<SocketAddr>,
        slot: Option<Slot>,
    }
}

impl<T> PeerPermit<T> {
    /// The peer's address, as read when the connection was accepted (`None` if it could not be
    /// read; such a connection holds no slot).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The connection.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The pinned connection.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T> {
        self.project().io
    }

    /// The connection, and a permit with no connection that holds its slot until dropped.
    pub fn into_parts(self) -> (T, PeerPermit<()>) {
        let slot = PeerPermit {
            io: (),
            peer: self.peer,
            slot: self.slot,
        };
        (self.io, slot)
    }
}

impl<T> Deref for PeerPermit<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.io
    }
}

impl<T> DerefMut for PeerPermit<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.io
    }
}

impl<T: AsyncRead> AsyncRead for PeerPermit<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

delegate_async_write!(PeerPermit);

impl<T: fmt::Debug> fmt::Debug for PeerPermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerPermit")
            .field("io", &self.io)
            .field("peer", &self.peer)
            .field("holds_slot", &self.slot.is_some())
            .finish()
    }
}

pin_project! {
    /// Stream for the [`limit_per_peer`](super::OverloadExt::limit_per_peer) method.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let from = |peer: &str| ((), peer.parse::<SocketAddr>().unwrap());
    /// let clients = [from("10.0.0.1:1000"), from("10.0.0.2:1000"), from("10.0.0.1:1001")];
    /// let mut accepted = stream::iter(clients).limit_per_peer(2);
    /// let (a, b, c) = (accepted.next().await, accepted.next().await, accepted.next().await);
    /// assert_eq!(accepted.peers(), 2); // 10.0.0.1 holds two slots, 10.0.0.2 one
    /// drop((a, c));
    /// assert_eq!(accepted.peers(), 1);
    /// # drop(b);
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct LimitPerPeer<S> {
        #[pin]
        stream: S,
        peers: Arc<Peers>,
        ipv6_prefix: u8,
        rejections: Ambient,
    }
}

impl<S: Stream> LimitPerPeer<S> {
    #[track_caller]
    pub(crate) fn new(stream: S, max: usize) -> Self {
        assert!(max > 0, "limit_per_peer: the limit must be at least 1");
        LimitPerPeer {
            stream,
            peers: Arc::new(Peers {
                max,
                live: Mutex::default(),
            }),
            ipv6_prefix: 128,
            rejections: Ambient::default(),
        }
    }
}

impl<S> LimitPerPeer<S> {
    /// Count IPv6 peers by the first `bits` bits of their address, so that one host, which
    /// usually owns a whole /64, cannot multiply its limit by changing addresses. The default
    /// is 128 (each address on its own); 64 is the usual choice. IPv4 addresses, and IPv4
    /// addresses mapped into IPv6 (a dual-stack listener's), are always counted one by one.
    ///
    /// # Panics
    ///
    /// Panics if `bits` is over 128.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use futures_util::{stream, StreamExt};
    /// use staunch::overload::OverloadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let from = |peer: &str| ((), peer.parse::<SocketAddr>().unwrap());
    /// let clients = [
    ///     from("[2001:db8:1:2::1]:1000"),
    ///     from("[2001:db8:1:2::2]:1000"), // the same /64: one host
    ///     from("[2001:db8:1:3::1]:1000"),
    /// ];
    /// let mut accepted = stream::iter(clients).limit_per_peer(1).ipv6_prefix(64);
    /// let _first = accepted.next().await.unwrap();
    /// let next = accepted.next().await.unwrap(); // [2001:db8:1:2::2] was closed
    /// assert_eq!(next.peer().unwrap().to_string(), "[2001:db8:1:3::1]:1000");
    /// # }
    /// ```
    #[track_caller]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        assert!(
            bits <= 128,
            "ipv6_prefix: {bits} bits is more than an address"
        );
        self.ipv6_prefix = bits;
        self
    }

    /// Peers holding at least one slot now.
    pub fn peers(&self) -> usize {
        self.peers.live().len()
    }

    access_inner!(
        stream: S,
        "inner stream",
        get_mut: "Taking items from it directly bypasses the limit.",
        into_inner: "dropping the limit; permits already handed out keep counting until they are dropped."
    );
}

/// The key a peer is counted under.
fn key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if ipv6_prefix < 128 => {
            let mask = u128::MAX
                .checked_shl(u32::from(128 - ipv6_prefix))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        other => other,
    }
}

impl<S> Stream for LimitPerPeer<S>
where
    S: Stream,
    S::Item: PeerAddr,
{
    type Item = PeerPermit<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        this.rejections.find();
        for _ in 0..DROP_BUDGET {
            let Some(io) = std::task::ready!(this.stream.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let peer = match PeerAddr::peer_addr(&io) {
                Ok(peer) => peer,
                // The peer left before we looked (ENOTCONN): nothing to count it under, and
                // nothing it could hold; the handler will see the error.
                Err(_) => {
                    return Poll::Ready(Some(PeerPermit {
                        io,
                        peer: None,
                        slot: None,
                    }))
                }
            };
            let key = key(peer.ip(), *this.ipv6_prefix);
            if this.peers.acquire(key) {
                let slot = Slot {
                    peers: this.peers.clone(),
                    key,
                };
                return Poll::Ready(Some(PeerPermit {
                    io,
                    peer: Some(peer),
                    slot: Some(slot),
                }));
            }
            // Dropping the socket closes it: a FIN, or a reset if the client had already sent
            // data, which the kernel discards. Either way the client learns at once.
            drop(io);
            this.rejections.reject(RejectReason::PeerLimit, Some(peer));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Connections over the limit are dropped: nothing is promised.
        (0, self.stream.size_hint().1)
    }
}

impl<S> FusedStream for LimitPerPeer<S>
where
    S: FusedStream,
    S::Item: PeerAddr,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S: fmt::Debug> fmt::Debug for LimitPerPeer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitPerPeer")
            .field("stream", &self.stream)
            .field("max", &self.peers.max)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("peers", &self.peers())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(key(ip("10.0.0.1"), 64), ip("10.0.0.1"));
        assert_eq!(key(ip("::ffff:10.0.0.1"), 64), ip("10.0.0.1"));
        assert_eq!(
            key(ip("2001:db8:1:2:3:4:5:6"), 128),
            ip("2001:db8:1:2:3:4:5:6")
        );
        assert_eq!(key(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("2001:db8:1:2:3:4:5:6"), 0), ip("::"));
    }
}
