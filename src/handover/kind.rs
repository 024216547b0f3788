//! What a handed-over listener is: shared by the listeners and the errors about them.

use std::fmt;

/// What a handed-over listener is.
///
/// # Examples
///
/// ```
/// use staunch::handover::{Kind, Listener};
///
/// let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let listener = Listener::from_fd(tcp.into())?;
/// assert_eq!(listener.kind(), Kind::Tcp);
/// assert_eq!(Kind::Tcp.to_string(), "a TCP listener");
/// assert_eq!(Kind::Unix.to_string(), "a Unix stream listener");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A TCP listener (IPv4 or IPv6).
    Tcp,
    /// A Unix stream listener.
    Unix,
}

impl Kind {
    pub(super) fn wire(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "a TCP listener",
            Kind::Unix => "a Unix stream listener",
        })
    }
}
