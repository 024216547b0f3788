//! Scenario 8: one accept loop per core (`SO_REUSEPORT`).

use std::time::Duration;

use super::{rotated, strings};
use crate::report::{median, Report, Spec};
use crate::sys::ChildServer;
use crate::{load, Config};

/// Scenario 8: scenario 1's churn against one accept loop, one loop per CPU with `SO_REUSEPORT`
/// (stats merged with `Stats::merged`), and `spawn_listen` on a multi-thread runtime.
pub(crate) fn run(cfg: &Config, rep: &mut Report) {
    const S: &str = "8 SO_REUSEPORT";
    const M: &str = "connections per second";
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // As scenario 1 on 2 CPUs (2 client workers, 32 loops); more of both with more cores, so
    // the load generator is not what caps N accept loops.
    let workers = n.max(cfg.threads);
    let concurrency = (16 * n).max(32);
    println!(
        "\n== {S}: scenario 1's churn, {concurrency} client loops on {workers} threads; {n} accept loops vs one"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let contenders = [
        "single-ct",
        "reuseport-ct",
        "reuseport-bare-ct",
        "spawn_listen-mt",
    ];
    let names: Vec<(&str, String)> = vec![
        (
            "single-ct",
            "one accept loop: listen(10_000) (current-thread)".into(),
        ),
        (
            "reuseport-ct",
            format!("{n} accept loops, SO_REUSEPORT: listen(10_000) × {n} (current-thread each)"),
        ),
        (
            "reuseport-bare-ct",
            format!(
                "{n} accept loops, SO_REUSEPORT: bare accept+spawn × {n} (current-thread each)"
            ),
        ),
        (
            "spawn_listen-mt",
            format!("one accept loop: spawn_listen(10_000) (multi-thread, {n} workers)"),
        ),
    ];
    let name = |c: &str| names.iter().find(|(k, _)| *k == c).unwrap().1.clone();
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds * 2
    };
    let mut mismatches = Vec::new();
    let mut spread = Vec::new();
    let (mut exact, mut client_errors, mut counted_runs) = (0, 0, 0);
    for round in 0..rounds {
        for c in rotated(&contenders, round) {
            let mut server = ChildServer::spawn(
                "reuseport",
                &strings(&["--contender", c, "--threads", &n.to_string()]),
            );
            let run = rt.block_on(load::churn(
                server.port,
                server.pid,
                concurrency,
                cfg.secs(0.3, 0.2),
                cfg.secs(1.5, 0.6),
            ));
            server.command("stats");
            let stats = server
                .expect_line("STATS", Duration::from_secs(5))
                .map(|(_, l)| l)
                .unwrap_or_default();
            drop(server);
            let field = |k: &str| -> Option<u64> {
                stats
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            let per_loop = stats
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("per_loop="))
                .unwrap_or("?")
                .to_string();
            // Every client connection that completed its echo was accepted, started and
            // finished by exactly one loop; a client error may or may not have reached a loop.
            let (done, errs) = (run.completed, run.errors);
            client_errors += errs;
            // The bare loops keep no counters.
            let counted = stats != "STATS none";
            counted_runs += usize::from(counted);
            let ok = !counted
                || match (
                    field("accepted"),
                    field("connections"),
                    field("finished"),
                    field("active"),
                ) {
                    (Some(a), Some(conns), Some(f), Some(0)) => {
                        exact += usize::from(a == done && conns == done && f == done);
                        a == conns
                            && (done..=done + errs).contains(&conns)
                            && f <= conns
                            && f >= done
                    }
                    _ => false,
                };
            if !ok {
                mismatches.push(format!(
                    "round {round} {c}: clients completed {done} (+{errs} errors), server `{stats}`"
                ));
            }
            if c == "reuseport-ct" {
                spread.push(per_loop.clone());
            }
            println!(
                "  round {round} {:<68} {:>9.0} conn/s, server CPU {:>5.1} µs/conn  ({errs} client errors; merged stats {} clients: {}, per loop {per_loop})",
                name(c),
                run.rate,
                run.cpu_us,
                if ok { "match" } else { "DO NOT match" },
                field("connections").map_or("?".into(), |v| v.to_string()),
            );
            rep.add(S, &name(c), M, "conn/s", round, run.rate);
            rep.add(
                S,
                &name(c),
                "server CPU per connection",
                "µs",
                round,
                run.cpu_us,
            );
        }
    }
    for (metric, higher, goal) in [
        (M, true, "informational: > 1 needs spare cores"),
        ("server CPU per connection", false, "informational"),
    ] {
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some(name("single-ct")),
            higher_is_better: higher,
            goal: goal.into(),
            paired: true,
        });
    }
    let per_core = |metric: &str| {
        rep.paired_ratios(S, metric, &name("reuseport-ct"), &name("reuseport-bare-ct"))
    };
    let (rate, cpu) = (per_core(M), per_core("server CPU per connection"));
    rep.notes.push(format!(
        "Per core ({n} loops): staunch `per_core` + listen / bare accept+spawn loops in the same layout, paired medians over {} rounds: {:.3} of the connections per second, {:.3}× the server CPU per connection.",
        rate.len(),
        median(&rate),
        median(&cpu)
    ));
    if mismatches.is_empty() {
        rep.notes.push(format!(
            "SO_REUSEPORT: in all {} runs (every contender that counts, every round) the merged server counters matched the clients, active 0 at the end: accepted = connections = finished = clients that completed their echo{}. Connections per loop ({n} loops), per round: {}.",
            counted_runs,
            if exact == counted_runs {
                String::new()
            } else {
                format!(
                    " in {exact} runs, the others within the {client_errors} client errors"
                )
            },
            spread.join(", ")
        ));
    } else {
        for m in &mismatches {
            eprintln!("  merged stats mismatch: {m}");
        }
        rep.notes.push(format!(
            "SO_REUSEPORT: merged counters did NOT match the clients in {} of {} runs: {}",
            mismatches.len(),
            counted_runs,
            mismatches.join("; ")
        ));
    }
}
