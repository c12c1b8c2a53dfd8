//! [`render_cache_svg`]: a hand-written SVG chart (900×420, no dependency)
//! of a [`CacheDrillReport`]: the callers' p99 latency per 250 ms bucket
//! (failed calls as red bars) above the failed side's backlog (keys queued
//! for it, the time the cache did not use it shaded), with the fault
//! window shaded and markers for the fault, the side's return and the end
//! of the repair.

use std::fmt::Write as _;

use super::report::CacheDrillReport;
use crate::drill::svg::{esc, fmt_tick, nice_axis, time_step};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 860.0;
/// Latency panel: top and bottom.
const LAT: (f64, f64) = (50.0, 220.0);
/// Backlog panel: top and bottom.
const QUEUE: (f64, f64) = (260.0, 380.0);
const LATENCY: &str = "#1f77b4";
const BACKLOG: &str = "#ff7f0e";
const ERRORS: &str = "#d62728";
const RECOVERED: &str = "#2ca02c";
const BUCKET_MS: f64 = 250.0;

/// The chart of a cache drill as a standalone SVG document.
pub fn render_cache_svg(r: &CacheDrillReport) -> String {
    let total = (r.timeline.len() as f64 * BUCKET_MS).max(1000.0);
    let x = |t: f64| LEFT + (RIGHT - LEFT) * (t / total).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let title = format!(
        "cache drill: {} on the {} side — p99 added {:.1} ms, caller errors {}, repair {}",
        r.fault.as_str(),
        r.side.as_str(),
        r.p99_added_latency_ms,
        r.caller_errors,
        r.repair_ms
            .map_or_else(|| "not in sync".into(), |v| format!("{v} ms"))
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"13\" fill=\"#111\">{}</text>",
        esc(&title)
    );

    // The fault window and the side's down time.
    let (f0, f1) = (x(r.fault_at_ms as f64), x(r.recovered_at_ms as f64));
    for (top, bottom) in [LAT, QUEUE] {
        let _ = writeln!(
            s,
            "<rect x=\"{f0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.07\"/>",
            f1 - f0,
            bottom - top
        );
    }
    for b in r.timeline.iter().filter(|b| !b.side_up) {
        let x0 = x(b.t_ms as f64);
        let _ = writeln!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#888\" fill-opacity=\"0.15\"/>",
            QUEUE.0,
            x(b.t_ms as f64 + BUCKET_MS) - x0,
            QUEUE.1 - QUEUE.0
        );
    }

    let max_lat = r.timeline.iter().map(|b| b.p99_ms).fold(0.0, f64::max);
    let max_backlog = r
        .timeline
        .iter()
        .map(|b| b.backlog as f64)
        .fold(0.0, f64::max);
    let lat_axis = axis(&mut s, LAT, max_lat, "p99 latency, ms");
    let queue_axis = axis(&mut s, QUEUE, max_backlog, "backlog, keys");
    let y = |(top, bottom): (f64, f64), top_value: f64, v: f64| {
        bottom - (bottom - top) * (v / top_value).clamp(0.0, 1.0)
    };

    // Failed calls: a red bar per bucket, its height the share that failed.
    for b in r.timeline.iter().filter(|b| b.errors > 0) {
        let share = b.errors as f64 / b.calls.max(1) as f64;
        let top = LAT.1 - (LAT.1 - LAT.0) * share;
        let x0 = x(b.t_ms as f64);
        let _ = writeln!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.6\"/>",
            (x(b.t_ms as f64 + BUCKET_MS) - x0 - 0.5).max(0.6),
            LAT.1 - top
        );
    }
    let line = |s: &mut String, color: &str, points: Vec<String>| {
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"{}\"/>",
            points.join(" ")
        );
    };
    let mid = |t: u64| x(t as f64 + BUCKET_MS / 2.0);
    let lat_points = (r.timeline.iter().filter(|b| b.calls > 0))
        .map(|b| format!("{:.1},{:.1}", mid(b.t_ms), y(LAT, lat_axis, b.p99_ms)))
        .collect();
    line(&mut s, LATENCY, lat_points);
    let queue_points = (r.timeline.iter())
        .map(|b| {
            format!(
                "{:.1},{:.1}",
                mid(b.t_ms),
                y(QUEUE, queue_axis, b.backlog as f64)
            )
        })
        .collect();
    line(&mut s, BACKLOG, queue_points);

    // Markers.
    let mut markers = vec![
        (r.fault_at_ms, ERRORS, "fault"),
        (r.recovered_at_ms, RECOVERED, "side back"),
    ];
    if let Some(repair) = r.repair_ms {
        markers.push((r.recovered_at_ms + repair, LATENCY, "in sync"));
    }
    for (i, (t, color, label)) in markers.into_iter().enumerate() {
        let mx = x(t as f64);
        let _ = writeln!(
            s,
            "<line x1=\"{mx:.1}\" y1=\"{}\" x2=\"{mx:.1}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"1.3\" stroke-dasharray=\"5,3\"/>",
            LAT.0, QUEUE.1
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>",
            mx + 3.0,
            LAT.0 + 12.0 + 12.0 * i as f64
        );
    }

    // Time axis.
    let step = time_step(total);
    let mut t = 0.0;
    while t <= total + 1.0 {
        let tx = x(t);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#333\"/>",
            QUEUE.1,
            QUEUE.1 + 5.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}s</text>",
            QUEUE.1 + 18.0,
            fmt_tick(t / 1000.0, 0.0)
        );
        t += step;
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// A panel's frame, its y axis for values up to `max` and its title; the
/// axis's top value.
fn axis(s: &mut String, (top, bottom): (f64, f64), max: f64, title: &str) -> f64 {
    let (axis_top, step) = nice_axis(max);
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#bbb\"/>",
        RIGHT - LEFT,
        bottom - top
    );
    let mut v = 0.0;
    while v <= axis_top + step / 2.0 {
        let y = bottom - (bottom - top) * v / axis_top;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT - 5.0,
            y + 4.0,
            fmt_tick(v, axis_top)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text>",
        LEFT,
        top - 5.0,
        esc(title)
    );
    axis_top
}
