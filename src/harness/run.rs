//! The scheduler: a plan's measurements run one after another, each
//! repeated and its median kept, the results file rewritten after every
//! point, then the Python baseline; Ctrl-C stops after the current point.

use crate::shm::sync::{AtomicBool, AtomicU32, Ordering};
use std::path::Path;
use std::time::{Duration, Instant};

use super::plan::{Plan, Profile};
use super::rate::{self, Capacities};
use super::spec::{Measurement, RunOpts};
use super::{point, pool, python, startup, sync};
use crate::record::io::{WriteError, write_results};
use crate::record::{Machine, PointRecord, RunRecord, SCHEMA_VERSION, Status, rfc3339_now};

/// Set by the signal handler: finish the current point, then stop.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The signal that stopped the run (SIGINT, SIGTERM or SIGHUP), 0 if none.
static STOPPED_BY: AtomicU32 = AtomicU32::new(0);

/// Makes Ctrl-C (SIGINT), SIGTERM (a CI job cancelled, `timeout`) and
/// SIGHUP (the terminal gone) stop the run after the current point: the
/// results so far are kept and the report written. Ctrl-C reaches the
/// peers too (one process group) and ends the point at once; SIGTERM sent
/// to the run alone lets its current point finish. A second signal stops
/// the run at once ([`super::stop::now`]): every process it started is
/// killed and reaped and their shared-memory files removed. The signals
/// are taken by a thread of their own (`signal-hook`), so that the
/// second one can do that work, which a signal handler may not.
pub fn install_interrupt_handler() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                // Relaxed: flags read between points; nothing else is
                // published through them.
                if INTERRUPTED.swap(true, Ordering::Relaxed) {
                    super::stop::now(sig);
                }
                STOPPED_BY.store(sig as u32, Ordering::Relaxed);
                eprintln!(
                    "\nstopping after the current point (results and report are kept); \
                     a second signal stops at once"
                );
            }
        })?;
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    // Relaxed: see `install_interrupt_handler`.
    match STOPPED_BY.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

/// Measures a point `n` times (`measure`) and keeps the median repeat, by
/// its key figure, with every repeat's figure in `repeats`. A repeat that
/// fails makes the point fail: a failure is never averaged away.
pub fn median_of(n: usize, mut measure: impl FnMut() -> PointRecord) -> PointRecord {
    let mut recs = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let r = measure();
        if r.status != Status::Ok || n <= 1 {
            return r;
        }
        recs.push(r);
        // Relaxed: see `install_interrupt_handler`.
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
    }
    let figure = |r: &PointRecord| r.key_figure().unwrap_or(f64::NAN);
    let figures: Vec<f64> = recs.iter().map(figure).collect();
    let floors: Vec<Vec<f64>> = recs.iter().map(|r| r.adjacent_floors.clone()).collect();
    let mut order: Vec<usize> = (0..recs.len()).collect();
    order.sort_by(|&a, &b| figures[a].total_cmp(&figures[b]));
    let mut median = recs.swap_remove(order[order.len() / 2]);
    median.repeats = figures;
    if floors.iter().any(|f| !f.is_empty()) {
        median.repeat_floors = floors;
    }
    pool_repeats(&mut median, &recs);
    median
}

