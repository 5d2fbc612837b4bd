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
    /// Comma list of the CPUs peers are pinned to, and the Python
    /// baseline's (default: every CPU this process may run on).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
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
    /// Print the points the options select (the Python baseline's too,
    /// as its script plans them) and how long they should take, then
    /// stop: nothing is measured, nothing is written.
    #[arg(long)]
    dry_run: bool,
    /// How the Python baseline starts its processes.
    #[arg(long, value_parser = ["fork", "spawn", "forkserver"])]
    py_start_method: Option<String>,
    /// Measure the network strategies (tcp, zmq-tcp, manager-tcp) between
    /// two hosts:
    /// `netns` makes a network namespace joined to this one by a veth
    /// pair (needs root and iproute2) and removes it at the end.
    #[arg(long, value_parser = ["netns"], conflicts_with = "peer_cmd")]
    hosts: Option<String>,
    /// Start the far side of the network strategies through this command
    /// prefix (`ssh HOST`, `ip netns exec NAME`); it must run the same
    /// ipcbench binary at the same path. Needs --listen and --peer-addr.
    #[arg(long, requires_all = ["listen", "peer_addr"])]
    peer_cmd: Option<String>,
    /// The far host's address (with --peer-cmd): a manager's server runs
    /// there, listening at it, and both its clients reach it from here.
    #[arg(long)]
    peer_addr: Option<std::net::IpAddr>,
    /// The address the near side listens on, which the far side reaches
    /// (with --peer-cmd).
    #[arg(long)]
    listen: Option<std::net::IpAddr>,
    /// With --hosts netns: a delay added to the link each way (`100us`,
    /// `1ms`), with tc netem.
    #[arg(long, value_parser = parse_delay, requires = "hosts")]
    link_delay: Option<std::time::Duration>,
}

/// `100us`, `1ms`, `2s`.
fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("`{s}` has no unit: write 100us, 1ms or 2s"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a number and a unit"))?;
    match unit {
        "us" => Ok(std::time::Duration::from_micros(n)),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        _ => Err(format!("unit `{unit}` of `{s}`: write us, ms or s")),
    }
}

use ipcbench::report::analysis::{human_ns, human_rate, human_size};

