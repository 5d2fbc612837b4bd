//! What a report says, computed from a run's records alone: which strategy
//! wins each pattern and size, how each compares with the floor, os-pipe
//! and its Python counterpart, and what the reader should be warned of.
//! Pure functions: the same records give the same answers.

pub use crate::record::{
    BELOW_FLOOR, STEADY_FLOORS, floor_multiple, floor_range, key_figure, lower_is_better,
    vs_adjacent_floor,
};
use crate::record::{PointRecord, RunRecord, Status};

/// Each Rust strategy's Python `multiprocessing` counterparts (the first
/// is the one ratio tables use).
pub const PYTHON_COUNTERPARTS: [(&str, &str); 27] = [
    ("shm-queue", "py-queue"),
    ("shm-queue", "py-manager-dict"),
    ("shm-pipe", "py-pipe"),
    ("shm-ring", "py-shared-memory"),
    ("manager-unix", "py-manager-queue"),
    ("manager-unix", "py-manager-dict"),
    ("manager-unix", "py-manager-list"),
    ("manager-unix", "py-manager-namespace"),
    ("manager-unix", "py-manager-value"),
    ("manager-tcp", "py-basemanager-tcp"),
    ("shm-lock", "py-lock"),
    ("shm-lock", "py-value"),
    ("shm-value", "py-value"),
    ("shm-array", "py-array"),
    ("shm-semaphore", "py-semaphore"),
    ("shm-event", "py-event"),
    ("shm-joinable-queue", "py-joinable-queue"),
    ("shm-rlock", "py-rlock"),
    ("shm-condition", "py-condition"),
    ("shm-barrier", "py-barrier"),
    ("start-fork", "py-start-fork"),
    ("start-fork", "py-start-forkserver"),
    ("start-posix-spawn", "py-start-spawn"),
    ("shm-queue", "py-pool-map"),
    ("shm-queue", "py-pool-map-chunk1"),
    ("shm-queue", "py-pool-apply-async"),
    ("manager-tcp", "py-basemanager-pool"),
];

/// The Python counterpart of `transport`, if it has one.
pub fn python_counterpart(transport: &str) -> Option<&'static str> {
    PYTHON_COUNTERPARTS
        .iter()
        .find(|(r, _)| *r == transport)
        .map(|(_, p)| *p)
}

/// `1 KiB`, `64 B`, `1 MiB`.
pub fn human_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// `320 ns`, `1.25 µs`, `3.10 ms`.
pub fn human_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

/// `14.20 M/s`, `58.3 k/s`.
pub fn human_rate(r: f64) -> String {
    match r {
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k/s", r / 1e3),
        r => format!("{r:.0} /s"),
    }
}

/// `2.10 GB/s`, `350 MB/s`.
pub fn human_bytes_rate(r: f64) -> String {
    match r {
        r if r >= 1e9 => format!("{:.2} GB/s", r / 1e9),
        r if r >= 1e6 => format!("{:.0} MB/s", r / 1e6),
        r => format!("{:.0} kB/s", r / 1e3),
    }
}

/// `2.7×`, `140×`.
pub fn human_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// The 95% interval of a point's key figure (of its median latency, or of
/// its messages per second), when it has one.
pub fn key_interval(p: &PointRecord) -> Option<[f64; 2]> {
    key_figure(p)?;
    let ci = p.ci95?;
    if lower_is_better(&p.pattern) {
        ci.p50_ns
    } else {
        ci.msgs_per_s
    }
}

/// Whether two points' key figures cannot be told apart: their intervals
/// overlap. `None` when either has no interval.
pub fn overlap(a: &PointRecord, b: &PointRecord) -> Option<bool> {
    let ([a0, a1], [b0, b1]) = (key_interval(a)?, key_interval(b)?);
    Some(a0 <= b1 && b0 <= a1)
}

