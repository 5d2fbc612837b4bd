//! Task farms, as `multiprocessing.Pool` and the classic manager/worker
//! example run them: a master hands N numbered tasks to W worker processes
//! and collects N results.
//!
//! The master is the coordinator itself (as a Pool's parent is); workers
//! are `ipcbench peer pool-worker` children. Over a channel many processes
//! share (`shm-queue`, the managers) there is one task queue and one result
//! queue; over a two-process link (`os-pipe`, `unix-stream`, `tcp`, …) one
//! link per worker, each served by a master thread that takes the next task
//! number from a shared counter. Either way at most [`WINDOW`] tasks per
//! worker are in flight, so a task's latency is its service plus a short
//! queue, not the whole backlog.
//!
//! Every task is a 64-byte message stamped with its number and its send
//! time and checked by the worker; the worker does the task's work, then
//! answers with the same number and time, checked by the master, which
//! also checks that every number came back exactly once, and that the
//! workers together did exactly N tasks. Patterns: `pool` (no work: the
//! IPC's own cost) and `pool-cpu` ([`WORK_NS`] of CPU per task, timed on
//! the worker's thread CPU clock, so Rust and Python workers do equal work:
//! does the IPC keep the workers busy?). Figures: tasks per second, the
//! latency of a task from its sending to its result read, and the report's
//! speedup over one worker.

use crate::shm::sync::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::child::bodies::terr;
use super::control::PeerReport;
use super::error::{HarnessError, settle};
use super::measure::histogram;
use super::spec::RunOpts;
use super::supervise::{Running, blame_helper, line_up, spawn_on, supervised, watching};
use super::validate::{Codec, now_ns};
use crate::record::PointRecord;
use crate::shm::{Queue, QueueError, Wait, WaitKind, unique_name};
use crate::transport::manager::{Proxy, ProxyTask, with_proxy};
use crate::transport::stream::StreamIo;
use crate::transport::{
    Conn, LinkOpts, LinkSetup, Shared, Side, Transport, TransportError, TransportKind, Waits,
};

/// The patterns' names.
pub const PATTERNS: [&str; 2] = ["pool", "pool-cpu"];
/// Bytes of a task and of a result.
pub const TASK_SIZE: usize = 64;
pub use crate::record::POOL_WORK_NS as WORK_NS;
/// Tasks in flight per worker.
pub const WINDOW: u64 = 4;
/// Worker counts of the default profile (the quick one stops at 2).
pub const WORKERS: [usize; 4] = [1, 2, 4, 8];
/// The manager's queues.
const TASKS: &[u8] = b"pool-tasks";
const RESULTS: &[u8] = b"pool-results";

/// One point: how tasks travel, whether they carry work, how many workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSpec {
    /// The transport.
    pub kind: TransportKind,
    /// `pool-cpu` (work in every task) rather than `pool`.
    pub cpu_work: bool,
    /// Worker processes.
    pub workers: usize,
    /// The waiting strategy (shared memory).
    pub wait: Wait,
}

impl PoolSpec {
    /// The waiting strategy as results name it (`kernel` where the
    /// transport blocks in the kernel).
    pub fn wait_name(&self) -> String {
        if self.kind.caps().waits == Waits::Kernel {
            "kernel".into()
        } else {
            self.wait.label()
        }
    }

    /// The pattern's name.
    pub fn pattern(&self) -> &'static str {
        if self.cpu_work {
            PATTERNS[1]
        } else {
            PATTERNS[0]
        }
    }
}

/// The transports a task farm runs over: those whose registry row says so.
pub fn kinds() -> impl Iterator<Item = TransportKind> {
    TransportKind::ALL
        .iter()
        .copied()
        .filter(|k| k.caps().task_farm)
}