fn point_line(p: &harness::PointRecord) -> String {
    let pattern = ipcbench::report::analysis::pattern_text(p);
    let transport = match &p.hosts {
        Some(_) => format!("{} (2 hosts)", p.transport),
        None => p.transport.clone(),
    };
    let head = format!(
        "{:<21} {:<22} {:>7} {:<10}",
        transport,
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

/// A point's line with its failure in red, or its skip in yellow, when
/// standard error is a colour terminal.
fn paint_point(line: &str) -> String {
    for (word, red) in [(" FAILED", true), (" skipped", false)] {
        if let Some(i) = line.find(word) {
            let rest = console::style(&line[i + 1..]).for_stderr();
            let rest = if red {
                rest.red().bold()
            } else {
                rest.yellow()
            };
            return format!("{} {rest}", &line[..i]);
        }
    }
    line.to_owned()
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
        println!("{}", console::style("failed:").red().bold());
        for p in failed {
            println!("  {}", point_line(p));
        }
    }
}

/// A point's name on the progress line and in `--dry-run`: strategy,
/// pattern, producers x consumers, size, and its wait (Python's: its load).
fn plan_line(
    strategy: &str,
    pattern: &str,
    (p, c): (usize, usize),
    size: usize,
    tail: &str,
) -> String {
    format!(
        "{strategy:<20} {pattern:<17} {p:>3}x{c:<3} {:>8}  {tail}",
        human_size(size)
    )
}

fn measurement_line(m: &harness::Measurement) -> String {
    let hosts;
    plan_line(
        if m.between_hosts() {
            hosts = format!("{} (2 hosts)", m.strategy_name());
            &hosts
        } else {
            m.strategy_name()
        },
        m.pattern_name(),
        m.procs(),
        m.size(),
        &m.wait_name(),
    )
}

fn python_line(p: &python::PlannedPoint) -> String {
    let hosts;
    plan_line(
        match p.hosts {
            Some(_) => {
                hosts = format!("{} (2 hosts)", p.transport);
                &hosts
            }
            None => &p.transport,
        },
        &p.pattern,
        p.procs,
        p.size,
        p.load.as_deref().unwrap_or(""),
    )
}

/// What `--dry-run` prints: every point the plan holds, in the order they
/// would run, each with its estimated time, the Python baseline's points
/// as its script plans them, and the estimate in all.
fn print_plan(
    plan: &harness::plan::Plan,
    estimates: &[f64],
    python: Option<&[python::PlannedPoint]>,
    profile: Profile,
) {
    let py = python.unwrap_or(&[]);
    let n = plan.measurements.len() + py.len();
    let names = plan
        .measurements
        .iter()
        .map(measurement_line)
        .chain(py.iter().map(python_line));
    for (i, (name, est)) in names.zip(estimates).enumerate() {
        println!("[{:>4}/{n}] {name}  ~{}", i + 1, human_secs(*est));
    }
    if plan.python.is_some() && python.is_none() {
        println!("and the Python baseline, which cannot run here (see the note above)");
    }
    println!(
        "{n} points in the {} profile ({} of them Python's), about {} on {} CPUs \
         (estimated from the profile's time budgets); nothing was measured (--dry-run)",
        profile.name(),
        py.len(),
        human_secs(estimates.iter().sum()),
        ipcbench::record::allowed_cpus().len()
    );
}

/// Seconds as `<1s`, `42s`, `3m05s` or `1h02m`.
fn human_secs(s: f64) -> String {
    if s < 0.5 {
        return "<1s".to_owned();
    }
    super::progress::human_duration(std::time::Duration::from_secs_f64(s))
}

/// Restricts this process, and so every peer it starts and the Python
/// baseline, to `cpus`: each must be one it may run on now. Called before
/// any other thread starts (affinity is a thread's, inherited by the
/// threads and processes it starts).
fn choose_cpus(cpus: &[usize]) -> Result<()> {
    let allowed = ipcbench::record::allowed_cpus();
    let list = |v: &[usize]| {
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        anyhow::bail!(
            "--cpus: CPU {bad} is not one this process may run on (it may run on {})",
            list(&allowed)
        );
    }
    ipcbench::record::set_cpus(cpus).with_context(|| format!("pinning to CPUs {}", list(cpus)))
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
        cpus,
        repeat,
        report,
        no_report,
        table,
        no_python,
        dry_run,
        py_start_method,
        hosts,
        peer_cmd,
        listen,
        peer_addr,
        link_delay,
    } = args;
    if !cpus.is_empty() {
        choose_cpus(&cpus)?;
    }
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
    filters.hosts = hosts.is_some() || peer_cmd.is_some();
    let plan = harness::plan::plan(profile, &filters, !no_python)?;
    let exe = std::env::current_exe().context("finding the ipcbench binary for the peers")?;
    let mut opts = profile.opts(exe);
    opts.pin = !no_pin;
    // The second host lives as long as the run (dropped at its end; a
    // second signal or `ipcbench clean` removes it otherwise).
    let _netns = match (hosts.as_deref(), &peer_cmd) {
        (Some("netns"), _) if !dry_run => {
            let ns = harness::hosts::Netns::create(link_delay).map_err(|e| {
                let what_to_do = if e.contains("netem") {
                    "leave out --link-delay"
                } else {
                    "run without --hosts to measure over loopback"
                };
                anyhow::anyhow!("--hosts netns: {e}; {what_to_do}")
            })?;
            opts.far = Some(ns.far());
            Some(ns)
        }
        (Some("netns"), _) => {
            // A dry run makes no namespace; its plan (the Python script's
            // too) only needs to know there will be one.
            let none = std::net::IpAddr::from([0, 0, 0, 0]);
            opts.far = Some(harness::hosts::Far {
                prefix: Vec::new(),
                listen: none,
                addr: none,
                what: "netns".to_owned(),
            });
            None
        }
        (_, Some(cmd)) => {
            let prefix: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
            anyhow::ensure!(!prefix.is_empty(), "--peer-cmd is empty");
            opts.far = Some(harness::hosts::Far {
                prefix,
                listen: listen.context("--peer-cmd needs --listen")?,
                addr: peer_addr.context("--peer-cmd needs --peer-addr")?,
                what: cmd.clone(),
            });
            None
        }
        _ => None,
    };
    // Python's plan came out empty under the filters (not: no Python).
    let mut python_emptied = false;
    let python = match &plan.python {
        None => None,
        Some(sel) => {
            let sel = python::Selection {
                start_method: py_start_method.clone(),
                far: python::FarServer::of(&opts),
                ..sel.clone()
            };
            match python::find().and_then(|py| Ok((python::plan(&py, profile, &sel)?, py))) {
                // The filters left Python nothing to measure (`--procs`).
                Ok((planned, _)) if planned.is_empty() => {
                    python_emptied = true;
                    None
                }
                Ok((planned, py)) => Some(PythonPhase {
                    py,
                    profile,
                    cpus: if opts.pin {
                        ipcbench::record::allowed_cpus()
                    } else {
                        Vec::new()
                    },
                    start_method: py_start_method,
                    planned,
                }),
                Err(e) => {
                    eprintln!(
                        "note: {e}; the run goes on without the Python baseline (--no-python silences this)"
                    );
                    None
                }
            }
        }
    };
    if plan.measurements.is_empty() && python_emptied {
        anyhow::bail!(
            "the filters select nothing to measure, Python's points included \
             (--procs keeps only the process counts it names; `ipcbench run --dry-run` lists a plan)"
        );
    }
    let estimates: Vec<f64> = plan
        .measurements
        .iter()
        .map(|m| harness::plan::estimate::seconds(m, &opts, repeat as usize))
        .chain(python.iter().flat_map(|p| {
            p.planned
                .iter()
                .map(|pp| harness::plan::estimate::python_seconds(pp, profile))
        }))
        .collect();
    if dry_run {
        print_plan(
            &plan,
            &estimates,
            python.as_ref().map(|p| p.planned.as_slice()),
            profile,
        );
        return Ok(());
    }
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
        "cpus": ipcbench::record::allowed_cpus(),
        "warmup": opts.warmup,
        "pingpong_iters": opts.pingpong_iters,
        "stream_bytes": opts.stream_bytes,
        "deadline_s": opts.deadline.as_secs(),
        "budget_s": opts.budget.as_secs_f64(),
        "procs": filters.procs.iter().map(|(n, m)| format!("{n}x{m}")).collect::<Vec<_>>(),
        "repeat": repeat,
        "rates": rates.iter().map(|r| r.label()).collect::<Vec<_>>(),
        "estimated_s": estimates.iter().sum::<f64>().round(),
        "hosts": opts.far.as_ref().map(|f| f.what.clone()),
    });
    harness::run::install_interrupt_handler()
        .context("listening for SIGINT, SIGTERM and SIGHUP")?;
    let py_points = python.as_ref().map_or(0, |p| p.planned.len());
    eprintln!(
        "ipcbench run ({}): {} points on {} CPUs{}, about {}; results in {}",
        profile.name(),
        plan.measurements.len(),
        ipcbench::record::allowed_cpus().len(),
        if py_points > 0 {
            format!(", then {py_points} of the Python baseline")
        } else {
            String::new()
        },
        human_secs(estimates.iter().sum()),
        output.display()
    );
    let rust_points = plan.measurements.len();
    let mut progress = super::progress::Progress::new(estimates, std::io::stderr().is_terminal());
    let run = harness::run::run_all(
        &plan,
        &opts,
        repeat as usize,
        config,
        &output,
        python.as_ref(),
        |event| match event {
            Event::Starting { index, what, .. } => {
                progress.starting(index, &measurement_line(what));
            }
            Event::Measured { index, rec, .. } => {
                progress.finished(index, &paint_point(&point_line(rec)));
            }
            Event::PythonStarting(what) => {
                progress.line(&format!("python: {what}"));
                if let Some(first) = python.as_ref().and_then(|p| p.planned.first()) {
                    progress.starting(rust_points, &python_line(first));
                }
            }
            Event::Python(python::Said::Measured { index, line, .. }) => {
                let line = line.split_once("] ").map_or(line, |(_, l)| l);
                progress.finished(rust_points + index, &paint_point(line));
                if let Some(next) = python.as_ref().and_then(|p| p.planned.get(index + 1)) {
                    progress.starting(rust_points + index + 1, &python_line(next));
                }
            }
            Event::Python(python::Said::Other(line)) => progress.line(line),
            Event::PythonFailed(e) => {
                progress.line(&format!("warning: the Python baseline failed: {e}"))
            }
        },
    );
    progress.finish();
    let run = run?;
    println!();
    if table {
        println!(
            "{:<21} {:<22} {:>7} {:<10} (pingpong: round trip; stream: one way)",
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
    let failed_text = format!("{failed} failed");
    println!(
        "\n{} points measured, {}, {skipped} skipped; results: {} (CSV beside it)",
        run.points.len() - skipped,
        if failed > 0 {
            console::style(failed_text).red().bold().to_string()
        } else {
            failed_text
        },
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
