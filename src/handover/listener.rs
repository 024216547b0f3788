//! The listeners handed over: their kinds, the new process's set of them by name, and whether
//! the kernel keeps the queue of an `SO_REUSEPORT` listener that closes.

use std::fs;

use super::error::HandoverError;
use super::kind::Kind;

/// A validated listening socket, close-on-exec and non-blocking.
///
/// # Examples
///
/// ```
/// use staunch::handover::Listener;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = std_listener.local_addr()?;
/// let Listener::Tcp(listener) = Listener::from_fd(std_listener.into())? else {
///     unreachable!("a TCP listener")
/// };
/// let listener = tokio::net::TcpListener::from_std(listener)?; // non-blocking already
/// let client = tokio::net::TcpStream::connect(addr).await?;
/// let (_, peer) = listener.accept().await?;
/// assert_eq!(peer, client.local_addr()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A TCP listener; `tokio::net::TcpListener::from_std` takes it.
    Tcp(std::net::TcpListener),
    /// A Unix stream listener; `tokio::net::UnixListener::from_std` takes it.
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// What it is.
    pub fn kind(&self) -> Kind {
        match self {
            Listener::Tcp(_) => Kind::Tcp,
            Listener::Unix(_) => Kind::Unix,
        }
    }
}

/// The listeners a new process took over, by name.
///
/// # Examples
///
/// Take what was passed, or bind when started by hand:
///
/// ```
/// use staunch::handover::{from_env, HandoverError};
///
/// let (mut listeners, _ready) = from_env()?;
/// let listener = match listeners.take_tcp("http") {
///     Ok(listener) => listener,
///     Err(HandoverError::NotFound { .. }) => std::net::TcpListener::bind("127.0.0.1:0")?,
///     Err(e) => return Err(e.into()),
/// };
/// if std::env::var_os("LISTEN_FDS").is_none() {
///     assert!(listener.local_addr()?.ip().is_loopback()); // started by hand: bound its own
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A name that was not passed says what was:
///
/// ```
/// use staunch::handover::Listeners;
///
/// let mut listeners = Listeners::default();
/// assert!(listeners.is_empty());
/// let err = listeners.take_tcp("http").unwrap_err();
/// assert_eq!(err.to_string(), "no listener `http` was handed over (left: [])");
/// ```
#[derive(Debug, Default)]
pub struct Listeners {
    named: Vec<(String, Listener)>,
}

impl Listeners {
    pub(super) fn push(&mut self, name: String, listener: Listener) {
        self.named.push((name, listener));
    }

    /// Take the listener called `name`, whatever it is.
    pub fn take(&mut self, name: &str) -> Option<Listener> {
        let i = self.named.iter().position(|(n, _)| n == name)?;
        Some(self.named.remove(i).1)
    }

    fn take_kind(&mut self, name: &str, kind: Kind) -> Result<Listener, HandoverError> {
        match self.named.iter().position(|(n, _)| n == name) {
            None => Err(HandoverError::NotFound {
                name: name.into(),
                offered: self.names().map(str::to_owned).collect(),
            }),
            Some(i) if self.named[i].1.kind() != kind => Err(HandoverError::WrongKind {
                name: name.into(),
                expected: Some(kind),
                found: self.named[i].1.kind().to_string(),
            }),
            Some(i) => Ok(self.named.remove(i).1),
        }
    }

    /// Take the TCP listener called `name`.
    ///
    /// # Errors
    ///
    /// [`HandoverError::NotFound`] if there is none of that name, [`HandoverError::WrongKind`]
    /// if it is a Unix listener (which then stays).
    pub fn take_tcp(&mut self, name: &str) -> Result<std::net::TcpListener, HandoverError> {
        match self.take_kind(name, Kind::Tcp)? {
            Listener::Tcp(listener) => Ok(listener),
            Listener::Unix(_) => unreachable!("take_kind checked the kind"),
        }
    }

    /// Take the Unix stream listener called `name`.
    ///
    /// # Errors
    ///
    /// [`HandoverError::NotFound`] if there is none of that name, [`HandoverError::WrongKind`]
    /// if it is a TCP listener (which then stays).
    pub fn take_unix(
        &mut self,
        name: &str,
    ) -> Result<std::os::unix::net::UnixListener, HandoverError> {
        match self.take_kind(name, Kind::Unix)? {
            Listener::Unix(listener) => Ok(listener),
            Listener::Tcp(_) => unreachable!("take_kind checked the kind"),
        }
    }

    /// The names of the listeners not taken yet, in the order they were passed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(n, _)| n.as_str())
    }

    /// How many listeners are left.
    pub fn len(&self) -> usize {
        self.named.len()
    }

    /// Whether none is left (or none was passed).
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

impl IntoIterator for Listeners {
    type Item = (String, Listener);
    type IntoIter = std::vec::IntoIter<(String, Listener)>;

    fn into_iter(self) -> Self::IntoIter {
        self.named.into_iter()
    }
}

/// Whether the kernel moves the connections queued on a closing `SO_REUSEPORT` socket to
/// another socket of its group (`net.ipv4.tcp_migrate_req`, Linux 5.14 and later) instead of
/// resetting them. `None` where the setting does not exist or cannot be read.
///
/// # Examples
///
/// ```
/// use staunch::handover::tcp_migrate_req;
///
/// match tcp_migrate_req() {
///     Some(true) => println!("closing a SO_REUSEPORT socket moves its queue"),
///     Some(false) => println!("closing a SO_REUSEPORT socket resets its queue: hand it over"),
///     None => println!("no such setting here"),
/// }
/// if !cfg!(target_os = "linux") {
///     assert_eq!(tcp_migrate_req(), None);
/// }
/// ```
pub fn tcp_migrate_req() -> Option<bool> {
    let value = fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").ok()?;
    Some(value.trim() != "0")
}
