//! Scenario 9: queued clients at EMFILE, with and without `shed_on_emfile`.

use super::{rotated, strings};
use crate::report::{Report, Spec};
use crate::sys::ChildServer;
use crate::{load, Config};

/// Clients queued against a server out of descriptors: how long each waits to learn anything,
/// with and without `shed_on_emfile`.
pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "9 queued clients at EMFILE";
    const NOFILE: u64 = 64;
    const QUEUED: usize = 200;
    let limit = cfg.secs(5.0, 2.0);
    println!(
        "\n== {S}: server RLIMIT_NOFILE={NOFILE}, every descriptor held, {QUEUED} clients queued; wait until served or told (reset/EOF), cut at {:.0} s",
        limit.as_secs_f64()
    );
    let contenders = ["staunch", "staunch-shed"];
    let names = |c: &str| match c {
        "staunch" => "staunch sleep_on_error(100 ms) + spawn_listen",
        _ => "the same + shed_on_emfile(1024)",
    };
    let rounds = cfg.rounds.max(2);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "emfile",
                &strings(&["--contender", c, "--nofile", &NOFILE.to_string()]),
            );
            let q = rt.block_on(load::queued(&server, NOFILE, QUEUED, limit));
            drop(server);
            let mut waits: Vec<f64> = q.waits.iter().map(|w| w.0.as_secs_f64() * 1000.0).collect();
            waits.sort_by(f64::total_cmp);
            let pct = |p: usize| waits[(waits.len() - 1) * p / 100];
            let count = |o: load::Outcome| q.waits.iter().filter(|w| w.1 == o).count();
            let told = count(load::Outcome::Told);
            println!(
                "  round {round} {:<48} wait p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms; {told} told, {} served, {} still waiting; CPU {:.3}% of a core over the window",
                names(c),
                pct(50),
                pct(99),
                pct(100),
                count(load::Outcome::Served),
                count(load::Outcome::Waiting),
                q.cpu_share_ns * 100.0
            );
            rep.add(
                S,
                names(c),
                "queued client's wait, p50",
                "ms",
                round,
                pct(50),
            );
            rep.add(
                S,
                names(c),
                "queued client's wait, max",
                "ms",
                round,
                pct(100),
            );
            rep.add(
                S,
                names(c),
                "queued clients told",
                "of 200",
                round,
                told as f64,
            );
            rep.add(
                S,
                names(c),
                "CPU while queued (schedstat)",
                "% core",
                round,
                q.cpu_share_ns * 100.0,
            );
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "queued client's wait, max",
        baseline: Some(names("staunch").into()),
        higher_is_better: false,
        goal: "< 100 ms with shedding; without, clients wait for the cut".into(),
        paired: true,
    });
}