/// A point's interval taken over the same-work floor beside it: its key
/// figure's interval divided by the floors' range ([`floor_range`]: the
/// machine could have been at any of them while the point ran). `None` without an interval
/// or without steady floors ([`vs_adjacent_floor`]).
pub fn interval_vs_floor(p: &PointRecord) -> Option<[f64; 2]> {
    vs_adjacent_floor(p)?;
    let [lo, hi] = key_interval(p)?;
    let [fl_lo, fl_hi] = floor_range(p)?;
    Some([lo / fl_hi, hi / fl_lo])
}

/// Whether two points cannot be told apart once each is taken over the
/// floor beside it: their [`interval_vs_floor`]s overlap. On a machine
/// whose cross-core latency moves between points (a VM's vCPUs placed on
/// one core, then on two), two points whose raw intervals are far apart
/// may only have run in different weather. `None` when either has no
/// such interval.
pub fn overlap_vs_floor(a: &PointRecord, b: &PointRecord) -> Option<bool> {
    let ([a0, a1], [b0, b1]) = (interval_vs_floor(a)?, interval_vs_floor(b)?);
    Some(a0 <= b1 && b0 <= a1)
}

/// Whether `a`, ahead of `b` in raw figures, is behind it once each is
/// taken over the floor beside it: the machine ran faster under `a` (a
/// virtual machine's CPUs can move closer together: a 4 KiB round trip's
/// floor read 399 ns beside one point and 2.4 µs beside the next).
pub fn behind_vs_floor(a: &PointRecord, b: &PointRecord) -> Option<bool> {
    let ([a0, a1], [b0, b1]) = (interval_vs_floor(a)?, interval_vs_floor(b)?);
    Some(if lower_is_better(&a.pattern) {
        a0 > b1
    } else {
        a1 < b0
    })
}

/// How far apart two figures without intervals may be and still be a
/// tie: the noise `compare` assumes where it has no intervals (25%).
pub const NOISE_WITHOUT_INTERVAL: f64 = 1.25;

/// Whether the winner `a` does not lead `b`: their intervals overlap, or
/// do once each is taken over the floor beside it, or over those floors
/// `a` is behind ([`behind_vs_floor`]); or, when either has no interval,
/// `a` leads by less than [`NOISE_WITHOUT_INTERVAL`].
pub fn tied(a: &PointRecord, b: &PointRecord) -> bool {
    match overlap(a, b) {
        Some(o) => o || overlap_vs_floor(a, b) == Some(true) || behind_vs_floor(a, b) == Some(true),
        None => key_figure(a)
            .zip(key_figure(b))
            .is_some_and(|(x, y)| lead(&a.pattern, x, y) < NOISE_WITHOUT_INTERVAL),
    }
}

/// Whether a point waits without spinning: it parks, or the kernel blocks
/// it.
pub fn spins(p: &PointRecord) -> bool {
    !matches!(p.wait.as_str(), "park" | "kernel")
}

/// `a` is better than `b` for `pattern`.
pub fn better(pattern: &str, a: f64, b: f64) -> bool {
    if lower_is_better(pattern) {
        a < b
    } else {
        a > b
    }
}

/// How much better `best` is than `other` (≥ 1).
pub fn lead(pattern: &str, best: f64, other: f64) -> f64 {
    if lower_is_better(pattern) {
        other / best
    } else {
        best / other
    }
}

/// The measured points of a run (validated, with figures) on one host:
/// what the verdicts, tables and plots compare. A point between two hosts
/// is its loopback twin's double, kept to the report's section of its own
/// ("Between two hosts"); [`measured_all`] has them too.
pub fn measured(run: &RunRecord) -> impl Iterator<Item = &PointRecord> {
    measured_all(run).filter(|p| p.hosts.is_none())
}

/// Every measured point, between two hosts too (what the warnings look at).
pub fn measured_all(run: &RunRecord) -> impl Iterator<Item = &PointRecord> {
    run.points.iter().filter(|p| key_figure(p).is_some())
}

