//! `failover-drill cache`: help, argument errors, and short real drills
//! (crash with the side restarted empty, freeze, blackhole of the
//! secondary) over two real Redis servers, whose JSON reports are checked
//! for the field names and for the outcomes that must hold whatever
//! the timing: no caller error with policy `Both`, both sides equal after
//! the repair, no deleted value back, no expiry extended, no acknowledged
//! value lost. Timings are never asserted.
#![cfg(feature = "drill")]

use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_failover-drill");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run failover-drill")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cache_help_lists_the_options() {
    let out = run(&["--help"]);
    assert!(text(&out.stdout).contains("cache"), "{out:?}");
    let out = run(&["cache", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for option in [
        "--fault",
        "--side",
        "--duration",
        "--fault-at",
        "--outage",
        "--writers",
        "--readers",
        "--keys",
        "--write-timeout",
        "--read-soft-timeout",
        "--json",
        "--svg",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for value in ["crash", "freeze", "blackhole", "secondary"] {
        assert!(help.contains(value), "{value} missing from:\n{help}");
    }
}

#[test]
fn bad_cache_arguments_fail_cleanly() {
    for (args, expect) in [
        (
            &["cache", "--fault", "graceful"][..],
            "invalid value 'graceful'",
        ),
        (
            &[
                "cache",
                "--duration",
                "5s",
                "--fault-at",
                "3s",
                "--outage",
                "3s",
            ][..],
            "must end before the load does",
        ),
        (&["cache", "--keys", "3", "--writers", "4"][..], "keys"),
    ] {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Runs a short cache drill with a JSON report and an SVG chart, and
/// checks what must hold whatever the timing.
fn drill(fault: &str, side: &str) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("cache.json");
    let svg = dir.path().join("cache.svg");
    let (json_s, svg_s) = (json.to_str().unwrap(), svg.to_str().unwrap());
    let args = [
        "cache",
        "--fault",
        fault,
        "--side",
        side,
        "--duration",
        "6s",
        "--fault-at",
        "1500ms",
        "--outage",
        "2s",
        "--keys",
        "500",
        "--writers",
        "4",
        "--readers",
        "2",
        "--json",
        json_s,
        "--svg",
        svg_s,
        "--quiet",
    ];
    let out = run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("cache drill: fault"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).unwrap();
    let chart = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(
        chart.starts_with("<svg") && chart.contains("polyline"),
        "{chart}"
    );

    for field in [
        "divergent_keys_after_repair",
        "resurrected_deletes",
        "ttls_extended",
        "caller_errors",
        "acked_writes",
        "repair_ms",
        "p99_added_latency_ms",
    ] {
        assert!(report.get(field).is_some(), "{field} missing: {report:#}");
    }
    let n = |field: &str| report[field].as_u64().unwrap_or(u64::MAX);
    assert!(n("acked_writes") > 0, "{stdout}");
    assert!(
        n("queued_writes") > 0,
        "the outage queued nothing: {stdout}"
    );
    for zero in [
        "caller_errors",
        "divergent_keys_after_repair",
        "resurrected_deletes",
        "ttls_extended",
        "lost_acked_writes",
    ] {
        assert_eq!(n(zero), 0, "{zero}: {stdout}");
    }
    assert!(report["repair_ms"].is_u64(), "not repaired: {stdout}");
    assert_eq!(n("keys_checked"), 500, "{stdout}");
    assert!(stdout.contains("every goal was met"), "{stdout}");
    report
}

#[test]
fn a_crashed_primary_side_restarted_empty_is_reconciled() {
    let report = drill("crash", "primary");
    // The side came back empty: only a key scan could restore it.
    assert!(
        report["reconciliations"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    assert!(
        report["reconciled_keys"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

#[test]
fn a_frozen_primary_side_is_repaired_from_its_queue() {
    let report = drill("freeze", "primary");
    assert!(report["replayed"].as_u64().unwrap() > 0, "{report:#}");
}

#[test]
fn a_partitioned_secondary_side_is_repaired_from_its_queue() {
    let report = drill("blackhole", "secondary");
    assert!(report["replayed"].as_u64().unwrap() > 0, "{report:#}");
}
