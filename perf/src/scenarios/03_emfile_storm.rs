//! Scenarios 3 and 4: the EMFILE storm, and the wake on release after it.

use super::{rotated, strings};
use crate::report::{Report, Series, Spec};
use crate::sys::ChildServer;
use crate::{load, Config};

pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "3+4 EMFILE storm";
    const NOFILE: u64 = 64;
    let exhaust = cfg.secs(3.0, 1.0);
    println!(
        "\n== {S}: server RLIMIT_NOFILE={NOFILE}, more clients than descriptors, {:.0} s of exhaustion",
        exhaust.as_secs_f64()
    );
    let contenders = [
        "naive",
        "axum-1s",
        "fixed-100ms",
        "staunch-unchained",
        "staunch",
    ];
    let names = |c: &str| match c {
        "naive" => "naive loop, retries at once",
        "axum-1s" => "axum::serve-style, 1 s sleep",
        "fixed-100ms" => "tk-listen-style, fixed 100 ms sleep",
        "staunch-unchained" => "staunch sleep_on_error(100 ms) alone",
        _ => "staunch sleep_on_error(100 ms) + spawn_listen",
    };
    let rounds = cfg.rounds.max(3);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "emfile",
                &strings(&["--contender", c, "--nofile", &NOFILE.to_string()]),
            );
            let storm = rt.block_on(load::storm(&server, NOFILE, exhaust));
            drop(server);
            let rec_ms = storm
                .recovery
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
            println!(
                "  round {round} {:<48} CPU {:>5.1}% ({:.3}%) of a core, recovery {:>7.1} ms ({} served before, {} waiting)",
                names(c),
                storm.cpu_share * 100.0,
                storm.cpu_share_ns * 100.0,
                rec_ms,
                storm.served_before,
                storm.waiting
            );
            rep.add(
                S,
                names(c),
                "CPU during exhaustion",
                "% core",
                round,
                storm.cpu_share * 100.0,
            );
            rep.add(
                S,
                names(c),
                "CPU during exhaustion (schedstat)",
                "% core",
                round,
                storm.cpu_share_ns * 100.0,
            );
            rep.add(
                S,
                names(c),
                "recovery: freed → all served",
                "ms",
                round,
                rec_ms,
            );
            if round == rounds - 1 {
                rep.series.push(Series {
                    plot: "emfile_cpu",
                    contender: names(c).into(),
                    points: storm.samples.iter().map(|p| (p.0, p.1)).collect(),
                });
                rep.series.push(Series {
                    plot: "emfile_served",
                    contender: names(c).into(),
                    points: storm
                        .samples
                        .iter()
                        .filter(|p| p.0 >= -0.3)
                        .map(|p| (p.0, p.2 as f64))
                        .collect(),
                });
            }
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: "CPU during exhaustion",
        baseline: Some(names("naive").into()),
        higher_is_better: false,
        goal: "< 0.02 of naive".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "CPU during exhaustion (schedstat)",
        baseline: Some(names("naive").into()),
        higher_is_better: false,
        goal: "< 0.02 of naive".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "recovery: freed → all served",
        baseline: Some(names("fixed-100ms").into()),
        higher_is_better: false,
        goal: "far below a fixed sleep; ~1 round trip with wake on release".into(),
        paired: true,
    });
}
