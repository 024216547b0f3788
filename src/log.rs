//! Crate-private log macros: `tracing` events when the feature is on, nothing otherwise, so call
//! sites carry no `cfg`.

#[cfg(feature = "tracing")]
macro_rules! log_event {
    ($level:ident, $($arg:tt)+) => { ::tracing::$level!($($arg)+) };
}

#[cfg(not(feature = "tracing"))]
macro_rules! log_event {
    ($level:ident, $($arg:tt)+) => {{}};
}
