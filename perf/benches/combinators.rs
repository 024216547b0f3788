//! Scenario 7 of the benchmark program: the cost of `sleep_on_error` and `listen` over synthetic streams,
//! against the bare stream and `buffer_unordered`, in ns per item.
//!
//! `cargo bench -p staunch-perf` (criterion); the benchmark program (`perf/src/main.rs`) runs the
//! same workloads.

use criterion::{criterion_main, Criterion, Throughput};

#[path = "micro/workloads.rs"]
mod workloads;

const ITEMS: u64 = 1_000;

fn combinators(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (group, short, bare, staunch) in workloads::pairs() {
        let mut g = c.benchmark_group(short);
        g.throughput(Throughput::Elements(ITEMS));
        let _ = group;
        g.bench_function("baseline", |b| b.iter(|| rt.block_on(bare(ITEMS))));
        g.bench_function("staunch", |b| b.iter(|| rt.block_on(staunch(ITEMS))));
        g.finish();
    }
}

// criterion's macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::combinators);
}
criterion_main!(group::benches);
