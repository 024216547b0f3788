use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::backoff::Exponential;
use crate::sockopt::{listen_on, BACKLOG};

mod handle;

type BindErrorHook = Arc<dyn Fn(SocketAddr, &io::Error) + Send + Sync>;

/// A bind backoff policy, erased: the handle exists before [`BindMany::bind_backoff`] can change
/// the policy's type.
type Policy = Box<dyn Iterator<Item = Duration> + Send>;

/// Makes a fresh [`Policy`] for each address that starts failing.
type MakePolicy = Box<dyn Fn() -> Policy + Send>;

/// One accept stream over a set of addresses that can change while it runs (tk-listen's
/// `BindMany`), from [`bind_many`]; change the set with its [`BindHandle`].
///
/// - Every address of the set is bound (with `SO_REUSEADDR`, `IPV6_V6ONLY` for IPv6 so
///   `0.0.0.0:p` and `[::]:p` can be bound together, and a backlog of 1024) and accepted from in
///   turn, so a busy address cannot starve the others.
/// - [`BindHandle::set`] applies at once, from any thread: a removed address is closed right
///   away, even while the listener is full and not polling this stream; connections already
///   accepted from it are not touched (this stream does not own them).
/// - A bind that fails (address in use, address not yet configured) is retried with
///   exponential backoff (100 ms doubling to 10 s, or any policy given to
///   [`bind_backoff`](BindMany::bind_backoff)),
///   logged, passed to [`on_bind_error`](BindMany::on_bind_error), and shown by
///   [`BindHandle::status`]. It never ends the stream.
/// - Items are `io::Result<TcpStream>`: accept errors are passed on for
///   [`sleep_on_error`](crate::ListenExt::sleep_on_error) to classify.
/// - The stream ends when every [`BindHandle`] is dropped while the set is empty, or when the
///   set becomes empty after every handle was dropped.
/// - Dropping the stream (as a listener does when it stops accepting, at a graceful shutdown or
///   when it is dropped) closes every listening socket at once, even while handles remain; from
///   then on [`BindHandle::status`] is empty and [`BindHandle::set`] binds nothing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use tokio::time::timeout;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (mut accepts, handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
/// let client = tokio::net::TcpStream::connect(handle.bound()[0]).await?;
/// let socket = timeout(Duration::from_secs(5), accepts.next()).await.unwrap().unwrap()?;
/// assert_eq!(socket.peer_addr()?, client.local_addr()?);
/// # Ok(())
/// # }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct BindMany {
    shared: Arc<Shared>,
    /// Wakes the stream for the next bind retry.
    retry: Option<Pin<Box<Sleep>>>,
    next: usize,
}

/// Changes the address set of a [`BindMany`] and reads its state. Cloneable; the stream ends
/// once every handle is gone and the set is empty.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut accepts, handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
/// let reloader = handle.clone(); // say, for the task that watches the configuration
/// drop(handle);
/// reloader.set([]); // no address left...
/// drop(reloader); // ...and no handle: the stream ends
/// let end = tokio::time::timeout(Duration::from_secs(5), accepts.next()).await;
/// assert!(end.unwrap().is_none());
/// # }
/// ```
pub struct BindHandle {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    addrs: Vec<Entry>,
    policy: MakePolicy,
    on_bind_error: Option<BindErrorHook>,
    /// Failures of the first binds, made in [`bind_many`] before a hook could be attached.
    unreported: Failures,
    handles: usize,
    /// `true` once the stream is dropped: nothing is bound any more.
    closed: bool,
    waker: Option<Waker>,
}

struct Entry {
    addr: SocketAddr,
    slot: Slot,
}

enum Slot {
    /// Only while the stream replaces a slot under the lock; never seen outside.
    Empty,
    /// Bound by a handle, to be registered with the runtime by the stream.
    Std(std::net::TcpListener),
    Bound(TcpListener),
    Failing {
        error: String,
        policy: Policy,
        attempts: u32,
        retry_at: Instant,
    },
}

