//! Synchronisation primitives between processes: the core's `Lock`,
//! `Semaphore` and `Event`, measured the way Python's multiprocessing users
//! use theirs (the Python baseline measures those with the same patterns):
//!
//! - `lock-increment`: N processes each take the primitive, add one to a
//!   plain (non-atomic) counter in shared memory, and give it back, K times;
//!   the counter must end at exactly N × K, which only mutual exclusion
//!   gives. N = 1 is the uncontended cost, 2 and 4 contended. Figures:
//!   acquire-increment-release cycles per second (all processes together)
//!   and the latency of one cycle. Over the core's `Lock`, `Semaphore`,
//!   and its typed shared memory: `shm-value` (`Value('q')` under its
//!   lock) and `shm-array` (`Array('d', 16)` under its lock, every element
//!   bumped each cycle: 128 bytes touched, the point's size).
//! - `joinable`: a producer puts [`JOIN_BATCH`] numbered items into the
//!   core's `JoinableQueue` and joins; the consumer gets each, checks its
//!   number, counts it processed in shared memory and calls `task_done`.
//!   After every join the producer checks that the consumer processed
//!   every item put so far (a join that returned early fails the point).
//!   Figures: items per second; latency per round of a batch put, done
//!   and joined.
//! - `atomic-increment`: the lock-free alternative, `shm-atomic`: N
//!   processes add one to a shared `Value('q')` with an atomic
//!   read-modify-write; the total must be exact as well.
//! - `event-pingpong`: two processes hand a turn back and forth with two
//!   events (set, wait, clear), as a `multiprocessing.Event` ping-pong;
//!   each turn carries a number the other side checks. Figure: the round
//!   trip.
//! - `rlock-increment`: `lock-increment` over the core's `RLock`, taken
//!   twice (re-entrantly) and let go of twice per cycle.
//! - `condition-handoff`: a producer and a consumer hand numbered items
//!   through a one-slot buffer guarded by the core's `Condition` (the
//!   textbook producer/consumer: wait for the slot to be empty or full,
//!   fill or empty it, notify); every item is checked. Figure: the round
//!   trip per item.
//! - `barrier-cycle`: N processes pass the core's `Barrier` again and
//!   again, each adding one to a shared counter (atomically) before every
//!   pass and checking after it that all N of that generation are in (and
//!   no one has passed the next). Figure: the time per generation.

use std::time::Instant;

mod peer;
pub use peer::run_peer;
use peer::{unlocked, word};

use super::control::PeerReport;
use super::error::{HarnessError, settle};
use super::spec::RunOpts;
use super::supervise::{Running, line_up, reports, spawn_args, supervised};
use crate::record::PointRecord;
use crate::shm::region::{Kind, Region};
use crate::shm::semaphore::{Event, Lock, Semaphore};
use crate::shm::{
    Array, Barrier, Condition, JoinableQueue, RLock, Value, Wait, WaitKind, unique_name,
};

/// Elements of `shm-array`'s (and Python's `py-array`'s) array.
pub const ARRAY_LEN: usize = 16;
/// Items put between two joins in `joinable` (as in the Python baseline).
pub const JOIN_BATCH: u64 = 64;

/// A primitive of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    /// `Lock` (a semaphore of one permit that knows its holder).
    Lock,
    /// `Semaphore` of one permit.
    Semaphore,
    /// Two `Event`s.
    Event,
    /// A `Value<i64>` with its lock.
    Value,
    /// An `Array<f64>` of [`ARRAY_LEN`] with its lock.
    Array,
    /// A `Value<i64>` without a lock, incremented atomically.
    Atomic,
    /// A `JoinableQueue`: batches put and joined, each item marked done.
    Joinable,
    /// `RLock`, taken twice per cycle.
    RLock,
    /// A `Condition` guarding a one-slot buffer.
    Condition,
    /// A `Barrier` of all the point's processes.
    Barrier,
}

impl Prim {
    /// Every primitive.
    pub const ALL: [Prim; 10] = [
        Prim::Lock,
        Prim::Semaphore,
        Prim::Event,
        Prim::Value,
        Prim::Array,
        Prim::Atomic,
        Prim::Joinable,
        Prim::RLock,
        Prim::Condition,
        Prim::Barrier,
    ];

