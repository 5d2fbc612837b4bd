//! `ipcbench compare A.json B.json`.

use std::path::Path;

use anyhow::Result;

use ipcbench::report::compare::Format;

use super::Regressed;

/// Compares two results files point by point and prints the answer in
/// `format` (the changed points only, unless `all`); a regression beyond
/// the noise is an error of its own ([`Regressed`]) with its own exit
/// status.
pub fn compare(
    a: &Path,
    b: &Path,
    threshold: f64,
    format: Format,
    all: bool,
    report: Option<&Path>,
) -> Result<()> {
    anyhow::ensure!(
        threshold >= 0.0 && threshold.is_finite(),
        "--threshold must be a fraction such as 0.25, not {threshold}"
    );
    let ra = ipcbench::record::io::read_results(a).map_err(anyhow::Error::msg)?;
    let rb = ipcbench::record::io::read_results(b).map_err(anyhow::Error::msg)?;
    let c = ipcbench::report::compare::compare(&ra, &rb, threshold);
    let text = ipcbench::report::compare::render_as(
        &c,
        &a.display().to_string(),
        &b.display().to_string(),
        format,
        all,
    );
    print!(
        "{}",
        if format == Format::Text {
            paint(&text)
        } else {
            text
        }
    );
    if let Some(dir) = report {
        let index = ipcbench::report::write_compare_report(
            &c,
            &a.display().to_string(),
            &b.display().to_string(),
            dir,
        )?;
        // Beside a machine-readable answer on standard output, this
        // goes to standard error.
        eprintln!("report: {}", index.display());
    }
    if c.regressions() > 0 {
        return Err(Regressed(c.regressions()).into());
    }
    Ok(())
}

/// The text answer with its verdicts in colour (regressions red,
/// improvements green) when standard output is a colour terminal.
fn paint(text: &str) -> String {
    let red = console::style("REGRESSION").red().bold().to_string();
    let green = console::style("improved").green().to_string();
    text.lines()
        .map(|l| {
            l.replacen("  REGRESSION", &format!("  {red}"), 1).replacen(
                "  improved",
                &format!("  {green}"),
                1,
            ) + "\n"
        })
        .collect()
}
