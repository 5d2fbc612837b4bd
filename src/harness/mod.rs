//! The measuring instrument: runs one point (a strategy, a pattern, a
//! message size, a waiting strategy) between real peer processes and turns
//! what they measured into a [`PointRecord`].
//!
//! For each point the coordinator sets the link up, starts both peers as
//! `ipcbench peer bench …` children — pinned to distinct CPUs when there
//! are enough — waits until both say `ready` (so no start-up is timed),
//! tells them `go`, and reads one report from each over their standard
//! output (the control channel, not the one under test). A peer that misses
//! the point's deadline is killed and reaped, and the point is recorded as
//! failed with the reason; so is a point whose messages failed validation.
//!
//! Patterns here: `pingpong` (round-trip latency, HdrHistogram percentiles
//! and a batched mean) and `stream` (one-way throughput, and one-way latency
//! from send times inside the messages). The floors — `floor` with `spin`
//! (one cache line bounced between two processes) and with `park` (a futex
//! ping-pong) — run in the same way, so every figure can be read as a
//! multiple of what the hardware and the kernel allow.

pub mod msg;
pub mod peer;
pub mod record;
pub mod run;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::shm::region::{Kind, Region};
use crate::shm::{Wait, WaitKind, unique_name};
#[allow(unused_imports)]
use crate::transport::{LinkOpts, LinkSetup, Side, Transport, TransportKind};
use msg::Codec;
use peer::PeerReport;
pub use record::{Latency, Machine, PointRecord, RunRecord, Throughput};

/// What a point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Round trips between two peers.
    Pingpong,
    /// One peer sends, the other receives.
    Stream,
}

impl Pattern {
    /// Every pattern this harness runs.
    pub const ALL: [Pattern; 2] = [Pattern::Pingpong, Pattern::Stream];

    /// The name in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Pingpong => "pingpong",
            Pattern::Stream => "stream",
        }
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Pattern, String> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown pattern `{s}`: this build runs pingpong and stream"))
    }
}

/// What is measured: a transport, or the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The raw floor (cache line with `spin`, futex with `park`).
    Floor,
    /// A transport.
    Transport(TransportKind),
}

impl Strategy {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Floor => "floor",
            Strategy::Transport(k) => k.name(),
        }
    }

    /// Whether the strategy's waiting is ours to choose (shared memory);
    /// otherwise it blocks in the kernel.
    pub fn has_wait(self) -> bool {
        match self {
            Strategy::Floor => true,
            Strategy::Transport(k) => matches!(
                k,
                TransportKind::ShmRing | TransportKind::ShmPipe | TransportKind::ShmQueue
            ),
        }
    }

    /// Processes busy during a point besides the two peers.
    fn helpers(self) -> usize {
        match self {
            Strategy::Transport(TransportKind::ManagerUnix | TransportKind::ManagerTcp) => 1,
            _ => 0,
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Strategy, String> {
        if s == "floor" {
            Ok(Strategy::Floor)
        } else {
            s.parse().map(Strategy::Transport)
        }
    }
}

/// One point to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointSpec {
    /// What moves the messages.
    pub strategy: Strategy,
    /// How.
    pub pattern: Pattern,
    /// Bytes per message.
    pub size: usize,
    /// How shared-memory strategies wait (ignored by kernel ones).
    pub wait: Wait,
}

impl PointSpec {
    /// The waiting strategy as results name it (`kernel` for kernel transports).
    pub fn wait_name(&self) -> &'static str {
        if self.strategy.has_wait() {
            self.wait.name()
        } else {
            "kernel"
        }
    }
}

