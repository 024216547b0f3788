//! Scenario 2: HTTP through hyper, wrk against hyper servers in child processes.

use super::{cpu_metric, rotated, strings, wrk, wrk_available};
use crate::report::{Report, Spec};
use crate::sys::ChildServer;
use crate::Config;

pub(crate) fn run(cfg: &Config, rep: &mut Report) {
    const S: &str = "2 HTTP (hyper)";
    println!(
        "\n== {S}: wrk -t{} -c{} against hyper servers (multi-thread, a worker per core)",
        cfg.threads,
        64.max(cfg.threads)
    );
    if !wrk_available() {
        println!("  wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu); skipping scenario 2");
        rep.notes
            .push("Scenario 2 skipped: wrk is not installed (`apt-get install -y wrk`).".into());
        return;
    }
    let contenders = [
        "hyper-plain",
        "axum",
        "hyper-staunch",
        "staunch-http",
        "staunch-http-axum",
    ];
    let names = |c: &str| match c {
        "hyper-plain" => "hyper-util plain accept loop",
        "axum" => "axum::serve",
        "staunch-http" => "staunch_http::serve (hyper service)",
        "staunch-http-axum" => "staunch_http::serve (axum Router)",
        _ => "hyper through staunch spawn_listen",
    };
    let rounds = if cfg.quick {
        cfg.rounds
    } else {
        cfg.rounds + 3
    };
    for (close, metric) in [
        (false, "requests per second, keep-alive"),
        (true, "requests per second, Connection: close"),
    ] {
        for round in 0..rounds {
            for c in rotated(&contenders, round) {
                let server = ChildServer::spawn("http", &strings(&["--contender", c]));
                let ns0 = server.cpu_ns();
                let (rps, total) = wrk(server.port, cfg.threads, cfg.secs(2.0, 1.0), close)
                    .unwrap_or((f64::NAN, f64::NAN));
                let cpu_us = (server.cpu_ns() - ns0) as f64 / 1000.0 / total;
                drop(server);
                println!("  round {round} {metric:<40} {:<36} {rps:>9.0} req/s, server CPU {cpu_us:>5.1} µs/req", names(c));
                rep.add(S, names(c), metric, "req/s", round, rps);
                rep.add(S, names(c), cpu_metric(close), "µs", round, cpu_us);
            }
        }
        rep.specs.push(Spec {
            scenario: S,
            metric,
            baseline: Some(names("hyper-plain").into()),
            higher_is_better: true,
            goal: ">= 0.97, and >= axum::serve; staunch_http::serve: >= 0.99, and its Router row >= axum::serve".into(),
            paired: true,
        });
        rep.specs.push(Spec {
            scenario: S,
            metric: cpu_metric(close),
            baseline: Some(names("hyper-plain").into()),
            higher_is_better: false,
            goal: "<= 1.03".into(),
            paired: true,
        });
    }
}
