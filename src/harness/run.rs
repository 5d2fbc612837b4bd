//! A run: the points a profile and the filters select, measured one after
//! another, with the results file rewritten after every point.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::point::run_point;
use super::spec::{Pattern, PointSpec, RunOpts, Strategy};
use crate::record::{Machine, PointRecord, RunRecord, SCHEMA_VERSION, Status, rfc3339_now};
use crate::shm::Wait;
use crate::transport::TransportKind;

/// How much a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A smoke test: one size, short points (under 90 s on 2 cores).
    Quick,
    /// The defaults.
    Default,
    /// Longer points, for stable tails.
    Full,
}

impl Profile {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Default => "default",
            Profile::Full => "full",
        }
    }

    /// Message sizes measured unless `--sizes` says otherwise.
    pub fn sizes(self) -> Vec<usize> {
        match self {
            Profile::Quick => vec![64],
            Profile::Default | Profile::Full => vec![8, 64, 1 << 10, 4 << 10, 64 << 10, 1 << 20],
        }
    }

    /// Waiting strategies measured for shared-memory transports.
    pub fn waits(self) -> Vec<Wait> {
        match self {
            Profile::Quick => vec![Wait::SPIN, Wait::PARK],
            Profile::Default | Profile::Full => Wait::ALL.to_vec(),
        }
    }

    /// Sizes multi-party patterns run at unless `--sizes` says otherwise
    /// (each of their points starts up to 17 processes).
    pub fn multi_sizes(self) -> Vec<usize> {
        match self {
            Profile::Quick => vec![64],
            Profile::Default => vec![64, 4 << 10],
            Profile::Full => vec![64, 4 << 10, 64 << 10],
        }
    }

    /// Process counts (producers, consumers) of a multi-party pattern.
    pub fn counts(self, p: Pattern) -> Vec<(usize, usize)> {
        let ns: &[usize] = match self {
            Profile::Quick => &[2],
            Profile::Default | Profile::Full => &[2, 4, 8],
        };
        match p {
            Pattern::FanIn => ns.iter().map(|&n| (n, 1)).collect(),
            Pattern::FanOut => ns.iter().map(|&n| (1, n)).collect(),
            Pattern::Mpmc => std::iter::once(1)
                .chain(ns.iter().copied())
                .map(|n| (n, n))
                .collect(),
            Pattern::Reqrep => std::iter::once(1)
                .chain(ns.iter().copied())
                .map(|n| (n, 1))
                .collect(),
            _ => vec![(1, 1)],
        }
    }

    /// Counts and deadlines.
    pub fn opts(self, exe: std::path::PathBuf) -> RunOpts {
        let base = RunOpts {
            exe,
            ..RunOpts::default()
        };
        match self {
            Profile::Quick => RunOpts {
                warmup: 200,
                pingpong_iters: 2_000,
                stream_bytes: 8 << 20,
                stream_messages: (1_000, 50_000),
                deadline: Duration::from_secs(30),
                ..base
            },
            Profile::Default => RunOpts {
                warmup: 1_000,
                pingpong_iters: 10_000,
                stream_bytes: 64 << 20,
                stream_messages: (1_000, 300_000),
                deadline: Duration::from_secs(60),
                ..base
            },
            Profile::Full => RunOpts {
                warmup: 5_000,
                pingpong_iters: 100_000,
                stream_bytes: 512 << 20,
                stream_messages: (5_000, 2_000_000),
                deadline: Duration::from_secs(180),
                ..base
            },
        }
    }
}

/// What `--transports`, `--patterns`, `--sizes` and `--wait` select.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Strategies (all, and the floors, if empty).
    pub strategies: Vec<Strategy>,
    /// Patterns (all if empty).
    pub patterns: Vec<Pattern>,
    /// Sizes (the profile's if empty).
    pub sizes: Vec<usize>,
    /// Waiting strategies (the profile's if empty).
    pub waits: Vec<Wait>,
    /// Process counts, producers × consumers (the profile's if empty):
    /// multi-party patterns run at those of the pattern's shape (fan-in
    /// N×1, fan-out 1×N, reqrep N×1, mpmc any), one-to-one ones only if
    /// 1×1 is among them.
    pub procs: Vec<(usize, usize)>,
}