/// A point's process count as the report writes it: `2x2`, or empty for
/// one-to-one patterns.
pub fn counts(p: &PointRecord) -> String {
    match p.pattern.as_str() {
        "pingpong" | "pingpong-late" | "stream" | "rate" | "event-pingpong" | "joinable"
        | "condition-handoff" | "startup" => String::new(),
        "lock-increment" | "atomic-increment" | "rlock-increment" if p.producers == 1 => {
            "1 proc".to_owned()
        }
        "lock-increment" | "atomic-increment" | "rlock-increment" | "barrier-cycle" => {
            format!("{} procs", p.producers)
        }
        "pool" | "pool-cpu" if p.consumers == 1 => "1 worker".to_owned(),
        "pool" | "pool-cpu" => format!("{} workers", p.consumers),
        _ => format!("{}x{}", p.producers, p.consumers),
    }
}

/// The name a strategy goes by in tables and legends: `shm-ring (spin)`.
pub fn label(transport: &str, wait: &str) -> String {
    if wait == "kernel" || wait.is_empty() {
        transport.to_owned()
    } else {
        format!("{transport} ({wait})")
    }
}

/// Whether `transport` is one of the floors (which never win a verdict).
pub fn is_floor(transport: &str) -> bool {
    matches!(transport, "floor" | "floor-copy")
}

/// The transports of a run in the order first measured, `floor` excluded;
/// `floor-copy`, the copy floor of a round trip, is listed beside them as
/// the yardstick of channels made of two one-way ones.
pub fn transports(run: &RunRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &run.points {
        if p.transport != "floor" && !out.contains(&p.transport) {
            out.push(p.transport.clone());
        }
    }
    out
}

/// The waiting strategy that serves `transport` best for `pattern`: the one
/// with the best figure at the size closest to 64 B (then any size).
pub fn best_wait(run: &RunRecord, transport: &str, pattern: &str) -> Option<String> {
    let pts: Vec<&PointRecord> = measured(run)
        .filter(|p| p.transport == transport && p.pattern == pattern)
        .collect();
    let size = pts
        .iter()
        .map(|p| p.msg_size)
        .min_by_key(|s| s.abs_diff(64))?;
    pts.iter()
        .filter(|p| p.msg_size == size)
        .filter_map(|p| Some((p, key_figure(p)?)))
        .reduce(|a, b| if better(pattern, b.1, a.1) { b } else { a })
        .map(|(p, _)| p.wait.clone())
}

/// The waiting strategy that serves `transport` best for `pattern` at
/// `size` (one-to-one points).
pub fn best_wait_at(
    run: &RunRecord,
    transport: &str,
    pattern: &str,
    size: usize,
) -> Option<String> {
    measured(run)
        .filter(|p| {
            p.transport == transport
                && p.pattern == pattern
                && p.msg_size == size
                && p.producers == 1
                && p.consumers == 1
        })
        .filter_map(|p| Some((p, key_figure(p)?)))
        .reduce(|a, b| if better(pattern, b.1, a.1) { b } else { a })
        .map(|(p, _)| p.wait.clone())
}

/// The point of `transport`/`wait`/`pattern` at `size` (one-to-one).
pub fn point<'a>(
    run: &'a RunRecord,
    transport: &str,
    wait: &str,
    pattern: &str,
    size: usize,
) -> Option<&'a PointRecord> {
    measured(run).find(|p| {
        p.transport == transport && p.wait == wait && p.pattern == pattern && p.msg_size == size
    })
}

/// A floor point (`spin` or `park`).
pub fn floor<'a>(run: &'a RunRecord, wait: &str) -> Option<&'a PointRecord> {
    measured(run).find(|p| p.transport == "floor" && p.pattern == "pingpong" && p.wait == wait)
}

/// One row of the verdict: the winner of a pattern at a size.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The pattern.
    pub pattern: String,
    /// Bytes per message.
    pub size: usize,
    /// The winning point.
    pub best: PointRecord,
    /// The best point of the next strategy, if any other was measured.
    pub runner_up: Option<PointRecord>,
    /// How many strategies competed.
    pub contenders: usize,
    /// The other strategies the winner does not lead ([`tied`]): their
    /// interval overlaps the winner's, raw or over the floor beside each,
    /// or without intervals they are within 25% of it (empty when it
    /// leads).
    pub tied: Vec<PointRecord>,
    /// Whether the winner and the runner-up both have intervals (so a
    /// lead or a tie is supported by them).
    pub has_intervals: bool,
    /// The best strategy that does not spin (parks, or blocks in the
    /// kernel), when the winner spins.
    pub without_spinning: Option<PointRecord>,
}

