//! [`render_cache_svg`]: the chart of a [`CacheDrillReport`], drawn with
//! [`render_panels`]: the callers' p99 latency per 250 ms bucket (the
//! share of failed calls as red bars) above the failed side's backlog
//! (keys queued for it; the time the cache did not use it shaded), the
//! fault window shaded and markers for the fault, the side's return and
//! the end of the repair.

use super::report::CacheDrillReport;
use crate::drill::svg::{Bars, Line, PanelChart, PanelSpec, render_panels};

const LATENCY: &str = "#1f77b4";
const BACKLOG: &str = "#ff7f0e";
const ERRORS: &str = "#d62728";
const DOWN: &str = "#888888";
const RECOVERED: &str = "#2ca02c";
const BUCKET_MS: f64 = 250.0;

/// The chart of a cache drill as a standalone SVG document.
pub fn render_cache_svg(r: &CacheDrillReport) -> String {
    let mid = |t: u64| t as f64 + BUCKET_MS / 2.0;
    let latency = (r.timeline.iter().filter(|b| b.calls > 0))
        .map(|b| (mid(b.t_ms), b.p99_ms))
        .collect();
    let max_latency = r.timeline.iter().map(|b| b.p99_ms).fold(0.0, f64::max);
    // Failed calls as a share of the panel's height.
    let errors = (r.timeline.iter().filter(|b| b.errors > 0))
        .map(|b| {
            (
                b.t_ms as f64,
                max_latency * b.errors as f64 / b.calls.max(1) as f64,
            )
        })
        .collect();
    let backlog = (r.timeline.iter())
        .map(|b| (mid(b.t_ms), b.backlog as f64))
        .collect();
    let down = (r.timeline.iter().filter(|b| !b.side_up))
        .map(|b| (b.t_ms as f64, b.t_ms as f64 + BUCKET_MS, DOWN))
        .collect();
    let mut markers = vec![
        (r.fault_at_ms as f64, ERRORS, "fault".to_owned()),
        (r.recovered_at_ms as f64, RECOVERED, "side back".to_owned()),
    ];
    if let Some(repair) = r.repair_ms {
        markers.push((
            (r.recovered_at_ms + repair) as f64,
            LATENCY,
            "in sync".into(),
        ));
    }
    let chart = PanelChart {
        title: format!(
            "cache drill: {} on the {} side — p99 added {:.1} ms, caller errors {}, repair {}",
            r.fault.as_str(),
            r.side.as_str(),
            r.p99_added_latency_ms,
            r.caller_errors,
            r.repair_ms
                .map_or_else(|| "not in sync".into(), |v| format!("{v} ms"))
        ),
        total_ms: r.timeline.len() as f64 * BUCKET_MS,
        panels: vec![
            PanelSpec {
                title: "p99 latency, ms".into(),
                height: 170.0,
                lines: vec![Line {
                    color: LATENCY,
                    label: "p99 latency".into(),
                    points: latency,
                }],
                bars: vec![Bars {
                    color: ERRORS,
                    label: "failed share".into(),
                    width_ms: BUCKET_MS,
                    bars: errors,
                }],
                windows: Vec::new(),
            },
            PanelSpec {
                title: "backlog, keys queued for the side".into(),
                height: 120.0,
                lines: vec![Line {
                    color: BACKLOG,
                    label: "backlog".into(),
                    points: backlog,
                }],
                bars: Vec::new(),
                windows: down,
            },
        ],
        windows: vec![(r.fault_at_ms as f64, r.recovered_at_ms as f64, ERRORS)],
        markers,
    };
    render_panels(&chart)
}
