//! [`render_panels`]: a hand-written SVG chart (900 wide, no dependency)
//! of stacked panels over one time axis, each with its own y axis, lines
//! and bars, plus shaded windows and labelled vertical markers across all
//! panels. The cache and HTTP drills draw their charts with it.

use std::fmt::Write as _;

use super::draw::{esc, fmt_tick, nice_axis, time_step};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 860.0;
/// Above the first panel: the title and the legend.
const HEADER: f64 = 50.0;
/// Between panels (room for the next panel's title).
const GAP: f64 = 40.0;
/// Below the last panel: the time axis.
const FOOTER: f64 = 40.0;

/// A chart: a title, panels stacked top to bottom, shaded windows and
/// markers; times in ms from the start, up to `total_ms`.
#[derive(Debug, Clone, Default)]
pub struct PanelChart {
    /// The title line.
    pub title: String,
    /// The time axis's end, ms.
    pub total_ms: f64,
    /// The panels, top first.
    pub panels: Vec<PanelSpec>,
    /// Time windows shaded across every panel: (from, to, color).
    pub windows: Vec<(f64, f64, &'static str)>,
    /// Vertical markers across every panel: (time, color, label).
    pub markers: Vec<(f64, &'static str, String)>,
}

/// One panel of a [`PanelChart`].
#[derive(Debug, Clone, Default)]
pub struct PanelSpec {
    /// The y axis's title.
    pub title: String,
    /// The panel's height in pixels.
    pub height: f64,
    /// Lines.
    pub lines: Vec<Line>,
    /// Bars.
    pub bars: Vec<Bars>,
    /// Time windows shaded in this panel only: (from, to, color).
    pub windows: Vec<(f64, f64, &'static str)>,
}

/// A line of a [`PanelSpec`].
#[derive(Debug, Clone, Default)]
pub struct Line {
    /// Its color.
    pub color: &'static str,
    /// Its label in the legend (none when empty).
    pub label: String,
    /// Its points, (t_ms, value).
    pub points: Vec<(f64, f64)>,
}

/// Bars of a [`PanelSpec`].
#[derive(Debug, Clone, Default)]
pub struct Bars {
    /// Their color.
    pub color: &'static str,
    /// Their label in the legend (none when empty).
    pub label: String,
    /// Their width, ms.
    pub width_ms: f64,
    /// The bars, (t_ms of the left edge, value).
    pub bars: Vec<(f64, f64)>,
}

/// The chart as a standalone SVG document.
pub fn render_panels(chart: &PanelChart) -> String {
    let total = chart.total_ms.max(1000.0);
    let x = |t: f64| LEFT + (RIGHT - LEFT) * (t / total).clamp(0.0, 1.0);
    let height = HEADER
        + chart.panels.iter().map(|p| p.height).sum::<f64>()
        + GAP * chart.panels.len().saturating_sub(1) as f64
        + FOOTER;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"20\" font-size=\"13\" fill=\"#111\">{}</text>",
        esc(&chart.title)
    );
    legend(&mut s, &chart.panels);
    let (first_top, mut top) = (HEADER, HEADER);
    for panel in &chart.panels {
        let bottom = top + panel.height;
        for &(from, to, color) in chart.windows.iter().chain(&panel.windows) {
            let (x0, x1) = (x(from), x(to));
            let _ = writeln!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.12\"/>",
                (x1 - x0).max(0.5),
                panel.height
            );
        }
        draw_panel(&mut s, panel, top, bottom, &x);
        top = bottom + GAP;
    }
    let last_bottom = top - GAP;
    for (i, (t, color, label)) in chart.markers.iter().enumerate() {
        let mx = x(*t);
        let _ = writeln!(
            s,
            "<line x1=\"{mx:.1}\" y1=\"{first_top}\" x2=\"{mx:.1}\" y2=\"{last_bottom}\" stroke=\"{color}\" stroke-width=\"1.3\" stroke-dasharray=\"5,3\"/>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
            mx + 3.0,
            first_top + 12.0 + 12.0 * i as f64,
            esc(label)
        );
    }
    let step = time_step(total);
    let mut t = 0.0;
    while t <= total + 1.0 {
        let tx = x(t);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{last_bottom}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#333\"/>",
            last_bottom + 5.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}s</text>",
            last_bottom + 18.0,
            fmt_tick(t / 1000.0, 0.0)
        );
        t += step;
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// A panel's frame, axis, bars and lines.
fn draw_panel(s: &mut String, panel: &PanelSpec, top: f64, bottom: f64, x: &impl Fn(f64) -> f64) {
    let max = (panel.lines.iter().flat_map(|l| &l.points))
        .chain(panel.bars.iter().flat_map(|b| &b.bars))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let (axis_top, step) = nice_axis(max);
    let y = |v: f64| bottom - (bottom - top) * (v / axis_top).clamp(0.0, 1.0);
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#bbb\"/>",
        RIGHT - LEFT,
        bottom - top
    );
    let mut v = 0.0;
    while v <= axis_top + step / 2.0 {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT - 5.0,
            y(v) + 4.0,
            fmt_tick(v, axis_top)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"#333\">{}</text>",
        top - 5.0,
        esc(&panel.title)
    );
    for Bars {
        color,
        width_ms,
        bars,
        ..
    } in &panel.bars
    {
        for &(t, value) in bars.iter().filter(|b| b.1 > 0.0) {
            let (x0, yv) = (x(t), y(value));
            let _ = writeln!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{yv:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.6\"/>",
                (x(t + width_ms) - x0 - 0.4).max(0.6),
                bottom - yv
            );
        }
    }
    for Line { color, points, .. } in &panel.lines {
        if points.is_empty() {
            continue;
        }
        let points: Vec<String> = (points.iter())
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"{}\"/>",
            points.join(" ")
        );
    }
}

/// Every labelled series, on one line at the top right.
fn legend(s: &mut String, panels: &[PanelSpec]) {
    let items: Vec<(&str, &str)> = (panels.iter())
        .flat_map(|p| {
            (p.lines.iter().map(|l| (l.color, l.label.as_str())))
                .chain(p.bars.iter().map(|b| (b.color, b.label.as_str())))
        })
        .filter(|(_, label)| !label.is_empty())
        .collect();
    let mut x = RIGHT - 120.0 * items.len() as f64;
    for (color, label) in items {
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"30\" width=\"14\" height=\"8\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"38\" fill=\"#333\">{}</text>",
            x + 18.0,
            esc(label)
        );
        x += 120.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_well_formed() {
        let chart = PanelChart {
            title: "a <b> & c".into(),
            total_ms: 5000.0,
            panels: vec![
                PanelSpec {
                    title: "latency".into(),
                    height: 120.0,
                    lines: vec![Line {
                        color: "#00f",
                        label: "p99".into(),
                        points: vec![(0.0, 1.0), (2500.0, 7.5)],
                    }],
                    bars: vec![Bars {
                        color: "#f00",
                        label: "errors".into(),
                        width_ms: 250.0,
                        bars: vec![(1000.0, 3.0)],
                    }],
                    windows: vec![(500.0, 900.0, "#888")],
                },
                PanelSpec {
                    title: "backlog".into(),
                    height: 80.0,
                    ..PanelSpec::default()
                },
            ],
            windows: vec![(1000.0, 2000.0, "#f00")],
            markers: vec![(1000.0, "#f00", "fault".into())],
        };
        let svg = render_panels(&chart);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains(">fault<"));
    }
}