impl Verdict {
    /// How much better the winner is than the runner-up.
    pub fn lead(&self) -> Option<f64> {
        let r = self.runner_up.as_ref()?;
        Some(lead(&self.pattern, key_figure(&self.best)?, key_figure(r)?))
    }

    /// Whether the winner's lead is inside the intervals (a tie).
    pub fn is_tie(&self) -> bool {
        !self.tied.is_empty()
    }
}

/// The patterns in the order reports show them.
pub const PATTERNS: [&str; 19] = [
    "pingpong",
    "stream",
    "fan-in",
    "fan-out",
    "mpmc",
    "reqrep",
    "reqrep-list",
    "reqrep-namespace",
    "reqrep-value",
    "pool",
    "pool-cpu",
    "lock-increment",
    "rlock-increment",
    "atomic-increment",
    "event-pingpong",
    "condition-handoff",
    "barrier-cycle",
    "joinable",
    "startup",
];

/// For each pattern and size measured: the fastest strategy (its best
/// waiting strategy and process count) and the next one. Floors and points
/// with more busy processes than CPUs do not compete (the latter only when
/// the pattern has points that are not oversubscribed).
pub fn verdicts(run: &RunRecord) -> Vec<Verdict> {
    let mut out = Vec::new();
    for pattern in PATTERNS {
        // Between two hosts is not the same contest as on one.
        let pts: Vec<&PointRecord> = measured(run)
            .filter(|p| p.pattern == pattern && !is_floor(&p.transport))
            .collect();
        let mut sizes: Vec<usize> = pts.iter().map(|p| p.msg_size).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            let at: Vec<&PointRecord> =
                pts.iter().copied().filter(|p| p.msg_size == size).collect();
            let fair: Vec<&PointRecord> = if at.iter().any(|p| !p.oversubscribed) {
                at.iter().copied().filter(|p| !p.oversubscribed).collect()
            } else {
                at
            };
            let fair_all = fair.clone();
            // The best point of each transport.
            let mut per: Vec<(&PointRecord, f64)> = Vec::new();
            for p in fair {
                let Some(f) = key_figure(p) else { continue };
                match per.iter_mut().find(|(q, _)| q.transport == p.transport) {
                    Some(e) if better(pattern, f, e.1) => *e = (p, f),
                    Some(_) => {}
                    None => per.push((p, f)),
                }
            }
            per.sort_by(|a, b| {
                if better(pattern, a.1, b.1) {
                    std::cmp::Ordering::Less
                } else if better(pattern, b.1, a.1) {
                    std::cmp::Ordering::Greater
                } else {
                    a.0.transport.cmp(&b.0.transport)
                }
            });
            if let Some((best, _)) = per.first() {
                let runner_up = per.get(1).map(|(p, _)| *p);
                let tied = per[1..]
                    .iter()
                    .filter(|(p, _)| tied(best, p))
                    .map(|(p, _)| (*p).clone())
                    .collect();
                // The best point that does not spin, among every point
                // of the size (a strategy's best point may be a spinning
                // one while its parking one is the answer here).
                let without_spinning = if spins(best) {
                    fair_all
                        .iter()
                        .filter(|p| p.msg_size == size && !spins(p))
                        .filter_map(|p| Some((*p, key_figure(p)?)))
                        .reduce(|a, b| if better(pattern, b.1, a.1) { b } else { a })
                        .map(|(p, _)| p.clone())
                } else {
                    None
                };
                out.push(Verdict {
                    pattern: pattern.to_owned(),
                    size,
                    best: (*best).clone(),
                    runner_up: runner_up.cloned(),
                    contenders: per.len(),
                    tied,
                    has_intervals: runner_up
                        .is_some_and(|r| key_interval(best).is_some() && key_interval(r).is_some()),
                    without_spinning,
                });
            }
        }
    }
    out
}

