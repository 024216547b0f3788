//! The methods [`Listen`](crate::Listen) and [`SpawnListen`](crate::SpawnListen) share, written
//! once: the two differ only in their pool and bounds.

macro_rules! listener_common {
    ($ty:ident, $method:literal, where $($bounds:tt)*) => {
        impl<S> $ty<S>
        where
            $($bounds)*
        {
            /// Cancel any connection future that runs longer than `limit` (counted as timed
            /// out), so slow or stalled clients cannot hold every slot forever (Slowloris).
            ///
            /// # Panics
            ///
            /// Panics if `limit` is zero.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            /// use futures_util::{stream, StreamExt};
            /// use staunch::ListenExt;
            ///
            /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
            /// # async fn main() {
            /// let server = stream::iter([1u64, 60])
            ///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
            #[doc = concat!("    .", $method, "(10)")]
            ///     .connection_time_limit(Duration::from_secs(30));
            /// let stats = server.stats();
            /// server.await;
            /// assert_eq!((stats.snapshot().finished, stats.snapshot().timed_out), (1, 1));
            /// # }
            /// ```
            #[track_caller]
            pub fn connection_time_limit(mut self, limit: std::time::Duration) -> Self {
                self.driver.set_time_limit(limit);
                self
            }

            /// Stop accepting when `signal` completes, give in-flight connections `grace` to
            /// finish, then cancel the rest. Any future is a signal: a
            /// `CancellationToken::cancelled_owned()`, `tokio::signal::ctrl_c()`, a oneshot
            /// receiver. See [`GracefulShutdown`](crate::GracefulShutdown).
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            /// use futures_util::{stream, StreamExt};
            /// use staunch::ListenExt;
            /// use tokio_util::sync::CancellationToken;
            ///
            /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
            /// # async fn main() {
            /// let token = CancellationToken::new();
            /// let server = stream::iter([20u64, 120])
            ///     .chain(stream::pending()) // a listener that never ends by itself
            ///     .map(|secs| tokio::time::sleep(Duration::from_secs(secs)))
            #[doc = concat!("    .", $method, "(10)")]
            ///     .with_graceful_shutdown(token.clone().cancelled_owned(), Duration::from_secs(30));
            /// tokio::spawn(async move {
            ///     tokio::time::sleep(Duration::from_secs(10)).await;
            ///     token.cancel();
            /// });
            /// // At 10 s the signal comes; the 20 s connection finishes within the 30 s grace
            /// // period, the 120 s one is cut at 40 s.
            /// let report = server.await;
            /// assert_eq!((report.finished, report.cancelled), (1, 1));
            /// # }
            /// ```
            pub fn with_graceful_shutdown<F>(
                self,
                signal: F,
                grace: std::time::Duration,
            ) -> $crate::GracefulShutdown<Self, F>
            where
                F: std::future::Future,
            {
                $crate::GracefulShutdown::new(self, signal, grace)
            }

            /// A handle to the listener's counters, including those of every `sleep_on_error`
            /// stream it polls.
            pub fn stats(&self) -> $crate::Stats {
                $crate::Stats::listen(self.driver.shared().clone())
            }

            /// The concurrency limit.
            pub fn max_connections(&self) -> usize {
                self.driver.max_connections()
            }

            /// The per-connection time limit, if one was set.
            pub fn time_limit(&self) -> Option<std::time::Duration> {
                self.driver.time_limit()
            }

            /// Connection futures in flight now.
            pub fn in_flight(&self) -> usize {
                self.driver.in_flight()
            }

            /// The accept stream, or `None` once it has ended (it is dropped at once then).
            pub fn get_ref(&self) -> Option<&S> {
                self.driver.stream()
            }

            /// The pinned accept stream, or `None` once it has ended.
            pub fn get_pin_mut(self: std::pin::Pin<&mut Self>) -> Option<std::pin::Pin<&mut S>> {
                self.project().driver.stream_pin_mut()
            }
        }

        impl<S> std::future::Future for $ty<S>
        where
            $($bounds)*
        {
            type Output = ();

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<()> {
                self.project().driver.poll_run(cx)
            }
        }

        impl<S> $crate::listen::shutdown::sealed::Sealed for $ty<S>
        where
            $($bounds)*
        {
            fn stop_accepting(self: std::pin::Pin<&mut Self>) {
                self.project().driver.stop_accepting();
            }

            fn cancel_all(self: std::pin::Pin<&mut Self>) {
                self.project().driver.cancel_all();
            }

            fn stats(&self) -> $crate::Stats {
                $ty::stats(self)
            }
        }

        impl<S> $crate::Drain for $ty<S>
        where
            $($bounds)*
        {
        }

        impl<S> std::fmt::Debug for $ty<S>
        where
            S: std::fmt::Debug,
            $($bounds)*
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("stream", &self.driver.stream())
                    .field("max_connections", &self.driver.max_connections())
                    .field("time_limit", &self.driver.time_limit())
                    .field("in_flight", &self.driver.in_flight())
                    .field("accepting", &self.driver.is_accepting())
                    .finish_non_exhaustive()
            }
        }
    };
}
