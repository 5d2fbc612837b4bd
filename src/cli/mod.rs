//! The `ipcbench` command line: one file per command. Each parses what it
//! was given, calls the library, and says what happened; `main.rs` only
//! hands over to [`main`].

mod clean;
mod compare;
mod list;
mod peer;
mod progress;
mod report;
mod run;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Which IPC strategy should I use, and how far is it from what the hardware allows?
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const RUN_EXAMPLES: &str = "\
Profiles, as timed on a 2-core VM: --quick, about a minute with Python;
the default, about 20 minutes (915 points, then Python's 264; 19m40s and
21m27s when last timed); --full, longer points (2 s each) and the
primitives up to 8 processes, about an hour and a half by the estimate.
`--dry-run` prints the points any options select and how long they
should take.

Examples:
  ipcbench run --quick
  ipcbench run --dry-run --patterns barrier-cycle
  ipcbench run --transports shm-ring,os-pipe,py-pipe --patterns pingpong --sizes 64,4KiB
  ipcbench run --transports shm-queue --wait spin-park@20,park --procs 4x4
  ipcbench run --patterns rate --transports shm-ring,os-pipe --rates 1k,100k,90%
  ipcbench run --repeat 3 --transports floor,shm-ring --sizes 64

Exit status: 0 when every point passed, 1 when one failed, 2 on a usage
error, 130/143 when interrupted by SIGINT/SIGTERM (the results so far and
their report are written).";

const COMPARE_EXAMPLES: &str = "\
Examples:
  ipcbench compare results/A.json results/B.json
  ipcbench compare --format markdown --threshold 0.1 A.json B.json
  ipcbench compare --report reports/compare A.json B.json
  ipcbench compare --format json A.json B.json | jq '.rows[] | select(.change != \"same\")'";

#[derive(Subcommand)]
enum Cmd {
    /// Measure every strategy (or those selected) between real processes
    /// and write a results file (JSON, with CSV beside it).
    #[command(after_help = RUN_EXAMPLES)]
    Run(run::RunArgs),
    /// Write the report of a results file: REPORT.md, index.html (plots
    /// inline, readable offline) and the plots as SVG.
    Report {
        /// A results file of `ipcbench run` or `cargo bench`.
        results: std::path::PathBuf,
        /// The directory to write (default reports/<run id>/).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Compare two results files point by point. Exit status as diff's:
    /// 0 when nothing got worse, 1 when a point got worse beyond the
    /// noise (or fails in B only), 2 on trouble (a file unreadable, a bad
    /// option).
    #[command(after_help = COMPARE_EXAMPLES)]
    Compare {
        /// The baseline.
        a: std::path::PathBuf,
        /// The run compared with it.
        b: std::path::PathBuf,
        /// Relative change taken for noise (0.25 = 25%) where a point has
        /// no interval to judge by.
        #[arg(long, default_value_t = ipcbench::report::compare::DEFAULT_THRESHOLD)]
        threshold: f64,
        /// `text` (a table), `markdown` (to paste into a pull request) or
        /// `json` (every point, each with its verdict, for a script).
        #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
        format: CompareFormat,
        /// List every point compared, not only those that changed.
        #[arg(long)]
        all: bool,
        /// Also write a report of the change into this directory:
        /// `compare.svg` (B's speedup over A at each point that changed),
        /// `COMPARE.md` and `index.html`.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// List the IPC strategies, one name a line, with what each is.
    List,
    /// List leftover shared-memory files of ipcbench in /dev/shm and
    /// remove those whose creating process is gone.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run one side of a measurement (started by a coordinator, not by hand).
    #[command(hide = true)]
    Peer {
        /// Exit with an error if the role has not finished after this many seconds.
        #[arg(long, default_value_t = 120)]
        deadline_s: u64,
        /// How long one blocking operation may wait, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        op_timeout_ms: u64,
        #[command(subcommand)]
        role: peer::Role,
    },
}

/// `compare` found a regression (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} point(s) regressed")]
pub struct Regressed(pub usize);

/// `run` measured, but some points failed (exit status 1): the results
/// and the report are written, the failures in them.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {of} points failed (see the results file)")]
pub struct PointsFailed {
    /// Points that failed.
    pub failed: usize,
    /// Points in all.
    pub of: usize,
}

/// A run stopped by a signal after keeping what it measured: the process
/// exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM),
/// as a shell reports a process the signal ended.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by {}; the {kept} points measured are kept in {output}",
    signal_name(*signal)
)]
pub struct Interrupted {
    /// The signal.
    pub signal: i32,
    /// Points kept.
    pub kept: usize,
    /// Where.
    pub output: String,
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "Ctrl-C (SIGINT)".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        s => format!("signal {s}"),
    }
}

