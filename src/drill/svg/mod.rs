//! [`render_svg`]: a hand-written SVG chart (900×360, no dependency) of a
//! [`DrillReport`]: successful writes/s and reads/s per 100 ms bucket as
//! lines, errors/s as bars (right-hand axis), the window without writes
//! shaded; the whole drill on the left, a zoom on the seconds around the
//! fault on the right, with labelled vertical markers for the fault, its
//! detection, the promotion and the first write acknowledged after the
//! fault.

use std::fmt::Write as _;

use super::report::{BUCKET, DrillReport, TimelineBucket};

mod draw;
mod panels;
use draw::{draw_data, esc, fmt_tick, legend, marker_line, nice_axis, opt_ms, time_step, x_tick};
pub use panels::{Bars, Line, PanelChart, PanelSpec, render_panels};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 360.0;
const TOP: f64 = 66.0;
const BOTTOM: f64 = 300.0;
/// The whole drill.
const OVERVIEW: (f64, f64) = (62.0, 500.0);
/// Around the fault.
const ZOOM: (f64, f64) = (548.0, 840.0);
const WRITES: &str = "#1f77b4";
const READS: &str = "#2ca02c";
const ERRORS: &str = "#d62728";
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// One plot area: a time range drawn between two x positions.
#[derive(Debug, Clone, Copy)]
struct Panel {
    x0: f64,
    x1: f64,
    from_ms: f64,
    to_ms: f64,
}

impl Panel {
    fn x(&self, t_ms: f64) -> f64 {
        self.x0 + (t_ms - self.from_ms) / (self.to_ms - self.from_ms) * (self.x1 - self.x0)
    }

    fn contains(&self, t_ms: f64) -> bool {
        t_ms >= self.from_ms && t_ms <= self.to_ms
    }
}

/// The vertical scales shared by both panels.
#[derive(Debug, Clone, Copy)]
struct Scales {
    ops_top: f64,
    err_top: f64,
}

impl Scales {
    fn y_ops(&self, v: f64) -> f64 {
        BOTTOM - v / self.ops_top * (BOTTOM - TOP)
    }

    fn y_err(&self, v: f64) -> f64 {
        BOTTOM - v / self.err_top * (BOTTOM - TOP)
    }
}

/// Renders the report's timeline as a standalone SVG document: the whole
/// drill on the left, the seconds around the fault (with the markers
/// labelled) on the right.
pub fn render_svg(report: &DrillReport) -> String {
    let chart = Chart::new(report);
    let mut s = String::new();
    chart.header(&mut s);
    chart.zoom_outline(&mut s);
    for panel in [chart.overview, chart.zoom] {
        chart.panel(&mut s, panel);
    }
    chart.axes(&mut s);
    chart.markers(&mut s);
    s.push_str("</svg>\n");
    s
}

/// A report laid out for drawing: the two panels, the buckets drawn as
/// lines and the shared vertical scales.
#[derive(Debug)]
struct Chart<'a> {
    report: &'a DrillReport,
    bucket_ms: f64,
    /// Buckets per second (a bucket's count times this is a rate).
    per_sec: f64,
    total_ms: f64,
    /// The fault, in ms since the start.
    fault: f64,
    overview: Panel,
    zoom: Panel,
    /// The whole buckets (the lines).
    buckets: Vec<&'a TimelineBucket>,
    scales: Scales,
    /// Tick steps of the ops/s and errors/s axes.
    ops_step: f64,
    err_step: f64,
}

