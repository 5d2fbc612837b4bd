//! `ipcbench run`: the options to a plan, the plan measured with progress,
//! the summary, and the report.

use std::time::Duration;

use anyhow::{Context, Result};
use ipcbench::harness::{self, Strategy};
use ipcbench::record::Status;
use ipcbench::shm::Wait;

use super::{parse_procs, parse_size};

/// The options of `ipcbench run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A short smoke run: one size, short points.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Longer points, for stable tails.
    #[arg(long)]
    full: bool,
    /// Comma list of strategies (see `ipcbench list`), `floor`, and
    /// Python's (py-pipe, py-queue, …; see `ipcbench list`).
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// Comma list of patterns: pingpong, stream, fan-in, fan-out, mpmc,
    /// reqrep, pingpong-late, pool, pool-cpu, lock-increment,
    /// atomic-increment, event-pingpong, joinable, startup (all when
    /// none is given).
    #[arg(long, value_delimiter = ',')]
    patterns: Vec<String>,
    /// Comma list of message sizes (64, 1KiB, 4KiB, 1MiB, …).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Comma list of waiting strategies for shared memory.
    #[arg(long, value_delimiter = ',')]
    wait: Vec<Wait>,
    /// Comma list of process counts, producers x consumers (1x1, 4x4,
    /// 8x1, …); task farms read 1xW as W workers.
    #[arg(long, value_delimiter = ',', value_parser = parse_procs)]
    procs: Vec<(usize, usize)>,
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
    /// Leave out the Python multiprocessing baseline (run when
    /// python3 is found).
    #[arg(long)]
    no_python: bool,
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
    let c = ipcbench::report::analysis::counts(p);
    let pattern = if c.is_empty() {
        p.pattern.clone()
    } else {
        format!("{} {c}", p.pattern)
    };
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
        output,
        no_pin,
        repeat,
        report,
        no_report,
        no_python,
        py_start_method,
    } = args;
    let report = (!no_report).then_some(report);
    let python = (!no_python).then_some(py_start_method);
    use harness::python;
    let (py_names, rest): (Vec<String>, Vec<String>) = transports
        .iter()
        .cloned()
        .partition(|t| python::is_python(t));
    let (sync_names, rest): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|t| t.parse::<harness::sync::Prim>().is_ok());
    let (start_names, rust_names): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|t| t.parse::<harness::startup::Method>().is_ok());
    let strategies = rust_names
        .iter()
        .map(|t| {
            t.parse::<Strategy>().map_err(|e| {
                anyhow::anyhow!(
                    "{e} (Python's transports are {})",
                    python::TRANSPORTS.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Patterns of the one-to-one and multi-party harness, and the others
    // (primitives, start-up, task farms), each measured by its own part.
    let pattern_names = patterns;
    let mut patterns: Vec<harness::Pattern> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    for p in &pattern_names {
        match p.parse::<harness::Pattern>() {
            Ok(p) => patterns.push(p),
            Err(_)
                if harness::sync::PATTERNS.contains(&p.as_str())
                    || harness::pool::PATTERNS.contains(&p.as_str())
                    || p == harness::startup::PATTERN =>
            {
                others.push(p.clone())
            }
            Err(_) => anyhow::bail!(
                "unknown pattern `{p}`: use pingpong, stream, fan-in, fan-out, mpmc, reqrep, \
                 pingpong-late, pool, pool-cpu, lock-increment, atomic-increment, event-pingpong, joinable or startup"
            ),
        }
    }
    let named = !pattern_names.is_empty();
    let other_wanted = |p: &str| !named || others.iter().any(|o| o == p);
    // Named transports select; naming only one kind leaves out the others.
    let rust_wanted =
        (transports.is_empty() || !strategies.is_empty()) && (!named || !patterns.is_empty());
    let sync_points: Vec<harness::sync::SyncSpec> =
        if transports.is_empty() || !sync_names.is_empty() {
            harness::sync::plan(quick)
                .into_iter()
                .filter(|s| other_wanted(s.prim.pattern()))
                .filter(|s| procs.is_empty() || procs.contains(&(s.procs, 1)))
                .filter(|s| sync_names.is_empty() || sync_names.iter().any(|n| n == s.prim.name()))
                .filter(|s| wait.is_empty() || wait.contains(&s.wait))
                .collect()
        } else {
            Vec::new()
        };
    // Start-up methods: with the primitives, when no pattern is named.
    let start_points: Vec<harness::startup::Method> = if (transports.is_empty()
        || !start_names.is_empty())
        && other_wanted(harness::startup::PATTERN)
        && wait.is_empty()
        && (procs.is_empty() || procs.contains(&(1, 1)))
    {
        harness::startup::Method::ALL
            .into_iter()
            .filter(|m| start_names.is_empty() || start_names.iter().any(|n| n == m.name()))
            .collect()
    } else {
        Vec::new()
    };
    // Task farms: over the named transports that can run one.
    let pool_points: Vec<harness::pool::PoolSpec> =
        if transports.is_empty() || !strategies.is_empty() {
            harness::pool::plan(quick)
                .into_iter()
                .filter(|p| other_wanted(p.pattern()))
                .filter(|p| procs.is_empty() || procs.contains(&(1, p.workers)))
                .filter(|p| {
                    if transports.is_empty() {
                        return true;
                    }
                    strategies.contains(&Strategy::Transport(p.kind))
                })
                .filter(|p| wait.is_empty() || wait.contains(&p.wait))
                .collect()
        } else {
            Vec::new()
        };
    let py_patterns: Vec<String> = pattern_names
        .iter()
        .filter(|p| python::PATTERNS.contains(&p.as_str()))
        .cloned()
        .collect();
    let py_wanted =
        (transports.is_empty() || !py_names.is_empty()) && (!named || !py_patterns.is_empty());
    use harness::run::{Filters, Profile};
    use std::io::IsTerminal;
    let profile = if quick {
        Profile::Quick
    } else if full {
        Profile::Full
    } else {
        Profile::Default
    };
    let exe = std::env::current_exe().context("finding the ipcbench binary for the peers")?;
    let mut opts = profile.opts(exe);
    opts.pin = !no_pin;
    let filters = Filters {
        strategies,
        patterns,
        sizes,
        waits: wait,
        procs: procs.clone(),
    };
    let points = if rust_wanted {
        harness::run::plan(profile, &filters)
    } else {
        Vec::new()
    };
    let py = match (&python, py_wanted) {
        (Some(_), true) => match python::find() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!(
                    "note: {e}; the run goes on without the Python baseline (--no-python silences this)"
                );
                None
            }
        },
        _ => None,
    };
    anyhow::ensure!(
        !points.is_empty()
            || py.is_some()
            || !sync_points.is_empty()
            || !start_points.is_empty()
            || !pool_points.is_empty(),
        "the filters select no point"
    );
    let output = output.unwrap_or_else(|| {
        let t = ipcbench::record::rfc3339_now().replace([':', '-'], "");
        std::path::PathBuf::from(format!("results/run-{}.json", t.trim_end_matches('Z')))
    });
    let config = serde_json::json!({
        "profile": profile.name(),
        "transports": filters.strategies.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "patterns": pattern_names,
        "sizes": filters.sizes,
        "waits": filters.waits.iter().map(|w| w.name()).collect::<Vec<_>>(),
        "pin": opts.pin,
        "warmup": opts.warmup,
        "pingpong_iters": opts.pingpong_iters,
        "stream_bytes": opts.stream_bytes,
        "deadline_s": opts.deadline.as_secs(),
        "procs": filters.procs.iter().map(|(n, m)| format!("{n}x{m}")).collect::<Vec<_>>(),
        "repeat": repeat,
    });
    harness::run::install_interrupt_handler();
    let tty = std::io::stderr().is_terminal();
    let n = points.len();
    eprintln!(
        "ipcbench run ({}): {n} points on {} CPUs; results in {}",
        profile.name(),
        ipcbench::record::allowed_cpus().len(),
        output.display()
    );
    let mut run = harness::run::run_all(
        &points,
        &opts,
        repeat as usize,
        config,
        &output,
        |i, spec, rec, elapsed| {
            let eta = if i == 0 {
                "ETA -".to_owned()
            } else {
                let per = elapsed.as_secs_f64() / i as f64;
                format!("ETA {}", human_secs(per * (n - i) as f64))
            };
            match rec {
                None if tty => eprint!(
                    "\r\x1b[2K{} {:>3}/{n} {} {eta} | {} {} {} {}",
                    bar(i, n, 24),
                    i + 1,
                    human_secs(elapsed.as_secs_f64()),
                    spec.strategy.name(),
                    spec.pattern.name(),
                    human_size(spec.size),
                    spec.wait_name()
                ),
                None => {}
                Some(r) => {
                    if tty {
                        eprint!("\r\x1b[2K");
                    }
                    eprintln!("[{:>3}/{n}] {}", i + 1, point_line(r));
                }
            }
        },
    )?;
    let interrupted = || harness::run::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed);
    // The points measured outside the harness's own plan, in order:
    // primitives, task farms, start-ups.
    type Measure<'a> = Box<dyn Fn() -> harness::PointRecord + 'a>;
    let others: Vec<Measure> = sync_points
        .iter()
        .map(|s| Box::new(|| harness::sync::run_point(s, &opts)) as Measure)
        .chain(
            pool_points
                .iter()
                .map(|p| Box::new(|| harness::pool::run_point(p, &opts)) as Measure),
        )
        .chain(
            start_points
                .iter()
                .map(|m| Box::new(|| harness::startup::run_point(*m, &opts)) as Measure),
        )
        .collect();
    for (i, measure) in others.iter().enumerate() {
        if interrupted() {
            break;
        }
        let rec = harness::run::median_of(repeat as usize, measure);
        eprintln!("[{:>3}/{}] {}", i + 1, others.len(), point_line(&rec));
        run.points.push(rec);
        ipcbench::record::io::write_results(&output, &run)?;
    }
    if let (Some(py), Some(start_method)) = (&py, &python)
        && !interrupted()
    {
        eprintln!(
            "python: Python {} multiprocessing baseline ({})",
            py.version,
            start_method.as_deref().unwrap_or("fork")
        );
        let sel = python::Selection {
            transports: py_names,
            patterns: py_patterns,
            sizes: filters.sizes.clone(),
            count: None,
            start_method: start_method.clone(),
        };
        let cpus = if opts.pin {
            ipcbench::record::allowed_cpus()
        } else {
            Vec::new()
        };
        match python::run(py, profile, &sel, &cpus, Duration::from_secs(3600)) {
            Ok(out) => {
                run.points.extend(out.points);
                if let Some(c) = run.config.as_object_mut() {
                    c.insert("python".into(), out.config);
                }
                ipcbench::record::io::write_results(&output, &run)?;
            }
            Err(e) => eprintln!("warning: the Python baseline failed: {e}"),
        }
    }
    println!();
    println!(
        "{:<18} {:<22} {:>7} {:<10} (pingpong: round trip; stream: one way)",
        "transport", "pattern", "size", "wait"
    );
    for p in &run.points {
        println!("{}", point_line(p));
    }
    let skipped = run
        .points
        .iter()
        .filter(|p| p.status == Status::Skipped)
        .count();
    let failed = run
        .points
        .iter()
        .filter(|p| p.status == Status::Failed)
        .count();
    println!(
        "\n{} points measured, {failed} failed, {skipped} skipped; results: {} (CSV beside it)",
        run.points.len() - skipped,
        output.display()
    );
    if let Some(dir) = report {
        let dir = dir.unwrap_or_else(|| ipcbench::report::default_report_dir(&run));
        let index = ipcbench::report::write_report(&run, &dir)
            .with_context(|| format!("the results are kept in {}", output.display()))?;
        println!("report: {}", index.display());
    }
    if harness::run::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::bail!(
            "interrupted; the {} points measured are kept in {}",
            run.points.len(),
            output.display()
        );
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} points failed (see the results file)",
        run.points.len()
    );
    Ok(())
}
