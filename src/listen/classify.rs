use std::io;

/// What an accept error means for the accept loop.
///
/// | class | errors | what [`sleep_on_error`](crate::ListenExt::sleep_on_error) does |
/// |---|---|---|
/// | [`Connection`](ErrorClass::Connection) | `ConnectionRefused`, `ConnectionAborted`, `ConnectionReset`, `Interrupted`; on Linux the pending network errors `accept(2)` says to retry at once: EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, ENETDOWN | skips it and accepts again at once |
/// | [`Resource`](ErrorClass::Resource) | EMFILE, ENFILE, ENOBUFS, ENOMEM (`OutOfMemory`); on Windows WSAEMFILE, WSAENOBUFS | backs off, and wakes early when a connection of its own listener ends |
/// | [`Unknown`](ErrorClass::Unknown) | anything else | backs off |
///
/// EMFILE, ENFILE and ENOBUFS have no stable [`io::ErrorKind`], so they are matched by
/// [`raw_os_error`](io::Error::raw_os_error).
///
/// # Examples
///
/// An accept loop of your own, with the same rule:
///
/// ```
/// use std::{io, time::Duration};
/// use staunch::listen::ErrorClass;
///
/// fn wait_after(error: &io::Error) -> Option<Duration> {
///     match ErrorClass::of(error) {
///         ErrorClass::Connection => None, // accept again at once
///         _ => Some(Duration::from_millis(100)),
///     }
/// }
/// assert_eq!(wait_after(&io::ErrorKind::ConnectionAborted.into()), None);
/// assert_eq!(wait_after(&io::ErrorKind::OutOfMemory.into()), Some(Duration::from_millis(100)));
/// let unknown = io::Error::other("something else");
/// assert_eq!(ErrorClass::of(&unknown), ErrorClass::Unknown);
/// assert_eq!(wait_after(&unknown), Some(Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The error concerns one pending connection only; the next accept may well succeed.
    Connection,
    /// The process or system ran out of descriptors, buffers or memory: accepting again at once
    /// would fail again and spin.
    Resource,
    /// Not known to be either: treated like a resource error, since spinning is worse than waiting.
    Unknown,
}

impl ErrorClass {
    /// Classify an accept error. See the table on [`ErrorClass`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use staunch::listen::ErrorClass;
    ///
    /// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    /// assert_eq!(ErrorClass::of(&reset), ErrorClass::Connection);
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(ErrorClass::of(&io::Error::from_raw_os_error(24)), ErrorClass::Resource); // EMFILE
    /// ```
    pub fn of(error: &io::Error) -> ErrorClass {
        if let Some(code) = error.raw_os_error() {
            if RESOURCE_ERRNOS.contains(&code) {
                return ErrorClass::Resource;
            }
            if CONNECTION_ERRNOS.contains(&code) {
                return ErrorClass::Connection;
            }
        }
        match error.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable => ErrorClass::Connection,
            io::ErrorKind::OutOfMemory => ErrorClass::Resource,
            _ => ErrorClass::Unknown,
        }
    }

    /// `true` for [`ErrorClass::Connection`].
    pub fn is_connection(self) -> bool {
        self == ErrorClass::Connection
    }
}

/// `true` if `error` concerns a single pending connection, so the accept loop should skip it and
/// accept again at once; `false` if it should back off. This is the classification
/// [`sleep_on_error`](crate::ListenExt::sleep_on_error) uses; the table is on [`ErrorClass`].
///
/// # Examples
///
/// ```
/// use std::io;
/// use staunch::is_connection_error;
///
/// assert!(is_connection_error(&io::ErrorKind::ConnectionAborted.into()));
/// assert!(!is_connection_error(&io::ErrorKind::OutOfMemory.into()));
/// # #[cfg(target_os = "linux")]
/// assert!(!is_connection_error(&io::Error::from_raw_os_error(24))); // EMFILE
/// ```
pub fn is_connection_error(error: &io::Error) -> bool {
    ErrorClass::of(error).is_connection()
}

#[cfg(unix)]
const RESOURCE_ERRNOS: &[i32] = &[libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
#[cfg(windows)]
const RESOURCE_ERRNOS: &[i32] = &[10024 /* WSAEMFILE */, 10055 /* WSAENOBUFS */];
#[cfg(not(any(unix, windows)))]
const RESOURCE_ERRNOS: &[i32] = &[];

#[cfg(any(target_os = "linux", target_os = "android"))]
const CONNECTION_ERRNOS: &[i32] = &[
    libc::EPROTO,
    libc::ENOPROTOOPT,
    libc::EHOSTDOWN,
    libc::ENONET,
    libc::EHOSTUNREACH,
    libc::EOPNOTSUPP,
    libc::ENETUNREACH,
    libc::ENETDOWN,
];
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const CONNECTION_ERRNOS: &[i32] = &[
    libc::EPROTO,
    libc::ENOPROTOOPT,
    libc::EHOSTDOWN,
    libc::EHOSTUNREACH,
    libc::EOPNOTSUPP,
    libc::ENETUNREACH,
    libc::ENETDOWN,
];
#[cfg(not(unix))]
const CONNECTION_ERRNOS: &[i32] = &[];