/// How points are run.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// The `ipcbench` binary the peers run.
    pub exe: PathBuf,
    /// Untimed exchanges or messages first.
    pub warmup: u64,
    /// Round trips per pingpong phase (two phases: histogram, batch).
    pub pingpong_iters: u64,
    /// Bytes a stream point moves (messages = bytes / size, bounded).
    pub stream_bytes: u64,
    /// Bounds on the messages of a stream point.
    pub stream_messages: (u64, u64),
    /// A point that takes longer fails.
    pub deadline: Duration,
    /// Pin peers to distinct CPUs when there are enough.
    pub pin: bool,
    /// Measure exactly this many round trips or messages (criterion's
    /// `iters`), instead of counts derived from the size.
    pub fixed_count: Option<u64>,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ipcbench")),
            warmup: 1000,
            pingpong_iters: 20_000,
            stream_bytes: 256 << 20,
            stream_messages: (1_000, 1_000_000),
            deadline: Duration::from_secs(60),
            pin: true,
            fixed_count: None,
        }
    }
}

impl RunOpts {
    fn counts(&self, spec: &PointSpec) -> (u64, u64) {
        if let Some(n) = self.fixed_count {
            return (self.warmup, n.max(2));
        }
        match spec.pattern {
            Pattern::Pingpong => {
                // Fewer round trips when each one is slow (large messages).
                let iters = (self.pingpong_iters * 64 / (spec.size as u64).max(64))
                    .clamp(200, self.pingpong_iters);
                (self.warmup.min(iters), iters)
            }
            Pattern::Stream => {
                let (lo, hi) = self.stream_messages;
                let n = (self.stream_bytes / spec.size as u64).clamp(lo, hi);
                (self.warmup.min(n / 10).max(1), n)
            }
        }
    }
}

/// The arguments of `ipcbench peer bench`, as the coordinator writes them.
#[derive(Debug, Clone)]
pub struct PeerArgs {
    /// What to measure.
    pub strategy: Strategy,
    /// The link's address (a region name for the floor).
    pub addr: String,
    /// Which side.
    pub side: Side,
    /// Which pattern.
    pub pattern: Pattern,
    /// Bytes per message.
    pub size: usize,
    /// Warm-up count.
    pub warmup: u64,
    /// Measured count.
    pub iters: u64,
    /// The floor's waiting (spin or park).
    pub wait: Wait,
    /// The CPU to pin to.
    pub cpu: Option<usize>,
    /// The link's message limit.
    pub max_message: usize,
}

impl PeerArgs {
    /// The command line after `ipcbench peer`.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "bench".to_owned(),
            self.strategy.name().to_owned(),
            self.addr.clone(),
            self.side.name().to_owned(),
            self.pattern.name().to_owned(),
            self.size.to_string(),
            self.warmup.to_string(),
            self.iters.to_string(),
            format!("--wait={}", self.wait.name()),
            format!("--max-message={}", self.max_message),
        ];
        if let Some(c) = self.cpu {
            v.push(format!("--cpu={c}"));
        }
        v
    }
}

/// Runs one side of a point in this (child) process, after pinning it.
pub fn run_peer(a: &PeerArgs) -> Result<PeerReport, String> {
    if let Some(cpu) = a.cpu {
        record::pin_to(cpu).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
    }
    let codec = Codec::new(a.size)?;
    let initiator = a.side == Side::A;
    match a.strategy {
        Strategy::Floor => {
            let region = Region::open(&a.addr, Kind::Raw).map_err(|e| e.to_string())?;
            if region.body_len() < 256 {
                return Err("floor region too small".into());
            }
            let base = region.body_ptr();
            barrier_then(|| match a.wait.kind {
                WaitKind::Park => {
                    // SAFETY: two futex words 128 bytes apart in a body of at
                    // least 256 bytes that `region` keeps mapped; a Futex is
                    // a transparent AtomicU32, valid for any bits.
                    let (ping, pong) = unsafe {
                        (
                            &*(base as *const crate::shm::futex::Futex),
                            &*(base.add(128) as *const crate::shm::futex::Futex),
                        )
                    };
                    peer::floor_park(ping, pong, initiator, a.warmup, a.iters)
                }
                _ => {
                    // SAFETY: an aligned u64 at the start of the body, alive
                    // with `region`; atomics are valid for any bits.
                    let word = unsafe { &*(base as *const std::sync::atomic::AtomicU64) };
                    peer::floor_spin(word, initiator, a.warmup, a.iters)
                }
            })
        }
        Strategy::Transport(kind) => {
            let opts = LinkOpts {
                max_message: a.max_message,
                wait: a.wait,
                ..LinkOpts::default()
            };
            with_transport!(kind, T => {
                let conn = T::connect(&crate::transport::Endpoint::for_child(&a.addr), a.side, &opts)
                    .map_err(|e| format!("connecting: {e}"))?;
                barrier_then(|| match (a.pattern, initiator) {
                    (Pattern::Pingpong, true) => peer::pingpong_initiator(conn, &codec, a.warmup, a.iters),
                    (Pattern::Pingpong, false) => peer::pingpong_echo(conn, &codec),
                    (Pattern::Stream, true) => peer::stream_send(conn, &codec, a.warmup, a.iters),
                    (Pattern::Stream, false) => peer::stream_recv(conn, &codec, a.warmup, a.iters),
                })
            })
        }
    }
}

