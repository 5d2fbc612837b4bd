//! The plan: a profile and the filters, turned into the list of
//! measurements of every family — channels and floors, primitives, task
//! farms, start-up — and the Python baseline's selection. Every filter
//! applies to every family where it means something:
//!
//! | filter | channels | primitives | task farms | start-up | Python |
//! |---|---|---|---|---|---|
//! | `--transports` | strategies, `floor` | `shm-lock`, … | task-farm strategies | `start-*` | `py-*` |
//! | `--patterns` | yes | yes | `pool`, `pool-cpu` | `startup` | yes |
//! | `--sizes` | yes | the shared bytes (8, 128) | the task (64) | 8 | yes |
//! | `--procs` | yes | N×1 | 1×W | 1×1 | yes |
//! | `--wait` | strategies that wait in user space | the waiting ones | shm farms | no wait: kept | no |
//! | profile | yes | counts (`--full`: up to 8) | `--quick`: 1–2 workers | yes | yes |
//!
//! Strategies that block in the kernel, and lock-free ones, have no wait
//! to choose: `--wait` keeps them, measured once. A combination that
//! selects nothing is an error that names the filter that emptied it.

pub mod estimate;
mod families;
mod profile;

pub use families::channels;
pub use profile::Profile;

use super::pool;
use super::python;
use super::spec::{Measurement, Pattern, Strategy};
use super::startup::{self, Method};
use super::sync::{self, Prim};
use crate::shm::Wait;
use crate::transport::TransportKind;
use families::{farms, prims, rates, starts};

/// What `--transports`, `--patterns`, `--sizes`, `--procs` and `--wait`
/// select; an empty list selects everything its profile measures.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Strategies of the channel family (`floor` asks for every floor).
    pub strategies: Vec<Strategy>,
    /// Primitives, by name (`shm-lock`, …).
    pub prims: Vec<Prim>,
    /// Ways of starting a process (`start-fork`, …).
    pub starts: Vec<Method>,
    /// Python's transports (`py-pipe`, …).
    pub python: Vec<String>,
    /// Patterns, by name, of any family.
    pub patterns: Vec<String>,
    /// Sizes (the profile's if empty).
    pub sizes: Vec<usize>,
    /// Waiting strategies (the profile's if empty).
    pub waits: Vec<Wait>,
    /// Open-loop loads (`--rates`; the profile's ladder if empty).
    pub rates: Vec<super::rate::Load>,
    /// Process counts, producers × consumers (the profile's if empty):
    /// multi-party patterns run at those of the pattern's shape (fan-in
    /// N×1, fan-out 1×N, reqrep N×1, mpmc any), one-to-one ones only if
    /// 1×1 is among them; primitives read N×1, task farms 1×W.
    pub procs: Vec<(usize, usize)>,
    /// The run has a second host: each one-to-one channel point of a
    /// network strategy is measured again right after, between hosts.
    pub hosts: bool,
}

impl Filters {
    /// Sorts the names given to `--transports` into the families; a name no
    /// family knows is an error that lists every name and the nearest one.
    pub fn transports(&mut self, names: &[String]) -> Result<(), PlanError> {
        for n in names {
            if let Ok(s) = n.parse::<Strategy>() {
                self.strategies.push(s);
            } else if let Ok(p) = n.parse::<Prim>() {
                self.prims.push(p);
            } else if let Ok(m) = n.parse::<Method>() {
                self.starts.push(m);
            } else if python::is_python(n) {
                self.python.push(n.clone());
            } else {
                return Err(PlanError::UnknownTransport {
                    name: n.clone(),
                    nearest: nearest(n, &all_transport_names()),
                });
            }
        }
        Ok(())
    }

    /// Checks the names given to `--patterns`.
    pub fn patterns(&mut self, names: &[String]) -> Result<(), PlanError> {
        let known = all_pattern_names();
        for n in names {
            if !known.contains(&n.as_str()) {
                return Err(PlanError::UnknownPattern {
                    name: n.clone(),
                    nearest: nearest(n, &known),
                });
            }
            self.patterns.push(n.clone());
        }
        Ok(())
    }

    /// Whether any strategy of any family was named.
    fn names_any(&self) -> bool {
        !(self.strategies.is_empty()
            && self.prims.is_empty()
            && self.starts.is_empty()
            && self.python.is_empty())
    }

