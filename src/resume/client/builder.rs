//! [`ClientBuilder`]: the settings of a [`Client`], on the reconnect retry core.

#[allow(unused_imports)]
use super::*;

/// Builder for a resumable [`Client`], from [`Client::builder`].
///
/// The retry settings ([`policy`](Self::policy), [`connect_timeout`](Self::connect_timeout),
/// [`connect_timeout_until_next_retry`](Self::connect_timeout_until_next_retry),
/// [`stable_after`](Self::stable_after), [`retry_connect_if`](Self::retry_connect_if),
/// [`on_disconnect`](Self::on_disconnect), [`cancel_on`](Self::cancel_on)) are those of
/// [`reconnect::Builder`](crate::reconnect::Builder), with the same meanings and defaults:
/// exponential backoff from 100 ms to 10 s with ±10 % jitter and no limit, no connect timeout,
/// a 10 s stable period, every connect error retried except those
/// [`is_retryable_connect_error`](crate::reconnect::is_retryable_connect_error) rejects, no
/// hook, no cancellation. The session's own settings are a [`Config`] ([`config`](Self::config)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use staunch::backoff::Constant;
/// use staunch::reconnect::{GaveUp, GiveUpCause};
/// use staunch::resume::{Client, Config};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let refuse = || async {
///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
/// };
/// let mut client = Client::builder(refuse)
///     .policy(Constant::new(Duration::from_secs(1)).take(3))
///     .connect_timeout(Duration::from_secs(5))
///     .config(Config::default().buffer_size(1 << 20))
///     .build();
/// let err = client.read(&mut [0; 8]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
/// assert_eq!(GaveUp::from_io_error(&err).unwrap().cause(), GiveUpCause::PolicyExhausted);
/// # }
/// ```
#[must_use = "call .build() to get the client"]
pub struct ClientBuilder<C: Connect> {
    pub(super) connector: C,
    pub(super) retry: RetryConfig<C>,
    pub(super) config: Config,
}

