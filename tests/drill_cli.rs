//! The `failover-drill` binary (help, argument errors, a short real drill
//! with JSON and SVG output) and the drill library's analysis on hand-made
//! records (set check, report, rendering). Timings are never asserted.
#![cfg(feature = "drill")]

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use failover_pool::drill::report::{
    DrillReport, ReportInput, TimelineEvent, check_sets, fenced_writes,
};
use failover_pool::drill::run::{Fault, Promotion, Store};
use failover_pool::drill::svg::render_svg;
use failover_pool::drill::workload::{DrillBackend, ReadRecord, WriteRecord};

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
fn help_lists_the_options() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("postgres"));
    let out = run(&["postgres", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for option in [
        "--fault",
        "--promotion",
        "--sync",
        "--duration",
        "--fault-at",
        "--writers",
        "--readers",
        "--backend",
        "--json",
        "--svg",
        "--confirmation",
        "--external-delay",
        "--quiet",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for fault in ["crash", "freeze", "blackhole", "graceful", "flap"] {
        assert!(help.contains(fault), "{fault} missing from:\n{help}");
    }
}

fn assert_clean_failure(args: &[&str], expect: &str) {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
}

#[test]
fn bad_arguments_fail_cleanly() {
    assert_clean_failure(&["postgres", "--fault", "nope"], "nope");
    assert_clean_failure(
        &["postgres", "--fault-at", "30s", "--duration", "10s"],
        "--fault-at (30s) must be less than --duration (10s)",
    );
    assert_clean_failure(&["postgres", "--duration", "ten"], "ten");
    assert_clean_failure(&["postgres", "--writers", "0"], "--writers");
    assert_clean_failure(&["postgres", "--backend", "jdbc"], "jdbc");
    assert_clean_failure(&["mysql"], "mysql");
}

#[test]
fn a_short_crash_drill_writes_json_and_svg() {
    if let Err(e) = failover_pool::drill::process::find_bin_dir(None) {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("drill.json");
    let svg = dir.path().join("drill.svg");
    let out = run(&[
        "postgres",
        "--fault",
        "crash",
        "--duration",
        "6s",
        "--fault-at",
        "2s",
        "--writers",
        "2",
        "--readers",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("Goals"), "{stdout}");
    assert!(stdout.contains("RESULT"), "{stdout}");
    eprintln!("{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in [
        "fault",
        "promotion",
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
        "ops_per_sec_before",
        "ops_per_sec_after",
        "backend",
        "sync",
        "duration_ms",
        "fault_at_ms",
        "events",
        "timeline",
        "goals",
    ] {
        assert!(
            report.get(field).is_some(),
            "{field} missing from {report:#}"
        );
    }
    assert_eq!(report["fault"], "crash");
    assert_eq!(report["promotion"], "automatic");
    assert_eq!(report["backend"], "sqlx");
    assert_eq!(report["sync"], false);
    assert!(report["acked_writes"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["writes_to_fenced_node"], 0, "{report:#}");
    assert_eq!(report["unexpected_rows"], 0, "{report:#}");
    let events = report["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "Fault"), "{events:#?}");
    for e in events {
        assert!(e["t_ms"].is_u64() && e["kind"].is_string() && e["detail"].is_string());
    }
    let timeline = report["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    for key in ["t_ms", "ok_writes", "ok_reads", "errors"] {
        assert!(timeline[0].get(key).is_some(), "{key}");
    }
    for g in report["goals"].as_array().unwrap() {
        assert!(g["name"].is_string() && g["met"].is_boolean(), "{g}");
    }
    // The JSON is the library's report type.
    let typed: DrillReport = serde_json::from_value(report).unwrap();
    assert_eq!(typed.fault, Fault::Crash);

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
}

// ----- the analysis on hand-made records -----------------------------------

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn write(id: i64, start: u64, end: u64, error: Option<&str>) -> WriteRecord {
    WriteRecord {
        id,
        writer: (id % 2) as u32,
        start: ms(start),
        end: ms(end),
        error: error.map(str::to_owned),
    }
}

fn read(start: u64, checked: Option<i64>, result: Result<bool, &str>) -> ReadRecord {
    ReadRecord {
        reader: 0,
        start: ms(start),
        end: ms(start + 1),
        checked_id: checked,
        result: result.map_err(str::to_owned),
    }
}

fn event(t_ms: u64, kind: &str, node: &str, source: &str) -> TimelineEvent {
    TimelineEvent {
        t_ms,
        kind: kind.to_owned(),
        detail: format!("{kind} {node}"),
        node: Some(node.to_owned()),
        source: source.to_owned(),
    }
}

/// A crash at 1000 ms: ids 1-4 acknowledged before it (4 lost), 5 in
/// flight and failed but committed, 6 failed and absent, 7-9 on the new
/// primary after the failover; id 100 appears from nowhere; id 8 also
/// reached the old primary.
fn sample_writes() -> Vec<WriteRecord> {
    vec![
        write(1, 100, 110, None),
        write(2, 300, 310, None),
        write(3, 600, 610, None),
        write(4, 900, 950, None),
        write(5, 990, 1500, Some("io")),
        write(6, 1100, 1200, Some("no_writer")),
        write(7, 1200, 1400, None),
        write(8, 1500, 1510, None),
        write(9, 1600, 1610, None),
    ]
}

#[test]
fn set_check_finds_lost_unexpected_and_maybe_committed() {
    let writes = sample_writes();
    let survivor: BTreeSet<i64> = [1, 2, 3, 5, 7, 8, 9, 100].into_iter().collect();
    let c = check_sets(&writes, &survivor);
    assert_eq!(c.attempted, 9);
    assert_eq!(c.acked, 7);
    assert_eq!(c.lost, vec![4]);
    assert_eq!(c.unexpected, vec![100]);
    assert_eq!(c.maybe_committed_present, 1);

    let old_primary: BTreeSet<i64> = [1, 2, 3, 4, 6].into_iter().collect();
    // Id 6 started after the fault (1000) and is only on the old primary;
    // id 4 is only there too but started before the fault.
    assert_eq!(
        fenced_writes(&writes, ms(1000), Some(ms(1300)), &survivor, &old_primary),
        (1, 0)
    );
    assert_eq!(
        fenced_writes(&writes, ms(1000), Some(ms(1050)), &survivor, &old_primary),
        (1, 1)
    );
}

fn sample_report(sync: bool) -> DrillReport {
    let writes = sample_writes();
    let reads = vec![
        read(50, None, Ok(false)),
        read(500, Some(2), Ok(true)),
        read(700, Some(3), Ok(false)),
        read(1050, Some(4), Err("timeout")),
        read(1700, Some(9), Ok(true)),
    ];
    let survivor: BTreeSet<i64> = [1, 2, 3, 5, 7, 8, 9, 100].into_iter().collect();
    let old: BTreeSet<i64> = [1, 2, 3, 4, 6].into_iter().collect();
    DrillReport::from_records(ReportInput {
        store: Store::Postgres,
        fault: Fault::Crash,
        promotion: Promotion::Automatic,
        backend: DrillBackend::Sqlx,
        sync,
        ack_replicas: None,
        probe_interval: ms(100),
        read_preference: "prefer_replica".into(),
        writers: 2,
        readers: 1,
        duration: ms(2000),
        fault_at: ms(1000),
        fault_done: ms(1000),
        writes: &writes,
        reads: &reads,
        events: vec![
            event(1000, "Fault", "pg0", "drill"),
            event(1020, "NodeDown", "pg0", "pool"),
            event(1020, "FailoverStarted", "pg0", "pool"),
            event(1350, "Promoted", "pg1", "pool"),
            event(1360, "FailoverFinished", "pg1", "pool"),
        ],
        old_primary: "pg0".into(),
        survivor: "pg1".into(),
        survivor_ids: &survivor,
        other_primary_ids: &old,
        fresh_pool: None,
        notes: vec!["a note".into()],
    })
}

#[test]
fn report_figures_from_hand_made_records() {
    let r = sample_report(true);
    assert_eq!(r.detection_ms, Some(20));
    assert_eq!(r.promotion_ms, Some(350));
    // Last ack before the fault at 950; first write started after it acked at 1400.
    assert_eq!(r.write_gap_ms, Some(450));
    assert_eq!(r.first_write_after_fault_ms, Some(1400));
    assert!(r.promoted);
    assert_eq!(r.acked_writes, 7);
    assert_eq!(r.attempted_writes, 9);
    assert_eq!(r.lost_acked_writes, 1);
    assert_eq!(r.lost_ids, vec![4]);
    assert_eq!(r.unexpected_rows, 1);
    assert_eq!(r.maybe_committed_present, 1);
    assert_eq!(r.stale_reads, 1);
    assert_eq!(r.attempted_reads, 5);
    // Errors of operations started after the fault: write 6, read at 1050.
    assert_eq!(r.caller_errors_during_failover, 2);
    assert_eq!(r.caller_write_errors_during_failover, 1);
    assert_eq!(r.caller_read_errors_during_failover, 1);
    assert_eq!(r.errors_by_kind.get("io"), Some(&1));
    assert_eq!(r.errors_by_kind.get("no_writer"), Some(&1));
    assert_eq!(r.errors_by_kind.get("timeout"), Some(&1));
    assert_eq!(r.read_errors_by_kind.get("timeout"), Some(&1));
    assert_eq!(r.writes_to_fenced_node, 1);
    assert_eq!(r.writes_to_fenced_node_after_failover, 0);
    // Buckets of 100 ms by end time: the write acknowledged at 950 is in bucket 9.
    assert_eq!(r.timeline[9].t_ms, 900);
    assert_eq!(r.timeline[9].ok_writes, 1);
    let total_errors: u64 = r.timeline.iter().map(|b| b.errors).sum();
    assert_eq!(total_errors, 3);
    assert!(r.ops_per_sec_before > 0.0);

    let goal = |name: &str| r.goals.iter().find(|g| g.name == name).cloned();
    assert!(goal("write_gap_ms").unwrap().met, "{:?}", r.goals);
    assert!(!goal("caller_errors_during_failover").unwrap().met);
    assert!(!goal("lost_acked_writes").unwrap().met);
    assert!(!goal("writes_to_fenced_node").unwrap().met);
    assert!(!r.all_goals_met());
    // Without synchronous replication, losing a write is not a goal.
    assert!(
        sample_report(false)
            .goals
            .iter()
            .all(|g| g.name != "lost_acked_writes")
    );
}

#[test]
fn report_renders_as_text_and_svg() {
    let r = sample_report(true);
    let text = r.render_text();
    for expected in [
        "fault crash",
        "write_gap_ms",
        "450 ms",
        "lost_acked_writes",
        "✓ write_gap_ms",
        "✗ lost_acked_writes",
        "goals MISSED",
        "no_writer",
        "FailoverStarted",
        "a note",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let svg = render_svg(&r);
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    for expected in [
        "writes/s",
        "reads/s",
        "errors/s",
        "fault (crash)",
        "promoted +350 ms",
    ] {
        assert!(svg.contains(expected), "{expected:?} missing from the SVG");
    }
    // A report survives a JSON round trip.
    let json = serde_json::to_string(&r).unwrap();
    let back: DrillReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.goals, r.goals);
    assert_eq!(back.events, r.events);
    assert_eq!(back.timeline, r.timeline);
    assert_eq!(back.errors_by_kind, r.errors_by_kind);
}