/// Gives the kept repeat `kept` what every repeat measured: the time
/// measured in all, every batch (so its intervals are over all of them)
/// and the histograms merged, from which its percentiles are read again
/// (a tail from every repeat, not from the one whose median was in the
/// middle). `others` are the repeats not kept.
fn pool_repeats(kept: &mut PointRecord, others: &[PointRecord]) {
    use super::measure::{decode, encode, summary};
    if let Some(total) = others
        .iter()
        .map(|r| r.measured_ns)
        .try_fold(kept.measured_ns.unwrap_or(0), |t, m| Some(t + m?))
        .filter(|_| kept.measured_ns.is_some())
    {
        kept.measured_ns = Some(total);
    }
    for r in others {
        kept.batches.extend_from_slice(&r.batches);
    }
    let merged = std::iter::once(&*kept)
        .chain(others)
        .map(|r| r.histogram.as_deref().map(decode))
        .try_fold(None::<hdrhistogram::Histogram<u64>>, |acc, h| match h {
            Some(Ok(h)) => Some(Some(match acc {
                Some(mut a) => {
                    let _ = a.add(&h);
                    a
                }
                None => h,
            })),
            _ => None,
        })
        .flatten();
    if let Some(h) = merged {
        kept.latency_ns = summary(&h);
        kept.histogram = encode(&h);
    }
    if !kept.batches.is_empty() {
        kept.ci95 = crate::record::Ci95::of_point(kept);
    }
}

/// Measures `m` once; an open-loop point's load may be a fraction of a
/// capacity measured earlier in the run (`capacities`).
pub fn measure(m: &Measurement, opts: &RunOpts, capacities: &Capacities) -> PointRecord {
    // The second host is for `Hosts` measurements only.
    if let Measurement::Hosts(inner) = m {
        if opts.far.is_none() {
            let mut rec = PointRecord::unmeasured(
                m.strategy_name(),
                m.pattern_name(),
                m.size(),
                m.procs(),
                &m.wait_name(),
            );
            rec.fail("between two hosts needs a second host (--hosts netns or --peer-cmd)");
            return rec;
        }
        return measure_here(inner, opts, capacities, true);
    }
    if opts.far.is_some() {
        let here = RunOpts {
            far: None,
            ..opts.clone()
        };
        return measure_here(m, &here, capacities, false);
    }
    measure_here(m, opts, capacities, false)
}

/// Measures `m` with `opts`; `between`: with the second host `opts` has,
/// whose open-loop capacities are apart.
fn measure_here(
    m: &Measurement,
    opts: &RunOpts,
    capacities: &Capacities,
    between: bool,
) -> PointRecord {
    match m {
        Measurement::Rate(r) => rate::run_point(r, opts, capacities.of(r, between), None),
        Measurement::Channel(s) => point::run_point(s, opts),
        Measurement::Primitive(s) => sync::run_point(s, opts),
        Measurement::Farm(s) => pool::run_point(s, opts),
        Measurement::Startup(method) => startup::run_point(*method, opts),
        // Planned only at the top (never nested); as `measure` does.
        Measurement::Hosts(inner) => measure_here(inner, opts, capacities, between),
    }
}

/// What the scheduler tells whoever shows progress.
#[derive(Debug)]
pub enum Event<'a> {
    /// Measurement `index` (of `of`) is about to run.
    Starting {
        /// Its place in the plan.
        index: usize,
        /// The plan's length.
        of: usize,
        /// What it is.
        what: &'a Measurement,
        /// Since the run started.
        elapsed: Duration,
    },
    /// Measurement `index` ran (its median repeat).
    Measured {
        /// Its place in the plan.
        index: usize,
        /// The plan's length.
        of: usize,
        /// Its record.
        rec: &'a PointRecord,
        /// Since the run started.
        elapsed: Duration,
    },
    /// The Python baseline starts (`Python 3.11.7 multiprocessing, fork`).
    PythonStarting(String),
    /// The Python baseline said something: a point measured, or another line.
    Python(python::Said<'a>),
    /// The Python baseline failed; the run goes on without it.
    PythonFailed(String),
}

/// The Python baseline's part of a run: the interpreter found, and how
/// to run the script.
#[derive(Debug, Clone)]
pub struct PythonPhase {
    /// The interpreter.
    pub py: python::Python,
    /// The profile the script measures with.
    pub profile: Profile,
    /// CPUs to pin to (none: unpinned).
    pub cpus: Vec<usize>,
    /// The script's start method (`fork` unless given).
    pub start_method: Option<String>,
    /// The points it will measure ([`python::plan`]).
    pub planned: Vec<python::PlannedPoint>,
}

