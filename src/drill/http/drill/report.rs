//! [`HttpDrillReport`]: what an HTTP drill measured, its goals, the report
//! as text and its chart.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::HttpFault;
use crate::drill::report::Goal;
use crate::drill::svg::{Bars, Line, PanelChart, PanelSpec, render_panels};

/// What an HTTP drill measured. The JSON field names are the ones the
/// figures are known by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpDrillReport {
    /// Always `http`.
    pub store: String,
    /// The fault.
    pub fault: HttpFault,
    /// Backends.
    pub backends: usize,
    /// The failing backend's endpoint id.
    pub target: String,
    /// Requests started per second.
    pub rate: u32,
    /// How long the load ran, ms.
    pub duration_ms: u64,
    /// When the fault started, ms since the load started.
    pub fault_at_ms: u64,
    /// When it ended, ms since the load started.
    pub recovered_at_ms: u64,
    /// The try timeout, ms.
    pub try_timeout_ms: u64,
    /// Tries per request.
    pub max_attempts: u32,
    /// The hedging delay, ms, when hedging was on.
    pub hedge_ms: Option<u64>,

    /// Requests sent.
    pub requests: u64,
    /// Requests answered (below 500).
    pub ok: u64,
    /// Errors (and 5xx answers) of requests the client may repeat: GET,
    /// PUT, keyed POST (goal 0).
    pub caller_errors_idempotent: u64,
    /// Errors (and 5xx answers) of POSTs without a key.
    pub caller_errors_non_idempotent: u64,
    /// Errors that say the request may have run.
    pub may_have_executed_errors: u64,
    /// POSTs without a key that failed although they certainly did not
    /// run (they should have been retried; goal 0).
    pub non_idempotent_errors_not_executed: u64,
    /// POSTs without a key that the backends ran more than once (goal 0).
    pub executed_twice_non_idempotent: u64,
    /// Requests and errors per kind.
    pub by_method: Vec<MethodErrors>,
    /// Retries started.
    pub retries: u64,
    /// Retries and hedges the retry budget refused.
    pub retries_refused_by_budget: u64,
    /// Hedged copies sent.
    pub hedges: u64,
    /// Calls that moved to another endpoint after a failure.
    pub failovers: u64,

    /// p50 of the requests started before the fault, ms.
    pub p50_ms_before: f64,
    /// p99 of the requests started before the fault, ms.
    pub p99_ms_before: f64,
    /// p99 of the requests started during the fault, ms.
    pub p99_ms_during: f64,
    /// p99 of the requests started after it, ms.
    pub p99_ms_after: f64,
    /// From the fault to the client taking the backend out (ejected,
    /// unhealthy or breaker open), ms.
    pub eject_ms: Option<u64>,
    /// From the end of the fault to the first request the backend
    /// answered, ms.
    pub readmit_ms: Option<u64>,

    /// The first errors, as text.
    pub error_samples: Vec<String>,
    /// The load per 250 ms.
    pub timeline: Vec<HttpBucket>,
    /// What happened to the failing backend, in time order.
    pub events: Vec<HttpTimelineEvent>,
    /// The goals and whether they were met.
    pub goals: Vec<Goal>,
    /// Remarks on the run.
    pub notes: Vec<String>,
}

/// Requests and errors of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodErrors {
    /// `GET`, `PUT`, `POST` or `POST+key`.
    pub method: String,
    /// Requests sent.
    pub requests: u64,
    /// Of those, failed (errors and 5xx answers).
    pub errors: u64,
}

/// The load over one 250 ms bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpBucket {
    /// Start of the bucket, ms since the load started.
    pub t_ms: u64,
    /// Requests started in it.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// p99 of their durations, ms.
    pub p99_ms: f64,
    /// Of those, answered by the failing backend.
    pub on_target: u64,
}

/// One event on the drill's timeline.
pub type HttpTimelineEvent = crate::drill::event_log::LoggedEvent;

impl HttpDrillReport {
    /// Computes [`goals`](Self::goals) from the figures.
    pub(super) fn set_goals(&mut self) {
        let zero = Goal::zero;
        self.goals = vec![
            zero("caller_errors_idempotent", self.caller_errors_idempotent),
            zero(
                "non_idempotent_errors_not_executed",
                self.non_idempotent_errors_not_executed,
            ),
            zero(
                "executed_twice_non_idempotent",
                self.executed_twice_non_idempotent,
            ),
        ];
    }

