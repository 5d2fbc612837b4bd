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
//! reported and left out, never timed. At the end the last record of every benchmark is written to
//! `results/bench-<time>.json` (CSV beside it), in the schema every report
//! reads, and its report to `reports/bench-<time>/`. `cargo bench --
//! <filter>` narrows it as criterion users expect.

use std::sync::Mutex;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use ipcbench::harness::{
    Pattern, PointRecord, PointSpec, RunOpts, RunRecord, Session, Strategy, run_point,
};
use ipcbench::record::{Machine, SCHEMA_VERSION, rfc3339_now};
use ipcbench::shm::Wait;
use ipcbench::transport::TransportKind;

static RECORDS: Mutex<Vec<PointRecord>> = Mutex::new(Vec::new());

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
        RECORDS.lock().unwrap().push(r);
        return false;
    }
    true
}

/// Keeps `r` as the benchmark's last record.
fn keep(r: PointRecord) {
    let mut recs = RECORDS.lock().unwrap();
    recs.retain(|p| {
        !(p.transport == r.transport
            && p.pattern == r.pattern
            && p.msg_size == r.msg_size
            && p.wait == r.wait
            && p.producers == r.producers
            && p.consumers == r.consumers)
    });
    recs.push(r);
}

/// Benchmarks `spec` with peers started once: each `iter_custom` call is a
/// round of `iters`.
fn bench_session(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    spec: &PointSpec,
) {
    if !validates(spec) {
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
            keep(r);
            d
        })
    });
    if let Err(e) = session.finish() {
        eprintln!("{} failed its final check: {e}", label(spec));
        let mut recs = RECORDS.lock().unwrap();
        if let Some(r) = recs.iter_mut().rev().find(|r| {
            r.transport == spec.strategy.name()
                && r.pattern == spec.pattern.name()
                && r.producers == spec.producers
        }) {
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
        bench_session(&mut g, BenchmarkId::new(label(&spec), size), &spec);
    }
    g.finish();
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    for size in [64usize, 64 << 10] {
        g.throughput(Throughput::Bytes(size as u64));
        for (strategy, wait) in strategies(false) {
            let spec = PointSpec::one_to_one(strategy, Pattern::Stream, size, wait);
            bench_session(&mut g, BenchmarkId::new(label(&spec), size), &spec);
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
            bench_session(&mut g, BenchmarkId::new(id, 64), &spec);
        }
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();
    latency(&mut c);
    throughput(&mut c);
    scaling(&mut c);
    c.final_summary();
    let points = std::mem::take(&mut *RECORDS.lock().unwrap());
    if points.is_empty() {
        return;
    }
    let started_at = rfc3339_now();
    let run = RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: format!(
            "bench-{}",
            started_at.replace([':', '-'], "").trim_end_matches('Z')
        ),
        started_at,
        machine: Machine::current(),
        config: serde_json::json!({ "source": "cargo bench", "warmup": opts().warmup }),
        points,
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("results/{}.json", run.run_id));
    match ipcbench::record::io::write_results(&path, &run) {
        Ok(()) => eprintln!("results: {} (CSV beside it)", path.display()),
        Err(e) => eprintln!("error: {e}"),
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reports")
        .join(&run.run_id);
    match ipcbench::report::write_report(&run, &dir) {
        Ok(index) => eprintln!("report: {}", index.display()),
        Err(e) => eprintln!("error: the report could not be written: {e}"),
    }
}