/// The arguments of `ipcbench peer pool-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// How tasks travel.
    pub kind: TransportKind,
    /// The address: the two queues' names, the manager's, or the link's.
    pub addr: String,
    /// The worker's number.
    pub id: usize,
    /// CPU time of each task's work, in nanoseconds.
    pub work_ns: u64,
    /// The CPU to pin to.
    #[arg(long)]
    pub cpu: Option<usize>,
}

impl WorkerArgs {
    fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "pool-worker".to_owned(),
            self.kind.name().to_owned(),
            self.addr.clone(),
            self.id.to_string(),
            self.work_ns.to_string(),
        ];
        if let Some(c) = self.cpu {
            v.push(format!("--cpu={c}"));
        }
        v
    }
}

/// This thread's CPU time.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Keeps this thread's CPU busy for `ns` of its own CPU time (time spent
/// descheduled does not count), and returns a value the work computed.
pub fn work(ns: u64, seed: u64) -> u64 {
    let mut x = seed;
    if ns == 0 {
        return x;
    }
    let t0 = thread_cpu_ns();
    loop {
        for _ in 0..64 {
            x = crate::harness::validate::mix64(x);
        }
        if thread_cpu_ns() - t0 >= ns {
            return std::hint::black_box(x);
        }
    }
}

/// A queue that could not be made, as a set-up failure.
fn setup(e: QueueError) -> HarnessError {
    HarnessError::Setup(qerr(e))
}

fn qerr(e: QueueError) -> String {
    match e {
        QueueError::PeerGone(p) => format!("process {} died while using the queue", p.pid),
        e => e.to_string(),
    }
}

/// The names of a shm farm's two queues.
fn shm_names(addr: &str) -> Result<(&str, &str), String> {
    addr.split_once(',')
        .ok_or_else(|| format!("bad pool address `{addr}`"))
}

/// One task: checks it, does its work, stamps the answer into `out`.
fn answer(codec: &Codec, work_ns: u64, task: &[u8], out: &mut [u8]) -> Result<(), String> {
    let (seq, ts) = codec.check_any(task)?;
    work(work_ns, seq);
    codec.stamp(out, seq, ts);
    Ok(())
}

/// A worker over a server's queues: (tasks done, CPU time at the start).
struct ServerWorker<'a> {
    codec: &'a Codec,
    work_ns: u64,
}

impl ProxyTask for ServerWorker<'_> {
    type Out = Result<(u64, u64), String>;
    fn run<S: StreamIo>(self, proxy: Proxy<S>) -> Self::Out {
        server_worker(proxy, self.codec, self.work_ns)
    }
}

fn server_worker<S: StreamIo>(
    mut proxy: Proxy<S>,
    codec: &Codec,
    work_ns: u64,
) -> Result<(u64, u64), String> {
    let (mut buf, mut out) = (Vec::with_capacity(TASK_SIZE), codec.buffer());
    super::control::barrier()?;
    let cpu0 = super::measure::cpu_time_ns();
    let mut done = 0;
    loop {
        match proxy.get(TASKS, &mut buf) {
            Ok(_) => {}
            Err(TransportError::Closed) => return Ok((done, cpu0)),
            Err(e) => return Err(terr(e)),
        }
        answer(codec, work_ns, &buf, &mut out)?;
        proxy.put(RESULTS, &out).map_err(terr)?;
        done += 1;
    }
}

