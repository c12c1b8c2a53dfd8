//! [`render_svg`]: a hand-written SVG chart (900×360, no dependency) of a
//! [`DrillReport`]: successful writes/s and reads/s per 100 ms bucket as
//! lines, errors/s as bars (right-hand axis), the window without writes
//! shaded, and vertical markers for the fault, its detection, the
//! promotion and the first write acknowledged after the fault.

use std::fmt::Write as _;

use super::report::{BUCKET, DrillReport};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 66.0;
const RIGHT: f64 = WIDTH - 66.0;
const TOP: f64 = 62.0;
const BOTTOM: f64 = 304.0;
const WRITES: &str = "#1f77b4";
const READS: &str = "#2ca02c";
const ERRORS: &str = "#d62728";
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// Renders the report's timeline as a standalone SVG document.
pub fn render_svg(report: &DrillReport) -> String {
    let mut s = String::new();
    let bucket_ms = BUCKET.as_millis() as f64;
    let per_sec = 1000.0 / bucket_ms;
    let total_ms = report
        .timeline
        .last()
        .map_or(report.duration_ms as f64, |b| b.t_ms as f64 + bucket_ms)
        .max(report.duration_ms as f64)
        .max(1.0);
    let x_of = |t_ms: f64| LEFT + t_ms / total_ms * (RIGHT - LEFT);

    let max_ops = report
        .timeline
        .iter()
        .map(|b| b.ok_writes.max(b.ok_reads) as f64 * per_sec)
        .fold(0.0, f64::max);
    let max_err = report
        .timeline
        .iter()
        .map(|b| b.errors as f64 * per_sec)
        .fold(0.0, f64::max);
    let (ops_top, ops_step) = nice_axis(max_ops);
    let (err_top, err_step) = nice_axis(max_err);
    let y_ops = |v: f64| BOTTOM - v / ops_top * (BOTTOM - TOP);
    let y_err = |v: f64| BOTTOM - v / err_top * (BOTTOM - TOP);

    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" {FONT} font-size=\"11\">"
    );
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
    );
    // Title and legend.
    let title = format!(
        "failover drill: {} / {} promotion / {} / {}",
        report.fault.as_str(),
        report.promotion.as_str(),
        report.backend.as_str(),
        if report.sync { "sync" } else { "async" }
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        esc(&title)
    );
    let summary = format!(
        "write gap {} / detection {} / promotion {} / lost {} / caller errors {}",
        opt_ms(report.write_gap_ms),
        opt_ms(report.detection_ms),
        opt_ms(report.promotion_ms),
        report.lost_acked_writes,
        report.caller_errors_during_failover
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"40\" fill=\"#444\">{}</text>",
        esc(&summary)
    );
    legend(&mut s);

    // Unavailability window: fault to first write after it.
    let fault_x = x_of(report.fault_at_ms as f64);
    if let Some(first) = report.first_write_after_fault_ms {
        let x2 = x_of(first as f64);
        let _ = writeln!(
            s,
            "<rect x=\"{fault_x:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.08\"/>",
            (x2 - fault_x).max(1.0),
            BOTTOM - TOP
        );
    }

    // Grid and axes.
    let mut v = 0.0;
    while v <= ops_top + ops_step * 0.01 {
        let y = y_ops(v);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += ops_step;
    }
    let mut v = 0.0;
    while v <= err_top + err_step * 0.01 {
        let y = y_err(v);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{ERRORS}\">{}</text>",
            RIGHT + 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += err_step;
    }
    let step_ms = time_step(total_ms);
    let mut t = 0.0;
    while t <= total_ms + 1.0 {
        let x = x_of(t);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{BOTTOM}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            BOTTOM + 5.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            BOTTOM + 18.0,
            fmt_num(t / 1000.0)
        );
        t += step_ms;
    }
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>",
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">time since start (s)</text>",
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 40.0
    );
    let mid = (TOP + BOTTOM) / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{mid:.1}\" text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 16 {mid:.1})\">successful ops/s</text>"
    );
    let rx = WIDTH - 14.0;
    let _ = writeln!(
        s,
        "<text x=\"{rx:.1}\" y=\"{mid:.1}\" text-anchor=\"middle\" fill=\"{ERRORS}\" transform=\"rotate(90 {rx:.1} {mid:.1})\">errors/s (bars)</text>"
    );

    // Error bars.
    let bar_w = (x_of(bucket_ms) - x_of(0.0)).max(1.0);
    for b in report.timeline.iter().filter(|b| b.errors > 0) {
        let y = y_err(b.errors as f64 * per_sec);
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.65\"/>",
            x_of(b.t_ms as f64),
            (bar_w - 0.4).max(0.6),
            BOTTOM - y
        );
    }
    // Throughput lines.
    for (color, pick) in [
        (READS, (|b: &super::report::TimelineBucket| b.ok_reads) as fn(&_) -> u64),
        (WRITES, |b| b.ok_writes),
    ] {
        // The last, partial bucket (operations ending after the stop) would
        // look like a collapse.
        let points: Vec<String> = report
            .timeline
            .iter()
            .filter(|b| b.t_ms as f64 + bucket_ms <= report.duration_ms as f64)
            .map(|b| {
                format!(
                    "{:.1},{:.1}",
                    x_of(b.t_ms as f64 + bucket_ms / 2.0),
                    y_ops(pick(b) as f64 * per_sec)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" stroke-linejoin=\"round\" points=\"{}\"/>",
            points.join(" ")
        );
    }

    // Markers.
    let fault = report.fault_at_ms;
    let mut markers: Vec<(u64, String, &str)> = vec![(
        fault,
        format!("fault ({}) {:.2} s", report.fault.as_str(), fault as f64 / 1000.0),
        "#000000",
    )];
    if let Some(d) = report.detection_ms {
        markers.push((fault + d, format!("detected +{d} ms"), "#ff7f0e"));
    }
    if let Some(p) = report.promotion_ms {
        markers.push((fault + p, format!("promoted +{p} ms"), "#9467bd"));
    }
    if let Some(first) = report.first_write_after_fault_ms {
        markers.push((
            first,
            format!("first write +{} ms", first.saturating_sub(fault)),
            "#17becf",
        ));
    }
    for (row, (t, label, color)) in markers.iter().enumerate() {
        let x = x_of(*t as f64);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\" stroke=\"{color}\" stroke-width=\"1.3\" stroke-dasharray=\"5,3\"/>"
        );
        let y = TOP + 14.0 + 15.0 * row as f64;
        let (tx, anchor) = if x > RIGHT - 150.0 {
            (x - 5.0, "end")
        } else {
            (x + 5.0, "start")
        };
        let _ = writeln!(
            s,
            "<text x=\"{tx:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"{color}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\" font-weight=\"bold\">{}</text>",
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The legend, top right.
fn legend(s: &mut String) {
    let items = [
        (WRITES, "writes/s", false),
        (READS, "reads/s", false),
        (ERRORS, "errors/s", true),
    ];
    let mut x = RIGHT - 250.0;
    let y = 36.0;
    for (color, label, bar) in items {
        if bar {
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"18\" height=\"9\" fill=\"{color}\" fill-opacity=\"0.65\"/>",
                y - 8.0
            );
        } else {
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>",
                y - 4.0,
                x + 18.0,
                y - 4.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"#333\">{label}</text>",
            x + 23.0
        );
        x += 85.0;
    }
}

/// A rounded axis maximum and tick step for values up to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (10.0, 5.0);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let step = step.max(1.0);
    ((max / step).ceil().max(1.0) * step, step)
}

/// A time-axis step (ms) giving at most about 12 ticks.
fn time_step(total_ms: f64) -> f64 {
    [
        500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 15_000.0, 30_000.0, 60_000.0, 120_000.0,
        300_000.0, 600_000.0,
    ]
    .into_iter()
    .find(|&s| total_ms / s <= 12.0)
    .unwrap_or(600_000.0)
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        let k = v / 1000.0;
        if k.fract().abs() < 1e-9 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(0.0), (10.0, 5.0));
        assert_eq!(nice_axis(4300.0), (5000.0, 1000.0));
        assert_eq!(nice_axis(7.0), (8.0, 2.0));
        assert_eq!(time_step(20_000.0), 2000.0);
        assert_eq!(time_step(6_000.0), 1000.0);
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(fmt_num(12_000.0), "12k");
        assert_eq!(fmt_num(2.5), "2.5");
    }
}