    /// The name in results (`transport`).
    pub fn name(self) -> &'static str {
        match self {
            Prim::Lock => "shm-lock",
            Prim::Semaphore => "shm-semaphore",
            Prim::Event => "shm-event",
            Prim::Value => "shm-value",
            Prim::Array => "shm-array",
            Prim::Atomic => "shm-atomic",
            Prim::Joinable => "shm-joinable-queue",
            Prim::RLock => "shm-rlock",
            Prim::Condition => "shm-condition",
            Prim::Barrier => "shm-barrier",
        }
    }

    /// What it is, for `ipcbench list`.
    pub fn description(self) -> &'static str {
        match self {
            Prim::Lock => {
                "the core's Lock (lock-increment: acquire, bump a shared counter, release)"
            }
            Prim::Semaphore => "the core's Semaphore of one permit (lock-increment)",
            Prim::Event => {
                "two of the core's Events handing a turn back and forth (event-pingpong)"
            }
            Prim::Value => "the core's Value<i64>, bumped under its lock (lock-increment)",
            Prim::Array => {
                "the core's Array<f64> of 16, every element bumped under its lock (lock-increment, 128 B)"
            }
            Prim::Atomic => "the core's Value<i64> without a lock, atomic adds (atomic-increment)",
            Prim::Joinable => {
                "the core's JoinableQueue: 64 items put then join, each got and task_done (joinable)"
            }
            Prim::RLock => "the core's RLock, taken twice and let go of twice (rlock-increment)",
            Prim::Condition => {
                "the core's Condition over a one-slot buffer, producer and consumer (condition-handoff)"
            }
            Prim::Barrier => {
                "the core's Barrier, N processes passing it with a checked counter (barrier-cycle)"
            }
        }
    }

    /// The pattern it is measured with.
    pub fn pattern(self) -> &'static str {
        match self {
            Prim::Event => "event-pingpong",
            Prim::Atomic => "atomic-increment",
            Prim::Joinable => "joinable",
            Prim::RLock => "rlock-increment",
            Prim::Condition => "condition-handoff",
            Prim::Barrier => "barrier-cycle",
            _ => "lock-increment",
        }
    }

    /// The bytes of shared data one cycle touches (the point's size).
    pub fn size(self) -> usize {
        match self {
            Prim::Array => ARRAY_LEN * 8,
            _ => 8,
        }
    }
}

impl std::str::FromStr for Prim {
    type Err = String;
    fn from_str(s: &str) -> Result<Prim, String> {
        Prim::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown primitive `{s}`"))
    }
}

/// One point: a primitive, how many processes, how they wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncSpec {
    /// The primitive.
    pub prim: Prim,
    /// Processes (2 for the event ping-pong).
    pub procs: usize,
    /// The waiting strategy.
    pub wait: Wait,
    /// The semaphore's permits: 1 makes it a mutex. With more, that many
    /// processes are inside at once and lock-increment fails, as it must.
    /// For `shm-value`, `shm-array` and `shm-atomic`, 0 injects the same
    /// fault: no lock taken, or a plain load and store for the atomic add.
    pub permits: u32,
}

/// The patterns' names.
pub const PATTERNS: [&str; 7] = [
    "lock-increment",
    "atomic-increment",
    "event-pingpong",
    "joinable",
    "rlock-increment",
    "condition-handoff",
    "barrier-cycle",
];

impl SyncSpec {
    /// The waiting strategy as results name it (`lock-free` for the
    /// atomic add, which never waits).
    pub fn wait_name(&self) -> String {
        if self.prim == Prim::Atomic {
            "lock-free".into()
        } else {
            self.wait.label()
        }
    }
}

/// Cycles (or round trips) per process at most, and the time a point aims at.
const MAX_ITERS: u64 = 200_000;

/// The arguments of `ipcbench peer sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// The primitive.
    pub prim: Prim,
    /// The primitive's region (the lock or semaphore; the first event).
    pub region: String,
    /// The second region: the counter (lock-increment) or the second
    /// event (event-pingpong).
    pub other: String,
    /// The data region: the turn numbers of the event ping-pong.
    pub data: String,
    /// This process's number (0 starts the event ping-pong).
    pub id: usize,
    /// Untimed cycles.
    pub warmup: u64,
    /// Timed cycles.
    pub iters: u64,
    /// The CPU to pin to.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// A fault, for tests: increment without the lock (or not atomically).
    #[arg(long)]
    pub no_lock: bool,
}

impl SyncArgs {
    fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "sync".to_owned(),
            self.prim.name().to_owned(),
            self.region.clone(),
            self.other.clone(),
            self.data.clone(),
            self.id.to_string(),
            self.warmup.to_string(),
            self.iters.to_string(),
        ];
        if let Some(c) = self.cpu {
            v.push(format!("--cpu={c}"));
        }
        if self.no_lock {
            v.push("--no-lock".into());
        }
        v
    }
}