/// Measures `plan` (each measurement `repeats` times, the median kept;
/// floors at least three times), rewriting `output` after each point, then
/// the Python baseline when `python` is given and the plan selects some of
/// it. `progress` hears of each step. A write error stops the run (the
/// last complete file is kept).
pub fn run_all(
    plan: &Plan,
    opts: &RunOpts,
    repeats: usize,
    config: serde_json::Value,
    output: &Path,
    python: Option<&PythonPhase>,
    mut progress: impl FnMut(Event<'_>),
) -> Result<RunRecord, WriteError> {
    let started_at = rfc3339_now();
    let mut run = RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: format!(
            "{}-{}",
            started_at.replace([':', '-'], "").trim_end_matches('Z'),
            std::process::id()
        ),
        started_at,
        machine: Machine::current(),
        config,
        points: Vec::new(),
    };
    write_results(output, &run)?;
    let t0 = Instant::now();
    let of = plan.measurements.len();
    let mut capacities = Capacities::default();
    for (index, what) in plan.measurements.iter().enumerate() {
        if interrupted() {
            break;
        }
        progress(Event::Starting {
            index,
            of,
            what,
            elapsed: t0.elapsed(),
        });
        let n = if what.is_floor() {
            repeats.max(3)
        } else {
            repeats
        };
        let rec = median_of(n, || measure(what, opts, &capacities));
        if let Measurement::Rate(r) = what.beneath_hosts() {
            capacities.learn(r, &rec);
        }
        progress(Event::Measured {
            index,
            of,
            rec: &rec,
            elapsed: t0.elapsed(),
        });
        // An interrupted point is not a result.
        if interrupted() && rec.status != Status::Ok {
            break;
        }
        run.points.push(rec);
        write_results(output, &run)?;
    }
    if let (Some(phase), Some(sel)) = (python, &plan.python)
        && !interrupted()
    {
        progress(Event::PythonStarting(format!(
            "Python {} multiprocessing baseline ({})",
            phase.py.version,
            phase.start_method.as_deref().unwrap_or("fork")
        )));
        let sel = python::Selection {
            start_method: phase.start_method.clone(),
            far: python::FarServer::of(opts),
            ..sel.clone()
        };
        match python::run(
            &phase.py,
            phase.profile,
            &sel,
            &phase.cpus,
            Duration::from_secs(3600),
            |said| progress(Event::Python(said)),
        ) {
            Ok(out) => {
                run.points.extend(out.points);
                if let Some(c) = run.config.as_object_mut() {
                    c.insert("python".into(), out.config);
                }
                write_results(output, &run)?;
            }
            Err(e) => progress(Event::PythonFailed(e)),
        }
    }
    Ok(run)
}