/// The one size `pingpong-late` is measured at: 64 B when asked for, else
/// the smallest.
fn late_size(sizes: &[usize]) -> usize {
    if sizes.contains(&64) {
        64
    } else {
        sizes.iter().copied().min().unwrap_or(64)
    }
}

/// The points of a run, floors first.
pub fn plan(profile: Profile, f: &Filters) -> Vec<PointSpec> {
    let mut strategies: Vec<Strategy> = if f.strategies.is_empty() {
        [Strategy::Floor, Strategy::FloorCopy]
            .into_iter()
            .chain(TransportKind::ALL.iter().map(|k| Strategy::Transport(*k)))
            .collect()
    } else {
        f.strategies.clone()
    };
    // `floor` asks for every floor.
    if let Some(i) = strategies.iter().position(|s| *s == Strategy::Floor)
        && !strategies.contains(&Strategy::FloorCopy)
    {
        strategies.insert(i + 1, Strategy::FloorCopy);
    }
    let patterns = if f.patterns.is_empty() {
        Pattern::ALL.to_vec()
    } else {
        f.patterns.clone()
    };
    let sizes = if f.sizes.is_empty() {
        profile.sizes()
    } else {
        f.sizes.clone()
    };
    let waits = if f.waits.is_empty() {
        profile.waits()
    } else {
        f.waits.clone()
    };
    let mut points = Vec::new();
    let one_to_one = f.procs.is_empty() || f.procs.contains(&(1, 1));
    let allows =
        |kind: crate::shm::WaitKind| f.waits.is_empty() || waits.iter().any(|x| x.kind == kind);
    // A floor of `pattern`, spinning, at every size.
    let at_every_size = |points: &mut Vec<PointSpec>, strategy, pattern| {
        for size in &sizes {
            points.push(PointSpec::one_to_one(strategy, pattern, *size, Wait::SPIN));
        }
    };
    for s in &strategies {
        if matches!(s, Strategy::Floor | Strategy::FloorCopy) && !one_to_one {
            continue;
        }
        if *s == Strategy::FloorCopy {
            // The copy floor of a round trip.
            if patterns.contains(&Pattern::Pingpong) && allows(crate::shm::WaitKind::Spin) {
                at_every_size(&mut points, Strategy::FloorCopy, Pattern::Pingpong);
            }
            continue;
        }
        if *s == Strategy::Floor {
            // The floor moves one word: one point per kind of waiting.
            for w in [Wait::SPIN, Wait::PARK] {
                if allows(w.kind) {
                    points.push(PointSpec::one_to_one(
                        Strategy::Floor,
                        Pattern::Pingpong,
                        8,
                        w,
                    ));
                }
            }
            // The late answer's yardstick: a futex ping-pong whose echo
            // works as long before answering.
            if patterns.contains(&Pattern::PingpongLate) && allows(crate::shm::WaitKind::Park) {
                points.push(PointSpec::one_to_one(
                    Strategy::Floor,
                    Pattern::PingpongLate,
                    late_size(&sizes),
                    Wait::PARK,
                ));
            }
            // The copy floor of a stream.
            if patterns.contains(&Pattern::Stream) && allows(crate::shm::WaitKind::Spin) {
                at_every_size(&mut points, Strategy::Floor, Pattern::Stream);
            }
            continue;
        }
        for p in &patterns {
            if p.is_multi() && !s.multi_party() {
                continue;
            }
            // A late answer asks how each waiting strategy of the
            // shared-memory core waits; one size says it.
            if *p == Pattern::PingpongLate && !s.caps().late_answer {
                continue;
            }
            let counts = if !f.procs.is_empty() && p.is_multi() {
                f.procs
                    .iter()
                    .copied()
                    .filter(|&(n, m)| {
                        n >= 1
                            && m >= 1
                            && match p {
                                Pattern::FanIn | Pattern::Reqrep => m == 1,
                                Pattern::FanOut => n == 1,
                                _ => true,
                            }
                    })
                    .collect()
            } else if p.is_multi() {
                profile.counts(*p)
            } else if one_to_one {
                vec![(1, 1)]
            } else {
                Vec::new()
            };
            for size in &sizes {
                if p.is_multi() && f.sizes.is_empty() && !profile.multi_sizes().contains(size) {
                    continue;
                }
                if *p == Pattern::PingpongLate && *size != late_size(&sizes) {
                    continue;
                }
                let ws: Vec<Wait> = if s.has_wait() {
                    s.waits_of(&waits)
                } else {
                    vec![Wait::SPIN_PARK]
                };
                for w in ws {
                    for &(producers, consumers) in &counts {
                        points.push(PointSpec {
                            strategy: *s,
                            pattern: *p,
                            size: *size,
                            wait: w,
                            producers,
                            consumers,
                        });
                    }
                }
            }
        }
    }
    points
}