/// One row of the pingpong ratio table (64 B, each strategy at its best
/// waiting strategy).
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// The strategy's point.
    pub point: PointRecord,
    /// Median round trip over the spin floor's.
    pub vs_spin_floor: Option<f64>,
    /// Median round trip over the park floor's.
    pub vs_park_floor: Option<f64>,
    /// Pingpong: median round trip over the copy floor of a round trip's
    /// (`floor-copy`) at this size: the one measured beside the point when
    /// those agree ([`vs_adjacent_floor`]), else the run's.
    pub vs_copy_floor: Option<f64>,
    /// Stream: messages per second over the copy floor's at this size.
    pub of_copy_floor: Option<f64>,
    /// Whether the floor ratio above is against the floor measured beside
    /// the point ([`vs_adjacent_floor`]) rather than the run's floor point.
    pub floor_beside: bool,
    /// Median round trip over os-pipe's (os-pipe over this one's: > 1 means faster).
    pub speedup_vs_os_pipe: Option<f64>,
    /// Speedup over the Python counterpart.
    pub speedup_vs_python: Option<(String, f64)>,
}

/// The size the ratio tables compare at: 64 B when measured, else the
/// smallest pingpong size.
pub fn ratio_size(run: &RunRecord) -> Option<usize> {
    let sizes: Vec<usize> = measured(run)
        .filter(|p| p.pattern == "pingpong" && !is_floor(&p.transport))
        .map(|p| p.msg_size)
        .collect();
    if sizes.contains(&64) {
        Some(64)
    } else {
        sizes.into_iter().min()
    }
}

