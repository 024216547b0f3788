//! Scenario 1: accept churn. Connect, 8-byte echo, close, against echo servers in child processes.

use super::{rotated, strings};
use crate::report::{median, Report, Spec};
use crate::sys::ChildServer;
use crate::{load, Config};

pub(crate) fn run(cfg: &Config, rt: &tokio::runtime::Runtime, rep: &mut Report) {
    const S: &str = "1 accept churn";
    const M: &str = "connections per second";
    // 32 client loops on 2 threads; more of both with more load-generator threads.
    let concurrency = (16 * cfg.threads).max(32);
    println!(
        "\n== {S}: connect, 8-byte echo, close; {concurrency} client loops on {} threads in this process",
        cfg.threads
    );
    let contenders = ["bare-mt", "bare-ct", "listen-ct", "spawn_listen-mt"];
    let names = |c: &str| match c {
        "bare-mt" => "bare accept+spawn loop (multi-thread)",
        "bare-ct" => "bare accept+spawn loop (current-thread)",
        "listen-ct" => "staunch listen(10_000) (current-thread)",
        _ => "staunch spawn_listen(10_000) (multi-thread)",
    };
    // Many short alternating rounds: the machine is shared, and its load drifts over seconds.
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds * 2
    };
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let server = ChildServer::spawn("echo", &strings(&["--contender", c]));
            let load::Churn {
                rate,
                errors,
                cpu_us,
                ..
            } = rt.block_on(load::churn(
                server.port,
                server.pid,
                concurrency,
                cfg.secs(0.3, 0.25),
                cfg.secs(1.5, 1.0),
            ));
            drop(server);
            println!(
                "  round {round} {:<45} {rate:>9.0} conn/s, server CPU {cpu_us:>5.1} µs/conn  ({errors} client errors)",
                names(c)
            );
            rep.add(S, names(c), M, "conn/s", round, rate);
            rep.add(
                S,
                names(c),
                "server CPU per connection",
                "µs",
                round,
                cpu_us,
            );
        }
    }
    rep.specs.push(Spec {
        scenario: S,
        metric: M,
        baseline: Some(names("bare-mt").into()),
        higher_is_better: true,
        goal: ">= 0.97".into(),
        paired: true,
    });
    rep.specs.push(Spec {
        scenario: S,
        metric: "server CPU per connection",
        baseline: Some(names("bare-mt").into()),
        higher_is_better: false,
        goal: "<= 1.03 (the cost side of >= 0.97)".into(),
        paired: true,
    });
    let ct =
        |metric: &str| median(&rep.paired_ratios(S, metric, names("listen-ct"), names("bare-ct")));
    rep.notes.push(format!(
        "Accept churn, same runtime flavour: staunch listen (current-thread) / bare loop (current-thread), paired medians over {rounds} rounds: {:.3} of the connections per second, {:.3}× the server CPU per connection.",
        ct(M),
        ct("server CPU per connection")
    ));
}
