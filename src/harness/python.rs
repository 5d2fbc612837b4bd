//! Python's multiprocessing, measured by `scripts/pybench.py` (built into
//! the binary, so a run needs only `python3` on the PATH) into the same
//! results schema, and merged into the run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::plan::Profile;
use crate::record::PointRecord;

/// The script, as shipped in `scripts/pybench.py`.
pub const SCRIPT: &str = include_str!("../../scripts/pybench.py");

/// The Python transports, as the script names them, with what each is.
pub const TRANSPORTS: [(&str, &str); 27] = [
    ("py-pipe", "Pipe() with send_bytes/recv_bytes"),
    ("py-queue", "Queue(), unbounded"),
    ("py-queue-bounded", "Queue(maxsize=64)"),
    ("py-simplequeue", "SimpleQueue()"),
    ("py-manager-queue", "Manager().Queue() proxies"),
    ("py-manager-dict", "Manager().dict() proxies, set then get"),
    (
        "py-manager-list",
        "Manager().list() proxies, one per client: append, then [i]",
    ),
    (
        "py-manager-namespace",
        "a Manager().Namespace() proxy, an attribute per client: set, then read",
    ),
    (
        "py-manager-value",
        "Manager().Value('d') proxies, one per client: .value set, then read",
    ),
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
        "py-rlock",
        "RLock() taken twice around an increment of a RawValue",
    ),
    (
        "py-condition",
        "Condition() over a one-slot RawValue: wait_for, fill or empty, notify",
    ),
    (
        "py-barrier",
        "Barrier(N) passed again and again, a Value bumped under its lock before each pass",
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

/// The patterns the script measures.
pub const PATTERNS: [&str; 18] = [
    "pingpong",
    "stream",
    "mpmc",
    "reqrep",
    "lock-increment",
    "event-pingpong",
    "joinable",
    "startup",
    "pool",
    "pool-cpu",
    "rate",
    "reqrep-rate",
    "rlock-increment",
    "condition-handoff",
    "barrier-cycle",
    "reqrep-list",
    "reqrep-namespace",
    "reqrep-value",
];

/// Whether `name` is a Python transport.
pub fn is_python(name: &str) -> bool {
    TRANSPORTS.iter().any(|(n, _)| *n == name)
}

/// The interpreter found on the PATH, with its version.
#[derive(Debug, Clone)]
pub struct Python {
    /// The command.
    pub exe: PathBuf,
    /// `3.11.7`.
    pub version: String,
}

/// Finds `python3` (3.9 or later), or says why not.
pub fn find() -> Result<Python, String> {
    let exe = PathBuf::from("python3");
    let out = Command::new(&exe)
        .args([
            "-c",
            "import sys, platform; print(platform.python_version()); sys.exit(sys.version_info < (3, 9))",
        ])
        .output()
        .map_err(|e| format!("python3 was not found ({e})"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!(
            "python3 is {version}; the baseline needs 3.9 or later"
        ));
    }
    Ok(Python { exe, version })
}

/// What the script is asked to measure.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Python transports (empty: all).
    pub transports: Vec<String>,
    /// Patterns (empty: all the script knows).
    pub patterns: Vec<String>,
    /// Sizes (empty: the profile's).
    pub sizes: Vec<usize>,
    /// Exactly this many messages per peer (tests).
    pub count: Option<u64>,
    /// `fork` (default), `spawn` or `forkserver`.
    pub start_method: Option<String>,
    /// Open-loop loads (`--rates`; empty: the profile's ladder).
    pub rates: Vec<String>,
    /// Process counts, producers × consumers as the points count them
    /// (`--procs`; empty: the profile's).
    pub procs: Vec<(usize, usize)>,
    /// A second host: `py-basemanager-tcp`'s points (pingpong, stream,
    /// mpmc, reqrep) and `py-basemanager-pool`'s farms are measured again
    /// with their server there, each right after its loopback twin.
    pub far: Option<FarServer>,
}

/// The second host a BaseManager's server runs on, and the `ipcbench`
/// binary (at the same path there) that starts it.
#[derive(Debug, Clone)]
pub struct FarServer {
    /// The host.
    pub far: super::hosts::Far,
    /// The binary.
    pub ipcbench: PathBuf,
}

impl FarServer {
    /// The run's second host, if it has one.
    pub fn of(opts: &super::RunOpts) -> Option<FarServer> {
        opts.far.as_ref().map(|far| FarServer {
            far: far.clone(),
            ipcbench: opts.exe.clone(),
        })
    }
}

/// The script's results: its points and its configuration.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The points measured, in the suite's schema.
    pub points: Vec<PointRecord>,
    /// The script's `config` (Python version, start method, …).
    pub config: serde_json::Value,
}

