//! `ipcbench report RESULTS.json [--out DIR]`.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Writes the report of the results file `results` into `out` (default
/// `reports/<run id>/`).
pub fn report(results: &Path, out: Option<PathBuf>) -> Result<()> {
    let run = ipcbench::record::io::read_results(results).map_err(anyhow::Error::msg)?;
    let dir = out.unwrap_or_else(|| ipcbench::report::default_report_dir(&run));
    let index = ipcbench::report::write_report(&run, &dir)?;
    println!(
        "report: {} (REPORT.md and plots beside it)",
        index.display()
    );
    Ok(())
}