/// Each strategy's figure for `pattern` at `size` against the floors,
/// os-pipe and its Python counterpart (each at its own best waiting).
pub fn ratios(run: &RunRecord, pattern: &str, size: usize) -> Vec<Ratio> {
    let best = |t: &str| -> Option<&PointRecord> {
        let w = best_wait_at(run, t, pattern, size)?;
        point(run, t, &w, pattern, size)
    };
    let fig = |p: Option<&PointRecord>| p.and_then(key_figure);
    let spin = fig(floor(run, "spin"));
    let park = fig(floor(run, "park"));
    let copy = fig(measured(run)
        .find(|p| p.transport == "floor" && p.pattern == "stream" && p.msg_size == size))
    .filter(|_| pattern == "stream");
    let round_trip_copy =
        fig(point(run, "floor-copy", "spin", "pingpong", size)).filter(|_| pattern == "pingpong");
    let os_pipe = fig(best("os-pipe"));
    let mut out = Vec::new();
    for t in transports(run) {
        let Some(p) = best(&t) else { continue };
        let Some(f) = key_figure(p) else { continue };
        let latency = lower_is_better(pattern);
        // The park floor is the yardstick of strategies that sleep.
        let sleeps = matches!(p.wait.as_str(), "park" | "kernel");
        // The same-work floor beside the point: the round trip's or the
        // stream's copy floor at this size.
        let beside = vs_adjacent_floor(p);
        out.push(Ratio {
            vs_spin_floor: spin.filter(|_| latency).map(|s| f / s),
            vs_park_floor: park.filter(|_| latency && sleeps).map(|s| f / s),
            vs_copy_floor: if pattern == "pingpong" {
                beside.or(round_trip_copy.map(|c| f / c))
            } else {
                None
            },
            of_copy_floor: beside
                .filter(|_| pattern == "stream")
                .or(copy.map(|c| f / c)),
            floor_beside: beside.is_some() && matches!(pattern, "pingpong" | "stream"),
            speedup_vs_os_pipe: os_pipe.map(|o| lead(pattern, f, o)),
            speedup_vs_python: python_counterpart(&t)
                .and_then(|py| Some((py.to_owned(), lead(pattern, f, fig(best(py))?)))),
            point: p.clone(),
        });
    }
    out.sort_by(|a, b| {
        let (x, y) = (key_figure(&a.point), key_figure(&b.point));
        let (x, y) = (x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN));
        if better(pattern, x, y) {
            std::cmp::Ordering::Less
        } else if better(pattern, y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    out
}

/// A warning for the reader, with what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// One line.
    pub what: String,
    /// What to make of it, or do.
    pub advice: String,
    /// The points concerned (labels), a few at most.
    pub points: Vec<String>,
}

/// A point named for warnings: `shm-ring pingpong 64 B spin`.
pub fn point_name(p: &PointRecord) -> String {
    format!(
        "{}{} {} {} {}",
        p.transport,
        if p.hosts.is_some() { " (2 hosts)" } else { "" },
        pattern_text(p),
        human_size(p.msg_size),
        p.wait
    )
}

/// A point's pattern with its process counts and, open loop, its load:
/// `mpmc 2x2`, `rate 80%`, `reqrep-rate 2x1 10k`.
pub fn pattern_text(p: &PointRecord) -> String {
    let c = counts(p);
    let mut t = p.pattern.clone();
    for part in [Some(c.as_str()), p.rate.load.as_deref()]
        .into_iter()
        .flatten()
    {
        if !part.is_empty() {
            t.push(' ');
            t.push_str(part);
        }
    }
    t
}

/// A p99 this many times the median marks a point as noisy.
pub const NOISY_SPREAD: f64 = 10.0;
/// Fewer measured messages than this is too few to trust a tail.
pub const FEW_SAMPLES: u64 = 1000;

/// What the reader should know before trusting the figures.
pub fn warnings(run: &RunRecord) -> Vec<Warning> {
    const SHOWN: usize = 8;
    let names = |v: Vec<&PointRecord>| -> Vec<String> {
        let n = v.len();
        let mut out: Vec<String> = v.into_iter().take(SHOWN).map(point_name).collect();
        if n > SHOWN {
            out.push(format!("… and {} more", n - SHOWN));
        }
        out
    };
    let mut out = Vec::new();
    let failed: Vec<&PointRecord> = run
        .points
        .iter()
        .filter(|p| p.status == Status::Failed)
        .collect();
    if !failed.is_empty() {
        out.push(Warning {
            what: format!(
                "{} point(s) failed validation and have no figures",
                failed.len()
            ),
            advice: "a failed point is a wrong or lost message, a dead peer or a missed deadline; \
                     its error is in the results file and in the table of all points"
                .into(),
            points: failed
                .iter()
                .take(SHOWN)
                .map(|p| {
                    format!(
                        "{}: {}",
                        point_name(p),
                        p.error.as_deref().unwrap_or("no error recorded")
                    )
                })
                .collect(),
        });
    }
    let skipped: Vec<&PointRecord> = run.points.iter().filter(|p| p.is_skipped()).collect();
    if !skipped.is_empty() {
        out.push(Warning {
            what: format!("{} point(s) were skipped on purpose", skipped.len()),
            advice: "pure spinning with more busy processes than CPUs measures the scheduler; \
                     the same points with spin-yield, spin-park and park are measured"
                .into(),
            points: names(skipped),
        });
    }
    let over: Vec<&PointRecord> = measured_all(run).filter(|p| p.oversubscribed).collect();
    if !over.is_empty() {
        out.push(Warning {
            what: format!(
                "{} point(s) ran more busy processes than the {} CPU(s) of this machine",
                over.len(),
                run.machine.cores
            ),
            advice: "read them as behaviour under contention (time slicing, wake-ups), not as the \
                     channel's speed; they do not compete in the verdict when points that fit the \
                     CPUs exist"
                .into(),
            points: names(over),
        });
    }
    // Open-loop tails are what their own section is about.
    let noisy: Vec<&PointRecord> = measured_all(run)
        .filter(|p| !crate::record::open_loop(&p.pattern))
        .filter(|p| {
            p.latency_ns
                .is_some_and(|l| l.p50 > 0 && l.p99 as f64 > NOISY_SPREAD * l.p50 as f64)
        })
        .collect();
    if !noisy.is_empty() {
        out.push(Warning {
            what: format!(
                "{} point(s) have a wide spread (p99 more than {NOISY_SPREAD}× the median)",
                noisy.len()
            ),
            advice: "their tails were shaped by something else on the machine or by queueing \
                     (a stream's producer running ahead); compare medians, and rerun on a quiet \
                     machine before trusting a tail"
                .into(),
            points: names(noisy),
        });
    }
    let few: Vec<&PointRecord> = measured_all(run)
        .filter(|p| p.messages < FEW_SAMPLES)
        .collect();
    if !few.is_empty() {
        let profile = run.config.get("profile").and_then(|v| v.as_str());
        out.push(Warning {
            what: format!(
                "{} point(s) rest on fewer than {FEW_SAMPLES} messages",
                few.len()
            ),
            advice: match profile {
                Some("quick") => "their percentiles beyond p99 are a handful of samples; the \
                                  default profile measures each point for 0.5 s, --full for 2 s"
                    .into(),
                Some("default") => "their percentiles beyond p99 are a handful of samples: each \
                                    message took so long that the time budget held few (a \
                                    one-to-one point measures at least 1,000 round trips or \
                                    10,000 messages when that takes at most 8 budgets); --full \
                                    measures each point for 2 s"
                    .into(),
                _ => "their percentiles beyond p99 are a handful of samples: each message took \
                      so long that the time budget held few"
                    .into(),
            },
            points: names(few),
        });
    }
    let below: Vec<&PointRecord> = measured_all(run)
        .filter(|p| floor_multiple(p).is_some_and(|m| m < BELOW_FLOOR))
        .collect();
    if !below.is_empty() {
        out.push(Warning {
            what: format!(
                "{} point(s) read below {BELOW_FLOOR}× the same-work floor measured beside them",
                below.len()
            ),
            advice: "a floor does the least work any strategy must, so this is a bug in the floor \
                     or in the point (a message not checked, a copy skipped), or the machine moved \
                     between the point and its floors on each of its tries (up to three); do not \
                     quote these figures"
                .into(),
            points: names(below),
        });
    }
    // Start-up and task farms are unpinned by design (processes come and
    // go; workers are the scheduler's to place).
    let by_design = |p: &PointRecord| matches!(p.pattern.as_str(), "startup" | "pool" | "pool-cpu");
    let unpinned: Vec<&PointRecord> = measured_all(run)
        .filter(|p| !p.pinned && !p.oversubscribed && !by_design(p))
        .collect();
    if !unpinned.is_empty() {
        let asked_not_to = run.config.get("pin").and_then(|v| v.as_bool()) == Some(false);
        out.push(Warning {
            what: format!(
                "{} point(s) ran with peers not pinned to CPUs",
                unpinned.len()
            ),
            advice: if asked_not_to {
                "this run was made with --no-pin: the scheduler may have put both peers on one \
                 CPU; run without it for comparable figures"
                    .into()
            } else {
                "they had more peers than CPUs to pin them to, so the scheduler placed them; \
                 compare them with each other, not with pinned points"
                    .into()
            },
            points: names(unpinned),
        });
    }
    out
}

/// Mean CPU time per message of each strategy's one-to-one points at `size`
/// for `pattern`, at its best waiting strategy.
pub fn cpu_per_message(run: &RunRecord, pattern: &str, size: usize) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for t in transports(run) {
        let Some(w) = best_wait(run, &t, pattern) else {
            continue;
        };
        if let Some(c) = point(run, &t, &w, pattern, size).and_then(|p| p.cpu_ns_per_msg) {
            out.push((label(&t, &w), c));
        }
    }
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// One Rust strategy beside its Python counterpart at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Speedup {
    /// The Rust point (its best waiting strategy).
    pub rust: PointRecord,
    /// The Python point.
    pub python: PointRecord,
    /// How many times faster the Rust strategy is.
    pub speedup: f64,
}

