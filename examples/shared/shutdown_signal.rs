//! Shared by the examples: the shutdown signal every server here stops on.

use std::future::Future;

/// Completes on Ctrl-C or SIGTERM. The handlers are installed here, before the server announces
/// itself, so a signal sent right after "listening on" cannot kill the process by default action.
/// (`tokio::signal::ctrl_c()` would install its handler only when first polled.)
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            ctrl_c.recv().await;
        })
    }
}