/// Where one address of a [`BindMany`] stands.
///
/// # Examples
///
/// ```
/// use staunch::listen::AddrState;
///
/// let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let busy = taken.local_addr()?;
/// let any_port = "127.0.0.1:0".parse().unwrap();
/// let (_accepts, handle) = staunch::listen::bind_many([any_port, busy]);
/// let status = handle.status();
/// assert!(matches!(&status[&any_port], AddrState::Bound { local } if local.port() != 0));
/// assert!(matches!(&status[&busy], AddrState::Failing { attempts: 1, .. }));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrState {
    /// Bound and accepting.
    Bound {
        /// The socket's local address (with the real port where port 0 was asked for).
        local: SocketAddr,
    },
    /// The last bind failed; it is retried after a backoff.
    Failing {
        /// The bind error, as text.
        error: String,
        /// Failed attempts so far.
        attempts: u32,
    },
}

/// Accept on every address of `addrs`, and on the sets given later to the returned
/// [`BindHandle`]; see [`BindMany`].
///
/// Binding happens here and in [`BindHandle::set`] (the sockets are registered with the tokio
/// runtime when the stream is first polled). A bind that fails here is reported to
/// [`on_bind_error`](BindMany::on_bind_error) once the hook is attached.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use staunch::ListenExt;
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let (accepts, handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
/// let port = handle.bound()[0].port();
/// let server = tokio::spawn(
///     accepts
///         .sleep_on_error(Duration::from_millis(100))
///         .map(|_socket| async { std::io::Result::Ok(()) })
///         .listen(100),
/// );
/// # let _ = port;
/// // Later: serve on other addresses, or on none; an emptied set and no handle left end it.
/// handle.set([]);
/// drop(handle);
/// server.await.unwrap();
/// # Ok(())
/// # }
/// ```
pub fn bind_many(addrs: impl IntoIterator<Item = SocketAddr>) -> (BindMany, BindHandle) {
    let policy = Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .build()
        .expect("valid default bind backoff");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            addrs: Vec::new(),
            policy: make_policy(policy),
            on_bind_error: None,
            unreported: Failures::new(),
            handles: 1,
            closed: false,
            waker: None,
        }),
    });
    let handle = BindHandle {
        shared: shared.clone(),
    };
    let failures = handle.set_and_collect(addrs);
    shared.lock().unreported = failures;
    let stream = BindMany {
        shared,
        retry: None,
        next: 0,
    };
    (stream, handle)
}