/// Set by the Ctrl-C handler: finish the current point, then stop.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Relaxed: a flag read between points; nothing else is published.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes Ctrl-C stop the run after the current point (whose peers, in the
/// same process group, get the signal too and end it).
pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
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
        // Relaxed: see `on_sigint`.
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
    }
    let figure = |r: &PointRecord| r.key_figure().unwrap_or(f64::NAN);
    let figures: Vec<f64> = recs.iter().map(figure).collect();
    let mut order: Vec<usize> = (0..recs.len()).collect();
    order.sort_by(|&a, &b| figures[a].total_cmp(&figures[b]));
    let mut median = recs.swap_remove(order[order.len() / 2]);
    median.repeats = figures;
    median
}

/// Measures `points`, each `repeats` times (the median kept), rewriting
/// `output` after each; `progress` hears of each point before (`None`) and
/// after (`Some`) it runs.
pub fn run_all(
    points: &[PointSpec],
    opts: &RunOpts,
    repeats: usize,
    config: serde_json::Value,
    output: &Path,
    mut progress: impl FnMut(usize, &PointSpec, Option<&PointRecord>, Duration),
) -> Result<RunRecord, crate::record::io::WriteError> {
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
    crate::record::io::write_results(output, &run)?;
    let t0 = Instant::now();
    for (i, spec) in points.iter().enumerate() {
        // Relaxed: see `on_sigint`.
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        progress(i, spec, None, t0.elapsed());
        // Every ratio in a report hangs on the floors, and they cost little:
        // the median of at least three.
        let n = if matches!(spec.strategy, Strategy::Floor | Strategy::FloorCopy) {
            repeats.max(3)
        } else {
            repeats
        };
        let rec = median_of(n, || run_point(spec, opts));
        progress(i, spec, Some(&rec), t0.elapsed());
        // Relaxed: see `on_sigint`. An interrupted point is not a result.
        if INTERRUPTED.load(Ordering::Relaxed) && rec.status != Status::Ok {
            break;
        }
        run.points.push(rec);
        crate::record::io::write_results(output, &run)?;
    }
    Ok(run)
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

    #[test]
    fn plans_cover_floors_transports_patterns_sizes_and_waits() {
        let quick = plan(Profile::Quick, &Filters::default());
        // Spin and park round trips, the copy stream at each size, and the
        // park floor of a late answer.
        assert_eq!(
            quick
                .iter()
                .filter(|p| p.strategy == Strategy::Floor)
                .count(),
            2 + Profile::Quick.sizes().len() + 1
        );
        // The copy floor of a round trip at each size.
        assert_eq!(
            quick
                .iter()
                .filter(|p| p.strategy == Strategy::FloorCopy)
                .count(),
            Profile::Quick.sizes().len()
        );
        let shm = quick
            .iter()
            .filter(|p| p.strategy == Strategy::Transport(TransportKind::ShmRing))
            .count();
        assert_eq!(
            shm,
            3 * 2,
            "3 one-to-one patterns (pingpong, stream, pingpong-late) × 2 waits"
        );
        // A late answer: the shared-memory core only, at one size.
        let all = plan(Profile::Default, &Filters::default());
        let late: Vec<&PointSpec> = all
            .iter()
            .filter(|p| p.pattern == Pattern::PingpongLate)
            .collect();
        assert!(late.iter().all(|p| p.size == 64));
        assert!(late.iter().all(|p| matches!(
            p.strategy,
            Strategy::Floor
                | Strategy::Transport(
                    TransportKind::ShmRing | TransportKind::ShmPipe | TransportKind::ShmQueue
                )
        )));
        assert_eq!(late.len(), 1 + 3 * Profile::Default.waits().len());
        let queue = quick
            .iter()
            .filter(|p| p.strategy == Strategy::Transport(TransportKind::ShmQueue))
            .count();
        assert_eq!(
            queue,
            2 * (3 + 1 + 1 + 2 + 2),
            "2 waits × (pingpong, stream, pingpong-late, fan-in 2×1, fan-out 1×2, mpmc 1×1 and 2×2, reqrep 1 and 2 clients)"
        );
        let tcp = quick
            .iter()
            .filter(|p| p.strategy == Strategy::Transport(TransportKind::Tcp))
            .count();
        assert_eq!(
            tcp, 2,
            "kernel transports have one waiting strategy, and no shared channel"
        );
        let f = Filters {
            strategies: vec![Strategy::Transport(TransportKind::ShmQueue)],
            patterns: vec![Pattern::Stream],
            sizes: vec![8, 1024],
            waits: vec![Wait::PARK],
            procs: Vec::new(),
        };
        let p = plan(Profile::Default, &f);
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .all(|s| s.pattern == Pattern::Stream && s.wait == Wait::PARK)
        );
    }

    #[test]
    fn the_plan_follows_what_each_registry_row_declares() {
        use crate::transport::{Shared, Waits};
        let all = plan(Profile::Default, &Filters::default());
        let farms = super::super::pool::plan(false);
        for kind in TransportKind::ALL.iter().copied() {
            let caps = kind.caps();
            let of = |p: Pattern| -> Vec<&PointSpec> {
                all.iter()
                    .filter(|s| s.strategy == Strategy::Transport(kind) && s.pattern == p)
                    .collect()
            };
            let name = kind.name();
            for p in [
                Pattern::FanIn,
                Pattern::FanOut,
                Pattern::Mpmc,
                Pattern::Reqrep,
            ] {
                assert_eq!(
                    !of(p).is_empty(),
                    caps.shared != Shared::Nothing,
                    "{name} {}: planned iff its row shares channels",
                    p.name()
                );
            }
            assert_eq!(
                !of(Pattern::PingpongLate).is_empty(),
                caps.late_answer,
                "{name}: a late answer iff its row says so"
            );
            let waits: std::collections::BTreeSet<&str> = of(Pattern::Pingpong)
                .iter()
                .map(|s| s.wait_name())
                .collect();
            let want: std::collections::BTreeSet<&str> = match caps.waits {
                Waits::Kernel => ["kernel"].into(),
                Waits::Polls => ["spin", "spin-yield"].into(),
                Waits::Chosen => Profile::Default.waits().iter().map(|w| w.name()).collect(),
            };
            assert_eq!(waits, want, "{name}: its pingpong waits follow its row");
            assert_eq!(
                farms.iter().any(|f| f.kind == kind),
                caps.task_farm,
                "{name}: a task farm iff its row says so"
            );
        }
    }
}
