//! Scenario 5: many idle connections, the server's memory per connection.

use super::{rotated, strings};
use crate::report::{Report, Spec};
use crate::sys::ChildServer;
use crate::{load, Config};

pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "5 many idle connections";
    const M: &str = "server RSS growth per connection";
    let n = if cfg.quick { 2_000 } else { 10_000 };
    println!("\n== {S}: {n} idle clients held open (soft RLIMIT_NOFILE raised to the hard limit in both processes)");
    let contenders = ["bare-mt", "listen-ct", "spawn_listen-mt"];
    let names = |c: &str| match c {
        "bare-mt" => "bare accept+spawn loop (multi-thread)",
        "listen-ct" => "staunch listen(10_000) (current-thread)",
        _ => "staunch spawn_listen(10_000) (multi-thread)",
    };
    let rounds = if cfg.quick { 1 } else { 3 };
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn(
                "echo",
                &strings(&["--contender", c, "--handler", "hold", "--max", "10000"]),
            );
            let (per, opened) = rt.block_on(load::idle(&server, n));
            drop(server);
            println!(
                "  round {round} {:<45} {per:>7.0} B/conn over {opened} connections",
                names(c)
            );
            if opened < n {
                rep.notes.push(format!(
                    "Idle connections: {} opened only {opened} of {n}.",
                    names(c)
                ));
            }
            rep.add(S, names(c), M, "B/conn", round, per);
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(names("bare-mt").into()),
        higher_is_better: false,
        goal: "<= 1.0 (no more than the bare loop)".into(),
        paired: true,
    });
}
