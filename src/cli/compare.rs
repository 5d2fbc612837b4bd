//! `ipcbench compare A.json B.json`.

use std::path::Path;

use anyhow::Result;

use ipcbench::report::compare::Format;

use super::Regressed;

/// Compares two results files point by point and prints the answer in
/// `format` (the changed points only, unless `all`); a regression beyond
/// the noise is an error of its own ([`Regressed`]) with its own exit
/// status.
pub fn compare(a: &Path, b: &Path, threshold: f64, format: Format, all: bool) -> Result<()> {
    anyhow::ensure!(
        threshold >= 0.0 && threshold.is_finite(),
        "--threshold must be a fraction such as 0.25, not {threshold}"
    );
    let ra = ipcbench::record::io::read_results(a).map_err(anyhow::Error::msg)?;
    let rb = ipcbench::record::io::read_results(b).map_err(anyhow::Error::msg)?;
    let c = ipcbench::report::compare::compare(&ra, &rb, threshold);
    print!(
        "{}",
        ipcbench::report::compare::render_as(
            &c,
            &a.display().to_string(),
            &b.display().to_string(),
            format,
            all
        )
    );
    if c.regressions() > 0 {
        return Err(Regressed(c.regressions()).into());
    }
    Ok(())
}
