//! examples/emfile_tracing.rs: the events and stats lines an operator sees during an EMFILE
//! storm, and a control run with enough descriptors that shows none of them.

use std::time::Duration;

use crate::harness::{parse_totals, Example};

/// The example's own bound on the storm is 20 s; it normally takes about one.
const STORM: Duration = Duration::from_secs(40);

#[test]
fn emfile_storm_shows_backoff_events_and_periodic_stats_and_every_client_is_served() {
    let server = Example::start(
        "emfile_tracing",
        &["127.0.0.1:0"],
        &[("NOFILE", "64"), ("RUST_LOG", "info,staunch=debug")],
    );
    let exit = server.wait_exit(STORM);
    exit.assert_success();
    assert!(
        exit.stdout
            .iter()
            .any(|l| l.starts_with("storm: 120 of 120 clients served in ")),
        "{exit:?}"
    );

    // The structured accept-error event, with its fields.
    let emfile: Vec<&String> = exit
        .stderr
        .iter()
        .filter(|l| l.contains("accept: error, backing off"))
        .collect();
    assert!(!emfile.is_empty(), "no backoff event: {exit:?}");
    for field in [
        "ERROR",
        "errno=Some(24)",
        "class=Resource",
        "delay_ms=50",
        "consecutive=",
        "active=Some(",
    ] {
        assert!(emfile[0].contains(field), "{field} missing: {}", emfile[0]);
    }
    // Recovery: waits cut short by connections that closed.
    assert!(
        exit.stderr
            .iter()
            .any(|l| l.contains("DEBUG") && l.contains("freed resources: accepting again")),
        "{exit:?}"
    );

    // Periodic stats lines, counters that only grow, ending with the storm's totals.
    let ticks: Vec<_> = exit
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("stats: "))
        .map(parse_totals)
        .collect();
    assert!(ticks.len() >= 2, "{exit:?}");
    for pair in ticks.windows(2) {
        assert!(pair[0]["accepted"] <= pair[1]["accepted"], "{exit:?}");
        assert!(pair[0]["backoffs"] <= pair[1]["backoffs"], "{exit:?}");
    }
    let t = exit.report().totals;
    assert_eq!(
        (t["accepted"], t["finished"], t["failed"]),
        (120, 120, 0),
        "{exit:?}"
    );
    assert!(t["backoffs"] >= 1 && t["woken_by_release"] >= 1, "{exit:?}");
    assert_eq!(
        t["backoffs"],
        emfile.len() as u64,
        "one event per backoff: {exit:?}"
    );
    // The limit held: fewer connections at once than descriptors.
    assert!(t["peak_active"] < 64, "{exit:?}");
}

#[test]
fn emfile_control_with_enough_descriptors_has_no_storm() {
    let server = Example::start("emfile_tracing", &["127.0.0.1:0"], &[("NOFILE", "1024")]);
    let exit = server.wait_exit(STORM);
    exit.assert_success();
    assert!(
        !exit.stderr.iter().any(|l| l.contains("accept: error")),
        "{exit:?}"
    );
    let t = exit.report().totals;
    assert_eq!((t["accepted"], t["backoffs"]), (120, 0), "{exit:?}");
}
