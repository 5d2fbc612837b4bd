//! The `ipcbench` command line.

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(loom))]
mod cli {
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{Context, Result};
    use clap::{Parser, Subcommand};
    use ipcbench::harness::{self, PeerArgs, Strategy};
    use ipcbench::peer::{self, Pattern};
    use ipcbench::shm::Wait;
    use ipcbench::shm::region;
    use ipcbench::transport::{LinkOpts, Side, TransportKind};

    /// Which IPC strategy should I use, and how far is it from what the hardware allows?
    #[derive(Parser)]
    #[command(version, about)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    /// The options of `ipcbench run`.
    #[derive(clap::Args)]
    struct RunArgs {
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

    #[derive(Subcommand)]
    enum Cmd {
        /// Measure every strategy (or those selected) between real processes
        /// and write a results file (JSON, with CSV beside it).
        Run(RunArgs),
        /// Write the report of a results file: REPORT.md, index.html (plots
        /// inline, readable offline) and the plots as SVG.
        Report {
            /// A results file of `ipcbench run` or `cargo bench`.
            results: std::path::PathBuf,
            /// The directory to write (default reports/<run id>/).
            #[arg(long)]
            out: Option<std::path::PathBuf>,
        },
        /// Compare two results files point by point; exits with status 2
        /// when a point got worse beyond the noise (or fails in B only).
        Compare {
            /// The baseline.
            a: std::path::PathBuf,
            /// The run compared with it.
            b: std::path::PathBuf,
            /// Relative change taken for noise (0.25 = 25%).
            #[arg(long, default_value_t = ipcbench::report::compare::DEFAULT_THRESHOLD)]
            threshold: f64,
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
            role: Role,
        },
    }

    #[derive(Subcommand)]
    enum Role {
        /// Send checked frames into a ring.
        RingSend {
            region: String,
            frames: u64,
            seed: u64,
            max_len: usize,
        },
        /// Receive and check frames from a ring.
        RingRecv {
            region: String,
            frames: u64,
            seed: u64,
            max_len: usize,
        },
        /// Put numbered items into a queue.
        QueuePut { region: String, id: u64, items: u64 },
        /// Get items from a queue until it is closed, marking each in a raw region.
        QueueGet { region: String, seen: String },
        /// Echo messages on end 1 of a pipe until end 0 closes.
        PipeEcho {
            region: String,
            /// Close after echoing this many messages.
            #[arg(long)]
            count: Option<u64>,
        },
        /// Increment a plain counter under a semaphore used as a mutex.
        SemCount {
            sem: String,
            counter: String,
            iters: u64,
        },
        /// Serve a manager (queues, dict, lock, counter) on `unix:PATH` or
        /// `tcp:IP:PORT`; the authkey comes from IPCBENCH_AUTHKEY (hex).
        ManagerServe {
            listen: String,
            #[arg(long, default_value_t = LinkOpts::default().max_message)]
            max_message: usize,
        },
        /// Measure one side of a benchmark point (started by the harness).
        Bench(PeerArgs),
        /// One process of a synchronisation-primitive point.
        Sync(harness::sync::SyncArgs),
        /// A task-farm worker: takes tasks until there are none, answers each.
        PoolWorker(harness::pool::WorkerArgs),
        /// A started process's first message: write VALUE (8 bytes,
        /// little-endian) into descriptor FD, then exit.
        Hello { fd: i32, value: u64 },
        /// Join a link of any transport as one side and act on it.
        Link {
            transport: TransportKind,
            addr: String,
            side: Side,
            /// The largest message the link carries.
            #[arg(long, default_value_t = LinkOpts::default().max_message)]
            max_message: usize,
            #[command(subcommand)]
            action: LinkAction,
        },
    }

    #[derive(Subcommand)]
    enum LinkAction {
        /// Echo messages until the peer closes (or `--count` were echoed).
        Echo {
            #[arg(long)]
            count: Option<u64>,
        },
        /// Send checked messages, then close.
        Send { n: u64, seed: u64, max_len: usize },
        /// Receive and check messages, then expect the end of the stream.
        Recv { n: u64, seed: u64, max_len: usize },
    }

