//! Client side: reconnecting I/O and a connect-then-run retry loop (work in progress).
