//! [`DrillReport::render_text`]: the report as aligned plain text, one
//! function per section (setup, results, goals, errors, events, notes).

use std::fmt::Write as _;

use super::DrillReport;
use crate::drill::scenario::Promotion;

impl DrillReport {
    /// A readable multi-line report: settings, figures, goals (✓/✗),
    /// errors by kind and the event timeline.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        write_setup(&mut s, self);
        write_results(&mut s, self);
        write_goals(&mut s, self);
        write_errors(&mut s, self);
        write_events(&mut s, self);
        write_notes(&mut s, self);
        s
    }
}

/// The heading line and the drill's settings.
fn write_setup(s: &mut String, r: &DrillReport) {
    let _ = writeln!(
        s,
        "failover drill: {}, fault {}, {} promotion, {}, {}",
        r.store.as_str(),
        r.fault.as_str(),
        r.promotion.as_str(),
        r.backend.as_str(),
        r.replication_label()
    );
    let cluster = match &r.cluster_detail {
        Some(detail) => format!("{} ({detail})", r.cluster.as_str()),
        None => format!("{} processes", r.cluster.as_str()),
    };
    let setup: Vec<(&str, String)> = vec![
        ("cluster", cluster),
        (
            "workload",
            format!(
                "{} writers, {} readers ({})",
                r.writers, r.readers, r.read_preference
            ),
        ),
        (
            "duration",
            format!(
                "{:.1} s, fault at {:.3} s",
                r.duration_ms as f64 / 1000.0,
                r.fault_at_ms as f64 / 1000.0
            ),
        ),
        (
            "primary",
            if r.promoted {
                format!("{} -> {} (promoted)", r.old_primary, r.survivor)
            } else {
                format!("{} (no promotion)", r.survivor)
            },
        ),
    ];
    section(s, "", &setup);
}

/// The measured figures, and the lost ids if any.
fn write_results(s: &mut String, r: &DrillReport) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    let figures: Vec<(&str, String)> = vec![
        ("detection_ms", opt(r.detection_ms)),
        ("promotion_ms", opt(r.promotion_ms)),
        ("write_gap_ms", opt(r.write_gap_ms)),
        (
            "acked_writes",
            format!("{} of {} attempted", r.acked_writes, r.attempted_writes),
        ),
        ("lost_acked_writes", r.lost_acked_writes.to_string()),
        ("unexpected_rows", r.unexpected_rows.to_string()),
        (
            "maybe_committed_present",
            r.maybe_committed_present.to_string(),
        ),
        (
            "caller_errors_during_failover",
            format!(
                "{} ({} writes, {} reads)",
                r.caller_errors_during_failover,
                r.caller_write_errors_during_failover,
                r.caller_read_errors_during_failover
            ),
        ),
        (
            "stale_reads",
            format!("{} of {} reads", r.stale_reads, r.attempted_reads),
        ),
        (
            "writes_to_fenced_node",
            format!(
                "{} ({} after the writer switch)",
                r.writes_to_fenced_node, r.writes_to_fenced_node_after_failover
            ),
        ),
        ("ops_per_sec_before", format!("{:.0}", r.ops_per_sec_before)),
        ("ops_per_sec_after", format!("{:.0}", r.ops_per_sec_after)),
    ];
    let mut figures = figures;
    figures.extend(optional_figures(r));
    section(s, "Results", &figures);
    if !r.lost_ids.is_empty() {
        let _ = writeln!(
            s,
            "  lost ids (first {}): {:?}",
            r.lost_ids.len(),
            r.lost_ids
        );
    }
}

/// The figures only some drills have: Sentinel's switch, the fresh pool.
fn optional_figures(r: &DrillReport) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if r.promotion == Promotion::Sentinel {
        let switch = r
            .sentinel_switch_ms
            .map_or_else(|| "no switch seen".to_owned(), |t| format!("{t} ms"));
        rows.push(("sentinel_switch_ms", switch));
        let after = r
            .pool_after_sentinel_ms
            .map_or_else(|| "-".to_owned(), |t| format!("{t:+} ms"));
        rows.push(("pool_after_sentinel_ms", after));
    }
    if let Some(f) = &r.fresh_pool {
        rows.push((
            "fresh_pool",
            format!(
                "started at {:.3} s, writer {}: {} of {} writes acked, {} on the survivor, {} on the old primary",
                f.started_ms as f64 / 1000.0,
                f.writer.as_deref().unwrap_or("none"),
                f.acked,
                f.attempted,
                f.acked_on_survivor,
                f.on_other_primary
            ),
        ));
    }
    rows
}

/// Every goal with ✓ or ✗, then the verdict.
fn write_goals(s: &mut String, r: &DrillReport) {
    let _ = writeln!(s, "\nGoals");
    let name_w = r.goals.iter().map(|g| g.name.len()).max().unwrap_or(0);
    let target_w = r
        .goals
        .iter()
        .map(|g| g.target.chars().count())
        .max()
        .unwrap_or(0);
    for g in &r.goals {
        let _ = writeln!(
            s,
            "  {} {:<name_w$}  target {:<target_w$}  actual {}",
            if g.met { "✓" } else { "✗" },
            g.name,
            g.target,
            g.actual,
        );
    }
    if r.goals.is_empty() {
        let _ = writeln!(s, "  (none for this fault)");
    }
    let missed = r.missed_goals().count();
    let _ = writeln!(
        s,
        "  => {}",
        if missed == 0 {
            "all goals met".to_owned()
        } else {
            format!("{missed} of {} goals MISSED", r.goals.len())
        }
    );
}

/// Failed operations by error kind: total, writes, reads.
fn write_errors(s: &mut String, r: &DrillReport) {
    let _ = writeln!(s, "\nErrors by kind (all operations)");
    if r.errors_by_kind.is_empty() {
        let _ = writeln!(s, "  none");
        return;
    }
    let width = r.errors_by_kind.keys().map(String::len).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "  {:<width$}  {:>7}  {:>7}  {:>7}",
        "kind", "total", "writes", "reads"
    );
    for (kind, total) in &r.errors_by_kind {
        let w = r.write_errors_by_kind.get(kind).copied().unwrap_or(0);
        let rd = r.read_errors_by_kind.get(kind).copied().unwrap_or(0);
        let _ = writeln!(s, "  {kind:<width$}  {total:>7}  {w:>7}  {rd:>7}");
    }
}

/// The timeline: time since the start and relative to the fault.
fn write_events(s: &mut String, r: &DrillReport) {
    let _ = writeln!(s, "\nEvents (time since start, +/- relative to the fault)");
    let kind_w = r.events.iter().map(|e| e.kind.len()).max().unwrap_or(0);
    for e in &r.events {
        let rel = e.t_ms as i64 - r.fault_at_ms as i64;
        let _ = writeln!(
            s,
            "  {:>8.3} s  {:>+7} ms  {:<kind_w$}  {}",
            e.t_ms as f64 / 1000.0,
            rel,
            e.kind,
            e.detail
        );
    }
}

/// The remarks, if any.
fn write_notes(s: &mut String, r: &DrillReport) {
    if r.notes.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nNotes");
    for n in &r.notes {
        let _ = writeln!(s, "  - {n}");
    }
}

/// Appends an aligned key/value section.
fn section(s: &mut String, title: &str, rows: &[(&str, String)]) {
    if !title.is_empty() {
        let _ = writeln!(s, "\n{title}");
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<width$}  {v}");
    }
}