    /// The Python baseline's transports, as `ipcbench list` shows them.
    const PY_DESCRIPTIONS: [(&str, &str); 21] = [
        ("py-pipe", "Pipe() with send_bytes/recv_bytes"),
        ("py-queue", "Queue(), unbounded"),
        ("py-queue-bounded", "Queue(maxsize=64)"),
        ("py-simplequeue", "SimpleQueue()"),
        ("py-manager-queue", "Manager().Queue() proxies"),
        ("py-manager-dict", "Manager().dict() proxies, set then get"),
        (
            "py-basemanager-tcp",
            "a BaseManager serving queues and a dict over TCP loopback, with an authkey",
        ),
        (
            "py-shared-memory",
            "shared_memory by hand: a slot per direction, a spinning flag",
        ),
        ("py-lock", "Lock() around an increment of a RawValue"),
        (
            "py-semaphore",
            "Semaphore(1) around an increment of a RawValue",
        ),
        ("py-value", "Value('q') incremented under its get_lock()"),
        (
            "py-array",
            "Array('d', 16), every element bumped under its get_lock()",
        ),
        ("py-event", "two Events handing a turn back and forth"),
        (
            "py-joinable-queue",
            "JoinableQueue(): 64 items put then join(), each got and task_done()",
        ),
        (
            "py-start-fork",
            "Process(...).start() with the fork start method, to its first message",
        ),
        (
            "py-start-forkserver",
            "Process(...).start() with forkserver, to its first message",
        ),
        (
            "py-start-spawn",
            "Process(...).start() with spawn, to its first message",
        ),
        ("py-pool-map", "Pool(W).map(task, tasks), default chunksize"),
        (
            "py-pool-map-chunk1",
            "Pool(W).map(task, tasks, chunksize=1)",
        ),
        (
            "py-pool-apply-async",
            "Pool(W).apply_async(task) for every task, then every get()",
        ),
        (
            "py-basemanager-pool",
            "BaseManager over TCP serving a task and a result queue to W workers",
        ),
    ];

    /// `compare` found a regression (exit status 2).
    #[derive(Debug, thiserror::Error)]
    #[error("{0} point(s) regressed")]
    struct Regressed(usize);

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.downcast_ref::<Regressed>().is_some() => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn run(cli: Cli) -> Result<()> {
        match cli.cmd {
            Cmd::Clean { dry_run } => clean(dry_run),
            Cmd::Run(args) => run_cmd(args),
            Cmd::Report { results, out } => {
                let run = ipcbench::report::read_results(&results).map_err(anyhow::Error::msg)?;
                let dir = out.unwrap_or_else(|| ipcbench::report::default_report_dir(&run));
                let index = ipcbench::report::write_report(&run, &dir)?;
                println!(
                    "report: {} (REPORT.md and plots beside it)",
                    index.display()
                );
                Ok(())
            }
            Cmd::Compare { a, b, threshold } => {
                anyhow::ensure!(
                    threshold >= 0.0 && threshold.is_finite(),
                    "--threshold must be a fraction such as 0.25, not {threshold}"
                );
                let ra = ipcbench::report::read_results(&a).map_err(anyhow::Error::msg)?;
                let rb = ipcbench::report::read_results(&b).map_err(anyhow::Error::msg)?;
                let c = ipcbench::report::compare::compare(&ra, &rb, threshold);
                print!(
                    "{}",
                    ipcbench::report::compare::render(
                        &c,
                        &a.display().to_string(),
                        &b.display().to_string()
                    )
                );
                if c.regressions() > 0 {
                    return Err(Regressed(c.regressions()).into());
                }
                Ok(())
            }
            Cmd::List => {
                for k in TransportKind::ALL {
                    println!("{:<19} {}", k.name(), k.description());
                }
                for p in harness::sync::Prim::ALL {
                    println!("{:<19} {}", p.name(), p.description());
                }
                for m in harness::startup::Method::ALL {
                    println!("{:<19} {}", m.name(), m.description());
                }
                for (name, what) in PY_DESCRIPTIONS {
                    println!("{name:<19} Python multiprocessing: {what}");
                }
                Ok(())
            }
            Cmd::Peer {
                deadline_s,
                op_timeout_ms,
                role,
            } => {
                arm_peer(Duration::from_secs(deadline_s));
                let line = run_role(role, Duration::from_millis(op_timeout_ms))?;
                if !line.is_empty() {
                    println!("{line}");
                }
                Ok(())
            }
        }
    }

    /// A peer dies with its coordinator, and gives up at its deadline.
    fn arm_peer(deadline: Duration) {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has
        // no memory effects.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The parent may have died before the prctl: then we were reparented.
        if std::os::unix::process::parent_id() == 1 {
            std::process::exit(3);
        }
        std::thread::spawn(move || {
            std::thread::sleep(deadline);
            eprintln!("error: peer missed its deadline of {}s", deadline.as_secs());
            std::process::exit(4);
        });
    }

    /// Prints a measuring peer's report for its coordinator; a failed peer
    /// exits with status 1 after saying why.
    fn report_line(result: Result<harness::peer::PeerReport, String>) -> Result<String> {
        let report = result.unwrap_or_else(|e| harness::peer::PeerReport {
            error: Some(e),
            ..Default::default()
        });
        println!("{}", serde_json::to_string(&report)?);
        if report.error.is_some() {
            std::process::exit(1);
        }
        Ok(String::new())
    }