/// Measures one sync point. A failure is recorded, never a number.
pub fn run_point(spec: &SyncSpec, opts: &RunOpts) -> PointRecord {
    let cpus = crate::record::allowed_cpus();
    let oversubscribed = spec.procs > cpus.len();
    let pinned = opts.pin && !oversubscribed;
    let mut rec = PointRecord::unmeasured(
        spec.prim.name(),
        spec.prim.pattern(),
        spec.prim.size(),
        (spec.procs, 1),
        &spec.wait_name(),
    );
    rec.pinned = pinned;
    rec.oversubscribed = oversubscribed;
    if pinned {
        rec.cpus = cpus[..spec.procs].to_vec();
    }
    if oversubscribed && spec.wait.kind == WaitKind::Spin {
        rec.skip(format!(
            "pure spin with {} processes on {} CPUs",
            spec.procs,
            cpus.len()
        ));
        return rec;
    }
    let iters = opts
        .fixed_count
        .unwrap_or(match spec.prim {
            // A round is a batch of items.
            Prim::Joinable => (opts.pingpong_iters * 5).min(MAX_ITERS) / JOIN_BATCH,
            // Every process passes every generation; a handoff is a round trip.
            Prim::Barrier | Prim::Condition => {
                (opts.pingpong_iters * 5).min(MAX_ITERS) / spec.procs as u64
            }
            _ => (opts.pingpong_iters * 5).min(MAX_ITERS) / spec.procs as u64,
        })
        .max(10);
    let warmup = opts.warmup.min(iters);
    match measure(spec, opts, &rec.cpus, warmup, iters) {
        Err(e) => settle(&mut rec, &e),
        Ok(reports) => {
            let per = reports.iter().map(|r| r.messages).sum::<u64>();
            // The joinable queue's consumer keeps no times: the producer's.
            let timed = if spec.prim == Prim::Joinable {
                &reports[..1]
            } else {
                &reports[..]
            };
            let first = timed.iter().map(|r| r.first_ns).min().unwrap_or(0);
            let last = timed.iter().map(|r| r.last_ns).max().unwrap_or(0);
            let hists: Vec<&[(u64, u64)]> =
                reports.iter().map(|r| r.latency_hist.as_slice()).collect();
            let cycles = if matches!(
                spec.prim,
                Prim::Event | Prim::Joinable | Prim::Condition | Prim::Barrier
            ) {
                // One side's turns are the round trips; the producer's
                // items are the joinable queue's.
                reports[0].messages
            } else {
                per
            };
            rec.pass();
            rec.messages = cycles;
            rec.elapsed_ns = last.saturating_sub(first);
            rec.latency_ns = if matches!(spec.prim, Prim::Event | Prim::Joinable | Prim::Condition)
            {
                super::measure::merged_latency(&hists[..1])
            } else {
                super::measure::merged_latency(&hists)
            };
            rec.throughput = super::point::throughput_of(
                rec.elapsed_ns > 0,
                || cycles as f64 * 1e9 / rec.elapsed_ns as f64,
                spec.prim.size(),
            );
            let cpu: u64 = reports.iter().map(|r| r.cpu_ns).sum();
            rec.cpu_ns_per_msg = Some(cpu as f64 / cycles.max(1) as f64);
        }
    }
    rec
}