/// Whether Ctrl-C asked the run to stop.
pub fn interrupted() -> bool {
    // Relaxed: see `install_interrupt_handler`.
    INTERRUPTED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_keep_the_median_and_a_failure_fails() {
        let rec = |p50: u64| {
            let mut r = PointRecord::unmeasured("shm-ring", "pingpong", 64, (1, 1), "spin");
            r.pass();
            r.latency_ns = Some(crate::harness::Latency {
                mean: p50 as f64,
                p50,
                p90: p50,
                p99: p50,
                p999: p50,
                p9999: None,
                max: p50,
            });
            r
        };
        let mut figures = [300, 100, 200].into_iter();
        let m = median_of(3, || rec(figures.next().unwrap()));
        assert_eq!(m.latency_ns.unwrap().p50, 200);
        assert_eq!(m.repeats, vec![300.0, 100.0, 200.0]);
        let mut n = 0;
        let failed = median_of(3, || {
            n += 1;
            let mut r = rec(100);
            if n == 2 {
                r.fail("checksum mismatch");
            }
            r
        });
        assert!(failed.status == Status::Failed && !failed.validated && failed.error.is_some());
        assert_eq!(n, 2, "a failed repeat ends the point");
        assert!(median_of(1, || rec(5)).repeats.is_empty());
    }

    /// Five repeats of a round trip on a machine that changed speed
    /// between them: three slow (floors 600 ns) and two fast (floors
    /// 200 ns), the fast ones with more round trips. The pooled median
    /// (about 350 ns) read over the kept repeat's floors (600 ns) would
    /// call the point 0.6× its floor, below the least work it must do; each
    /// repeat read over its own floors gives 1.5 to 1.75×, the median 1.58.
    #[test]
    fn each_repeat_is_read_over_its_own_floors() {
        use super::super::measure::{encode, summary};
        let rec = |p50: u64, n: u64, floor: f64| {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            h.record_n(p50, n).unwrap();
            let mut r = PointRecord::unmeasured("shm-ring", "pingpong", 64, (1, 1), "spin");
            r.pass();
            r.latency_ns = summary(&h);
            r.histogram = encode(&h);
            r.adjacent_floors = vec![floor, floor];
            r
        };
        let mut reps = [
            (1000, 100, 600.0),
            (900, 100, 600.0),
            (300, 1000, 200.0),
            (350, 1000, 200.0),
            (950, 100, 600.0),
        ]
        .into_iter();
        let m = median_of(5, || {
            let (p50, n, f) = reps.next().unwrap();
            rec(p50, n, f)
        });
        assert_eq!(m.adjacent_floors, vec![600.0, 600.0], "the kept repeat's");
        let pooled = m.latency_ns.unwrap().p50 as f64;
        assert!(pooled < 400.0, "pooled median {pooled}");
        assert_eq!(m.repeat_floors.len(), 5);
        let k = crate::record::floor_multiple(&m).unwrap();
        assert!((k - 950.0 / 600.0).abs() < 1e-9, "{k}");
        assert!(crate::harness::floors::stands(&m));
        // Repeats whose floors disagree are left out; none agreeing, none.
        let mut m2 = m.clone();
        m2.repeat_floors[0] = vec![400.0, 600.0];
        m2.repeat_floors[4] = vec![400.0, 600.0];
        let k2 = crate::record::floor_multiple(&m2).unwrap();
        assert!((k2 - 1.5).abs() < 1e-9, "{k2}");
        for f in &mut m2.repeat_floors {
            *f = vec![100.0, 300.0];
        }
        assert_eq!(crate::record::floor_multiple(&m2), None);
    }

    /// A stream's repeats at 90, 100 and 200 k msgs/s: the kept figure
    /// (the median repeat's, 100 k) lies inside the interval pooled over
    /// every repeat's batches, which on their own centre elsewhere.
    #[test]
    fn a_repeated_rate_lies_inside_its_interval() {
        let rec = |per_s: f64, batch_per_s: f64| {
            let mut r = PointRecord::unmeasured("shm-ring", "stream", 64, (1, 1), "spin");
            r.pass();
            r.throughput = Some(crate::record::Throughput {
                msgs_per_s: per_s,
                bytes_per_s: per_s * 64.0,
            });
            // Eight batches, each read at `batch_per_s` messages a second.
            r.batches = vec![(0, batch_per_s); 8];
            r
        };
        let mut runs = [(90e3, 90e3), (100e3, 300e3), (200e3, 300e3)].into_iter();
        let m = median_of(3, || {
            let (f, b) = runs.next().unwrap();
            rec(f, b)
        });
        let figure = m.throughput.unwrap().msgs_per_s;
        assert_eq!(figure, 100e3);
        let [lo, hi] = m.ci95.unwrap().msgs_per_s.unwrap();
        assert!(
            lo <= figure && figure <= hi,
            "{figure} outside [{lo}, {hi}]"
        );
        // The pooled batches alone read well above it.
        let pooled = crate::record::Ci95::of_batches(&m.batches, None, None)
            .unwrap()
            .msgs_per_s
            .unwrap();
        assert!(pooled[0] > figure, "{pooled:?}");
    }
}
