// Workloads of the combinator-overhead microbenchmark, shared by `benches/combinators.rs`
// (criterion) and the benchmark program `src/main.rs` (scenario 7). Each returns a checksum so
// nothing is optimised away.
#![allow(dead_code)]

use std::future::ready;
use std::hint::black_box;
use std::io;
use std::pin::pin;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use staunch::ListenExt;

/// The accept-shaped stream: `n` successful items.
fn accepts(n: u64) -> impl futures_util::Stream<Item = io::Result<u64>> {
    stream::iter(0..n).map(Ok)
}

/// Baseline: consume the `io::Result` stream, keeping the `Ok`s.
pub(crate) async fn bare_results(n: u64) -> u64 {
    let mut s = pin!(accepts(n));
    let mut sum = 0;
    while let Some(item) = s.next().await {
        if let Ok(v) = item {
            sum += black_box(v);
        }
    }
    sum
}

/// The same items through `sleep_on_error`.
pub(crate) async fn sleep_on_error(n: u64) -> u64 {
    let mut s = pin!(accepts(n).sleep_on_error(Duration::from_millis(100)));
    let mut sum = 0;
    while let Some(v) = s.next().await {
        sum += black_box(v);
    }
    sum
}

/// Baseline: `n` ready futures through `buffer_unordered(64)`.
pub(crate) async fn buffer_unordered(n: u64) -> u64 {
    stream::iter(0..n)
        .map(|i| async move { black_box(i) })
        .buffer_unordered(64)
        .fold(0, |a, v| ready(a + v))
        .await
}

/// The same futures through `listen(64)`.
pub(crate) async fn listen(n: u64) -> u64 {
    stream::iter(0..n)
        .map(|i| async move {
            black_box(i);
        })
        .listen(64)
        .await;
    n
}

/// Baseline: `n` futures that each yield once, through `buffer_unordered(64)` (the wake path).
pub(crate) async fn buffer_unordered_yield(n: u64) -> u64 {
    stream::iter(0..n)
        .map(|i| async move {
            tokio::task::yield_now().await;
            black_box(i)
        })
        .buffer_unordered(64)
        .fold(0, |a, v| ready(a + v))
        .await
}

/// The same yielding futures through `listen(64)`.
pub(crate) async fn listen_yield(n: u64) -> u64 {
    stream::iter(0..n)
        .map(|i| async move {
            tokio::task::yield_now().await;
            black_box(i);
        })
        .listen(64)
        .await;
    n
}

/// Baseline: the whole accept chain without staunch: `filter_map(ok)` + `buffer_unordered(64)`.
pub(crate) async fn chain_bare(n: u64) -> u64 {
    accepts(n)
        .filter_map(|r| ready(r.ok()))
        .map(|i| async move { black_box(i) })
        .buffer_unordered(64)
        .fold(0, |a, v| ready(a + v))
        .await
}

/// The whole chain with staunch: `sleep_on_error` + `map` + `listen(64)`.
pub(crate) async fn chain_staunch(n: u64) -> u64 {
    accepts(n)
        .sleep_on_error(Duration::from_millis(100))
        .map(|i| async move {
            black_box(i);
        })
        .listen(64)
        .await;
    n
}

/// (name, baseline name, function) of every pair, for the side-by-side table.
pub(crate) type Workload = fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64>>>;

pub(crate) fn pairs() -> Vec<(&'static str, &'static str, Workload, Workload)> {
    vec![
        (
            "sleep_on_error vs bare Result stream",
            "sleep_on_error",
            |n| Box::pin(bare_results(n)),
            |n| Box::pin(sleep_on_error(n)),
        ),
        (
            "listen(64) vs buffer_unordered(64), ready futures",
            "listen",
            |n| Box::pin(buffer_unordered(n)),
            |n| Box::pin(listen(n)),
        ),
        (
            "listen(64) vs buffer_unordered(64), futures that yield once",
            "listen_yield",
            |n| Box::pin(buffer_unordered_yield(n)),
            |n| Box::pin(listen_yield(n)),
        ),
        (
            "sleep_on_error+listen(64) vs filter_map+buffer_unordered(64)",
            "chain",
            |n| Box::pin(chain_bare(n)),
            |n| Box::pin(chain_staunch(n)),
        ),
    ]
}