    /// Whether every goal was met.
    pub fn all_goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met)
    }

    /// A readable multi-line report.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "http drill: fault {} on {} of {} backends, {} requests/s open loop",
            self.fault.as_str(),
            self.target,
            self.backends,
            self.rate
        );
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let secs = |v: u64| format!("{:.3} s", v as f64 / 1000.0);
        let rows: Vec<(&str, String)> = vec![
            (
                "duration",
                format!(
                    "{}, fault at {}, over at {}",
                    secs(self.duration_ms),
                    secs(self.fault_at_ms),
                    secs(self.recovered_at_ms)
                ),
            ),
            (
                "client",
                format!(
                    "{} tries of {} ms at most{}",
                    self.max_attempts,
                    self.try_timeout_ms,
                    self.hedge_ms
                        .map_or_else(String::new, |h| format!(", hedging after {h} ms"))
                ),
            ),
            (
                "requests",
                format!("{} ({} answered)", self.requests, self.ok),
            ),
            (
                "caller_errors_idempotent",
                self.caller_errors_idempotent.to_string(),
            ),
            (
                "caller_errors_non_idempotent",
                format!(
                    "{} ({} say they may have run, {} certainly did not)",
                    self.caller_errors_non_idempotent,
                    self.may_have_executed_errors,
                    self.non_idempotent_errors_not_executed
                ),
            ),
            (
                "executed twice",
                format!("{} POSTs without a key", self.executed_twice_non_idempotent),
            ),
            (
                "retries",
                format!(
                    "{} ({} refused by the budget), hedges {}, failovers {}",
                    self.retries, self.retries_refused_by_budget, self.hedges, self.failovers
                ),
            ),
            ("eject_ms", opt(self.eject_ms)),
            ("readmit_ms", opt(self.readmit_ms)),
            (
                "latency",
                format!(
                    "before p50 {:.2} / p99 {:.2} ms; during p99 {:.2} ms; after p99 {:.2} ms",
                    self.p50_ms_before, self.p99_ms_before, self.p99_ms_during, self.p99_ms_after
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &rows {
            let _ = writeln!(s, "  {k:<width$}  {v}");
        }
        let _ = writeln!(s, "\nby method:");
        for m in &self.by_method {
            let _ = writeln!(
                s,
                "  {:<9} {:>7} requests {:>5} errors",
                m.method, m.requests, m.errors
            );
        }
        let _ = writeln!(s, "\ngoals:");
        for g in &self.goals {
            let mark = if g.met { "✓" } else { "✗" };
            let _ = writeln!(
                s,
                "  {mark} {:<36} target {:<6} actual {}",
                g.name, g.target, g.actual
            );
        }
        if !self.error_samples.is_empty() {
            let _ = writeln!(s, "\nerrors (first ones):");
            for e in &self.error_samples {
                let _ = writeln!(s, "  - {e}");
            }
        }
        let _ = writeln!(s, "\nevents:");
        for e in &self.events {
            let _ = writeln!(
                s,
                "  {:>7.3} s  {:<6} {:<20} {}",
                e.t_ms as f64 / 1000.0,
                e.source,
                e.kind,
                e.detail
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }

    /// The drill's chart: p99 latency and errors per bucket above the share
    /// of requests the failing backend answered; the fault shaded.
    pub fn render_svg(&self) -> String {
        const BUCKET_MS: f64 = 250.0;
        let mid = |t: u64| t as f64 + BUCKET_MS / 2.0;
        let latency = (self.timeline.iter().filter(|b| b.requests > 0))
            .map(|b| (mid(b.t_ms), b.p99_ms))
            .collect();
        let max_latency = self.timeline.iter().map(|b| b.p99_ms).fold(0.0, f64::max);
        let errors = (self.timeline.iter().filter(|b| b.errors > 0))
            .map(|b| {
                (
                    b.t_ms as f64,
                    max_latency * b.errors as f64 / b.requests.max(1) as f64,
                )
            })
            .collect();
        let share = (self.timeline.iter().filter(|b| b.requests > 0))
            .map(|b| (mid(b.t_ms), 100.0 * b.on_target as f64 / b.requests as f64))
            .collect();
        let mut markers = vec![
            (self.fault_at_ms as f64, "#d62728", "fault".to_owned()),
            (
                self.recovered_at_ms as f64,
                "#2ca02c",
                "fault over".to_owned(),
            ),
        ];
        if let Some(e) = self.eject_ms {
            markers.push(((self.fault_at_ms + e) as f64, "#9467bd", "taken out".into()));
        }
        if let Some(r) = self.readmit_ms {
            markers.push((
                (self.recovered_at_ms + r) as f64,
                "#1f77b4",
                "back in".into(),
            ));
        }
        let chart = PanelChart {
            title: format!(
                "http drill: {} on {} — idempotent errors {}, POST errors {}, retries {}",
                self.fault.as_str(),
                self.target,
                self.caller_errors_idempotent,
                self.caller_errors_non_idempotent,
                self.retries
            ),
            total_ms: self.timeline.len() as f64 * BUCKET_MS,
            panels: vec![
                PanelSpec {
                    title: "p99 latency, ms".into(),
                    height: 170.0,
                    lines: vec![Line {
                        color: "#1f77b4",
                        label: "p99 latency".into(),
                        points: latency,
                    }],
                    bars: vec![Bars {
                        color: "#d62728",
                        label: "failed share".into(),
                        width_ms: BUCKET_MS,
                        bars: errors,
                    }],
                    windows: Vec::new(),
                },
                PanelSpec {
                    title: format!("% of requests answered by {}", self.target),
                    height: 110.0,
                    lines: vec![Line {
                        color: "#ff7f0e",
                        label: "share on target".into(),
                        points: share,
                    }],
                    bars: Vec::new(),
                    windows: Vec::new(),
                },
            ],
            windows: vec![(
                self.fault_at_ms as f64,
                self.recovered_at_ms as f64,
                "#d62728",
            )],
            markers,
        };
        render_panels(&chart)
    }
}