impl<C: Connect> ClientBuilder<C> {
    retry_setters! {
        "resume::ClientBuilder";
        /// The delays between attempts: any `Iterator<Item = Duration> + Clone`; when it ends,
        /// the client gives up. As [`Builder::policy`](crate::reconnect::Builder::policy).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(1)).take(2))
        ///     .build();
        /// let start = Instant::now();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::PolicyExhausted, 3));
        /// assert_eq!(start.elapsed(), Duration::from_secs(2));
        /// # }
        /// ```
        policy;
        /// Fail a connection attempt that takes longer than `timeout`
        /// ([`Reason::ConnectTimeout`], retried). As
        /// [`Builder::connect_timeout`](crate::reconnect::Builder::connect_timeout). The wait
        /// for the server's welcome is watched by the [heartbeat](Config::heartbeat).
        ///
        /// # Panics
        ///
        /// Panics if `timeout` is zero: no attempt that has to wait for the network could succeed.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::reconnect::{GaveUp, Reason};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let mut client = Client::builder(hang)
        ///     .connect_timeout(Duration::from_secs(3))
        ///     .policy(std::iter::empty())
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let last = GaveUp::from_io_error(&err).unwrap().last_reason();
        /// assert!(matches!(last, Some(Reason::ConnectTimeout(_))));
        /// # }
        /// ```
        connect_timeout;
        /// Give each connection attempt until the next retry is due, and at least `min`, as
        /// [`Builder::connect_timeout_until_next_retry`](crate::reconnect::Builder::connect_timeout_until_next_retry)
        /// does. Replaces [`connect_timeout`](Self::connect_timeout).
        ///
        /// # Panics
        ///
        /// Panics if `min` is zero.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
        /// let mut client = Client::builder(hang)
        ///     .policy(Constant::new(Duration::from_secs(10)).take(1))
        ///     .connect_timeout_until_next_retry(Duration::from_secs(1))
        ///     .build();
        /// let start = Instant::now();
        /// client.read(&mut [0; 8]).await.unwrap_err();
        /// // The first attempt ran until the retry was due, the last one for `min`.
        /// assert_eq!(start.elapsed(), Duration::from_secs(10 + 1));
        /// # }
        /// ```
        connect_timeout_until_next_retry;
        /// How long a connection must stay up, from the server's welcome, before its loss starts
        /// the backoff (and the attempt count) over (10 s by default). As
        /// [`Builder::stable_after`](crate::reconnect::Builder::stable_after).
        stable_after;
        /// Which connect errors are worth retrying; on others the client gives up
        /// ([`GiveUpCause::Fatal`]). As
        /// [`Builder::retry_connect_if`](crate::reconnect::Builder::retry_connect_if).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::io;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .retry_connect_if(|e| e.kind() != io::ErrorKind::ConnectionRefused)
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Fatal, 1));
        /// # }
        /// ```
        retry_connect_if;
        /// An async hook run after each lost connection and each failed attempt, before the
        /// delay: it gets the [`HookContext`](crate::reconnect::HookContext) and the connector,
        /// and decides ([`Decision`]). As
        /// [`Builder::on_disconnect`](crate::reconnect::Builder::on_disconnect).
        ///
        /// # Examples
        ///
        /// ```
        /// use staunch::reconnect::{Decision, GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .on_disconnect(|ctx, _connector| {
        ///         let give_up = ctx.attempt() >= 3;
        ///         let decision = if give_up { Decision::GiveUp } else { Decision::Retry };
        ///         Box::pin(async move { decision })
        ///     })
        ///     .build();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// let gave_up = GaveUp::from_io_error(&err).unwrap();
        /// assert_eq!((gave_up.cause(), gave_up.attempts()), (GiveUpCause::Hook, 3));
        /// # }
        /// ```
        on_disconnect;
        /// Stop reconnecting once `signal` completes: a delay, attempt or hook in progress is cut
        /// short and the client gives up ([`GiveUpCause::Cancelled`]); a live connection is left
        /// alone until it is lost. As [`Builder::cancel_on`](crate::reconnect::Builder::cancel_on).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use staunch::backoff::Constant;
        /// use staunch::reconnect::{GaveUp, GiveUpCause};
        /// use staunch::resume::Client;
        /// use tokio::io::AsyncReadExt;
        /// use tokio::time::Instant;
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let refuse = || async {
        ///     Err::<tokio::io::DuplexStream, _>(std::io::ErrorKind::ConnectionRefused.into())
        /// };
        /// let mut client = Client::builder(refuse)
        ///     .policy(Constant::new(Duration::from_secs(3600)))
        ///     .cancel_on(tokio::time::sleep(Duration::from_secs(1)))
        ///     .build();
        /// let start = Instant::now();
        /// let err = client.read(&mut [0; 8]).await.unwrap_err();
        /// assert_eq!(GaveUp::from_io_error(&err).unwrap().cause(), GiveUpCause::Cancelled);
        /// assert_eq!(start.elapsed(), Duration::from_secs(1)); // the hour-long wait cut short
        /// # }
        /// ```
        cancel_on;
    }

    /// The session's settings (the server-only ones are ignored). Default: `Config::default()`.
    ///
    /// # Examples
    ///
    /// Writes are taken into the replay buffer, up to its size, before any connection:
    ///
    /// ```
    /// use staunch::resume::{Client, Config};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> std::io::Result<()> {
    /// let hang = || std::future::pending::<std::io::Result<tokio::io::DuplexStream>>();
    /// let mut client = Client::builder(hang).config(Config::default().buffer_size(8)).build();
    /// assert_eq!(client.write(&[0; 16]).await?, 8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Build the client. Nothing is connected yet: the first operation starts connecting.
    ///
    /// # Examples
    ///
    /// ```
    /// use staunch::reconnect::ConnState;
    /// use staunch::resume::Client;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let client = Client::builder(|| async { Ok(tokio::io::duplex(64).0) }).build();
    /// assert!(matches!(client.state(), ConnState::Idle));
    /// assert_eq!(client.session_id(), None); // no server has welcomed it
    /// # }
    /// ```
    pub fn build(self) -> Client<C>
    where
        C::Io: AsyncRead + AsyncWrite + Unpin,
    {
        let (tx, _) = watch::channel(ConnState::Idle);
        let link = ClientLink {
            connector: self.connector,
            outage: Outage::new(&self.retry),
            retry: self.retry,
            state: LinkState::Idle,
            generation: 0,
            tx,
        };
        Client {
            engine: Engine::new(link, &self.config),
        }
    }
}

impl<C: Connect> fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("retry", &self.retry)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
