//! Any [`Connect`]or as a `tower::Service<Uri>`, with the retry settings of a [`RetryLoop`].

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;

use super::retry::{ConnectTimeout, RetryConfig};
use super::{BoxFuture, Connect, RetryLoop, RetryOutcome, SessionEnd, TcpConnector};
use crate::backoff::DynPolicy;

/// A connector that makes each connection with staunch's retry core: a `tower::Service<Uri>`
/// for clients that take one, such as hyper-util's legacy `Client` and tonic's
/// `Endpoint::connect_with_connector`. Each call retries with the backoff policy, connect
/// timeout and [`retry_connect_if`](RetryLoop::retry_connect_if) of the [`RetryLoop`] it was
/// made from ([`RetryLoop::into_service`]), on a clone of its connector (a [`Failover`] fails
/// over), and resolves to the connection or, once the policy gives up, to the
/// [`GaveUp`](super::GaveUp) error (kind `NotConnected`). The client then owns the connection;
/// what happens when it breaks is the client's business (hyper and tonic call again).
///
/// The URI is ignored unless [`with_target`](Self::with_target) gives a way to point the
/// connector at it ([`TcpConnector::set_uri`]).
///
/// hyper and tonic read and write through `hyper::rt` traits: wrap the connection in
/// `hyper_util::rt::TokioIo` (staunch depends on neither).
///
/// [`Failover`]: super::Failover
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Exponential;
/// use staunch::reconnect::{RetryLoop, TcpConnector};
/// use tower_service::Service as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut connector = RetryLoop::new(TcpConnector::new("127.0.0.1:1"))
///     .policy(Exponential::builder().max_attempts(2).build().unwrap())
///     .connect_timeout(Duration::from_secs(3))
///     .into_service()
///     .with_target(TcpConnector::set_uri);
/// let uri = "http://127.0.0.1:9/".parse().unwrap(); // nothing listens on the discard port
/// let err = connector.call(uri).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
/// assert!(err.to_string().contains("after 2 attempts"), "{err}");
/// # }
/// ```
pub struct ConnectService<C> {
    connector: C,
    /// Each call takes a fresh clone (the lock makes the service `Sync`, as hyper wants).
    policy: Arc<Mutex<Box<dyn DynPolicy>>>,
    connect_timeout: Option<ConnectTimeout>,
    stable_after: Duration,
    retry_connect_if: fn(&io::Error) -> bool,
    target: Option<fn(&mut C, &Uri) -> io::Result<()>>,
}

impl<C: Connect> RetryLoop<C> {
    /// A `tower::Service<Uri>` that connects with this loop's settings on every call (see
    /// [`ConnectService`]); feature `tower`.
    ///
    /// # Panics
    ///
    /// Panics if [`on_disconnect`](Self::on_disconnect) or [`cancel_on`](Self::cancel_on) was
    /// set: a hook and a signal belong to one loop, not to every call of a service.
    #[track_caller]
    pub fn into_service(self) -> ConnectService<C> {
        let RetryLoop { connector, retry } = self;
        assert!(
            retry.on_disconnect.is_none() && retry.cancel.is_none(),
            "RetryLoop::into_service: on_disconnect and cancel_on cannot be shared by the calls \
             of a service; build the RetryLoop without them"
        );
        ConnectService {
            connector,
            policy: Arc::new(Mutex::new(retry.policy)),
            connect_timeout: retry.connect_timeout,
            stable_after: retry.stable_after,
            retry_connect_if: retry.retry_connect_if,
            target: None,
        }
    }
}

impl<C> ConnectService<C> {
    /// Point each call's connector at the call's URI with `target` (its error fails the call).
    pub fn with_target(mut self, target: fn(&mut C, &Uri) -> io::Result<()>) -> Self {
        self.target = Some(target);
        self
    }

    /// The connector each call clones.
    pub fn connector(&self) -> &C {
        &self.connector
    }
}

impl<C: Clone> Clone for ConnectService<C> {
    fn clone(&self) -> Self {
        ConnectService {
            connector: self.connector.clone(),
            policy: Arc::clone(&self.policy),
            connect_timeout: self.connect_timeout,
            stable_after: self.stable_after,
            retry_connect_if: self.retry_connect_if,
            target: self.target,
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for ConnectService<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectService")
            .field("connector", &self.connector)
            .field("connect_timeout", &self.connect_timeout)
            .field("target", &self.target.is_some())
            .finish_non_exhaustive()
    }
}

impl<C> tower_service::Service<Uri> for ConnectService<C>
where
    C: Connect + Clone + Send + 'static,
    C::Future: Send,
    C::Io: Send + 'static,
{
    type Response = C::Io;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<C::Io>>;

    /// Always ready: every call makes its own attempts.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut connector = self.connector.clone();
        let target = self.target;
        let mut retry = RetryConfig::new();
        retry.policy = self
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fresh();
        retry.connect_timeout = self.connect_timeout;
        retry.stable_after = self.stable_after;
        retry.retry_connect_if = self.retry_connect_if;
        Box::pin(async move {
            if let Some(target) = target {
                target(&mut connector, &uri)?;
            }
            let outcome = RetryLoop { connector, retry }
                .run(|io| async move { SessionEnd::<_, ()>::Done(io) })
                .await;
            match outcome {
                RetryOutcome::Done(io) => Ok(io),
                RetryOutcome::GaveUp { gave_up, .. } => Err(gave_up.to_io_error()),
            }
        })
    }
}

impl TcpConnector {
    /// Target the host and port of `uri` (port 80 for `http`, 443 for `https` when it names
    /// none): for [`ConnectService::with_target`]; feature `tower`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `uri` has no host, or no port and a scheme other than `http` and
    /// `https`.
    pub fn set_uri(&mut self, uri: &Uri) -> io::Result<()> {
        let invalid = |what| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect to {uri:?}: {what}"),
            )
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("http")) => 80,
            (None, Some("https")) => 443,
            (None, _) => return Err(invalid("no port, and no http or https scheme to imply one")),
        };
        self.set_addr(format!("{host}:{port}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_names_the_target() {
        let target = |uri: &str| {
            let mut connector = TcpConnector::new("unset:1");
            connector
                .set_uri(&uri.parse().unwrap())
                .map(|()| connector.addr().to_owned())
        };
        assert_eq!(target("http://127.0.0.1:8080/x").unwrap(), "127.0.0.1:8080");
        assert_eq!(target("http://localhost/").unwrap(), "localhost:80");
        assert_eq!(target("https://[::1]/").unwrap(), "[::1]:443");
        let err = target("/only/a/path").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("no host"), "{err}");
        let err = target("ftp://127.0.0.1/").unwrap_err();
        assert!(err.to_string().contains("no port"), "{err}");
    }

    #[test]
    #[should_panic(expected = "RetryLoop::into_service: on_disconnect and cancel_on")]
    fn a_hook_cannot_be_shared_by_the_calls() {
        let _ = RetryLoop::new(TcpConnector::new("127.0.0.1:1"))
            .cancel_on(std::future::pending())
            .into_service();
    }
}
