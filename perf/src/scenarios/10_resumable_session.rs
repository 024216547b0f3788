//! Scenario 10: resumable sessions against the plain reconnecting adapter.

use super::rotated;
use crate::report::{median, Report, Spec};
use crate::{resume, Config};

/// Scenario 10: `staunch::resume` (framing, replay buffer, acks) against the plain adapter.
pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "10 resumable session";
    const M: &str = "one-way throughput";
    let mib: u64 = if cfg.quick { 64 } else { 256 };
    println!("\n== {S}: {mib} MiB one way over loopback, 64 KiB writes, both ends in this process");
    let rounds = if cfg.quick {
        cfg.rounds.max(3)
    } else {
        cfg.rounds * 2
    };
    for round in 0..rounds {
        for kind in rotated(&resume::CONTENDERS, round) {
            let rate = rt.block_on(resume::throughput(kind, mib << 20)) / f64::from(1 << 20);
            println!("  round {round} {kind:<26} {rate:>8.0} MiB/s");
            rep.add(S, kind, M, "MiB/s", round, rate);
        }
    }
    let base = "staunch Reconnecting";
    for kind in &resume::CONTENDERS[2..] {
        let ratios = rep.paired_ratios(S, M, kind, base);
        println!(
            "  {kind:<26} / {base}: median ratio {:.2} over {} rounds",
            median(&ratios),
            ratios.len()
        );
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(base.into()),
        higher_is_better: true,
        goal: ">= 0.9".into(),
        paired: true,
    });
}
