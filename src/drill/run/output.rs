//! [`write_outputs`]: the report's files, JSON and SVG, where the options
//! ask for them.

use std::path::PathBuf;

use super::options::{DrillError, DrillOptions};
use crate::drill::report::DrillReport;
use crate::drill::svg::render_svg;

/// Writes the JSON report and the SVG chart where `opts` asks for them.
///
/// # Errors
///
/// [`DrillError::Output`].
pub fn write_outputs(report: &DrillReport, opts: &DrillOptions) -> Result<(), DrillError> {
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|source| DrillError::Output {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &opts.json {
        let json = serde_json::to_string_pretty(report).map_err(|e| DrillError::Output {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write(path, json + "\n")?;
    }
    if let Some(path) = &opts.svg {
        write(path, render_svg(report))?;
    }
    Ok(())
}