fn measure(
    spec: &SyncSpec,
    opts: &RunOpts,
    cpus: &[usize],
    warmup: u64,
    iters: u64,
) -> Result<Vec<PeerReport>, HarnessError> {
    let e = |e: crate::shm::semaphore::SemError| HarnessError::Setup(e.to_string());
    let names = [
        unique_name("sync-a"),
        unique_name("sync-b"),
        unique_name("sync-d"),
    ];
    // Kept alive (and unlinked when dropped) until the peers are done.
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match spec.prim {
        Prim::Lock => keep.push(Box::new(Lock::create(&names[0], spec.wait).map_err(e)?)),
        Prim::Semaphore => keep.push(Box::new(
            Semaphore::create(&names[0], spec.permits, spec.permits, spec.wait).map_err(e)?,
        )),
        Prim::Event => {
            keep.push(Box::new(Event::create(&names[0], spec.wait).map_err(e)?));
            keep.push(Box::new(Event::create(&names[1], spec.wait).map_err(e)?));
        }
        Prim::RLock => keep.push(Box::new(RLock::create(&names[0], spec.wait).map_err(e)?)),
        Prim::Condition => keep.push(Box::new(
            Condition::create(&names[0], spec.wait).map_err(e)?,
        )),
        Prim::Barrier => keep.push(Box::new(
            Barrier::create(&names[0], spec.procs as u32, spec.wait)
                .map_err(|e| HarnessError::Setup(e.to_string()))?,
        )),
        Prim::Joinable | Prim::Value | Prim::Atomic | Prim::Array => {}
    }
    let joinable = match spec.prim {
        Prim::Joinable => Some(
            JoinableQueue::create(&names[0], 2 * JOIN_BATCH as usize, 8, spec.wait)
                .map_err(|e| HarnessError::Setup(e.to_string()))?,
        ),
        _ => None,
    };
    let ve = |e: crate::shm::ValueError| HarnessError::Setup(e.to_string());
    let value = match spec.prim {
        Prim::Value | Prim::Atomic => Some(
            Value::<i64>::create_value(&names[0], 0, spec.prim == Prim::Value, spec.wait)
                .map_err(ve)?,
        ),
        _ => None,
    };
    let array = match spec.prim {
        Prim::Array => {
            Some(Array::<f64>::create(&names[0], &[0.0; ARRAY_LEN], true, spec.wait).map_err(ve)?)
        }
        _ => None,
    };
    let raw = |n: &str| -> Result<Region, HarnessError> {
        let r = Region::create(n, Kind::Raw, 256, [0; 6])
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        r.publish();
        Ok(r)
    };
    let counter = if matches!(spec.prim, Prim::Lock | Prim::Semaphore | Prim::RLock) {
        Some(raw(&names[1])?)
    } else {
        None
    };
    let data = raw(&names[2])?;
    let deadline = Instant::now() + opts.deadline;
    let mut peers: Vec<Running> = (0..spec.procs)
        .map(|id| {
            let a = SyncArgs {
                prim: spec.prim,
                region: names[0].clone(),
                other: names[1].clone(),
                data: names[2].clone(),
                id,
                warmup,
                iters,
                cpu: cpus.get(id).copied(),
                no_lock: unlocked(spec),
            };
            spawn_args(opts, a.to_args(), &format!("process {id}"))
        })
        .collect::<Result<_, _>>()?;
    let reports = supervised(&mut peers, |peers| {
        line_up(peers, deadline, || {})?;
        let mut out = Vec::new();
        for i in 0..peers.len() {
            if let (Some(q), 1) = (&joinable, i) {
                // The producer is done: the consumer drains, then stops.
                q.close();
            }
            // This one's report, while the ones still to report are watched.
            let (done, rest) = peers.split_at_mut(i + 1);
            out.extend(reports(&mut done[i..], rest, deadline)?);
        }
        Ok(out)
    })?;
    if spec.prim == Prim::Joinable
        && reports[1].messages != reports[0].messages + warmup * JOIN_BATCH
    {
        return Err(HarnessError::Invalid(format!(
            "the consumer processed {} items where {} were put",
            reports[1].messages,
            reports[0].messages + warmup * JOIN_BATCH
        )));
    }
    if spec.prim == Prim::Condition && reports[1].messages != reports[0].messages {
        return Err(HarnessError::Invalid(format!(
            "the consumer took {} items where {} were handed over",
            reports[1].messages, reports[0].messages
        )));
    }
    // Unlocked, processes 0 and 1 each made one increment more, one of
    // which was lost for certain ([`lose_one`]).
    let interleaved = if unlocked(spec) { 2 } else { 0 };
    let want = spec.procs as u64 * (warmup + iters) + interleaved;
    let lost = |got: String| {
        Err(HarnessError::Invalid(format!(
            "the counter ended at {got}, not {want}: increments were lost, so the {} {}",
            spec.prim.name(),
            if spec.prim == Prim::Atomic {
                "adds were not atomic"
            } else {
                "did not exclude"
            }
        )))
    };
    if let Some(c) = &counter {
        let got = word(c, 0).load(crate::shm::sync::Ordering::Acquire);
        if got != want {
            return lost(got.to_string());
        }
    }
    if spec.prim == Prim::Barrier {
        // Every process added one before each of its passes.
        let got = word(&data, 0).load(crate::shm::sync::Ordering::Acquire);
        if got != want {
            return Err(HarnessError::Invalid(format!(
                "the barrier's counter ended at {got}, not {want}"
            )));
        }
    }
    if let Some(v) = &value {
        // Every peer reported after its last increment: nothing races.
        if v.value() != want as i64 {
            return lost(v.value().to_string());
        }
    }
    let wrong = array.as_ref().and_then(|a| {
        a.to_vec()
            .into_iter()
            .enumerate()
            .find(|(_, x)| *x != want as f64)
    });
    if let Some((i, x)) = wrong {
        return lost(format!("{x} in element {i}"));
    }
    drop(data);
    drop(keep);
    Ok(reports)
}