/// Exit status of a result that is an answer, not trouble: `compare`
/// found a regression, or `run` a failed point.
pub const EXIT_FOUND: u8 = 1;
/// Exit status of trouble: a bad command line or option, a file that
/// cannot be read or written (as clap's own usage errors, and diff's).
pub const EXIT_TROUBLE: u8 = 2;

/// Parses the command line, runs it, and turns its outcome into an exit
/// status: 0 when all went well; 1 when `compare` found a regression or
/// `run` a failed point; 2 on trouble; 128 + the signal when a signal
/// stopped a run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ref e) if let Some(i) = e.downcast_ref::<Interrupted>() => {
            eprintln!("{i}");
            ExitCode::from((128 + i.signal).clamp(0, 255) as u8)
        }
        Err(e)
            if e.downcast_ref::<Regressed>().is_some()
                || e.downcast_ref::<PointsFailed>().is_some() =>
        {
            eprintln!("{e}");
            ExitCode::from(EXIT_FOUND)
        }
        Err(e) => {
            eprintln!(
                "{} {e:#}",
                console::style("error:").for_stderr().red().bold()
            );
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}

/// Runs the command the line names.
fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Clean { dry_run } => clean::clean(dry_run),
        Cmd::Run(args) => run::run(args),
        Cmd::Report { results, out } => report::report(&results, out),
        Cmd::Compare {
            a,
            b,
            threshold,
            format,
            all,
            report,
        } => compare::compare(&a, &b, threshold, format.into(), all, report.as_deref()),
        Cmd::List => {
            list::list();
            Ok(())
        }
        Cmd::Peer {
            deadline_s,
            op_timeout_ms,
            role,
        } => peer::peer(role, deadline_s, op_timeout_ms),
    }
}

/// `compare --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompareFormat {
    Text,
    Markdown,
    Json,
}

impl From<CompareFormat> for ipcbench::report::compare::Format {
    fn from(f: CompareFormat) -> Self {
        use ipcbench::report::compare::Format;
        match f {
            CompareFormat::Text => Format::Text,
            CompareFormat::Markdown => Format::Markdown,
            CompareFormat::Json => Format::Json,
        }
    }
}

/// The most producers (or consumers) `--procs` takes.
const MAX_PROCS: usize = 64;

/// `4x4`, `8x1`: producers x consumers, each 1 to [`MAX_PROCS`].
pub(crate) fn parse_procs(s: &str) -> Result<(usize, usize), String> {
    let (n, m) = s
        .trim()
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("bad process count `{s}`: write producers x consumers, as 4x4"))?;
    match (n.trim().parse::<usize>(), m.trim().parse::<usize>()) {
        (Ok(n), Ok(m)) if (1..=MAX_PROCS).contains(&n) && (1..=MAX_PROCS).contains(&m) => {
            Ok((n, m))
        }
        (Ok(_), Ok(_)) => Err(format!(
            "bad process count `{s}`: producers and consumers are each 1 to {MAX_PROCS}"
        )),
        _ => Err(format!(
            "bad process count `{s}`: write producers x consumers, as 4x4"
        )),
    }
}

/// `64`, `64B`, `1KiB`, `4KiB`, `1MiB` (also `k`/`K`/`m`/`M`).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("K", 1 << 10),
        ("k", 1 << 10),
        ("M", 1 << 20),
        ("m", 1 << 20),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n >= ipcbench::harness::validate::MIN_SIZE)
        .ok_or_else(|| {
            format!("`{s}` is not a message size of at least 8 bytes (e.g. 64, 1KiB, 1MiB)")
        })
}
