//! The report: pure functions of result records (analysis, the page in
//! Markdown and HTML, the plots, compare), written into a directory with
//! the records' own atomic writes.

use std::path::{Path, PathBuf};

use crate::record::RunRecord;
use crate::record::io::{WriteError, write_atomic};

pub mod analysis;
pub mod compare;
pub mod guide;
pub mod page;
pub mod plots;
pub mod steady;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A plot could not be drawn.
    #[error("{0}")]
    Plot(String),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The report of `run` as files: (name, contents). `REPORT.md`,
/// `index.html` (plots inline) and one SVG per plot.
pub fn report_files(run: &RunRecord) -> Result<Vec<(String, String)>, ReportError> {
    let plots = plots::all(run).map_err(ReportError::Plot)?;
    let blocks = page::blocks(run);
    let mut files = vec![
        ("REPORT.md".to_owned(), page::markdown(&blocks)),
        ("index.html".to_owned(), page::html(&blocks, &plots)),
    ];
    files.extend(plots.into_iter().map(|(f, svg)| (f.to_owned(), svg)));
    Ok(files)
}

/// The directory a run's report goes to by default: `reports/<run id>`.
pub fn default_report_dir(run: &RunRecord) -> PathBuf {
    PathBuf::from("reports").join(&run.run_id)
}

/// Writes the report of `run` into `dir` (each file atomically); returns
/// the path of its `index.html`.
pub fn write_report(run: &RunRecord, dir: &Path) -> Result<PathBuf, ReportError> {
    for (name, contents) in report_files(run)? {
        write_atomic(&dir.join(name), &contents)?;
    }
    Ok(dir.join("index.html"))
}

/// Writes `ipcbench compare --report` of `c` into `dir`
/// ([`compare::report_files`]); returns the path of its `index.html`.
pub fn write_compare_report(
    c: &compare::Comparison,
    a_name: &str,
    b_name: &str,
    dir: &Path,
) -> Result<PathBuf, ReportError> {
    for (name, contents) in compare::report_files(c, a_name, b_name).map_err(ReportError::Plot)? {
        write_atomic(&dir.join(name), &contents)?;
    }
    Ok(dir.join("index.html"))
}
