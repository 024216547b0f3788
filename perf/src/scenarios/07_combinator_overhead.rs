//! Scenario 7: combinator overhead on synthetic streams (the criterion benches' workloads).

use std::time::Instant;

use crate::report::{Report, Spec};
use crate::{workloads, Config};

pub(crate) fn run(cfg: &Config, rep: &mut Report) {
    const S: &str = "7 combinator overhead";
    let items: u64 = if cfg.quick { 100_000 } else { 1_000_000 };
    println!("\n== {S}: synthetic streams of {items} items on a current-thread runtime (see also `cargo bench -p staunch-perf`)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rounds = cfg.rounds.max(3);
    for (title, short, bare, staunch) in workloads::pairs() {
        let metric: &'static str = title;
        for round in 0..rounds {
            for (who, f) in [("baseline", bare), ("staunch", staunch)] {
                let t = Instant::now();
                let sum = rt.block_on(f(items));
                let ns = t.elapsed().as_nanos() as f64 / items as f64;
                std::hint::black_box(sum);
                rep.add(S, who, metric, "ns/item", round, ns);
            }
        }
        let b = rep.median_of(S, metric, "baseline");
        let s = rep.median_of(S, metric, "staunch");
        println!("  {short:<16} baseline {b:>6.1} ns/item, staunch {s:>6.1} ns/item");
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some("baseline".into()),
            higher_is_better: false,
            goal: "informational".into(),
            paired: true,
        });
    }
}