/// A [`BindMany`] that starts with `listeners` instead of binding: sockets a previous process
/// handed over (see [`handover`](crate::handover)), so that the port never closes. Each
/// listener's local address is its address in the set, so a later [`BindHandle::set`] with
/// the configured addresses keeps those still wanted (with a fixed port, the local address is
/// the configured one), binds the new ones and closes the others.
///
/// # Errors
///
/// The error of reading a listener's local address or making it non-blocking, and
/// [`InvalidInput`](io::ErrorKind::InvalidInput) if two listeners have the same address (a
/// `BindMany` holds one socket per address).
///
/// # Examples
///
/// A handover within one process: the new stream takes over the old one's socket, and a
/// client that connects in between waits in the backlog instead of being refused.
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use tokio::time::timeout;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (old, old_handle) = staunch::listen::bind_many(["127.0.0.1:0".parse().unwrap()]);
/// let addr = old_handle.bound()[0];
/// let handed_over: Vec<_> = old_handle.listeners()?.into_iter().map(|(_, l)| l).collect();
/// drop((old, old_handle)); // the old side closes its own socket
///
/// let client = tokio::net::TcpStream::connect(addr).await?;
/// let (mut accepts, handle) = staunch::listen::bind_many_from(handed_over)?;
/// assert_eq!(handle.bound(), [addr]);
/// let socket = timeout(Duration::from_secs(5), accepts.next()).await.unwrap().unwrap()?;
/// assert_eq!(socket.peer_addr()?, client.local_addr()?);
/// # Ok(())
/// # }
/// ```
pub fn bind_many_from(
    listeners: impl IntoIterator<Item = std::net::TcpListener>,
) -> io::Result<(BindMany, BindHandle)> {
    let mut addrs: Vec<Entry> = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        if addrs.iter().any(|e| e.addr == addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bind_many_from: two listeners on {addr}"),
            ));
        }
        listener.set_nonblocking(true)?;
        addrs.push(Entry {
            addr,
            slot: Slot::Std(listener),
        });
    }
    let (stream, handle) = bind_many([]);
    stream.shared.lock().addrs = addrs;
    Ok((stream, handle))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BindMany {
    /// Retry failed binds with this policy instead of the default (100 ms doubling to 10 s):
    /// any `Iterator<Item = Duration> + Clone`, such as the policies in
    /// [`backoff`](crate::backoff). Each address that starts failing gets a fresh clone. Applies
    /// to binds that fail from now on; when the policy ends, retries go on every 10 s.
    ///
    /// # Examples
    ///
    /// A port held by another socket, retried every 150 ms (the default waits 100 ms first):
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use staunch::backoff::Constant;
    /// use tokio::time::{sleep, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let (failed, mut failures) = tokio::sync::mpsc::unbounded_channel();
    /// let (accepts, handle) = staunch::listen::bind_many([]);
    /// let mut accepts = accepts
    ///     .bind_backoff(Constant::new(Duration::from_millis(150)))
    ///     .on_bind_error(move |_, _| failed.send(Instant::now()).unwrap());
    /// handle.set([taken.local_addr()?]); // fails at once
    /// let first = failures.recv().await.unwrap();
    /// let retried = tokio::select! {
    ///     _ = accepts.next() => unreachable!("nothing is bound"),
    ///     at = failures.recv() => at.unwrap(), // retried while the stream is polled
    ///     () = sleep(Duration::from_secs(5)) => panic!("not retried"),
    /// };
    /// assert!(retried - first >= Duration::from_millis(150));
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind_backoff<B>(self, policy: B) -> Self
    where
        B: Iterator<Item = Duration> + Clone + Send + 'static,
    {
        self.shared.lock().policy = make_policy(policy);
        self
    }

    /// Call `hook` with every failed bind (it is retried all the same), to count or alert,
    /// including the binds [`bind_many`] made before the hook was attached (at once, from here).
    /// It runs outside the stream's lock, so it may use the [`BindHandle`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, sync::mpsc};
    ///
    /// let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = taken.local_addr()?;
    /// let (accepts, _handle) = staunch::listen::bind_many([addr]); // in use: it fails
    /// let (failed, failures) = mpsc::channel();
    /// let accepts = accepts.on_bind_error(move |addr, e| failed.send((addr, e.kind())).unwrap());
    /// // The failure of `bind_many` itself, reported as the hook is attached.
    /// assert_eq!(failures.try_recv(), Ok((addr, io::ErrorKind::AddrInUse)));
    /// # drop(accepts);
    /// # Ok::<(), io::Error>(())
    /// ```
    pub fn on_bind_error<F>(self, hook: F) -> Self
    where
        F: Fn(SocketAddr, &io::Error) + Send + Sync + 'static,
    {
        let hook: BindErrorHook = Arc::new(hook);
        let earlier = {
            let mut state = self.shared.lock();
            state.on_bind_error = Some(hook.clone());
            std::mem::take(&mut state.unreported)
        };
        report(Some(hook), earlier);
        self
    }
}

/// Bind failures seen under the lock, for the hook to see once it is released (so the hook may
/// use the handle).
type Failures = Vec<(SocketAddr, io::Error)>;

fn report(hook: Option<BindErrorHook>, failures: Failures) {
    if let Some(hook) = hook {
        for (addr, error) in &failures {
            hook(*addr, error);
        }
    }
}

fn make_policy<B>(policy: B) -> MakePolicy
where
    B: Iterator<Item = Duration> + Clone + Send + 'static,
{
    Box::new(move || Box::new(policy.clone()))
}

/// Bind `addr`; on failure, go on with the backoff of an address already failing (`failing`:
/// its policy and attempts so far) or start a fresh one.
fn bind_or_fail(
    addr: SocketAddr,
    make: &MakePolicy,
    failing: Option<(Policy, u32)>,
    failures: &mut Failures,
) -> Slot {
    match bind(addr) {
        Ok(listener) => {
            log_event!(info, %addr, "bind_many: bound");
            Slot::Std(listener)
        }
        Err(error) => fail(
            addr,
            error,
            failing.unwrap_or_else(|| (make(), 0)),
            failures,
        ),
    }
}

