//! `cargo bench`: every strategy between real processes, through the same
//! harness as `ipcbench run` (benches are thin: set-up and peers outside
//! timing, `iter_custom` inside).
//!
//! - `latency`: pingpong round trips of 64 B messages, and the two floors.
//! - `throughput`: one-way streams of 64 B and 64 KiB messages.
//! - `scaling`: aggregate throughput of 64 B messages, N producers × N
//!   consumers on one shared channel (shm-queue, manager-unix), N = 1…8;
//!   points with more busy processes than CPUs are oversubscribed, as the
//!   results file records.
//!
//! Every benchmark starts its peers once (a harness session): each
//! `iter_custom` call is one more round of exactly `iters` round trips or
//! messages (scaling: `iters` in all, split among the producers), every
//! message checked, and returns the time the peers measured. When a
//! scaling benchmark ends, its consumers' digests must show every message
//! received exactly once. A strategy whose short validation point fails is
//! reported and left out, never timed.
//!
//! `cargo bench -- <filter>` narrows it as criterion users expect, and the
//! filter is applied before anything starts: `cargo bench -- shm-ring`
//! starts only shm-ring's peers, `cargo bench -- --list` starts none.
//!
//! At the end the last round of every benchmark is written to
//! `results/bench-<time>.json` (CSV beside it), in the schema every report
//! reads, each with criterion's own estimate and interval beside the
//! round's percentiles, and its report to `reports/bench-<time>/`, which
//! links to criterion's (`target/criterion/report/index.html`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use ipcbench::harness::{
    Pattern, PointRecord, PointSpec, RunOpts, RunRecord, Session, Strategy, run_point,
};
use ipcbench::record::{CriterionEstimate, Machine, SCHEMA_VERSION, rfc3339_now};
use ipcbench::shm::Wait;
use ipcbench::transport::TransportKind;

/// Every benchmark's last record, by its criterion id
/// (`latency/shm-ring/spin/64`).
static RECORDS: Mutex<Vec<(String, PointRecord)>> = Mutex::new(Vec::new());

/// What criterion was asked for, read from the same arguments before any
/// peer starts (criterion's own filter is private to it): its filter, and
/// whether it only lists. The arguments are criterion's (`cargo bench --
/// --help`); this reads only the filter, `--exact`, `--ignored` and
/// `--list`, stepping over the options that take a value.
struct Asked {
    filter: Filter,
    list: bool,
}

enum Filter {
    All,
    Regex(regex::Regex),
    Exact(String),
    Nothing,
}

impl Asked {
    fn from_args() -> Asked {
        const TAKE_VALUE: [&str; 20] = [
            "-c",
            "--color",
            "-s",
            "--save-baseline",
            "-b",
            "--baseline",
            "--baseline-lenient",
            "--format",
            "--profile-time",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--plotting-backend",
            "--output-format",
            "--logfile",
        ];
        let (mut filter, mut exact, mut ignored, mut list) = (None, false, false, false);
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--exact" => exact = true,
                "--ignored" => ignored = true,
                "--list" => list = true,
                a if TAKE_VALUE.contains(&a) => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                _ => filter = filter.or(Some(a)),
            }
        }
        let filter = match filter {
            _ if ignored => Filter::Nothing,
            None => Filter::All,
            Some(f) if exact => Filter::Exact(f),
            // A filter that is not a regular expression: criterion
            // itself says so when it reads the arguments.
            Some(f) => regex::Regex::new(&f).map_or(Filter::All, Filter::Regex),
        };
        Asked { filter, list }
    }

    /// Whether criterion will run the benchmark `id`.
    fn wants(&self, id: &str) -> bool {
        match &self.filter {
            Filter::All => true,
            Filter::Regex(r) => r.is_match(id),
            Filter::Exact(e) => e == id,
            Filter::Nothing => false,
        }
    }
}

static ASKED: std::sync::LazyLock<Asked> = std::sync::LazyLock::new(Asked::from_args);