/// A worker: takes tasks until there are no more, works, answers.
pub fn run_worker(a: &WorkerArgs) -> Result<PeerReport, String> {
    if let Some(cpu) = a.cpu {
        crate::record::pin_to(cpu).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
    }
    let codec = Codec::new(TASK_SIZE)?;
    let (mut buf, mut out) = (Vec::with_capacity(TASK_SIZE), codec.buffer());
    let link = LinkOpts {
        max_message: TASK_SIZE,
        ..LinkOpts::default()
    };
    let ep = crate::transport::Endpoint::for_child(&a.addr);
    let (done, cpu0) = match a.kind.caps().shared {
        Shared::Memory => {
            let (t, r) = shm_names(&a.addr)?;
            let tasks = Queue::open(t).map_err(qerr)?;
            let results = Queue::open(r).map_err(qerr)?;
            super::control::barrier()?;
            let cpu0 = super::measure::cpu_time_ns();
            let mut done = 0u64;
            loop {
                match tasks.get(&mut buf, None) {
                    Ok(_) => {}
                    Err(QueueError::Closed) => break,
                    Err(e) => return Err(qerr(e)),
                }
                answer(&codec, a.work_ns, &buf, &mut out)?;
                results.put(&out, None).map_err(qerr)?;
                done += 1;
            }
            (done, cpu0)
        }
        Shared::Server => with_proxy(
            a.kind,
            &ep,
            &link,
            ServerWorker {
                codec: &codec,
                work_ns: a.work_ns,
            },
        )
        .map_err(terr)??,
        #[cfg(feature = "zeromq")]
        Shared::Sockets => {
            let mut w = crate::transport::zmq::farm_worker(a.kind, &ep, &link, a.id)
                .map_err(|e| format!("connecting: {e}"))?;
            super::control::barrier()?;
            let cpu0 = super::measure::cpu_time_ns();
            let mut done = 0u64;
            while w.next(&mut buf).map_err(terr)? {
                answer(&codec, a.work_ns, &buf, &mut out)?;
                w.answer(&out).map_err(terr)?;
                done += 1;
            }
            (done, cpu0)
        }
        // Without ZeroMQ no strategy shares sockets.
        #[cfg(not(feature = "zeromq"))]
        Shared::Sockets => unreachable!("no strategy shares sockets without ZeroMQ"),
        Shared::Nothing => with_transport!(a.kind, T => {
            let mut conn = T::connect(&ep, Side::B, &link).map_err(|e| format!("connecting: {e}"))?;
            super::control::barrier()?;
            let cpu0 = super::measure::cpu_time_ns();
            let mut done = 0u64;
            loop {
                match conn.recv(&mut buf) {
                    Ok(_) => {}
                    Err(TransportError::Closed) => break,
                    Err(e) => return Err(terr(e)),
                }
                answer(&codec, a.work_ns, &buf, &mut out)?;
                conn.send(&out).map_err(terr)?;
                done += 1;
            }
            let _ = conn.close();
            (done, cpu0)
        }),
    };
    Ok(PeerReport {
        messages: done,
        cpu_ns: super::measure::cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// What the master saw: the results' latencies, and when it started and
/// read the last result.
struct Collected {
    hist: Histogram<u64>,
    first: u64,
    last: u64,
}

/// The master's bookkeeping of which task numbers came back.
struct Seen {
    bits: Vec<AtomicBool>,
}

impl Seen {
    fn new(n: u64) -> Seen {
        Seen {
            bits: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Records result `seq`; an unknown or repeated number is an error.
    fn mark(&self, seq: u64) -> Result<(), String> {
        let bit = self
            .bits
            .get(seq as usize)
            .ok_or_else(|| format!("a result for task {seq}, which was never sent"))?;
        // Relaxed: only the flag's own value matters.
        if bit.swap(true, Ordering::Relaxed) {
            return Err(format!("task {seq} came back twice"));
        }
        Ok(())
    }
}

/// One task queue and one result queue, as the master sees them.
trait TaskQueues {
    /// Puts a task.
    fn put(&mut self, task: &[u8]) -> Result<(), String>;
    /// Takes the next result into `buf`.
    fn get(&mut self, buf: &mut Vec<u8>) -> Result<(), String>;
}

/// The two shared-memory queues, each call bounded by `timeout`, and the
/// workers, watched while the master waits for a result.
struct ShmQueues<'a> {
    tasks: &'a Queue,
    results: &'a Queue,
    timeout: Option<Duration>,
    workers: &'a mut [Running],
}

impl TaskQueues for ShmQueues<'_> {
    fn put(&mut self, task: &[u8]) -> Result<(), String> {
        self.tasks.put(task, self.timeout).map_err(qerr)
    }
    fn get(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        let results = self.results;
        get_in_slices(
            self.workers,
            self.timeout,
            || qerr(QueueError::Timeout),
            || match results.get(buf, Some(crate::shm::wait::LIVENESS_CHECK_EVERY)) {
                Ok(_) => Ok(true),
                Err(QueueError::Timeout) => Ok(false),
                Err(e) => Err(qerr(e)),
            },
        )
    }
}

/// Waits for a result in slices (`slice`: `Ok(true)` with a result,
/// `Ok(false)` when its slice passed): a worker that died with tasks in
/// hand blocks no call of the queues' (it only never answers), so the
/// master looks at the workers between slices instead of waiting out its
/// timeout, after which it fails with what `timed_out` says.
fn get_in_slices(
    workers: &mut [Running],
    timeout: Option<Duration>,
    timed_out: impl FnOnce() -> String,
    mut slice: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let until = timeout.map(|t| Instant::now() + t);
    loop {
        if slice()? {
            return Ok(());
        }
        if let Some(i) = workers.iter_mut().position(Running::exited) {
            let name = workers[i].name();
            return Err(format!("{name} ended with tasks unanswered"));
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return Err(timed_out());
        }
    }
}

/// The master over one task queue and one result queue: keeps at most
/// `window` tasks in flight, reads every result.
fn master_shared(
    n: u64,
    window: u64,
    codec: &Codec,
    seen: &Seen,
    q: &mut impl TaskQueues,
) -> Result<Collected, String> {
    let mut task = codec.buffer();
    let mut buf = Vec::with_capacity(TASK_SIZE);
    let mut hist = histogram();
    let (mut sent, mut got) = (0u64, 0u64);
    let first = now_ns();
    while got < n {
        while sent < n && sent - got < window {
            codec.stamp(&mut task, sent, now_ns());
            q.put(&task)?;
            sent += 1;
        }
        q.get(&mut buf)?;
        let (seq, ts) = codec.check_any(&buf)?;
        seen.mark(seq)?;
        hist.saturating_record(now_ns().saturating_sub(ts).max(1));
        got += 1;
    }
    Ok(Collected {
        hist,
        first,
        last: now_ns(),
    })
}

/// The master's thread for one link: takes task numbers from `next` while
/// there are any, keeps `window` in flight, checks each result in order.
fn master_link<C: Conn>(
    conn: &mut C,
    n: u64,
    window: u64,
    next: &AtomicU64,
    seen: &Seen,
) -> Result<Histogram<u64>, String> {
    let codec = Codec::new(TASK_SIZE)?;
    let mut task = codec.buffer();
    let mut buf = Vec::with_capacity(TASK_SIZE);
    let mut hist = histogram();
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        while (in_flight.len() as u64) < window {
            // Relaxed: the counter only hands out distinct numbers.
            let seq = next.fetch_add(1, Ordering::Relaxed);
            if seq >= n {
                break;
            }
            codec.stamp(&mut task, seq, now_ns());
            conn.send(&task).map_err(terr)?;
            in_flight.push_back(seq);
        }
        let Some(want) = in_flight.pop_front() else {
            return Ok(hist);
        };
        conn.recv(&mut buf).map_err(terr)?;
        let (seq, ts) = codec.check_any(&buf)?;
        if seq != want {
            return Err(format!("task {want}'s result was for task {seq}"));
        }
        seen.mark(seq)?;
        hist.saturating_record(now_ns().saturating_sub(ts).max(1));
    }
}

/// Tasks of a point.
fn task_count(spec: &PoolSpec, opts: &RunOpts) -> u64 {
    opts.fixed_count.unwrap_or(if spec.cpu_work {
        // ~50 µs each: a fifth of the round trips' count.
        (opts.pingpong_iters / 5).max(100)
    } else {
        opts.pingpong_iters.max(100)
    })
}

/// Measures one task-farm point. A failure is recorded, never a number.
pub fn run_point(spec: &PoolSpec, opts: &RunOpts) -> PointRecord {
    let cpus = crate::record::allowed_cpus();
    let w = spec.workers;
    // The master is busy too.
    let oversubscribed = w + 1 > cpus.len();
    let pinned = opts.pin && w < cpus.len();
    let waits = spec.kind.caps().waits != Waits::Kernel;
    let wait_name = if waits {
        spec.wait.label()
    } else {
        "kernel".into()
    };
    let mut rec = PointRecord::unmeasured(
        spec.kind.name(),
        spec.pattern(),
        TASK_SIZE,
        (1, w),
        &wait_name,
    );
    rec.oversubscribed = oversubscribed;
    rec.pinned = pinned;
    if let Some((far, side)) = opts.far_farm(spec.kind) {
        rec.hosts = Some(far.what.clone());
        rec.far_side = Some(side.name().to_owned());
    }
    // Workers on the CPUs after the first, which the master keeps.
    let worker_cpu = |i: usize| pinned.then(|| cpus[1 + i]);
    if pinned {
        rec.cpus = (0..=w).map(|i| cpus[i]).collect();
    }
    if oversubscribed && waits && spec.wait.kind == WaitKind::Spin {
        rec.skip(format!(
            "pure spin with {} busy processes on {} CPUs",
            w + 1,
            cpus.len()
        ));
        return rec;
    }
    let n = task_count(spec, opts);
    let work_ns = if spec.cpu_work { WORK_NS } else { 0 };
    let codec = match Codec::new(TASK_SIZE) {
        Ok(c) => c,
        Err(e) => {
            rec.fail(e);
            return rec;
        }
    };
    rec.harness_ns_per_msg = Some(codec.calibrate());
    let seen = Seen::new(n);
    let deadline = Instant::now() + opts.deadline;
    let cpu0 = super::measure::cpu_time_ns();
    // The master (this thread, and the threads it starts) on the first CPU,
    // the workers on the others; the thread's own CPUs back afterwards.
    if pinned {
        let _ = crate::record::pin_to(cpus[0]);
    }
    let outcome = farm(spec, opts, n, work_ns, &codec, &seen, deadline, &worker_cpu);
    if pinned {
        let _ = crate::record::set_cpus(&cpus);
    }
    match outcome {
        Err(e) => settle(&mut rec, &e),
        Ok((c, reports)) => {
            let done: u64 = reports.iter().map(|r| r.messages).sum();
            if done != n {
                rec.fail(format!(
                    "the workers did {done} tasks where {n} were sent (lost or duplicated)"
                ));
                return rec;
            }
            if let Some(missing) = seen.bits.iter().position(|b| !b.load(Ordering::Relaxed)) {
                rec.fail(format!("task {missing} never came back"));
                return rec;
            }
            rec.pass();
            rec.messages = n;
            rec.elapsed_ns = c.last.saturating_sub(c.first);
            rec.latency_ns = super::measure::latency_from(&c.hist);
            rec.throughput = super::point::throughput_of(
                rec.elapsed_ns > 0,
                || n as f64 * 1e9 / rec.elapsed_ns as f64,
                TASK_SIZE,
            );
            let workers_cpu: u64 = reports.iter().map(|r| r.cpu_ns).sum();
            let master_cpu = super::measure::cpu_time_ns() - cpu0;
            rec.cpu_ns_per_msg = Some((workers_cpu + master_cpu) as f64 / n as f64);
        }
    }
    rec
}

/// Starts the workers, runs the master, ends the farm; the master's
/// figures and the workers' reports.
#[allow(clippy::too_many_arguments)]
fn farm(
    spec: &PoolSpec,
    opts: &RunOpts,
    n: u64,
    work_ns: u64,
    codec: &Codec,
    seen: &Seen,
    deadline: Instant,
    worker_cpu: &dyn Fn(usize) -> Option<usize>,
) -> Result<(Collected, Vec<PeerReport>), HarnessError> {
    let w = spec.workers;
    let window = WINDOW * w as u64;
    let op_timeout = Some(opts.deadline);
    let args = |addr: &str, i: usize| WorkerArgs {
        kind: spec.kind,
        addr: addr.to_owned(),
        id: i,
        work_ns,
        cpu: worker_cpu(i),
    };
    // Between hosts the workers are on the far one, connecting to the
    // master (or to a manager's server there too).
    let far = opts.far_farm(spec.kind).map(|(f, _)| f);
    let start = |addr: &str, inherit: &[i32], env: &[(String, String)], i: usize| {
        spawn_on(
            far,
            opts,
            args(addr, i).to_args(),
            inherit,
            env,
            &format!("worker {i}"),
        )
    };
    let go_all = |workers: &mut [Running]| line_up(workers, deadline, || {});
    let reports = |workers: &mut [Running]| -> Result<Vec<PeerReport>, HarnessError> {
        super::supervise::reports(workers, &mut [], deadline)
    };
    match spec.kind.caps().shared {
        Shared::Memory => {
            let (tn, rn) = (unique_name("pool-tasks"), unique_name("pool-results"));
            let depth = (window as usize).next_power_of_two().max(2);
            let tasks = Queue::create(&tn, depth, TASK_SIZE, spec.wait).map_err(setup)?;
            let results = Queue::create(&rn, depth, TASK_SIZE, spec.wait).map_err(setup)?;
            let addr = format!("{tn},{rn}");
            let mut workers = (0..w)
                .map(|i| start(&addr, &[], &[], i))
                .collect::<Result<Vec<_>, _>>()?;
            supervised(&mut workers, |workers| {
                go_all(workers)?;
                let mut q = ShmQueues {
                    tasks: &tasks,
                    results: &results,
                    timeout: op_timeout,
                    workers,
                };
                let c =
                    master_shared(n, window, codec, seen, &mut q).map_err(HarnessError::Invalid)?;
                tasks.close();
                Ok((c, reports(workers)?))
            })
        }
        Shared::Server => {
            let link = LinkOpts {
                max_message: TASK_SIZE,
                exe: opts.exe.clone(),
                label: format!("pool-{}", spec.kind.name()),
                helper_env: super::point::helper_env(opts),
                server_host: far.map(|f| crate::transport::RemoteHost {
                    prefix: f.prefix.clone(),
                    addr: f.addr,
                }),
                ..LinkOpts::default()
            };
            with_transport!(spec.kind, T => {
                let (mut setup, ep) = T::setup(&link).map_err(|e| HarnessError::Setup(format!("starting the manager: {e}")))?;
                let mut workers = (0..w)
                    .map(|i| start(&ep.addr, &ep.inherit, &ep.env, i))
                    .collect::<Result<Vec<_>, _>>()?;
                supervised(&mut workers, |workers| {
                    go_all(workers)?;
                    let master = ServerMaster { n, window, codec, seen, timeout: op_timeout, workers };
                    let c = with_proxy(spec.kind, &ep, &link, master)
                        .map_err(|e| HarnessError::Setup(format!("connecting to the manager: {e}")))?
                        .map_err(HarnessError::Invalid)?;
                    Ok((c, reports(workers)?))
                })
                .map_err(|e| blame_helper(&mut setup, e))
            })
        }
        #[cfg(feature = "zeromq")]
        Shared::Sockets => {
            let link = LinkOpts {
                max_message: TASK_SIZE,
                exe: opts.exe.clone(),
                label: format!("pool-{}", spec.kind.name()),
                parties: Some((w, 1)),
                listen: far.map(|f| f.listen),
                ..LinkOpts::default()
            };
            let (mut setup, ep) = crate::transport::zmq::calls_setup(spec.kind, &link)
                .map_err(|e| HarnessError::Setup(format!("setting up the farm's channel: {e}")))?;
            let mut workers = (0..w)
                .map(|i| start(&ep.addr, &ep.inherit, &ep.env, i))
                .collect::<Result<Vec<_>, _>>()?;
            supervised(&mut workers, |workers| {
                // A worker that dies before it connects must not leave the
                // master waiting for its handshake until the accept deadline.
                let (kind, ep, link) = (spec.kind, ep.clone(), link.clone());
                let master = watching(workers, deadline, move || {
                    crate::transport::zmq::farm_master(kind, &ep, &link).map_err(|e| {
                        HarnessError::Setup(format!("starting the master's ROUTER: {e}"))
                    })
                })?;
                setup.children_started();
                go_all(workers)?;
                let mut q = ZmqQueues {
                    in_flight: vec![0; master.workers()],
                    master,
                    timeout: op_timeout,
                    workers,
                };
                let c =
                    master_shared(n, window, codec, seen, &mut q).map_err(HarnessError::Invalid)?;
                // Every result is in: each worker reads its end, reports and exits.
                q.master.end().map_err(|e| HarnessError::Invalid(terr(e)))?;
                Ok((c, reports(workers)?))
            })
        }
        // Without ZeroMQ no strategy shares sockets.
        #[cfg(not(feature = "zeromq"))]
        Shared::Sockets => unreachable!("no strategy shares sockets without ZeroMQ"),
        Shared::Nothing => {
            let kind = spec.kind;
            let link = LinkOpts {
                max_message: TASK_SIZE,
                exe: opts.exe.clone(),
                label: format!("pool-{}", kind.name()),
                listen: far.map(|f| f.listen),
                ..LinkOpts::default()
            };
            with_transport!(kind, T => {
                let mut setups = Vec::new();
                let mut workers = Vec::new();
                let mut eps = Vec::new();
                for i in 0..w {
                    let (s, ep) = T::setup(&link).map_err(|e| HarnessError::Setup(format!("setting up link {i}: {e}")))?;
                    workers.push(start(&ep.addr, &ep.inherit, &ep.env, i)?);
                    setups.push(s);
                    eps.push(ep);
                }
                supervised(&mut workers, |workers| {
                    // A worker that dies before it connects must not leave
                    // the master accepting until the link's own timeout.
                    let link2 = link.clone();
                    let conns = watching(workers, deadline, move || {
                        let mut conns = Vec::new();
                        for (i, ep) in eps.iter().enumerate() {
                            let mut c = T::connect(ep, Side::A, &link2).map_err(|e| HarnessError::Setup(format!("connecting to worker {i}: {e}")))?;
                            c.set_timeout(op_timeout).map_err(|e| HarnessError::Setup(terr(e)))?;
                            conns.push(c);
                        }
                        Ok(conns)
                    })?;
                    for s in &mut setups {
                        s.children_started();
                    }
                    go_all(workers)?;
                    let next = AtomicU64::new(0);
                    let first = now_ns();
                    let hists: Vec<Result<Histogram<u64>, String>> = std::thread::scope(|sc| {
                        let handles: Vec<_> = conns
                            .into_iter()
                            .map(|mut c| {
                                let next = &next;
                                sc.spawn(move || {
                                    let r = master_link(&mut c, n, WINDOW, next, seen);
                                    // Its worker reads the end, reports and exits.
                                    let _ = c.close();
                                    r
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|_| Err("a master thread panicked".into())))
                            .collect()
                    });
                    let last = now_ns();
                    let mut hist = histogram();
                    for h in hists {
                        hist.add(h.map_err(HarnessError::Invalid)?)
                            .map_err(|e| HarnessError::Invalid(e.to_string()))?;
                    }
                    Ok((Collected { hist, first, last }, reports(workers)?))
                })
            })
        }
    }
}

/// A ZeroMQ farm's `ROUTER`, as the master sees it: each task goes to the
/// worker with the fewest in flight (the master's window keeps that below
/// [`WINDOW`]), and each result must come from a worker that had one; the
/// workers are watched while the master waits for a result.
#[cfg(feature = "zeromq")]
struct ZmqQueues<'a> {
    master: crate::transport::zmq::FarmMaster,
    in_flight: Vec<u64>,
    timeout: Option<Duration>,
    workers: &'a mut [Running],
}

#[cfg(feature = "zeromq")]
impl TaskQueues for ZmqQueues<'_> {
    fn put(&mut self, task: &[u8]) -> Result<(), String> {
        let (w, _) = self
            .in_flight
            .iter()
            .enumerate()
            .min_by_key(|&(_, n)| *n)
            .ok_or("a farm without workers")?;
        self.master.send_to(w, task).map_err(terr)?;
        self.in_flight[w] += 1;
        Ok(())
    }
    fn get(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        let (master, in_flight) = (&mut self.master, &mut self.in_flight);
        get_in_slices(
            self.workers,
            self.timeout,
            || terr(TransportError::Timeout),
            || match master.recv(buf, Some(crate::shm::wait::LIVENESS_CHECK_EVERY)) {
                Ok(w) if in_flight[w] == 0 => {
                    Err(format!("worker {w} answered a task it was never given"))
                }
                Ok(w) => {
                    in_flight[w] -= 1;
                    Ok(true)
                }
                Err(TransportError::Timeout) => Ok(false),
                Err(e) => Err(terr(e)),
            },
        )
    }
}

/// The master over a server's queues (through a proxy, once connected);
/// the task queue is closed at the end, which ends the workers.
struct ServerMaster<'a> {
    n: u64,
    window: u64,
    codec: &'a Codec,
    seen: &'a Seen,
    timeout: Option<Duration>,
    workers: &'a mut [Running],
}

impl ProxyTask for ServerMaster<'_> {
    type Out = Result<Collected, String>;
    fn run<S: StreamIo>(self, mut p: Proxy<S>) -> Self::Out {
        // The server waits a slice for a result, then the master looks at
        // the workers (see `WatchedProxy`).
        p.set_timeout(Some(crate::shm::wait::LIVENESS_CHECK_EVERY))
            .map_err(terr)?;
        let mut q = WatchedProxy {
            p: &mut p,
            workers: self.workers,
            timeout: self.timeout,
        };
        let c = master_shared(self.n, self.window, self.codec, self.seen, &mut q)?;
        p.close_queue(TASKS).map_err(terr)?;
        Ok(c)
    }
}

