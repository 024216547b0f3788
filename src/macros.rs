//! Code every adapter would otherwise write out again.

/// The accessors an adapter gives to what it wraps, as futures-util's adapters do: `get_ref`,
/// `get_mut`, `get_pin_mut` (for a `#[pin]` field of a `pin_project!` type) and `into_inner`.
/// `what` names the inner value, `get_mut` and `into_inner` end their docs with what taking it
/// out means for the adapter.
macro_rules! access_inner {
    (
        $field:ident: $inner:ty,
        $what:literal,
        get_mut: $get_mut:literal,
        into_inner: $into_inner:literal
    ) => {
        #[doc = concat!("The ", $what, ".")]
        pub fn get_ref(&self) -> &$inner {
            &self.$field
        }

        #[doc = concat!("The ", $what, ". ", $get_mut)]
        pub fn get_mut(&mut self) -> &mut $inner {
            &mut self.$field
        }

        #[doc = concat!("The pinned ", $what, ".")]
        pub fn get_pin_mut(self: ::std::pin::Pin<&mut Self>) -> ::std::pin::Pin<&mut $inner> {
            self.project().$field
        }

        #[doc = concat!("The ", $what, ", ", $into_inner)]
        pub fn into_inner(self) -> $inner {
            self.$field
        }
    };
}

/// `AsyncWrite` for a read-side wrapper: every write goes straight to its pinned `io` field.
macro_rules! delegate_async_write {
    ($wrapper:ident) => {
        impl<T: ::tokio::io::AsyncWrite> ::tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.project().io.poll_write(cx, buf)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.project().io.poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.project().io.poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.project().io.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }
        }
    };
}

/// The retry settings both reconnect front ends (`Builder` and `RetryLoop`) take, written once:
/// each stores into the front end's `retry: RetryConfig<C>`. `$owner` names the front end in
/// panic messages; each setter's docs are given by the caller, in order.
macro_rules! retry_setters {
    (
        $owner:literal;
        $(#[$policy:meta])* policy;
        $(#[$timeout:meta])* connect_timeout;
        $(#[$until:meta])* connect_timeout_until_next_retry;
        $(#[$stable:meta])* stable_after;
        $(#[$retryable:meta])* retry_connect_if;
        $(#[$disconnect:meta])* on_disconnect;
        $(#[$cancel:meta])* cancel_on;
    ) => {
        $(#[$policy])*
        pub fn policy<P>(mut self, policy: P) -> Self
        where
            P: Iterator<Item = ::std::time::Duration> + Clone + Send + 'static,
        {
            self.retry.policy = Box::new(policy);
            self
        }

        $(#[$timeout])*
        #[track_caller]
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.retry.set_connect_timeout(
                concat!($owner, "::connect_timeout"),
                $crate::reconnect::retry::ConnectTimeout::Fixed(timeout),
            );
            self
        }

        $(#[$until])*
        #[track_caller]
        pub fn connect_timeout_until_next_retry(mut self, min: ::std::time::Duration) -> Self {
            self.retry.set_connect_timeout(
                concat!($owner, "::connect_timeout_until_next_retry"),
                $crate::reconnect::retry::ConnectTimeout::UntilNextRetry(min),
            );
            self
        }

        $(#[$stable])*
        pub fn stable_after(mut self, period: ::std::time::Duration) -> Self {
            self.retry.stable_after = period;
            self
        }

        $(#[$retryable])*
        pub fn retry_connect_if(mut self, retryable: fn(&::std::io::Error) -> bool) -> Self {
            self.retry.retry_connect_if = retryable;
            self
        }

        $(#[$disconnect])*
        pub fn on_disconnect<F>(mut self, hook: F) -> Self
        where
            F: FnMut(
                    &$crate::reconnect::HookContext,
                    &mut C,
                ) -> $crate::reconnect::BoxFuture<$crate::reconnect::Decision>
                + Send
                + 'static,
        {
            self.retry.on_disconnect = Some(Box::new(hook));
            self
        }

        $(#[$cancel])*
        pub fn cancel_on<F>(mut self, signal: F) -> Self
        where
            F: ::std::future::Future<Output = ()> + Send + 'static,
        {
            self.retry.cancel = Some(Box::pin(signal));
            self
        }
    };
}
