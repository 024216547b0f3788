//! What a handed-over listener is: shared by the listeners and the errors about them.

use std::fmt;

/// What a handed-over listener is.
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