/// A manager's queues as the master sees them, the workers watched while
/// it waits for a result: a worker killed before it put anything is no
/// writer the server can report lost, and the master would wait out its
/// timeout (the point's whole deadline, once, beside a build).
struct WatchedProxy<'a, S: StreamIo> {
    p: &'a mut Proxy<S>,
    workers: &'a mut [Running],
    timeout: Option<Duration>,
}

impl<S: StreamIo> TaskQueues for WatchedProxy<'_, S> {
    fn put(&mut self, task: &[u8]) -> Result<(), String> {
        self.p.put(TASKS, task).map_err(terr)
    }
    fn get(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        let p = &mut *self.p;
        get_in_slices(
            self.workers,
            self.timeout,
            || terr(TransportError::Timeout),
            || match p.get(RESULTS, buf) {
                Ok(_) => Ok(true),
                Err(TransportError::Timeout) => Ok(false),
                Err(e) => Err(terr(e)),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_takes_the_cpu_time_asked() {
        let t0 = thread_cpu_ns();
        work(2_000_000, 1);
        let spent = thread_cpu_ns() - t0;
        assert!((2_000_000..20_000_000).contains(&spent), "{spent}");
        assert_eq!(work(0, 7), 7);
    }

    #[test]
    fn seen_refuses_repeats_and_strangers() {
        let s = Seen::new(3);
        s.mark(0).unwrap();
        s.mark(2).unwrap();
        assert!(s.mark(2).unwrap_err().contains("twice"));
        assert!(s.mark(3).unwrap_err().contains("never sent"));
    }
}
