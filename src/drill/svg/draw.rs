//! Drawing primitives of the drill chart: the data of a panel (error bars,
//! throughput lines), markers, ticks, the legend, round axes and escaping.

use std::fmt::Write as _;

use super::{BOTTOM, ERRORS, OVERVIEW, Panel, Pick, READS, Scales, TOP, WRITES};
use crate::drill::report::TimelineBucket;

/// Error bars and throughput lines of one panel, clipped to it.
pub(super) fn draw_data(
    s: &mut String,
    panel: Panel,
    scales: Scales,
    whole: &[&TimelineBucket],
    all: &[TimelineBucket],
    per_sec: f64,
    bucket_ms: f64,
) {
    let in_panel = |b: &TimelineBucket| {
        b.t_ms as f64 >= panel.from_ms && b.t_ms as f64 + bucket_ms <= panel.to_ms + 0.5
    };
    let bar_w = (panel.x(panel.from_ms + bucket_ms) - panel.x0).max(0.8);
    for b in all.iter().filter(|b| b.errors > 0 && in_panel(b)) {
        let y = scales.y_err(b.errors as f64 * per_sec);
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.6\"/>",
            panel.x(b.t_ms as f64),
            (bar_w - 0.4).max(0.6),
            BOTTOM - y
        );
    }
    let series: [(&str, Pick); 2] = [(READS, |b| b.ok_reads), (WRITES, |b| b.ok_writes)];
    for (color, pick) in series {
        let points: Vec<String> = whole
            .iter()
            .filter(|b| in_panel(b))
            .map(|b| {
                format!(
                    "{:.1},{:.1}",
                    panel.x(b.t_ms as f64 + bucket_ms / 2.0),
                    scales.y_ops(pick(b) as f64 * per_sec)
                )
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"{}\"/>",
            points.join(" ")
        );
    }
}

pub(super) fn marker_line(s: &mut String, panel: Panel, t_ms: f64, color: &str) {
    let x = panel.x(t_ms);
    let _ = writeln!(
        s,
        "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\" stroke=\"{color}\" stroke-width=\"1.3\" stroke-dasharray=\"5,3\"/>"
    );
}

pub(super) fn x_tick(s: &mut String, x: f64, label: &str) {
    let _ = writeln!(
        s,
        "<line x1=\"{x:.1}\" y1=\"{BOTTOM}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
        BOTTOM + 5.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        BOTTOM + 18.0,
        esc(label)
    );
}

/// The legend, above the overview's right half.
pub(super) fn legend(s: &mut String) {
    let items = [
        (WRITES, "writes/s", false),
        (READS, "reads/s", false),
        (ERRORS, "errors/s", true),
    ];
    let mut x = OVERVIEW.1 - 245.0;
    let y = TOP - 6.0;
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
pub(super) fn nice_axis(max: f64) -> (f64, f64) {
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

/// A time-axis step (ms): whole seconds (half seconds for very short
/// drills), at most about 12 ticks.
pub(super) fn time_step(total_ms: f64) -> f64 {
    if total_ms <= 4000.0 {
        return 500.0;
    }
    [
        1000.0, 2000.0, 5000.0, 10_000.0, 15_000.0, 30_000.0, 60_000.0, 120_000.0, 300_000.0,
        600_000.0,
    ]
    .into_iter()
    .find(|&s| total_ms / s <= 12.0)
    .unwrap_or(600_000.0)
}

/// A tick label; on an axis reaching 10 000 or more, in thousands (`7.5k`).
pub(super) fn fmt_tick(v: f64, axis_top: f64) -> String {
    let plain = |v: f64| {
        if v.fract().abs() < 1e-9 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    if axis_top >= 10_000.0 && v != 0.0 {
        format!("{}k", plain(v / 1000.0))
    } else {
        plain(v)
    }
}

pub(super) fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

pub(super) fn esc(text: &str) -> String {
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
        assert_eq!(time_step(22_000.0), 2000.0);
        assert_eq!(time_step(6_000.0), 1000.0);
        assert_eq!(time_step(3_000.0), 500.0);
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(fmt_tick(12_000.0, 20_000.0), "12k");
        assert_eq!(fmt_tick(7_500.0, 12_500.0), "7.5k");
        assert_eq!(fmt_tick(7_500.0, 7_500.0), "7500");
        assert_eq!(fmt_tick(2.5, 10.0), "2.5");
    }
}
