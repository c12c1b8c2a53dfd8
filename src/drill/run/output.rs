//! [`write_outputs`]: the report's files, JSON and SVG, where the options
//! ask for them; [`write_report_files`] is the same for any drill's
//! report (the cache and HTTP drills use it too).

use std::path::PathBuf;

use serde::Serialize;

use super::options::{DrillError, DrillOptions};
use crate::drill::report::DrillReport;
use crate::drill::svg::render_svg;

/// Writes the JSON report and the SVG chart where `opts` asks for them.
///
/// # Errors
///
/// [`DrillError::Output`].
pub fn write_outputs(report: &DrillReport, opts: &DrillOptions) -> Result<(), DrillError> {
    write_report_files(report, opts.json.as_ref(), opts.svg.as_ref(), || {
        render_svg(report)
    })
}

/// Writes `report` as pretty JSON to `json` and the chart `draw` makes to
/// `svg`, each when given.
pub(crate) fn write_report_files<R: Serialize>(
    report: &R,
    json: Option<&PathBuf>,
    svg: Option<&PathBuf>,
    draw: impl FnOnce() -> String,
) -> Result<(), DrillError> {
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|source| DrillError::Output {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).map_err(|e| DrillError::Output {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write(path, text + "\n")?;
    }
    if let Some(path) = svg {
        write(path, draw())?;
    }
    Ok(())
}
