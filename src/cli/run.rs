//! `ipcbench run`: the options to a plan, the plan measured with progress,
//! the summary, and the report.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use ipcbench::harness::plan::{Filters, Profile};
use ipcbench::harness::run::{Event, PythonPhase};
use ipcbench::harness::{self, python};
use ipcbench::record::Status;
use ipcbench::shm::Wait;

use super::{parse_procs, parse_size};

/// The options of `ipcbench run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A short smoke run: one size (64 B), two waits, short points, the
    /// smaller process counts of every family.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Longer points, for stable tails; the primitives up to 8 processes.
    #[arg(long)]
    full: bool,
    /// Comma list of strategies of any family (see `ipcbench list`):
    /// transports, `floor`, primitives (shm-lock, …), start-up
    /// (start-fork, …) and Python's (py-pipe, …). Naming some leaves out
    /// the families none of them belongs to.
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// Comma list of patterns of any family: pingpong, stream, fan-in,
    /// fan-out, mpmc, reqrep, reqrep-list, reqrep-namespace, reqrep-value,
    /// pingpong-late, rate, reqrep-rate, pool, pool-cpu, lock-increment,
    /// rlock-increment, atomic-increment, event-pingpong,
    /// condition-handoff, barrier-cycle, joinable, startup (all when none
    /// is given; `ipcbench list` says what each measures).
    #[arg(long, value_delimiter = ',')]
    patterns: Vec<String>,
    /// Comma list of message sizes (64, 1KiB, 4KiB, 1MiB, …). Primitives
    /// are 8 B (128 B the array), task farms' tasks 64 B, start-up 8 B.
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Comma list of waiting strategies (spin, spin-yield, spin-park,
    /// park; `spin-park@20` sets the spin budget in µs) for what waits in
    /// user space; kernel-blocking and lock-free strategies, and start-up,
    /// have no wait to choose and are kept.
    #[arg(long, value_delimiter = ',')]
    wait: Vec<Wait>,
    /// Comma list of process counts, producers x consumers (1x1, 4x4,
    /// 8x1, …; each at most 64); primitives read Nx1 as N processes, task
    /// farms 1xW as W workers; the Python baseline keeps its own.
    #[arg(long, value_delimiter = ',', value_parser = parse_procs)]
    procs: Vec<(usize, usize)>,
    /// Comma list of offered loads for the open-loop pattern `rate`:
    /// messages per second (500, 10k, 1M) or percentages of each
    /// strategy's capacity measured unpaced in the same run (80%). The
    /// unpaced point is always measured first.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<harness::rate::Load>,
    /// Where to write the results (default results/run-<time>.json).
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Do not pin peers to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Measure every point this many times and keep the median (each
    /// repeat's figure is kept in the results).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    repeat: u32,
    /// Where to write the report (default reports/<run id>/).
    #[arg(long, conflicts_with = "no_report")]
    report: Option<std::path::PathBuf>,
    /// Write no report.
    #[arg(long)]
    no_report: bool,
    /// End with the table of every point (by default: the verdict, the
    /// failed points and the counts; every point is also printed as it is
    /// measured).
    #[arg(long)]
    table: bool,
    /// Leave out the Python multiprocessing baseline (run when
    /// python3 is found).
    #[arg(long)]
    no_python: bool,
    /// Print the points the options select, and what the Python baseline
    /// is asked for, then stop: nothing is started, nothing is written.
    #[arg(long)]
    dry_run: bool,
    /// How the Python baseline starts its processes.
    #[arg(long, value_parser = ["fork", "spawn", "forkserver"])]
    py_start_method: Option<String>,
}

use ipcbench::report::analysis::{human_ns, human_rate, human_size};

/// `[#####.....]`: `done` of `n` in `width` cells.
fn bar(done: usize, n: usize, width: usize) -> String {
    let full = (done * width).checked_div(n).unwrap_or(width);
    format!("[{}{}]", "#".repeat(full), ".".repeat(width - full))
}

/// Seconds as `42s`, `3m05s` or `1h02m`.
fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn point_line(p: &harness::PointRecord) -> String {
    let pattern = ipcbench::report::analysis::pattern_text(p);
    let head = format!(
        "{:<18} {:<22} {:>7} {:<10}",
        p.transport,
        pattern,
        human_size(p.msg_size),
        p.wait
    );
    match (&p.error, p.latency_ns, p.throughput) {
        (Some(e), _, _) if p.is_skipped() => format!("{head} skipped: {e}"),
        (Some(e), _, _) => format!("{head} FAILED: {e}"),
        (None, l, t) => format!(
            "{head} p50 {:>10}  p99 {:>10}  {:>10}  cpu/msg {:>9}{}",
            l.map_or("-".into(), |l| human_ns(l.p50 as f64)),
            l.map_or("-".into(), |l| human_ns(l.p99 as f64)),
            t.map_or("-".into(), |t| human_rate(t.msgs_per_s)),
            p.cpu_ns_per_msg.map_or("-".into(), human_ns),
            if p.oversubscribed {
                "  (oversubscribed)"
            } else {
                ""
            }
        ),
    }
}

/// The end of a run in a few lines: for each pattern and size, the
/// fastest strategy with its interval and its lead (or the tie), then
/// the failed points.
fn print_verdict(run: &harness::RunRecord) {
    use ipcbench::report::page::{figure_with_interval, strategy_text};
    let verdicts = ipcbench::report::analysis::verdicts(run);
    if !verdicts.is_empty() {
        println!(
            "fastest at each pattern and size (the report has the rest; --table lists every point):"
        );
    }
    for v in &verdicts {
        let lead = if v.is_tie() {
            let mut names: Vec<String> = v.tied.iter().map(strategy_text).collect();
            names.truncate(3);
            format!("tie with {}", names.join(", "))
        } else {
            match (v.lead(), &v.runner_up) {
                (Some(l), Some(r)) => format!(
                    "{} ahead of {}",
                    ipcbench::report::analysis::human_ratio(l),
                    strategy_text(r)
                ),
                _ => "alone".into(),
            }
        };
        println!(
            "  {:<17} {:>7}  {}: {} ({lead})",
            v.pattern,
            human_size(v.size),
            strategy_text(&v.best),
            figure_with_interval(&v.best)
        );
    }
    let failed: Vec<&harness::PointRecord> = run
        .points
        .iter()
        .filter(|p| p.status == Status::Failed)
        .collect();
    if !failed.is_empty() {
        println!("failed:");
        for p in failed {
            println!("  {}", point_line(p));
        }
    }
}

/// What `--dry-run` prints: every point the plan holds, in the order
/// they would run, and what the Python baseline would be asked for.
fn print_plan(plan: &harness::plan::Plan, profile: Profile) {
    let n = plan.measurements.len();
    for (i, m) in plan.measurements.iter().enumerate() {
        let (p, c) = m.procs();
        println!(
            "[{:>4}/{n}] {:<20} {:<17} {:>5}x{:<3} {:>8}  {}",
            i + 1,
            m.strategy_name(),
            m.pattern_name(),
            p,
            c,
            human_size(m.size()),
            m.wait_name()
        );
    }
    if let Some(sel) = &plan.python {
        let all = |v: &[String]| {
            if v.is_empty() {
                "all".to_owned()
            } else {
                v.join(",")
            }
        };
        println!(
            "then the Python baseline ({} profile, its own plan): transports {}, patterns {}",
            profile.name(),
            all(&sel.transports),
            all(&sel.patterns)
        );
    }
    println!(
        "{n} points in the {} profile; nothing was started (--dry-run)",
        profile.name()
    );
}

/// Measures what the options select.
pub fn run(args: RunArgs) -> Result<()> {
    let RunArgs {
        quick,
        full,
        transports,
        patterns,
        sizes,
        wait,
        procs,
        rates,
        output,
        no_pin,
        repeat,
        report,
        no_report,
        table,
        no_python,
        dry_run,
        py_start_method,
    } = args;
    let profile = if quick {
        Profile::Quick
    } else if full {
        Profile::Full
    } else {
        Profile::Default
    };
    let mut filters = Filters {
        sizes,
        waits: wait,
        procs,
        rates: rates.clone(),
        ..Filters::default()
    };
    filters.transports(&transports)?;
    filters.patterns(&patterns)?;
    let plan = harness::plan::plan(profile, &filters, !no_python)?;
    if dry_run {
        print_plan(&plan, profile);
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding the ipcbench binary for the peers")?;
    let mut opts = profile.opts(exe);
    opts.pin = !no_pin;
    let python = match &plan.python {
        None => None,
        Some(_) => match python::find() {
            Ok(py) => Some(PythonPhase {
                py,
                profile,
                cpus: if opts.pin {
                    ipcbench::record::allowed_cpus()
                } else {
                    Vec::new()
                },
                start_method: py_start_method,
            }),
            Err(e) => {
                eprintln!(
                    "note: {e}; the run goes on without the Python baseline (--no-python silences this)"
                );
                None
            }
        },
    };
    anyhow::ensure!(
        !plan.measurements.is_empty() || python.is_some(),
        "the filters select only the Python baseline, and it cannot run here"
    );
    let output = output.unwrap_or_else(|| {
        let t = ipcbench::record::rfc3339_now().replace([':', '-'], "");
        std::path::PathBuf::from(format!("results/run-{}.json", t.trim_end_matches('Z')))
    });
    let config = serde_json::json!({
        // The exact command line, so that the run can be made again.
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "profile": profile.name(),
        "transports": transports,
        "patterns": patterns,
        "sizes": filters.sizes,
        "waits": filters.waits.iter().map(|w| w.label()).collect::<Vec<_>>(),
        "pin": opts.pin,
        "warmup": opts.warmup,
        "pingpong_iters": opts.pingpong_iters,
        "stream_bytes": opts.stream_bytes,
        "deadline_s": opts.deadline.as_secs(),
        "budget_s": opts.budget.as_secs_f64(),
        "procs": filters.procs.iter().map(|(n, m)| format!("{n}x{m}")).collect::<Vec<_>>(),
        "repeat": repeat,
        "rates": rates.iter().map(|r| r.label()).collect::<Vec<_>>(),
    });
    harness::run::install_interrupt_handler()
        .context("listening for SIGINT, SIGTERM and SIGHUP")?;
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "ipcbench run ({}): {} points on {} CPUs{}; results in {}",
        profile.name(),
        plan.measurements.len(),
        ipcbench::record::allowed_cpus().len(),
        if python.is_some() {
            ", then the Python baseline"
        } else {
            ""
        },
        output.display()
    );
    let run = harness::run::run_all(
        &plan,
        &opts,
        repeat as usize,
        config,
        &output,
        python.as_ref(),
        |event| match event {
            Event::Starting {
                index,
                of,
                what,
                elapsed,
            } if tty => {
                let eta = if index == 0 {
                    "ETA -".to_owned()
                } else {
                    let per = elapsed.as_secs_f64() / index as f64;
                    format!("ETA {}", human_secs(per * (of - index) as f64))
                };
                eprint!(
                    "\r\x1b[2K{} {:>3}/{of} {} {eta} | {} {} {} {}",
                    bar(index, of, 24),
                    index + 1,
                    human_secs(elapsed.as_secs_f64()),
                    what.strategy_name(),
                    what.pattern_name(),
                    human_size(what.size()),
                    what.wait_name()
                );
            }
            Event::Starting { .. } => {}
            Event::Measured { index, of, rec, .. } => {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                eprintln!("[{:>3}/{of}] {}", index + 1, point_line(rec));
            }
            Event::PythonStarting(what) => eprintln!("python: {what}"),
            Event::PythonFailed(e) => eprintln!("warning: the Python baseline failed: {e}"),
        },
    )?;
    println!();
    if table {
        println!(
            "{:<18} {:<22} {:>7} {:<10} (pingpong: round trip; stream: one way)",
            "transport", "pattern", "size", "wait"
        );
        for p in &run.points {
            println!("{}", point_line(p));
        }
    } else {
        print_verdict(&run);
    }
    let count = |s: Status| run.points.iter().filter(|p| p.status == s).count();
    let (skipped, failed) = (count(Status::Skipped), count(Status::Failed));
    println!(
        "\n{} points measured, {failed} failed, {skipped} skipped; results: {} (CSV beside it)",
        run.points.len() - skipped,
        output.display()
    );
    if !no_report {
        let dir = report.unwrap_or_else(|| ipcbench::report::default_report_dir(&run));
        let index = ipcbench::report::write_report(&run, &dir)
            .with_context(|| format!("the results are kept in {}", output.display()))?;
        println!("report: {}", index.display());
    }
    if harness::run::interrupted() {
        return Err(super::Interrupted {
            signal: harness::run::stop_signal().unwrap_or(libc::SIGINT),
            kept: run.points.len(),
            output: output.display().to_string(),
        }
        .into());
    }
    if failed > 0 {
        return Err(super::PointsFailed {
            failed,
            of: run.points.len(),
        }
        .into());
    }
    Ok(())
}