    fn pattern(&self, name: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p == name)
    }

    fn size(&self, size: usize) -> bool {
        self.sizes.is_empty() || self.sizes.contains(&size)
    }

    /// The sizes `--sizes` gave, else `profile`'s.
    fn sizes_or(&self, profile: Vec<usize>) -> Vec<usize> {
        if self.sizes.is_empty() {
            profile
        } else {
            self.sizes.clone()
        }
    }

    /// The waits `--wait` gave, else `profile`'s.
    fn waits_or(&self, profile: Vec<Wait>) -> Vec<Wait> {
        if self.waits.is_empty() {
            profile
        } else {
            self.waits.clone()
        }
    }

    fn procs(&self, procs: (usize, usize)) -> bool {
        self.procs.is_empty() || self.procs.contains(&procs)
    }
}

/// Every name `--transports` takes, in `ipcbench list`'s order.
pub fn all_transport_names() -> Vec<&'static str> {
    ["floor", "floor-copy"]
        .into_iter()
        .chain(TransportKind::ALL.iter().map(|k| k.name()))
        .chain(Prim::ALL.iter().map(|p| p.name()))
        .chain(Method::ALL.iter().map(|m| m.name()))
        .chain(python::TRANSPORTS.iter().map(|(n, _)| *n))
        .collect()
}

/// Every name `--patterns` takes.
pub fn all_pattern_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
    v.extend(pool::PATTERNS);
    v.extend(sync::PATTERNS);
    v.push(startup::PATTERN);
    v
}

/// Every pattern with what it measures, in a line (`ipcbench list`).
pub fn pattern_descriptions() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = Pattern::ALL
        .iter()
        .map(|p| (p.name(), p.description()))
        .collect();
    v.extend([
        (
            "pool",
            "a task farm: a master hands 64-byte tasks to W workers and reads their results",
        ),
        ("pool-cpu", "the same, each task 50 µs of the worker's CPU time"),
        (
            "lock-increment",
            "N processes take a lock, bump a shared counter, let go; the count must be exact",
        ),
        (
            "atomic-increment",
            "N processes add to a shared counter atomically, no lock",
        ),
        ("event-pingpong", "two Events handing a turn back and forth"),
        (
            "joinable",
            "rounds of 64 items put then join()ed, each got and task_done()",
        ),
        (
            "rlock-increment",
            "lock-increment, the lock taken twice (re-entrantly) each cycle",
        ),
        (
            "condition-handoff",
            "a producer and a consumer hand numbered items through a one-slot buffer under a Condition",
        ),
        (
            "barrier-cycle",
            "N processes pass a Barrier again and again, bumping a checked counter between passes",
        ),
        (startup::PATTERN, "a process started, to its first message"),
    ]);
    v
}

/// The known name closest to `name`, when it is close enough to be a typo.
fn nearest(name: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.to_owned())
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Why the options make no plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// `--transports` named something no family knows.
    #[error("unknown transport `{name}`{}; `ipcbench list` shows every name: {}", did_you_mean(.nearest), all_transport_names().join(", "))]
    UnknownTransport {
        /// The name given.
        name: String,
        /// The nearest known one.
        nearest: Option<String>,
    },
    /// `--patterns` named something no family knows.
    #[error("unknown pattern `{name}`{}; patterns: {}", did_you_mean(.nearest), all_pattern_names().join(", "))]
    UnknownPattern {
        /// The name given.
        name: String,
        /// The nearest known one.
        nearest: Option<String>,
    },
    /// The filters together select nothing.
    #[error("the filters select no point: {0}")]
    Empty(String),
}

fn did_you_mean(nearest: &Option<String>) -> String {
    nearest
        .as_ref()
        .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"))
}

/// What a run measures: the Rust side's measurements in order (floors
/// first), then the Python baseline's selection, if any.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every measurement of the Rust side.
    pub measurements: Vec<Measurement>,
    /// What the Python baseline is asked to measure (`None`: nothing of it
    /// is selected, or it is not wanted).
    pub python: Option<python::Selection>,
}