/// One point the script will measure, as its `--plan` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPoint {
    /// `py-pipe`.
    pub transport: String,
    /// `pingpong`.
    pub pattern: String,
    /// Bytes.
    pub size: usize,
    /// Producers (clients, processes) and consumers (workers).
    pub procs: (usize, usize),
    /// An open-loop point's load (`max`, `80%`, `10k`).
    pub load: Option<String>,
    /// Between two hosts: what the hosts are (`netns`).
    pub hosts: Option<String>,
}

/// The points the script would measure with `profile` and `sel`, in order,
/// asked of the script itself (`--plan`, read from standard input: no
/// file is written and no process started).
pub fn plan(py: &Python, profile: Profile, sel: &Selection) -> Result<Vec<PlannedPoint>, String> {
    let mut cmd = Command::new(&py.exe);
    cmd.arg("-")
        .args(script_args(profile, sel, &[]))
        .args(["--output", "-", "--plan"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", py.exe.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    // The script is read to its end before it runs: write it all, then
    // close its input.
    let written = stdin.write_all(SCRIPT.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for python3: {e}"))?;
    written.map_err(|e| format!("giving python3 the script: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the Python baseline cannot plan its points ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse().ok());
            match (f.len(), num(2), num(3), num(4)) {
                (7, Some(size), Some(p), Some(c)) => Ok(PlannedPoint {
                    transport: f[0].to_owned(),
                    pattern: f[1].to_owned(),
                    size,
                    procs: (p, c),
                    load: (!f[5].is_empty()).then(|| f[5].to_owned()),
                    hosts: (!f[6].is_empty()).then(|| f[6].to_owned()),
                }),
                _ => Err(format!(
                    "the Python baseline's plan has a line it cannot be: {l:?}"
                )),
            }
        })
        .collect()
}

/// The script's options for `profile`, `sel` and `cpus` (none: unpinned).
fn script_args(profile: Profile, sel: &Selection, cpus: &[usize]) -> Vec<String> {
    let mut a = vec!["--profile".to_owned(), profile.name().to_owned()];
    let mut opt = |name: &str, v: String| {
        a.push(name.to_owned());
        a.push(v);
    };
    let list = |v: &[String]| v.join(",");
    if !sel.transports.is_empty() {
        opt("--transports", list(&sel.transports));
    }
    if !sel.patterns.is_empty() {
        opt("--patterns", list(&sel.patterns));
    }
    if !sel.sizes.is_empty() {
        let s: Vec<String> = sel.sizes.iter().map(|s| s.to_string()).collect();
        opt("--sizes", s.join(","));
    }
    if !sel.rates.is_empty() {
        opt("--rates", sel.rates.join(","));
    }
    if !sel.procs.is_empty() {
        let p: Vec<String> = sel.procs.iter().map(|(n, m)| format!("{n}x{m}")).collect();
        opt("--procs", p.join(","));
    }
    if let Some(n) = sel.count {
        opt("--count", n.to_string());
    }
    if let Some(m) = &sel.start_method {
        opt("--start-method", m.clone());
    }
    if let Some(f) = &sel.far {
        let far = serde_json::json!({
            "prefix": f.far.prefix,
            "addr": f.far.addr.to_string(),
            "what": f.far.what,
            "ipcbench": f.ipcbench,
        });
        opt("--far", far.to_string());
    }
    if cpus.is_empty() {
        a.push("--no-pin".to_owned());
    } else {
        let c: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        opt("--cpus", c.join(","));
    }
    a
}

/// What the script says as it goes: a point measured (`[ 12/264] …`,
/// its place and the plan's length), or any other line.
#[derive(Debug)]
pub enum Said<'a> {
    /// Point `index` (from 0) of `of` was measured; `line` is the script's.
    Measured {
        /// Its place.
        index: usize,
        /// The plan's length.
        of: usize,
        /// The line.
        line: &'a str,
    },
    /// Anything else the script wrote to its standard error.
    Other(&'a str),
}

impl<'a> Said<'a> {
    fn of(line: &'a str) -> Said<'a> {
        let counts = line
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .and_then(|(c, _)| c.split_once('/'))
            .and_then(|(i, n)| Some((i.trim().parse::<usize>().ok()?, n.parse().ok()?)));
        match counts {
            Some((i, of)) if i >= 1 => Said::Measured {
                index: i - 1,
                of,
                line,
            },
            _ => Said::Other(line),
        }
    }
}

/// Runs the script with `profile` and `sel`, pinning to `cpus` unless
/// empty; what it says as it goes is given to `said`, line by line. The
/// script's own per-point deadline ends a stuck point; `deadline` bounds
/// the whole.
pub fn run(
    py: &Python,
    profile: Profile,
    sel: &Selection,
    cpus: &[usize],
    deadline: Duration,
    said: impl FnMut(Said<'_>),
) -> Result<Outcome, String> {
    // Private (0700), its name random and created exclusively, removed
    // when it goes out of scope; after a crash `ipcbench clean` finds it
    // by the pid in its name ([`leftover_dirs`]).
    let dir = tempfile::Builder::new()
        .prefix(&dir_prefix(std::process::id()))
        .tempdir()
        .map_err(|e| format!("creating a private directory for the Python baseline: {e}"))?;
    run_in(py, profile, sel, cpus, deadline, dir.path(), said)
}

/// `ipcbench peer py-basemanager-serve ADDR`, on the second host: the
/// Python baseline's BaseManager server at `addr` (the script, run with
/// `--serve-basemanager`), its authkey in the environment. It prints its
/// port and serves until its standard input, which it shares with this
/// process, closes; this process ends with it (and takes it down if this
/// one is killed first: the kernel's parent-death signal).
pub fn serve_basemanager(addr: &str) -> Result<std::process::ExitStatus, String> {
    let py = find()?;
    let dir = tempfile::Builder::new()
        .prefix(&dir_prefix(std::process::id()))
        .tempdir()
        .map_err(|e| format!("creating a private directory for the BaseManager server: {e}"))?;
    let script = dir.path().join("pybench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    let mut cmd = Command::new(&py.exe);
    cmd.arg(&script).args(["--serve-basemanager", addr]);
    crate::transport::fd::die_with_parent_in_child(&mut cmd);
    let status = cmd
        .status()
        .map_err(|e| format!("starting {}: {e}", py.exe.display()))?;
    Ok(status)
}

/// How the Python baseline's directories under the temporary directory
/// begin: `ipcbench-<pid>-pybench-`.
fn dir_prefix(pid: u32) -> String {
    format!("ipcbench-{pid}-pybench-")
}

/// The Python baseline's directories under the temporary directory, with
/// the pid of the run that made each.
pub fn leftover_dirs() -> Vec<(std::path::PathBuf, u32)> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let pid: u32 = name
                .strip_prefix("ipcbench-")?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            (name.starts_with(&dir_prefix(pid)) && e.path().is_dir()).then(|| (e.path(), pid))
        })
        .collect()
}

fn run_in(
    py: &Python,
    profile: Profile,
    sel: &Selection,
    cpus: &[usize],
    deadline: Duration,
    dir: &Path,
    mut said: impl FnMut(Said<'_>),
) -> Result<Outcome, String> {
    let script = dir.join("pybench.py");
    let output = dir.join("python.json");
    let stop_file = dir.join("stop");
    std::fs::File::create(&script)
        .and_then(|mut f| f.write_all(SCRIPT.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", script.display()))?;
    let mut cmd = Command::new(&py.exe);
    cmd.arg(&script)
        .args(script_args(profile, sel, cpus))
        .arg("--output")
        .arg(&output)
        .arg("--stop-file")
        .arg(&stop_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A Ctrl-C at a terminal is for this process: the script and its
    // workers finish the point in progress, and are then asked to stop by
    // the stop file (the script gives SIGTERM back to its workers).
    crate::transport::fd::ignore_stop_signals_in_child(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", py.exe.display()))?;
    // Its lines are read by a thread of their own and handed over here,
    // between looks at whether it has ended or was asked to stop.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    let mut asked_to_stop = false;
    let status = loop {
        for l in lines.try_iter() {
            said(Said::of(&l));
        }
        if !asked_to_stop && super::run::interrupted() {
            asked_to_stop = true;
            if let Err(e) = std::fs::write(&stop_file, b"") {
                said(Said::Other(&format!(
                    "python: cannot ask the baseline to stop ({e}); it runs to its end"
                )));
            }
        }
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if t0.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for python3: {e}")),
        }
    };
    // Its last lines. The pipe ends when the script and every worker that
    // inherited it are gone: a worker a killed script left behind must not
    // hold this up, so the reader is given two seconds, then left.
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(l) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        said(Said::of(&l));
    }
    drop(reader);
    // The script writes its results after every point: whatever it
    // measured is kept, even if it was stopped.
    let text = std::fs::read_to_string(&output).map_err(|e| {
        format!(
            "the Python baseline wrote no results ({e}); exit status {}",
            status.map_or("-".into(), |s| s.to_string())
        )
    })?;
    let run: crate::harness::RunRecord = serde_json::from_str(&text)
        .map_err(|e| format!("the Python baseline's results do not match the schema: {e}"))?;
    if status.is_none() {
        said(Said::Other(&format!(
            "python: stopped after {} s; {} points kept",
            deadline.as_secs(),
            run.points.len()
        )));
    }
    Ok(Outcome {
        points: run.points,
        config: run.config,
    })
}
