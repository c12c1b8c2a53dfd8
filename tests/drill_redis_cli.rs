//! `failover-drill redis`: help, argument errors, and short real drills
//! (crash, restart of the old master, Sentinel promotion, deadpool-redis)
//! whose JSON reports are checked for their fields and for the outcomes
//! that must hold whatever the timing: writes acknowledged, a replica
//! promoted, no write on a fenced or restarted old master. Timings are
//! never asserted.
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
fn redis_help_lists_the_options() {
    let out = run(&["--help"]);
    assert!(text(&out.stdout).contains("redis"), "{out:?}");
    let out = run(&["redis", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for option in [
        "--fault",
        "--promotion",
        "--backend",
        "--replicas",
        "--ack",
        "--duration",
        "--fault-at",
        "--writers",
        "--readers",
        "--read-preference",
        "--confirmation",
        "--external-delay",
        "--probe-interval",
        "--probe-timeout",
        "--json",
        "--svg",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for value in [
        "restart-old",
        "sentinel",
        "deadpool-redis",
        "flap",
        "blackhole",
    ] {
        assert!(help.contains(value), "{value} missing from:\n{help}");
    }
    // Postgres offers neither Redis's clients nor Sentinel.
    let pg = text(&run(&["postgres", "--help"]).stdout);
    assert!(
        !pg.contains("deadpool-redis") && !pg.contains("sentinel"),
        "{pg}"
    );
}

fn assert_clean_failure(args: &[&str], expect: &str) {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
}

#[test]
fn bad_redis_arguments_fail_cleanly() {
    assert_clean_failure(&["redis", "--backend", "sqlx"], "sqlx");
    assert_clean_failure(&["redis", "--sync"], "--sync");
    assert_clean_failure(
        &["redis", "--ack", "2", "--replicas", "1"],
        "--ack (2) cannot exceed --replicas (1)",
    );
    assert_clean_failure(
        &["redis", "--ack", "1", "--backend", "deadpool-redis"],
        "--ack needs --backend redis",
    );
    assert_clean_failure(&["redis", "--replicas", "0"], "--replicas");
    assert_clean_failure(&["postgres", "--promotion", "sentinel"], "sentinel");
}

/// Runs a short Redis drill (`--duration <duration> --fault-at 1500ms`,
/// 4 writers and 4 readers, plus `extra`) and returns its JSON report, or
/// `None` when `redis-server` is not installed.
fn drill(duration: &str, extra: &[&str]) -> Option<Value> {
    if let Err(e) = failover_pool::drill::process::find_redis_server(None) {
        eprintln!("skipped: {e}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("drill.json");
    let svg = dir.path().join("drill.svg");
    let mut args = vec![
        "redis",
        "--duration",
        duration,
        "--fault-at",
        "1500ms",
        "--writers",
        "4",
        "--readers",
        "4",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("failover drill: redis"), "{stdout}");
    eprintln!("{stdout}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in [
        "store",
        "fault",
        "promotion",
        "backend",
        "ack_replicas",
        "detection_ms",
        "promotion_ms",
        "write_gap_ms",
        "acked_writes",
        "lost_acked_writes",
        "unexpected_rows",
        "errors_by_kind",
        "caller_errors_during_failover",
        "stale_reads",
        "writes_to_fenced_node",
        "events",
        "timeline",
        "goals",
        "notes",
    ] {
        assert!(
            report.get(field).is_some(),
            "{field} missing from {report:#}"
        );
    }
    assert_eq!(report["store"], "redis");
    assert!(report["acked_writes"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["writes_to_fenced_node"], 0, "{report:#}");
    assert_eq!(report["unexpected_rows"], 0, "{report:#}");
    Some(report)
}

/// A replica became the writer.
fn assert_promoted(report: &Value) {
    assert_eq!(report["old_primary"], "redis0");
    assert_eq!(report["promoted"], true, "{report:#}");
    assert_ne!(report["survivor"], "redis0", "{report:#}");
}

#[test]
fn crash_with_acknowledged_writes_loses_none() {
    let Some(r) = drill("4s", &["--fault", "crash", "--replicas", "2", "--ack", "1"]) else {
        return;
    };
    assert_promoted(&r);
    assert_eq!(r["ack_replicas"], 1);
    assert_eq!(r["lost_acked_writes"], 0, "{r:#}");
}

#[test]
fn a_restarted_old_master_gets_no_writes_even_from_a_fresh_pool() {
    let Some(r) = drill("4s", &["--fault", "restart-old"]) else {
        return;
    };
    assert_promoted(&r);
    let events = r["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "Restarted"),
        "{events:#?}"
    );
    let fresh = &r["fresh_pool"];
    assert!(fresh["acked"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(fresh["on_other_primary"], 0, "{r:#}");
    assert_eq!(fresh["acked_on_survivor"], fresh["acked"], "{r:#}");
}

#[test]
fn sentinel_promotion_is_followed() {
    let Some(r) = drill("6s", &["--promotion", "sentinel", "--op-timeout", "5s"]) else {
        return;
    };
    assert_promoted(&r);
    assert_eq!(r["promotion"], "sentinel");
    assert!(r["sentinel_switch_ms"].is_u64(), "{r:#}");
    let events = r["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "SentinelSwitched"),
        "{events:#?}"
    );
}

#[test]
fn deadpool_redis_fails_over() {
    let Some(r) = drill("4s", &["--backend", "deadpool-redis"]) else {
        return;
    };
    assert_promoted(&r);
    assert_eq!(r["backend"], "deadpool_redis");
}