/// The plan of `profile` under `f`, with the Python baseline when
/// `python` (and the filters select some of it). An empty plan is an
/// error naming the filter that emptied it.
pub fn plan(profile: Profile, f: &Filters, python: bool) -> Result<Plan, PlanError> {
    let p = plan_unchecked(profile, f, python);
    if !p.measurements.is_empty() || p.python.is_some() {
        return Ok(p);
    }
    // Which filter emptied it: each one left out in turn.
    let mut culprits = Vec::new();
    let without = |g: &dyn Fn(&mut Filters)| {
        let mut h = f.clone();
        g(&mut h);
        let q = plan_unchecked(profile, &h, python);
        !q.measurements.is_empty() || q.python.is_some()
    };
    let list = |v: Vec<String>| v.join(",");
    if f.names_any()
        && without(&|h| {
            h.strategies.clear();
            h.prims.clear();
            h.starts.clear();
            h.python.clear();
        })
    {
        let names: Vec<String> = f
            .strategies
            .iter()
            .map(|s| s.name().to_owned())
            .chain(f.prims.iter().map(|p| p.name().to_owned()))
            .chain(f.starts.iter().map(|m| m.name().to_owned()))
            .chain(f.python.iter().cloned())
            .collect();
        culprits.push(format!("--transports {}", list(names)));
    }
    if !f.patterns.is_empty() && without(&|h| h.patterns.clear()) {
        culprits.push(format!("--patterns {}", list(f.patterns.clone())));
    }
    if !f.sizes.is_empty() && without(&|h| h.sizes.clear()) {
        culprits.push(format!(
            "--sizes {}",
            list(f.sizes.iter().map(|s| s.to_string()).collect())
        ));
    }
    if !f.procs.is_empty() && without(&|h| h.procs.clear()) {
        culprits.push(format!(
            "--procs {}",
            list(f.procs.iter().map(|(n, m)| format!("{n}x{m}")).collect())
        ));
    }
    if !f.waits.is_empty() && without(&|h| h.waits.clear()) {
        culprits.push(format!(
            "--wait {}",
            list(f.waits.iter().map(|w| w.name().to_owned()).collect())
        ));
    }
    Err(PlanError::Empty(if culprits.is_empty() {
        "no single filter is to blame; together they exclude every point (see `ipcbench run --help`)"
            .to_owned()
    } else if culprits.len() == 1 {
        format!(
            "{} leaves nothing of what the other filters select",
            culprits[0]
        )
    } else {
        format!(
            "{} exclude each other (leave out any one of them and points remain)",
            culprits.join(" and ")
        )
    }))
}