/// Where criterion writes: as criterion chooses it (`CRITERION_HOME`,
/// else `$CARGO_TARGET_DIR/criterion`, else the target directory's
/// `criterion`), the target directory found from this executable's place
/// in it (`target/release/deps/ipc-…`) rather than by asking cargo.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn opts() -> RunOpts {
    RunOpts {
        exe: env!("CARGO_BIN_EXE_ipcbench").into(),
        warmup: 200,
        deadline: Duration::from_secs(120),
        ..RunOpts::default()
    }
}

/// Strategies and the waiting each is measured with.
fn strategies(with_floor: bool) -> Vec<(Strategy, Wait)> {
    let mut v = Vec::new();
    if with_floor {
        v.push((Strategy::Floor, Wait::SPIN));
        v.push((Strategy::Floor, Wait::PARK));
    }
    for k in TransportKind::ALL {
        let s = Strategy::Transport(*k);
        if s.has_wait() {
            v.push((s, Wait::SPIN));
            v.push((s, Wait::SPIN_PARK));
        } else {
            v.push((s, Wait::SPIN_PARK));
        }
    }
    v
}

fn label(spec: &PointSpec) -> String {
    format!("{}/{}", spec.strategy.name(), spec.wait_name())
}

/// Runs a short point first: a strategy that does not validate is not timed.
fn validates(spec: &PointSpec) -> bool {
    let o = RunOpts {
        fixed_count: Some(200),
        warmup: 20,
        ..opts()
    };
    let r = run_point(spec, &o);
    if let Some(e) = &r.error {
        eprintln!(
            "skipping {} {} {} B: it failed validation: {e}",
            label(spec),
            spec.pattern.name(),
            spec.size
        );
        RECORDS.lock().unwrap().push((String::new(), r));
        return false;
    }
    true
}

/// Keeps `r` as the last record of the benchmark `id`.
fn keep(id: &str, r: PointRecord) {
    let mut recs = RECORDS.lock().unwrap();
    recs.retain(|(i, _)| i != id);
    recs.push((id.to_owned(), r));
}

/// Benchmarks `spec` in the group `g` as `name`/`param` with peers started
/// once: each `iter_custom` call is a round of `iters`. Nothing starts
/// unless criterion will run it.
fn bench_session(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    (group, name, param): (&str, &str, usize),
    spec: &PointSpec,
) {
    let full_id = format!("{group}/{name}/{param}");
    let id = BenchmarkId::new(name, param);
    if ASKED.list {
        // Criterion lists it without calling the routine.
        g.bench_function(id, |_| {});
        return;
    }
    if !ASKED.wants(&full_id) || !validates(spec) {
        return;
    }
    let mut session = match Session::start(spec, &opts()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping {}: its peers did not start: {e}", label(spec));
            return;
        }
    };
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let r = session.round(iters).unwrap_or_else(|e| {
                panic!(
                    "{} {} {} B failed while being timed: {e}",
                    label(spec),
                    spec.pattern.name(),
                    spec.size
                )
            });
            let d = Session::duration(&r, iters.max(2));
            keep(&full_id, r);
            d
        })
    });
    if let Err(e) = session.finish() {
        eprintln!("{} failed its final check: {e}", label(spec));
        let mut recs = RECORDS.lock().unwrap();
        if let Some((_, r)) = recs.iter_mut().find(|(i, _)| *i == full_id) {
            r.fail(e.to_string());
        }
    }
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    g.throughput(Throughput::Elements(1));
    for (strategy, wait) in strategies(true) {
        let size = if strategy == Strategy::Floor { 8 } else { 64 };
        let spec = PointSpec::one_to_one(strategy, Pattern::Pingpong, size, wait);
        bench_session(&mut g, ("latency", &label(&spec), size), &spec);
    }
    g.finish();
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    for size in [64usize, 64 << 10] {
        g.throughput(Throughput::Bytes(size as u64));
        for (strategy, wait) in strategies(false) {
            let spec = PointSpec::one_to_one(strategy, Pattern::Stream, size, wait);
            bench_session(&mut g, ("throughput", &label(&spec), size), &spec);
        }
    }
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    g.throughput(Throughput::Elements(1));
    for (kind, wait) in [
        (TransportKind::ShmQueue, Wait::SPIN_PARK),
        (TransportKind::ManagerUnix, Wait::SPIN_PARK),
    ] {
        for n in [1usize, 2, 4, 8] {
            let spec = PointSpec {
                strategy: Strategy::Transport(kind),
                pattern: Pattern::Mpmc,
                size: 64,
                wait,
                producers: n,
                consumers: n,
            };
            let id = format!(
                "{}/{}",
                label(&spec),
                if n == 1 {
                    "1x1".to_owned()
                } else {
                    format!("{n}x{n}")
                }
            );
            bench_session(&mut g, ("scaling", &id, 64), &spec);
        }
    }
    g.finish();
}