impl<'a> Chart<'a> {
    /// Lays `report` out: the overview panel, the zoom around the fault
    /// (wide enough for its markers), and the scales.
    fn new(report: &'a DrillReport) -> Self {
        let bucket_ms = BUCKET.as_millis() as f64;
        let per_sec = 1000.0 / bucket_ms;
        let total_ms = (report.duration_ms as f64).max(1.0);
        let fault = report.fault_at_ms as f64;
        let overview = Panel {
            x0: OVERVIEW.0,
            x1: OVERVIEW.1,
            from_ms: 0.0,
            to_ms: total_ms,
        };
        let last_marker = [
            report.detection_ms,
            report.promotion_ms,
            report
                .first_write_after_fault_ms
                .map(|t| t.saturating_sub(report.fault_at_ms)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0) as f64;
        let zoom_from = (fault - 1000.0).max(0.0);
        let zoom_to = (fault + (last_marker + 700.0).clamp(2000.0, 6000.0)).min(total_ms);
        let zoom = Panel {
            x0: ZOOM.0,
            x1: ZOOM.1,
            from_ms: zoom_from,
            to_ms: zoom_to.max(zoom_from + bucket_ms),
        };

        // Only whole buckets: the last, partial one (operations ending after
        // the stop) would look like a collapse.
        let buckets: Vec<&TimelineBucket> = report
            .timeline
            .iter()
            .filter(|b| b.t_ms as f64 + bucket_ms <= total_ms)
            .collect();
        let max_ops = buckets
            .iter()
            .map(|b| b.ok_writes.max(b.ok_reads) as f64 * per_sec)
            .fold(0.0, f64::max);
        let max_err = report
            .timeline
            .iter()
            .map(|b| b.errors as f64 * per_sec)
            .fold(0.0, f64::max);
        // A little headroom, so that the lines stay clear of the frame.
        let (ops_top, ops_step) = nice_axis(max_ops * 1.08);
        let (err_top, err_step) = nice_axis(max_err);
        let scales = Scales { ops_top, err_top };
        Chart {
            report,
            bucket_ms,
            per_sec,
            total_ms,
            fault,
            overview,
            zoom,
            buckets,
            scales,
            ops_step,
            err_step,
        }
    }

    /// The document's start: background, title, summary, legend, panel
    /// titles.
    fn header(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" {FONT} font-size=\"11\">"
        );
        let _ = writeln!(
            s,
            "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
        );
        let title = format!(
            "failover drill: {} / {} / {} promotion / {} / {}",
            self.report.store.as_str(),
            self.report.fault.as_str(),
            self.report.promotion.as_str(),
            self.report.backend.as_str(),
            self.report.replication_label()
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            OVERVIEW.0,
            esc(&title)
        );
        let summary = format!(
            "write gap {} / detection {} / promotion {} / lost acked writes {} / caller errors {} / writes to fenced node {}",
            opt_ms(self.report.write_gap_ms),
            opt_ms(self.report.detection_ms),
            opt_ms(self.report.promotion_ms),
            self.report.lost_acked_writes,
            self.report.caller_errors_during_failover,
            self.report.writes_to_fenced_node
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"37\" fill=\"#444\">{}</text>",
            OVERVIEW.0,
            esc(&summary)
        );
        legend(s);
        for (panel, name) in [
            (self.overview, "whole drill"),
            (self.zoom, "around the fault"),
        ] {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\" fill=\"#333\">{name}</text>",
                panel.x0,
                TOP - 6.0
            );
        }
    }

    /// The zoomed window, outlined on the overview.
    fn zoom_outline(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#000\" fill-opacity=\"0.04\" stroke=\"#999\" stroke-dasharray=\"2,2\"/>",
            self.overview.x(self.zoom.from_ms),
            (self.overview.x(self.zoom.to_ms) - self.overview.x(self.zoom.from_ms)).max(1.0),
            BOTTOM - TOP
        );
    }

    /// One panel: the window without writes shaded, the grid, the data and
    /// the frame.
    fn panel(&self, s: &mut String, panel: Panel) {
        // Unavailability window: fault to the first write after it.
        if let Some(first) = self.report.first_write_after_fault_ms {
            let a = panel.x(self.fault.max(panel.from_ms));
            let b = panel.x((first as f64).min(panel.to_ms));
            if b > a {
                let _ = writeln!(
                    s,
                    "<rect x=\"{a:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERRORS}\" fill-opacity=\"0.10\"/>",
                    (b - a).max(1.0),
                    BOTTOM - TOP
                );
            }
        }
        // Horizontal grid.
        let mut v = 0.0;
        while v <= self.scales.ops_top + self.ops_step * 0.01 {
            let y = self.scales.y_ops(v);
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>",
                panel.x0, panel.x1
            );
            v += self.ops_step;
        }
        draw_data(
            s,
            panel,
            self.scales,
            &self.buckets,
            &self.report.timeline,
            self.per_sec,
            self.bucket_ms,
        );
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>",
            panel.x0,
            panel.x1 - panel.x0,
            BOTTOM - TOP
        );
    }

    /// The axes: ops/s on the left of the overview, errors/s on the right
    /// of the zoom (both panels share the scales), seconds under the
    /// overview, milliseconds relative to the fault under the zoom.
    fn axes(&self, s: &mut String) {
        let mut v = 0.0;
        while v <= self.scales.ops_top + self.ops_step * 0.01 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
                OVERVIEW.0 - 5.0,
                self.scales.y_ops(v) + 4.0,
                fmt_tick(v, self.scales.ops_top)
            );
            v += self.ops_step;
        }
        let mut v = 0.0;
        while v <= self.scales.err_top + self.err_step * 0.01 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{ERRORS}\">{}</text>",
                ZOOM.1 + 5.0,
                self.scales.y_err(v) + 4.0,
                fmt_tick(v, self.scales.err_top)
            );
            v += self.err_step;
        }
        // Overview time axis: seconds since the start.
        let step = time_step(self.total_ms);
        let mut t = 0.0;
        while t <= self.total_ms + 1.0 {
            x_tick(s, self.overview.x(t), &fmt_tick(t / 1000.0, 0.0));
            t += step;
        }
        // Zoom time axis: milliseconds relative to the fault.
        let span = self.zoom.to_ms - self.zoom.from_ms;
        let step = if span <= 2500.0 { 500.0 } else { 1000.0 };
        let mut rel = ((self.zoom.from_ms - self.fault) / step).ceil() * step;
        while self.fault + rel <= self.zoom.to_ms + 1.0 {
            let label = if rel > 0.0 {
                format!("+{rel:.0}")
            } else {
                format!("{rel:.0}")
            };
            x_tick(s, self.zoom.x(self.fault + rel), &label);
            rel += step;
        }
        let axis_y = BOTTOM + 36.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\" fill=\"#333\">seconds since the start</text>",
            (OVERVIEW.0 + OVERVIEW.1) / 2.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\" fill=\"#333\">ms relative to the fault</text>",
            (ZOOM.0 + ZOOM.1) / 2.0
        );
        let mid = (TOP + BOTTOM) / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"14\" y=\"{mid:.1}\" text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 14 {mid:.1})\">successful ops/s (lines)</text>"
        );
        let rx = WIDTH - 12.0;
        let _ = writeln!(
            s,
            "<text x=\"{rx:.1}\" y=\"{mid:.1}\" text-anchor=\"middle\" fill=\"{ERRORS}\" transform=\"rotate(90 {rx:.1} {mid:.1})\">errors/s (bars)</text>"
        );
    }

    /// Markers: the fault on both panels; all of them, labelled, on the
    /// zoom.
    fn markers(&self, s: &mut String) {
        let fault_ms = self.report.fault_at_ms;
        let mut markers: Vec<(u64, String, &str)> = vec![(
            fault_ms,
            format!(
                "fault ({}) at {:.2} s",
                self.report.fault.as_str(),
                self.fault / 1000.0
            ),
            "#000000",
        )];
        if let Some(d) = self.report.detection_ms {
            markers.push((fault_ms + d, format!("detected +{d} ms"), "#ff7f0e"));
        }
        if let Some(p) = self.report.promotion_ms {
            markers.push((fault_ms + p, format!("promoted +{p} ms"), "#9467bd"));
        }
        if let Some(t) = self.report.sentinel_switch_ms {
            markers.push((
                fault_ms + t,
                format!("Sentinel switched +{t} ms"),
                "#8c564b",
            ));
        }
        if let Some(first) = self.report.first_write_after_fault_ms {
            markers.push((
                first,
                format!("first write +{} ms", first.saturating_sub(fault_ms)),
                "#0f8f9f",
            ));
        }
        marker_line(s, self.overview, self.fault, "#000000");
        for (row, (t, label, color)) in markers.iter().enumerate() {
            let t = *t as f64;
            if !self.zoom.contains(t) {
                continue;
            }
            let x = self.zoom.x(t);
            marker_line(s, self.zoom, t, color);
            let y = TOP + 14.0 + 15.0 * row as f64;
            let (tx, anchor) = if x > self.zoom.x1 - 120.0 {
                (x - 4.0, "end")
            } else {
                (x + 4.0, "start")
            };
            let _ = writeln!(
                s,
                "<text x=\"{tx:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"{color}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\" font-weight=\"bold\">{}</text>",
                esc(label)
            );
        }
    }
}

/// Which count of a bucket a line shows.
type Pick = fn(&TimelineBucket) -> u64;