fn fail(
    addr: SocketAddr,
    error: io::Error,
    (mut policy, attempts): (Policy, u32),
    failures: &mut Failures,
) -> Slot {
    // The default policy never ends; a user policy that ends keeps a 10 s retry.
    let delay = policy.next().unwrap_or(Duration::from_secs(10));
    log_event!(
        warn,
        %addr,
        error = %error,
        retry_ms = delay.as_millis() as u64,
        "bind_many: bind failed, will retry"
    );
    let slot = Slot::Failing {
        error: error.to_string(),
        policy,
        attempts: attempts.saturating_add(1),
        retry_at: Instant::now() + delay,
    };
    failures.push((addr, error));
    slot
}

/// Retry a failed bind that is due, and register a newly bound socket with the runtime.
fn refresh(
    slot: Slot,
    addr: SocketAddr,
    now: Instant,
    make: &MakePolicy,
    failures: &mut Failures,
) -> Slot {
    let slot = match slot {
        Slot::Failing {
            retry_at,
            policy,
            attempts,
            ..
        } if retry_at <= now => bind_or_fail(addr, make, Some((policy, attempts)), failures),
        other => other,
    };
    match slot {
        Slot::Std(listener) => match TcpListener::from_std(listener) {
            Ok(listener) => Slot::Bound(listener),
            Err(e) => fail(addr, e, (make(), 0), failures),
        },
        other => other,
    }
}

/// A `std` listener on the socket of a registered one (which stays registered).
fn duplicate(listener: &TcpListener) -> io::Result<std::net::TcpListener> {
    #[cfg(unix)]
    let owned = std::os::fd::AsFd::as_fd(listener).try_clone_to_owned()?;
    #[cfg(windows)]
    let owned = std::os::windows::io::AsSocket::as_socket(listener).try_clone_to_owned()?;
    Ok(owned.into())
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    listen_on(addr, BACKLOG, |socket| {
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        Ok(())
    })
}

impl Stream for BindMany {
    type Item = io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut state = this.shared.lock();
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        // Register new sockets with the runtime, retry failed binds that are due.
        let now = Instant::now();
        let mut next_retry: Option<Instant> = None;
        let mut failures = Failures::new();
        let State { addrs, policy, .. } = &mut *state;
        for entry in addrs.iter_mut() {
            let slot = std::mem::replace(&mut entry.slot, Slot::Empty);
            entry.slot = refresh(slot, entry.addr, now, policy, &mut failures);
            if let Slot::Failing { retry_at, .. } = &entry.slot {
                next_retry = Some(next_retry.map_or(*retry_at, |t| t.min(*retry_at)));
            }
        }
        match next_retry {
            Some(at) => {
                let retry = this.retry.get_or_insert_with(|| Box::pin(sleep_until(at)));
                retry.as_mut().reset(at);
                let _ = retry.as_mut().poll(cx);
            }
            None => this.retry = None,
        }
        let mut ready = None;
        let n = state.addrs.len();
        for k in 0..n {
            let at = (this.next + k) % n;
            if let Slot::Bound(listener) = &state.addrs[at].slot {
                if let Poll::Ready(result) = listener.poll_accept(cx) {
                    this.next = (at + 1) % n;
                    ready = Some(result.map(|(socket, _)| socket));
                    break;
                }
            }
        }
        let ended = state.handles == 0 && state.addrs.is_empty();
        let hook = state.on_bind_error.clone();
        drop(state);
        report(hook, failures);
        match ready {
            Some(accepted) => Poll::Ready(Some(accepted)),
            None if ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl Drop for BindMany {
    fn drop(&mut self) {
        // Nobody accepts any more: close every socket now, handles or not, so new clients are
        // refused instead of left hanging in a backlog.
        let mut state = self.shared.lock();
        state.closed = true;
        let closed = std::mem::take(&mut state.addrs);
        drop(state);
        if !closed.is_empty() {
            log_event!(
                info,
                addresses = closed.len(),
                "bind_many: stream dropped, listening sockets closed"
            );
        }
    }
}

impl FusedStream for BindMany {
    fn is_terminated(&self) -> bool {
        let state = self.shared.lock();
        state.handles == 0 && state.addrs.is_empty()
    }
}

impl fmt::Debug for BindMany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("BindMany")
            .field(
                "addresses",
                &state.addrs.iter().map(|e| e.addr).collect::<Vec<_>>(),
            )
            .field("handles", &state.handles)
            .finish_non_exhaustive()
    }
}