/// A task farm's rows: one strategy (and wait) and pattern, its tasks per
/// second by worker count, and the speedup over its own one-worker point.
#[derive(Debug, Clone)]
pub struct PoolScaling {
    /// `pool` or `pool-cpu`.
    pub pattern: String,
    /// The strategy's label.
    pub strategy: String,
    /// (workers, tasks/s, speedup over 1 worker if measured).
    pub points: Vec<(usize, f64, Option<f64>)>,
}

/// One strategy's `pingpong-late` point: how it waits for an answer that
/// comes [`LATE_REPLY_NS`](crate::record::LATE_REPLY_NS) after the
/// question.
#[derive(Debug, Clone, PartialEq)]
pub struct LateAnswer {
    /// The point (the park floor's first, if measured).
    pub point: PointRecord,
    /// The median round trip less the echo's work: what the waiting cost.
    pub wait_cost_ns: f64,
    /// That cost over the park floor's, made to wait the same way.
    pub vs_park_floor: Option<f64>,
}

/// Every `pingpong-late` point, the park floor first, then by wait cost.
pub fn late_answers(run: &RunRecord) -> Vec<LateAnswer> {
    let think = crate::record::LATE_REPLY_NS as f64;
    let cost = |p: &PointRecord| key_figure(p).map(|f| f - think);
    let pts: Vec<&PointRecord> = measured(run)
        .filter(|p| p.pattern == "pingpong-late")
        .collect();
    let floor = pts
        .iter()
        .find(|p| p.transport == "floor")
        .and_then(|p| cost(p))
        .filter(|c| *c > 0.0);
    let mut out: Vec<LateAnswer> = pts
        .iter()
        .filter_map(|p| {
            let c = cost(p)?;
            Some(LateAnswer {
                point: (*p).clone(),
                wait_cost_ns: c,
                vs_park_floor: floor.map(|f| c / f),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b.point.transport == "floor")
            .cmp(&(a.point.transport == "floor"))
            .then(a.wait_cost_ns.total_cmp(&b.wait_cost_ns))
    });
    out
}

/// Every task farm measured, grouped by strategy, workers in order.
pub fn pool_scaling(run: &RunRecord) -> Vec<PoolScaling> {
    let mut out: Vec<PoolScaling> = Vec::new();
    for pattern in ["pool", "pool-cpu"] {
        let mut pts: Vec<&PointRecord> = measured(run).filter(|p| p.pattern == pattern).collect();
        pts.sort_by_key(|p| (p.transport.clone(), p.wait.clone(), p.consumers));
        for p in pts {
            let strategy = label(&p.transport, &p.wait);
            let Some(rate) = key_figure(p) else { continue };
            let row = match out.last_mut() {
                Some(r) if r.pattern == pattern && r.strategy == strategy => r,
                _ => {
                    out.push(PoolScaling {
                        pattern: pattern.into(),
                        strategy,
                        points: Vec::new(),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            let one = row
                .points
                .iter()
                .find(|(w, _, _)| *w == 1)
                .map(|(_, r, _)| *r);
            row.points.push((p.consumers, rate, one.map(|o| rate / o)));
        }
    }
    out
}

/// Each Rust strategy against its Python counterpart, at every pattern,
/// size and process count both measured.
pub fn python_speedups(run: &RunRecord) -> Vec<Speedup> {
    let mut out = Vec::new();
    for pattern in PATTERNS {
        for (rust, py) in PYTHON_COUNTERPARTS {
            for p in measured(run).filter(|p| p.transport == py && p.pattern == pattern) {
                // The Rust strategy's best point of the same shape.
                let best = measured(run)
                    .filter(|r| {
                        r.transport == rust
                            && r.pattern == pattern
                            && r.msg_size == p.msg_size
                            && r.producers == p.producers
                            && r.consumers == p.consumers
                    })
                    .filter_map(|r| Some((r, key_figure(r)?)))
                    .reduce(|a, b| if better(pattern, b.1, a.1) { b } else { a });
                if let (Some((r, f)), Some(pf)) = (best, key_figure(p)) {
                    out.push(Speedup {
                        rust: r.clone(),
                        python: p.clone(),
                        speedup: lead(pattern, f, pf),
                    });
                }
            }
        }
    }
    out
}