fn plan_unchecked(profile: Profile, f: &Filters, python: bool) -> Plan {
    let all = !f.names_any();
    let mut measurements: Vec<Measurement> = Vec::new();
    if all || !f.strategies.is_empty() {
        measurements.extend(channels(profile, f).into_iter().map(Measurement::Channel));
    }
    if all || !f.strategies.is_empty() {
        measurements.extend(rates(profile, f).into_iter().map(Measurement::Rate));
    }
    if all || !f.prims.is_empty() {
        measurements.extend(prims(profile, f).into_iter().map(Measurement::Primitive));
    }
    if all || !f.strategies.is_empty() {
        measurements.extend(farms(profile, f).into_iter().map(Measurement::Farm));
    }
    if all || !f.starts.is_empty() {
        measurements.extend(starts(f).into_iter().map(Measurement::Startup));
    }
    if f.hosts {
        measurements = measurements
            .into_iter()
            .flat_map(|m| {
                let twin = m
                    .can_cross_hosts()
                    .then(|| Measurement::Hosts(Box::new(m.clone())));
                std::iter::once(m).chain(twin)
            })
            .collect();
    }
    let py_patterns: Vec<String> = f
        .patterns
        .iter()
        .filter(|p| python::PATTERNS.contains(&p.as_str()))
        .cloned()
        .collect();
    let py_wanted = python
        && (all || !f.python.is_empty())
        && (f.patterns.is_empty() || !py_patterns.is_empty());
    Plan {
        measurements,
        python: py_wanted.then(|| python::Selection {
            transports: f.python.clone(),
            patterns: py_patterns,
            sizes: f.sizes.clone(),
            count: None,
            start_method: None,
            rates: f.rates.iter().map(|r| r.label()).collect(),
            procs: f.procs.clone(),
            far: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::spec::PointSpec;

    /// The channel points of `profile` under `f`.
    fn channel_plan(profile: Profile, f: &Filters) -> Vec<PointSpec> {
        channels(profile, f)
    }

    /// With a second host, each channel point of a network strategy that
    /// can cross (tcp's one-to-one; any of a manager's, its server going;
    /// any of ZeroMQ's, its connecting side going; their task farms, the
    /// workers going) is followed by its twin between hosts, and nothing
    /// else is.
    #[test]
    fn a_second_host_twins_the_network_strategies_points() {
        let f = Filters {
            hosts: true,
            ..Filters::default()
        };
        let p = plan(Profile::Quick, &f, false).unwrap();
        let ms = &p.measurements;
        let twins: Vec<usize> = (0..ms.len()).filter(|&i| ms[i].between_hosts()).collect();
        assert!(!twins.is_empty());
        for &i in &twins {
            let Measurement::Hosts(inner) = &ms[i] else {
                unreachable!()
            };
            assert!(inner.can_cross_hosts(), "{}", inner.strategy_name());
            // Right after the same measurement over loopback.
            let before = format!("{:?}", ms[i - 1]);
            assert_eq!(before, format!("{inner:?}"));
        }
        let crossable = ms.iter().filter(|m| m.can_cross_hosts()).count();
        assert_eq!(twins.len(), crossable);
        for name in ["tcp", "zmq-tcp", "manager-tcp"] {
            if TransportKind::ALL.iter().any(|k| k.name() == name) {
                assert!(
                    twins.iter().any(|&i| ms[i].strategy_name() == name),
                    "{name}"
                );
            }
        }
        for m in ms.iter().filter(|m| m.between_hosts()) {
            assert!(["tcp", "zmq-tcp", "manager-tcp"].contains(&m.strategy_name()));
            // Shared channels and calls only where the far side is a server
            // or connects (ZeroMQ's senders and clients); never tcp's. A
            // farm's workers connect over every strategy.
            assert!(
                ["pingpong", "stream", "rate", "pool", "pool-cpu"].contains(&m.pattern_name())
                    || m.strategy_name() != "tcp",
                "{} {}",
                m.strategy_name(),
                m.pattern_name()
            );
        }
        assert!(
            ms.iter()
                .any(|m| m.between_hosts() && m.pattern_name() == "reqrep"),
            "a manager's calls between hosts"
        );
        for name in ["tcp", "manager-tcp"] {
            assert!(
                ms.iter().any(|m| m.between_hosts()
                    && m.strategy_name() == name
                    && m.pattern_name() == "pool"),
                "{name}'s farm between hosts"
            );
        }
        // Open loop too, each load right after its loopback twin.
        assert!(
            ms.iter()
                .any(|m| m.between_hosts() && m.pattern_name() == "rate"),
            "open loop between hosts"
        );
        let without = plan(Profile::Quick, &Filters::default(), false).unwrap();
        assert_eq!(without.measurements.len() + twins.len(), ms.len());
    }

    #[test]
    fn plans_cover_floors_transports_patterns_sizes_and_waits() {
        let quick = channel_plan(Profile::Quick, &Filters::default());
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
        let all = channel_plan(Profile::Default, &Filters::default());
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
            patterns: vec!["stream".into()],
            sizes: vec![8, 1024],
            waits: vec![Wait::PARK],
            ..Filters::default()
        };
        let p = channel_plan(Profile::Default, &f);
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .all(|s| s.pattern == Pattern::Stream && s.wait == Wait::PARK)
        );
    }

    #[test]
    fn the_plan_follows_what_each_registry_row_declares() {
        use crate::transport::{Shared, Waits};
        let all = channel_plan(Profile::Default, &Filters::default());
        let farms = farms(Profile::Default, &Filters::default());
        for kind in TransportKind::ALL.iter().copied() {
            let caps = kind.caps();
            let of = |p: Pattern| -> Vec<&PointSpec> {
                all.iter()
                    .filter(|s| s.strategy == Strategy::Transport(kind) && s.pattern == p)
                    .collect()
            };
            let name = kind.name();
            for p in [Pattern::FanIn, Pattern::FanOut, Pattern::Mpmc] {
                assert_eq!(
                    !of(p).is_empty(),
                    caps.shared != Shared::Nothing,
                    "{name} {}: planned iff its row shares channels",
                    p.name()
                );
            }
            assert_eq!(
                !of(Pattern::Reqrep).is_empty(),
                caps.serves_calls(),
                "{name} reqrep: planned iff its row has a dictionary to call"
            );
            for p in [
                Pattern::ReqrepList,
                Pattern::ReqrepNamespace,
                Pattern::ReqrepValue,
            ] {
                assert_eq!(
                    !of(p).is_empty(),
                    caps.shared == Shared::Server,
                    "{name} {}: planned iff its row is a manager's server",
                    p.name()
                );
            }
            assert!(
                of(Pattern::ReqrepValue)
                    .iter()
                    .all(|s| s.size == crate::harness::spec::VALUE_SIZE),
                "{name}: a Value holds 8 bytes"
            );
            assert_eq!(
                !of(Pattern::PingpongLate).is_empty(),
                caps.late_answer,
                "{name}: a late answer iff its row says so"
            );
            let names: Vec<String> = of(Pattern::Pingpong)
                .iter()
                .map(|s| s.wait_name())
                .collect();
            let waits: std::collections::BTreeSet<&str> =
                names.iter().map(String::as_str).collect();
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

    #[test]
    fn every_filter_reaches_every_family() {
        let all = |f: &Filters| plan(Profile::Default, f, false).unwrap().measurements;
        let count =
            |ms: &[Measurement], p: fn(&Measurement) -> bool| ms.iter().filter(|m| p(m)).count();
        let prim = |m: &Measurement| matches!(m, Measurement::Primitive(_));
        let farm = |m: &Measurement| matches!(m, Measurement::Farm(_));
        let start = |m: &Measurement| matches!(m, Measurement::Startup(_));
        let every = all(&Filters::default());
        assert!(count(&every, prim) > 0 && count(&every, farm) > 0 && count(&every, start) > 0);
        // --full reaches the primitives: locks by 8 processes (barriers
        // go to 8 in every profile but the quick one).
        let full = plan(Profile::Full, &Filters::default(), false)
            .unwrap()
            .measurements;
        let lock_of_8 = |m: &Measurement| matches!(m, Measurement::Primitive(s) if s.procs == 8 && s.prim != Prim::Barrier);
        assert!(full.iter().any(lock_of_8));
        assert!(!every.iter().any(lock_of_8));
        // --sizes reaches them: 64 B keeps the farms (64 B tasks), not the
        // primitives (8 B) or start-up (8 B).
        let f = Filters {
            sizes: vec![64],
            ..Filters::default()
        };
        let ms = all(&f);
        assert_eq!((count(&ms, prim), count(&ms, start)), (0, 0));
        assert!(count(&ms, farm) > 0);
        // --wait keeps what has no wait to choose: start-up, kernel farms,
        // the lock-free atomic; the waiting ones follow it.
        let f = Filters {
            waits: vec![Wait::PARK],
            ..Filters::default()
        };
        let ms = all(&f);
        assert_eq!(count(&ms, start), Method::ALL.len());
        assert!(ms.iter().all(|m| match m {
            Measurement::Primitive(s) => s.wait == Wait::PARK || s.prim == Prim::Atomic,
            Measurement::Farm(s) => s.wait == Wait::PARK,
            _ => true,
        }));
        // --procs reaches them: 4x1 is four processes on a lock, no farm
        // (1xW), no start-up (1x1).
        let f = Filters {
            procs: vec![(4, 1)],
            ..Filters::default()
        };
        let ms = all(&f);
        assert!(ms.iter().all(|m| match m {
            Measurement::Primitive(s) => s.procs == 4,
            Measurement::Farm(_) | Measurement::Startup(_) => false,
            _ => true,
        }));
        assert!(count(&ms, prim) > 0);
        // A primitive named alone is all there is.
        let mut f = Filters::default();
        f.transports(&["shm-lock".into()]).unwrap();
        let ms = all(&f);
        assert!(!ms.is_empty() && ms.iter().all(|m| m.strategy_name() == "shm-lock"));
    }

    #[test]
    fn names_are_checked_and_an_empty_plan_names_its_filter() {
        let mut f = Filters::default();
        let e = f.transports(&["shm-rign".into()]).unwrap_err();
        assert!(e.to_string().contains("did you mean `shm-ring`"), "{e}");
        assert!(
            e.to_string().contains("start-fork") && e.to_string().contains("floor-copy"),
            "{e}"
        );
        let e = f.patterns(&["pingpnog".into()]).unwrap_err();
        assert!(e.to_string().contains("did you mean `pingpong`"), "{e}");
        let mut f = Filters {
            sizes: vec![64],
            ..Filters::default()
        };
        f.patterns(&["lock-increment".into()]).unwrap();
        let e = plan(Profile::Default, &f, false).unwrap_err();
        assert!(matches!(e, PlanError::Empty(_)));
        let e = e.to_string();
        assert!(
            e.contains("--patterns lock-increment and --sizes 64 exclude each other"),
            "{e}"
        );
        // A filter that empties the plan by itself is named alone.
        let mut f = Filters::default();
        f.transports(&["shm-event".into()]).unwrap();
        f.patterns(&["event-pingpong".into()]).unwrap();
        f.procs = vec![(4, 1)];
        let e = plan(Profile::Default, &f, false).unwrap_err().to_string();
        assert!(e.contains("--procs 4x1 leaves nothing"), "{e}");
    }
}
