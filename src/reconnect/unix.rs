use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::{BoxFuture, Connect};

/// Unix domain socket connector: connects to a path on every attempt.
///
/// # Examples
///
/// ```
/// use staunch::reconnect::{Reconnecting, UnixConnector};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let conn = Reconnecting::new(UnixConnector::new("/run/app.sock"));
/// # drop(conn);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct UnixConnector {
    path: PathBuf,
}

impl UnixConnector {
    /// A connector to the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UnixConnector { path: path.into() }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Change the socket path; the next attempt uses it.
    pub fn set_path(&mut self, path: impl Into<PathBuf>) {
        self.path = path.into();
    }
}

impl Connect for UnixConnector {
    type Io = UnixStream;
    type Future = BoxFuture<io::Result<UnixStream>>;

    fn connect(&mut self) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move { UnixStream::connect(path).await })
    }
}