/// Criterion's estimate for the benchmark `id`, as it wrote it in `dir`
/// during this run (a file older than `since` is another run's).
fn estimate(dir: &Path, id: &str, since: SystemTime) -> Option<CriterionEstimate> {
    #[derive(serde::Deserialize)]
    struct Interval {
        confidence_level: f64,
        lower_bound: f64,
        upper_bound: f64,
    }
    #[derive(serde::Deserialize)]
    struct Estimate {
        confidence_interval: Interval,
        point_estimate: f64,
    }
    #[derive(serde::Deserialize)]
    struct Estimates {
        mean: Estimate,
        median: Estimate,
        slope: Option<Estimate>,
    }
    // Criterion's directory for `group/function/parameter`: each part
    // with the characters a file name cannot hold made `_`.
    let mut path = dir.to_owned();
    let mut parts = id.splitn(2, '/').collect::<Vec<_>>();
    let rest = parts.pop()?;
    let (function, param) = rest.rsplit_once('/')?;
    parts.extend([function, param]);
    for p in parts {
        path.push(p.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_"));
    }
    path.push("new/estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).ok()? >= since;
    let e: Estimates = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let (statistic, t) = match &e.slope {
        Some(s) => ("slope", s),
        None => ("mean", &e.mean),
    };
    fresh.then(|| CriterionEstimate {
        id: id.to_owned(),
        statistic: statistic.to_owned(),
        ns: t.point_estimate,
        interval_ns: [
            t.confidence_interval.lower_bound,
            t.confidence_interval.upper_bound,
        ],
        confidence: t.confidence_interval.confidence_level,
        median_ns: e.median.point_estimate,
    })
}

fn main() {
    let criterion_dir = criterion_dir();
    let started = SystemTime::now();
    // 20 samples of rounds of growing length over 3 s, and 10,000
    // bootstrap resamples rather than 100,000: with 100,000, drawing
    // criterion's report took 5.5 s a benchmark here (KDEs of every
    // resampled statistic), 9.9 minutes in all; with 10,000 the intervals
    // move by under 1% of their width and `cargo bench` takes about 4½
    // minutes on 2 cores.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .nresamples(10_000)
        .output_directory(&criterion_dir)
        .configure_from_args();
    latency(&mut c);
    throughput(&mut c);
    scaling(&mut c);
    c.final_summary();
    let recs = std::mem::take(&mut *RECORDS.lock().unwrap());
    if recs.is_empty() {
        return;
    }
    let points = recs
        .into_iter()
        .map(|(id, mut r)| {
            r.criterion = estimate(&criterion_dir, &id, started);
            r
        })
        .collect();
    let criterion_report = criterion_dir.join("report/index.html");
    let started_at = rfc3339_now();
    let run = RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: format!(
            "bench-{}",
            started_at.replace([':', '-'], "").trim_end_matches('Z')
        ),
        started_at,
        machine: Machine::current(),
        config: serde_json::json!({
            "source": "cargo bench",
            "warmup": opts().warmup,
            "criterion_report": criterion_report.is_file().then(|| criterion_report.display().to_string()),
        }),
        points,
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("results/{}.json", run.run_id));
    match ipcbench::record::io::write_results(&path, &run) {
        Ok(()) => eprintln!("results: {} (CSV beside it)", path.display()),
        Err(e) => eprintln!("error: {e}"),
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reports")
        .join(&run.run_id);
    match ipcbench::report::write_report(&run, &dir) {
        Ok(index) => eprintln!("report: {}", index.display()),
        Err(e) => eprintln!("error: the report could not be written: {e}"),
    }
}