    fn run_role(role: Role, t: Duration) -> Result<String> {
        let pat = |seed, max_len| Pattern { seed, max_len };
        Ok(match role {
            Role::RingSend {
                region,
                frames,
                seed,
                max_len,
            } => peer::ring_send(&region, frames, pat(seed, max_len))?,
            Role::RingRecv {
                region,
                frames,
                seed,
                max_len,
            } => peer::ring_recv(&region, frames, pat(seed, max_len), t)?,
            Role::QueuePut { region, id, items } => peer::queue_put(&region, id, items, t)?,
            Role::QueueGet { region, seen } => peer::queue_get(&region, &seen, t)?,
            Role::PipeEcho { region, count } => peer::pipe_echo(&region, count, t)?,
            Role::SemCount {
                sem,
                counter,
                iters,
            } => peer::sem_count(&sem, &counter, iters, t)?,
            Role::Bench(args) => report_line(harness::run_peer(&args))?,
            Role::Sync(args) => report_line(harness::sync::run_peer(&args))?,
            Role::PoolWorker(args) => report_line(harness::pool::run_worker(&args))?,
            Role::Hello { fd, value } => {
                harness::startup::hello(fd, value).map_err(anyhow::Error::msg)?;
                String::new()
            }
            Role::ManagerServe {
                listen,
                max_message,
            } => {
                let key = ipcbench::transport::manager::key_from_env()?;
                ipcbench::transport::manager::serve(&listen, &key, max_message)?;
                String::new()
            }
            Role::Link {
                transport,
                addr,
                side,
                max_message,
                action,
            } => {
                let opts = LinkOpts {
                    max_message,
                    ..LinkOpts::default()
                };
                ipcbench::with_transport!(transport, T => match action {
                    LinkAction::Echo { count } => peer::link_echo::<T>(&addr, side, &opts, count, t)?,
                    LinkAction::Send { n, seed, max_len } => {
                        peer::link_send::<T>(&addr, side, &opts, n, pat(seed, max_len), t)?
                    }
                    LinkAction::Recv { n, seed, max_len } => {
                        peer::link_recv::<T>(&addr, side, &opts, n, pat(seed, max_len), t)?
                    }
                })
            }
        })
    }

    /// `64`, `64B`, `1KiB`, `4KiB`, `1MiB` (also `k`/`K`/`m`/`M`).
    fn parse_procs(s: &str) -> Result<(usize, usize), String> {
        let bad = || format!("bad process count `{s}`: write producers x consumers, as 4x4");
        let (n, m) = s.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
        match (n.trim().parse(), m.trim().parse()) {
            (Ok(n), Ok(m)) if n >= 1 && m >= 1 && n <= 64 && m <= 64 => Ok((n, m)),
            _ => Err(bad()),
        }
    }

    fn parse_size(s: &str) -> Result<usize, String> {
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
            .filter(|n| *n >= harness::msg::MIN_SIZE)
            .ok_or_else(|| {
                format!("`{s}` is not a message size of at least 8 bytes (e.g. 64, 1KiB, 1MiB)")
            })
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
            (Some(e), _, _) if e.starts_with(harness::SKIPPED) => format!("{head} {e}"),
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

    fn run_cmd(args: RunArgs) -> Result<()> {
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
        let sync_points: Vec<harness::sync::SyncSpec> = if transports.is_empty()
            || !sync_names.is_empty()
        {
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
            let t = harness::record::rfc3339_now().replace([':', '-'], "");
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
            harness::record::allowed_cpus().len(),
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
            ipcbench::report::write_results(&output, &run)?;
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
                harness::record::allowed_cpus()
            } else {
                Vec::new()
            };
            match python::run(py, profile, &sel, &cpus, Duration::from_secs(3600)) {
                Ok(out) => {
                    run.points.extend(out.points);
                    if let Some(c) = run.config.as_object_mut() {
                        c.insert("python".into(), out.config);
                    }
                    ipcbench::report::write_results(&output, &run)?;
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
            .filter(|p| {
                p.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(harness::SKIPPED))
            })
            .count();
        let failed = run.points.iter().filter(|p| !p.validated).count() - skipped;
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

    fn clean(dry_run: bool) -> Result<()> {
        #[cfg(feature = "iceoryx2")]
        {
            let c = ipcbench::transport::iceoryx2::cleanup(dry_run)
                .context("cleaning up iceoryx2's files")?;
            let verb = if dry_run { "would remove" } else { "removed" };
            println!(
                "iceoryx2: {verb} the files of {} dead node(s){}; {} node(s) running",
                c.dead_nodes,
                if c.global_segment {
                    " and its global segment"
                } else {
                    ""
                },
                c.alive_nodes
            );
        }
        let leftovers = region::list_leftovers().context("listing /dev/shm")?;
        if leftovers.is_empty() {
            println!("/dev/shm holds no ipcbench files");
            return Ok(());
        }
        let (mut removed, mut kept) = (0, 0);
        for l in &leftovers {
            let who = match l.creator {
                Some(c) if l.creator_alive => format!("creator pid {} is running", c.pid),
                Some(c) => format!("creator pid {} is gone", c.pid),
                None => "no readable header".to_owned(),
            };
            if region::is_stale(l, Duration::from_secs(60)) {
                if dry_run {
                    println!("would remove {} ({who})", l.name);
                } else {
                    region::remove_leftover(&l.name)
                        .with_context(|| format!("removing {}", l.name))?;
                    println!("removed {} ({who})", l.name);
                }
                removed += 1;
            } else {
                println!("kept    {} ({who})", l.name);
                kept += 1;
            }
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed}, kept {kept} in use");
        Ok(())
    }
}
