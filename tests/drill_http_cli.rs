//! `failover-drill http`: help, argument errors, and short real drills
//! (crash, freeze, slow, flap of one of three local backends under an
//! open-loop load) whose JSON reports are checked for the field
//! names and for what must hold whatever the timing: no error for requests
//! the client may repeat, no POST run twice, no POST failed that certainly
//! did not run. Timings are never asserted.
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
fn http_help_lists_the_options() {
    let out = run(&["http", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for option in [
        "--backends",
        "--fault",
        "--duration",
        "--fault-at",
        "--outage",
        "--rate",
        "--try-timeout",
        "--attempts",
        "--hedge",
        "--json",
        "--svg",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for value in ["crash", "freeze", "slow", "flap"] {
        assert!(help.contains(value), "{value} missing from:\n{help}");
    }
}

#[test]
fn bad_http_arguments_fail_cleanly() {
    for (args, expect) in [
        (&["http", "--backends", "1"][..], "backends"),
        (&["http", "--rate", "0"][..], "rate"),
        (&["http", "--fault", "melt"][..], "invalid value 'melt'"),
        (
            &[
                "http",
                "--duration",
                "4s",
                "--fault-at",
                "2s",
                "--outage",
                "2s",
            ][..],
            "must end before the load does",
        ),
    ] {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A short drill with JSON and SVG; checks what must hold.
fn drill(fault: &str) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("http.json");
    let svg = dir.path().join("http.svg");
    let args = [
        "http",
        "--fault",
        fault,
        "--duration",
        "5s",
        "--fault-at",
        "1500ms",
        "--outage",
        "2s",
        "--rate",
        "200",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--quiet",
    ];
    let out = run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).unwrap();
    let chart = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(chart.starts_with("<svg") && chart.contains("polyline"));
    for field in [
        "caller_errors_idempotent",
        "caller_errors_non_idempotent",
        "may_have_executed_errors",
        "requests",
        "retries",
        "retries_refused_by_budget",
        "p99_ms_before",
        "p99_ms_during",
        "eject_ms",
    ] {
        assert!(report.get(field).is_some(), "{field} missing: {report:#}");
    }
    let n = |f: &str| report[f].as_u64().unwrap_or(u64::MAX);
    assert!(n("requests") >= 900, "{stdout}");
    assert_eq!(n("caller_errors_idempotent"), 0, "{stdout}");
    assert_eq!(n("executed_twice_non_idempotent"), 0, "{stdout}");
    assert_eq!(n("non_idempotent_errors_not_executed"), 0, "{stdout}");
    // Every POST error is one that says it may have run.
    assert!(
        n("caller_errors_non_idempotent") <= n("may_have_executed_errors"),
        "{stdout}"
    );
    assert!(stdout.contains("every goal was met"), "{stdout}");
    report
}

#[test]
fn a_crashed_backend_is_taken_out_and_readmitted() {
    let r = drill("crash");
    assert!(r["eject_ms"].is_u64(), "{r:#}");
    assert!(r["readmit_ms"].is_u64(), "{r:#}");
}

#[test]
fn a_frozen_backend_costs_repeatable_requests_nothing() {
    let r = drill("freeze");
    assert!(r["retries"].as_u64().unwrap() > 0, "{r:#}");
}

#[test]
fn a_slow_backend_and_a_flapping_one() {
    drill("slow");
    drill("flap");
}