fn barrier_then(f: impl FnOnce() -> Result<PeerReport, String>) -> Result<PeerReport, String> {
    peer::barrier()?;
    f()
}

/// A started peer: its process, its control input, and its output lines.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    name: &'static str,
}

fn spawn(
    exe: &PathBuf,
    args: &PeerArgs,
    inherit: &[i32],
    env: &[(String, String)],
    name: &'static str,
) -> Result<Running, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("peer")
        .args(args.to_args())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::transport::fd::inherit_in_child(&mut cmd, inherit.to_vec());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting peer {name} ({}): {e}", exe.display()))?;
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().ok_or("no peer stdout")?;
    let err = child.stderr.take().ok_or("no peer stderr")?;
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {l}"));
        }
    });
    Ok(Running {
        stdin: child.stdin.take(),
        child,
        lines,
        name,
    })
}

impl Running {
    /// The next line that is not stderr noise, by `deadline`.
    fn expect_line(&mut self, deadline: Instant, what: &str) -> Result<String, String> {
        let mut errors = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("stderr: ") => errors.push(l["stderr: ".len()..].to_owned()),
                Ok(l) => return Ok(l),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "peer {} missed its deadline waiting for {what}",
                        self.name
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(format!(
                        "peer {} exited before {what}: {}",
                        self.name,
                        if errors.is_empty() {
                            "no message".to_owned()
                        } else {
                            errors.join("; ")
                        }
                    ));
                }
            }
        }
    }

    fn go(&mut self) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("control channel closed")?;
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("telling peer {} to go: {e}", self.name))
    }

    fn report(&mut self, deadline: Instant) -> Result<PeerReport, String> {
        let line = self.expect_line(deadline, "its report")?;
        serde_json::from_str(&line)
            .map_err(|e| format!("peer {} sent a bad report ({e}): {line}", self.name))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a peer behind: kill it if it is still running, and reap it.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs both peers of a point and returns their reports (A, B).
fn run_pair(
    opts: &RunOpts,
    args: [PeerArgs; 2],
    inherit: &[i32],
    env: &[(String, String)],
    after_ready: &mut dyn FnMut(),
) -> Result<(PeerReport, PeerReport), String> {
    let deadline = Instant::now() + opts.deadline;
    let mut b = spawn(&opts.exe, &args[1], inherit, env, "B")?;
    let mut a = spawn(&opts.exe, &args[0], inherit, env, "A")?;
    for p in [&mut b, &mut a] {
        let l = p.expect_line(deadline, "ready")?;
        if l != "ready" {
            return Err(format!("peer {} said {l:?} instead of ready", p.name));
        }
    }
    after_ready();
    b.go()?;
    a.go()?;
    // A failed peer ends the point at once (the other is killed on drop).
    let ra = a.report(deadline)?;
    if let Some(e) = &ra.error {
        return Err(format!("peer A: {e}"));
    }
    let rb = b.report(deadline)?;
    if let Some(e) = &rb.error {
        return Err(format!("peer B: {e}"));
    }
    Ok((ra, rb))
}

/// Measures one point. A failure is recorded in the result, never as a number.
pub fn run_point(spec: &PointSpec, opts: &RunOpts) -> PointRecord {
    let cpus = record::allowed_cpus();
    let busy = 2 + spec.strategy.helpers();
    let oversubscribed = busy > cpus.len();
    let pinned = opts.pin && cpus.len() >= 2;
    let (warmup, iters) = opts.counts(spec);
    let mut rec = PointRecord {
        transport: spec.strategy.name().to_owned(),
        pattern: spec.pattern.name().to_owned(),
        msg_size: spec.size,
        producers: 1,
        consumers: 1,
        wait: spec.wait_name().to_owned(),
        pinned,
        oversubscribed,
        messages: 0,
        elapsed_ns: 0,
        validated: false,
        error: None,
        latency_ns: None,
        throughput: None,
        cpu_ns_per_msg: None,
        batched_mean_ns: None,
        harness_ns_per_msg: Codec::new(spec.size).ok().map(|c| c.calibrate()),
        cpus: if pinned {
            cpus[..2].to_vec()
        } else {
            Vec::new()
        },
    };
    let make_args = |addr: &str, side: Side| PeerArgs {
        strategy: spec.strategy,
        addr: addr.to_owned(),
        side,
        pattern: spec.pattern,
        size: spec.size,
        warmup,
        iters,
        wait: spec.wait,
        cpu: pinned.then(|| cpus[if side == Side::A { 0 } else { 1 }]),
        max_message: spec.size,
    };
    let result = match spec.strategy {
        Strategy::Floor => {
            if spec.pattern != Pattern::Pingpong {
                Err("the floor is measured with pingpong".to_owned())
            } else {
                let name = unique_name("floor");
                Region::create(&name, Kind::Raw, 256, [0; 6])
                    .map_err(|e| e.to_string())
                    .and_then(|region| {
                        region.publish();
                        let r = run_pair(
                            opts,
                            [make_args(&name, Side::A), make_args(&name, Side::B)],
                            &[],
                            &[],
                            &mut || {},
                        );
                        drop(region);
                        r
                    })
            }
        }
        Strategy::Transport(kind) => {
            let link = LinkOpts {
                wait: spec.wait,
                capacity: (spec.size * 16).clamp(64 << 10, 16 << 20),
                max_message: spec.size,
                exe: opts.exe.clone(),
                label: format!("bench-{}", kind.name()),
            };
            with_transport!(kind, T => match T::setup(&link) {
                Err(e) => Err(format!("setting up the link: {e}")),
                Ok((mut setup, ep)) => run_pair(
                    opts,
                    [make_args(&ep.addr, Side::A), make_args(&ep.addr, Side::B)],
                    &ep.inherit,
                    &ep.env,
                    &mut || setup.children_started(),
                ),
            })
        }
    };
    match result {
        Err(e) => rec.error = Some(e),
        Ok((a, b)) => {
            rec.validated = true;
            let measured = match spec.pattern {
                Pattern::Pingpong => &a,
                Pattern::Stream => &b,
            };
            rec.messages = measured.messages;
            rec.elapsed_ns = measured.elapsed_ns;
            rec.latency_ns = measured.latency;
            rec.batched_mean_ns = a.batched_mean_ns;
            if measured.elapsed_ns > 0 && measured.messages > 0 {
                let per_s = measured.messages as f64 * 1e9 / measured.elapsed_ns as f64;
                rec.throughput = Some(Throughput {
                    msgs_per_s: per_s,
                    bytes_per_s: per_s * spec.size as f64,
                });
            }
            // Both peers' CPU over the messages each side handled.
            let total_msgs = match spec.pattern {
                Pattern::Pingpong => (a.messages * 2).max(1),
                Pattern::Stream => measured.messages.max(1),
            };
            rec.cpu_ns_per_msg = Some((a.cpu_ns + b.cpu_ns) as f64 / total_msgs as f64);
        }
    }
    rec
}
