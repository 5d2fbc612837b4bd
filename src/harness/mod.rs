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
//! and a batched mean), `stream` (one-way throughput, and one-way latency
//! from send times inside the messages), and over the strategies where many
//! processes share one channel (`shm-queue`, the managers) `fan-in` (N→1),
//! `fan-out` (1→N) and `mpmc` (N×M): aggregate throughput and latency, with
//! each producer's order checked by every consumer and exactly-once checked
//! across all of them by the coordinator; and `reqrep`, N clients calling
//! a server's dictionary (a manager's, or [`shm_dict`]'s over shm queues).
//! The floors — `floor` with `spin`
//! (one cache line bounced between two processes) and with `park` (a futex
//! ping-pong) — run in the same way, so every figure can be read as a
//! multiple of what the hardware and the kernel allow.

pub mod msg;
pub mod peer;
pub mod pool;
pub mod python;
pub mod record;
pub mod run;
pub mod shm_dict;
pub mod startup;
pub mod sync;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::shm::region::{Kind, Region};
use crate::shm::{Wait, WaitKind, unique_name};
#[allow(unused_imports)]
use crate::transport::{Conn, LinkOpts, LinkSetup, Side, Transport, TransportKind};
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
    /// N producers, one consumer, one shared channel.
    FanIn,
    /// One producer, N consumers, one shared channel.
    FanOut,
    /// N producers, M consumers, one shared channel.
    Mpmc,
    /// N clients calling a server's objects, each call a request and a reply.
    Reqrep,
    /// Pingpong whose echo works [`peer::LATE_REPLY_NS`] on each message
    /// before answering: what waiting costs when the answer is slow (the
    /// round trip includes that time).
    PingpongLate,
}

impl Pattern {
    /// Every pattern this harness runs.
    pub const ALL: [Pattern; 7] = [
        Pattern::Pingpong,
        Pattern::Stream,
        Pattern::FanIn,
        Pattern::FanOut,
        Pattern::Mpmc,
        Pattern::Reqrep,
        Pattern::PingpongLate,
    ];

    /// The name in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Pingpong => "pingpong",
            Pattern::Stream => "stream",
            Pattern::FanIn => "fan-in",
            Pattern::FanOut => "fan-out",
            Pattern::Mpmc => "mpmc",
            Pattern::Reqrep => "reqrep",
            Pattern::PingpongLate => "pingpong-late",
        }
    }

    /// Whether one side sends and the other answers each message
    /// (pingpong, late or not): the initiator's figures are the point's.
    pub fn round_trips(self) -> bool {
        matches!(self, Pattern::Pingpong | Pattern::PingpongLate)
    }

    /// How long the answering side works on each message before it
    /// answers: [`peer::LATE_REPLY_NS`] for `pingpong-late`, else 0.
    pub fn echo_work_ns(self) -> u64 {
        if self == Pattern::PingpongLate {
            peer::LATE_REPLY_NS
        } else {
            0
        }
    }

    /// Whether several processes share one channel (or server).
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Pattern::FanIn | Pattern::FanOut | Pattern::Mpmc | Pattern::Reqrep
        )
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Pattern, String> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown pattern `{s}`: use pingpong, stream, fan-in, fan-out, mpmc, reqrep or pingpong-late"
                )
            })
    }
}

/// What is measured: a transport, or a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The raw floor (cache line with `spin`, futex with `park`, the copy
    /// floor of a stream).
    Floor,
    /// The copy floor of a round trip: a slot per direction, the message
    /// copied in and out ([`peer::floor_copy_pingpong`]).
    FloorCopy,
    /// A transport.
    Transport(TransportKind),
}

impl Strategy {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Floor => "floor",
            Strategy::FloorCopy => "floor-copy",
            Strategy::Transport(k) => k.name(),
        }
    }

    /// Whether the strategy's waiting is ours to choose (shared memory);
    /// otherwise it blocks in the kernel.
    pub fn has_wait(self) -> bool {
        match self {
            Strategy::Floor | Strategy::FloorCopy => true,
            #[cfg(feature = "iceoryx2")]
            Strategy::Transport(TransportKind::Iceoryx2) => true,
            Strategy::Transport(k) => matches!(
                k,
                TransportKind::ShmRing | TransportKind::ShmPipe | TransportKind::ShmQueue
            ),
        }
    }

    /// The waiting strategies of `asked` this strategy measures: iceoryx2's
    /// subscriber polls, spinning or yielding, so every strategy but pure
    /// spin becomes `spin-yield` for it.
    pub fn waits_of(self, asked: &[Wait]) -> Vec<Wait> {
        #[cfg(feature = "iceoryx2")]
        if self == Strategy::Transport(TransportKind::Iceoryx2) {
            let mut out: Vec<Wait> = Vec::new();
            for w in asked {
                let w = if w.kind == crate::shm::WaitKind::Spin {
                    *w
                } else {
                    Wait::SPIN_YIELD
                };
                if !out.contains(&w) {
                    out.push(w);
                }
            }
            return out;
        }
        asked.to_vec()
    }

    /// Whether several processes can send into (and receive from) one of
    /// its channels, as fan-in, fan-out and mpmc need.
    pub fn multi_party(self) -> bool {
        matches!(
            self,
            Strategy::Transport(
                TransportKind::ShmQueue | TransportKind::ManagerUnix | TransportKind::ManagerTcp
            )
        )
    }

    /// Processes busy during a point besides the peers.
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
        } else if s == "floor-copy" {
            Ok(Strategy::FloorCopy)
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
    /// Sending processes (1 but for fan-in and mpmc).
    pub producers: usize,
    /// Receiving processes (1 but for fan-out and mpmc).
    pub consumers: usize,
}

impl PointSpec {
    /// A one-to-one point.
    pub fn one_to_one(strategy: Strategy, pattern: Pattern, size: usize, wait: Wait) -> PointSpec {
        PointSpec {
            strategy,
            pattern,
            size,
            wait,
            producers: 1,
            consumers: 1,
        }
    }

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
            Pattern::Reqrep => {
                let iters = (self.pingpong_iters / spec.producers.max(1) as u64).max(100);
                (self.warmup.min(iters / 10).max(1), iters)
            }
            Pattern::PingpongLate => {
                // Each round trip takes the echo's work and more: a few
                // hundred of them give a median and a p99.
                let iters = (self.pingpong_iters / 20).clamp(50, 1_000);
                (self.warmup.min(iters / 10).max(1), iters)
            }
            Pattern::Pingpong => {
                // Fewer round trips when each one is slow (large messages).
                let iters = (self.pingpong_iters * 64 / (spec.size as u64).max(64))
                    .clamp(200, self.pingpong_iters);
                (self.warmup.min(iters), iters)
            }
            Pattern::Stream | Pattern::FanIn | Pattern::FanOut | Pattern::Mpmc => {
                let (lo, hi) = self.stream_messages;
                // Multi-party points move the same total, split among producers.
                let n = (self.stream_bytes / spec.size as u64).clamp(lo, hi)
                    / spec.producers.max(1) as u64;
                let n = n.max(100);
                (self.warmup.min(n / 10).max(1), n)
            }
        }
    }
}

/// The arguments of `ipcbench peer bench`: the coordinator writes them
/// with [`PeerArgs::to_args`], the peer's command line parses them back.
#[derive(Debug, Clone, clap::Args)]
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
    /// The waiting strategy (shared memory and the floor).
    #[arg(long, default_value = "spin-park")]
    pub wait: Wait,
    /// The CPU to pin to.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// The link's message limit.
    #[arg(long, default_value_t = LinkOpts::default().max_message)]
    pub max_message: usize,
    /// Multi-party: this producer's id.
    #[arg(long, default_value_t = 0)]
    pub id: u64,
    /// Multi-party: how many producers there are.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// A session: after `go`, measure one round per `round N` line on the
    /// control channel (a report line each) until `end`.
    #[arg(long)]
    pub rounds: bool,
    /// A session's consumer: publish progress in this region, slot `id`.
    #[arg(long)]
    pub progress: Option<String>,
}

impl PeerArgs {
    /// Side `side`'s arguments for `spec` (producer or consumer `id` of a
    /// multi-party point), pinned to `cpu` if given.
    pub fn for_point(
        spec: &PointSpec,
        addr: &str,
        side: Side,
        id: usize,
        (warmup, iters): (u64, u64),
        cpu: Option<usize>,
    ) -> PeerArgs {
        PeerArgs {
            strategy: spec.strategy,
            addr: addr.to_owned(),
            side,
            pattern: spec.pattern,
            size: spec.size,
            warmup,
            iters,
            wait: spec.wait,
            cpu,
            max_message: spec.size,
            id: id as u64,
            producers: spec.producers,
            rounds: false,
            progress: None,
        }
    }

    /// The link options a peer connects with.
    pub fn link_opts(&self) -> LinkOpts {
        LinkOpts {
            max_message: self.max_message,
            wait: self.wait,
            ..LinkOpts::default()
        }
    }

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
            format!("--id={}", self.id),
            format!("--producers={}", self.producers),
        ];
        if let Some(c) = self.cpu {
            v.push(format!("--cpu={c}"));
        }
        if self.rounds {
            v.push("--rounds".into());
        }
        if let Some(p) = &self.progress {
            v.push(format!("--progress={p}"));
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
    if a.rounds {
        return run_rounds(a, &codec);
    }
    match a.strategy {
        Strategy::Floor if a.pattern == Pattern::Stream => {
            let region = Region::open(&a.addr, Kind::Raw).map_err(|e| e.to_string())?;
            if region.body_len() < peer::floor_stream_len(a.size) {
                return Err("floor region too small for its messages".into());
            }
            let base = region.body_ptr();
            // SAFETY: the body holds floor_stream_len(size) bytes (checked),
            // 64-byte aligned, zeroed at creation, mapped while `region`
            // lives; side A sends, side B receives, one each.
            barrier_then(|| unsafe {
                peer::floor_stream(base, a.size, initiator, a.warmup, a.iters)
            })
        }
        Strategy::FloorCopy => {
            let region = Region::open(&a.addr, Kind::Raw).map_err(|e| e.to_string())?;
            if a.size < 8 || region.body_len() < peer::floor_copy_len(a.size) {
                return Err("floor region too small for its messages".into());
            }
            let base = region.body_ptr();
            // SAFETY: the body holds floor_copy_len(size) bytes (checked),
            // 128-byte aligned, zeroed at creation, mapped while `region`
            // lives; one side A and one side B; size ≥ 8 (checked).
            barrier_then(|| unsafe {
                peer::floor_copy_pingpong(base, a.size, initiator, a.warmup, a.iters)
            })
        }
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
                    let think = a.pattern.echo_work_ns();
                    peer::floor_park(ping, pong, initiator, a.warmup, a.iters, think)
                }
                _ => {
                    // SAFETY: an aligned u64 at the start of the body, alive
                    // with `region`; atomics are valid for any bits.
                    let word = unsafe { &*(base as *const std::sync::atomic::AtomicU64) };
                    peer::floor_spin(word, initiator, a.warmup, a.iters)
                }
            })
        }
        Strategy::Transport(TransportKind::ShmQueue) if a.pattern == Pattern::Reqrep => {
            match a.side {
                Side::A => {
                    let client = shm_dict::Client::connect(&a.addr, a.id as usize)?;
                    barrier_then(|| peer::reqrep_client(client, &codec, a.id, a.warmup, a.iters))
                }
                Side::B => shm_dict::serve(&a.addr),
            }
        }
        Strategy::Transport(kind) => {
            let opts = a.link_opts();
            with_transport!(kind, T => {
                let conn = connect_side::<T>(a, &opts)?;
                barrier_then(|| match (a.pattern, initiator) {
                    (p, true) if p.round_trips() => peer::pingpong_initiator(conn, &codec, a.warmup, a.iters),
                    (p, false) if p.round_trips() => peer::pingpong_echo(conn, &codec, p.echo_work_ns()),
                    (Pattern::Stream, true) => peer::stream_send(conn, &codec, a.warmup, a.iters),
                    (Pattern::Stream, false) => peer::stream_recv(conn, &codec, a.warmup, a.iters),
                    (Pattern::Reqrep, _) => {
                        drop(conn);
                        reqrep_client(kind, &a.addr, &opts, &codec, a)
                    }
                    (_, true) => peer::multi_send(conn, &codec, a.id, a.warmup, a.iters),
                    (_, false) => match &a.progress {
                        None => peer::multi_recv(conn, &codec, a.producers),
                        Some(name) => {
                            let region = Region::open(name, Kind::Raw).map_err(|e| e.to_string())?;
                            let (count, last_ns) = progress_slot(&region, a.id as usize)?;
                            peer::multi_recv_progress(conn, &codec, a.producers, Some(peer::Progress { count, last_ns }))
                        }
                    },
                })
            })
        }
    }
}

/// Joins the link at `a.addr` as `a.side`.
fn connect_side<T: Transport>(a: &PeerArgs, opts: &LinkOpts) -> Result<T::Conn, String> {
    T::connect(
        &crate::transport::Endpoint::for_child(&a.addr),
        a.side,
        opts,
    )
    .map_err(|e| format!("connecting: {e}"))
}

/// What the coordinator says to a peer in a session.
enum Control {
    Round(u64),
    End,
}

fn read_control() -> Result<Control, String> {
    use std::io::BufRead;
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("control channel: {e}"))?;
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        _ if n == 0 => Ok(Control::End),
        ["end"] => Ok(Control::End),
        ["round", n] => n
            .parse()
            .map(Control::Round)
            .map_err(|_| format!("control channel: bad round count {n:?}")),
        _ => Err(format!("control channel said {:?}", line.trim())),
    }
}

/// Prints one report line (a session's round) and flushes it.
fn say(r: &PeerReport) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::to_string(r).map_err(|e| e.to_string())?
    )
    .and_then(|()| out.flush())
    .map_err(|e| format!("control channel: {e}"))
}

/// A session's peer: one-to-one pingpong or stream (or the floor), one
/// round per `round N`, sequence numbers going on across rounds; each
/// round a report line. `end` (or the coordinator's going) closes.
fn run_rounds(a: &PeerArgs, codec: &Codec) -> Result<PeerReport, String> {
    let multi = a.pattern.is_multi();
    if a.pattern == Pattern::Reqrep || (multi && a.side != Side::A) {
        return Err(format!(
            "sessions run pingpong, stream, and the producers of fan-in, fan-out and mpmc, not {} {}",
            a.pattern.name(),
            a.side.name()
        ));
    }
    let initiator = a.side == Side::A;
    // Sequence numbers (pingpong: exchanges) used so far.
    let mut next = 0u64;
    let mut rounds = |mut round: Box<dyn FnMut(u64, u64) -> Result<PeerReport, String> + '_>| {
        peer::barrier()?;
        loop {
            match read_control()? {
                Control::End => return Ok(PeerReport::default()),
                Control::Round(n) => {
                    let r = round(next, n).unwrap_or_else(|e| PeerReport {
                        error: Some(e),
                        ..PeerReport::default()
                    });
                    let failed = r.error.clone();
                    say(&r)?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    // Pingpong rounds time two phases of n exchanges.
                    next += if a.pattern == Pattern::Pingpong {
                        2 * n
                    } else {
                        n
                    };
                }
            }
        }
    };
    match a.strategy {
        Strategy::FloorCopy => Err("the copy floor of a round trip is measured in points".into()),
        Strategy::Floor => {
            if a.pattern != Pattern::Pingpong {
                return Err("the floor is measured with pingpong".into());
            }
            let region = Region::open(&a.addr, Kind::Raw).map_err(|e| e.to_string())?;
            if region.body_len() < 256 {
                return Err("floor region too small".into());
            }
            let base = region.body_ptr();
            if a.wait.kind == WaitKind::Park {
                // SAFETY: as in `run_peer`: two futex words 128 bytes apart
                // in a body of at least 256 bytes that `region` keeps mapped.
                let (ping, pong) = unsafe {
                    (
                        &*(base as *const crate::shm::futex::Futex),
                        &*(base.add(128) as *const crate::shm::futex::Futex),
                    )
                };
                rounds(Box::new(|first, n| {
                    peer::floor_park_from(ping, pong, initiator, first, 0, n)
                }))
            } else {
                // SAFETY: as in `run_peer`: an aligned u64 at the start of
                // the body, alive with `region`.
                let word = unsafe { &*(base as *const std::sync::atomic::AtomicU64) };
                rounds(Box::new(|first, n| {
                    peer::floor_spin_from(word, initiator, first, 0, n)
                }))
            }
        }
        Strategy::Transport(kind) => {
            with_transport!(kind, T => {
                let mut conn = connect_side::<T>(a, &a.link_opts())?;
                let mut out = codec.buffer();
                let mut back = Vec::with_capacity(codec.size());
                let r = {
                    let conn = &mut conn;
                    rounds(Box::new(move |first, n| match (a.pattern, initiator) {
                        (Pattern::Pingpong, true) => peer::timed_exchanges_from(first, 0, n, |seq| {
                            codec.stamp(&mut out, seq, 0);
                            conn.send(&out).map_err(|e| e.to_string())?;
                            // The echo is checked where it lies when it can be.
                            conn.recv_with(&mut back, |m| codec.check(m, seq).map(drop))
                                .map_err(|e| e.to_string())?
                        }),
                        (Pattern::Pingpong, false) => peer::echo_seqs(conn, codec, first..first + 2 * n),
                        (_, true) if multi => peer::multi_send_seqs(conn, codec, a.id, first..first + n),
                        (_, true) => peer::send_seqs(conn, codec, first..first + n),
                        (_, false) => peer::recv_seqs(conn, codec, first..first + n, first),
                    }))
                };
                // A producer leaves the shared stream to the others.
                let _ = if multi { conn.leave() } else { conn.close() };
                r
            })
        }
    }
}

/// A consumer's progress slot in a session's progress region: the count
/// and the last time, each on a cache line of its own.
fn progress_slot(
    region: &Region,
    slot: usize,
) -> Result<(&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64), String> {
    if region.body_len() < (slot + 1) * 128 {
        return Err(format!("progress region has no slot {slot}"));
    }
    // SAFETY: two u64 words at 128 * slot and 128 * slot + 64 inside the
    // body (checked), 8-aligned, zeroed at creation, alive with `region`;
    // only ever accessed atomically.
    unsafe {
        let base = region.body_ptr().add(slot * 128);
        Ok((
            &*(base as *const std::sync::atomic::AtomicU64),
            &*(base.add(64) as *const std::sync::atomic::AtomicU64),
        ))
    }
}

/// A reqrep client's calls, through the manager's proxy.
fn reqrep_client(
    kind: TransportKind,
    addr: &str,
    opts: &LinkOpts,
    codec: &Codec,
    a: &PeerArgs,
) -> Result<PeerReport, String> {
    use crate::transport::manager::{ManagerTcp, ManagerUnix};
    let ep = crate::transport::Endpoint::for_child(addr);
    let e = |e: crate::transport::TransportError| format!("connecting: {e}");
    match kind {
        TransportKind::ManagerUnix => peer::reqrep_client(
            ManagerUnix::proxy(&ep, opts).map_err(e)?,
            codec,
            a.id,
            a.warmup,
            a.iters,
        ),
        TransportKind::ManagerTcp => peer::reqrep_client(
            ManagerTcp::proxy(&ep, opts).map_err(e)?,
            codec,
            a.id,
            a.warmup,
            a.iters,
        ),
        other => Err(format!(
            "reqrep calls a manager's objects; {other} has none"
        )),
    }
}

fn barrier_then(f: impl FnOnce() -> Result<PeerReport, String>) -> Result<PeerReport, String> {
    peer::barrier()?;
    f()
}

/// How many of a peer's last stderr lines an error about it quotes.
const SAID: usize = 20;

/// A started peer: its process, its control input, and its output lines.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    name: String,
    /// A line read while looking at a peer that exited, given back by the
    /// next read.
    held: Option<String>,
    /// The last lines the peer wrote to stderr (at most [`SAID`]).
    said: Vec<String>,
}

fn spawn(
    exe: &PathBuf,
    args: &PeerArgs,
    inherit: &[i32],
    env: &[(String, String)],
    name: &str,
) -> Result<Running, String> {
    spawn_with(exe, args.to_args(), inherit, env, name)
}

/// Starts `ipcbench peer <args>` with nothing inherited.
fn spawn_args(exe: &PathBuf, args: Vec<String>, name: &str) -> Result<Running, String> {
    spawn_with(exe, args, &[], &[], name)
}

fn spawn_with(
    exe: &PathBuf,
    args: Vec<String>,
    inherit: &[i32],
    env: &[(String, String)],
    name: &str,
) -> Result<Running, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("peer")
        .args(args)
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
        name: name.to_owned(),
        held: None,
        said: Vec::new(),
    })
}

impl Running {
    /// The next line that is not stderr noise, if one comes by `until`; an
    /// error, with what the peer wrote to stderr, if its output ended first.
    fn next_line(&mut self, until: Instant, what: &str) -> Result<Option<String>, String> {
        if let Some(l) = self.held.take() {
            return Ok(Some(l));
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("stderr: ") => {
                    if self.said.len() == SAID {
                        self.said.remove(0);
                    }
                    self.said.push(l["stderr: ".len()..].to_owned());
                }
                Ok(l) => return Ok(Some(l)),
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(format!(
                        "peer {} exited before {what}: {}",
                        self.name,
                        if self.said.is_empty() {
                            "no message".to_owned()
                        } else {
                            self.said.join("; ")
                        }
                    ));
                }
            }
        }
    }

    /// The next line that is not stderr noise, by `deadline`.
    fn expect_line(&mut self, deadline: Instant, what: &str) -> Result<String, String> {
        self.next_line(deadline, what)?
            .ok_or_else(|| format!("peer {} missed its deadline waiting for {what}", self.name))
    }

    /// Why this peer will not answer, if its process has ended: the error
    /// it reported, or the end of its output. A good report it wrote before
    /// exiting is kept for [`Running::report`].
    fn gone(&mut self) -> Option<String> {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            return None;
        }
        // Its output ends as soon as the reader threads have drained it.
        match self.next_line(Instant::now() + Duration::from_millis(200), "its report") {
            Err(e) => Some(e),
            Ok(None) => None,
            Ok(Some(line)) => {
                let failed = self.parse_report(&line).err();
                self.held = Some(line);
                failed
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

    /// Waits for the peer's `ready`.
    fn ready(&mut self, deadline: Instant) -> Result<(), String> {
        match self.expect_line(deadline, "ready")? {
            l if l == "ready" => Ok(()),
            l => Err(format!("peer {} said {l:?} instead of ready", self.name)),
        }
    }

    /// The peer's next report; a report of a failure is an error.
    fn report(&mut self, deadline: Instant) -> Result<PeerReport, String> {
        let line = self.expect_line(deadline, "its report")?;
        self.parse_report(&line)
    }

    fn parse_report(&self, line: &str) -> Result<PeerReport, String> {
        let r: PeerReport = serde_json::from_str(line)
            .map_err(|e| format!("peer {} sent a bad report ({e}): {line}", self.name))?;
        match &r.error {
            Some(e) => Err(format!("peer {}: {e}", self.name)),
            None => Ok(r),
        }
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

/// One report from each of `waited`, in their order. While a report is
/// awaited, the processes of the others and of `watched` are looked at
/// every [`LIVENESS_CHECK_EVERY`]: one that ended without a good report ends
/// the wait at once with its own last words, instead of leaving the
/// coordinator on a peer that waits for the dead one, or for nothing.
///
/// [`LIVENESS_CHECK_EVERY`]: crate::shm::wait::LIVENESS_CHECK_EVERY
fn reports(
    waited: &mut [Running],
    watched: &mut [Running],
    deadline: Instant,
) -> Result<Vec<PeerReport>, String> {
    let mut out = Vec::with_capacity(waited.len());
    for i in 0..waited.len() {
        let (p, rest) = waited[i..].split_first_mut().expect("i < len");
        let line = loop {
            let step = (Instant::now() + crate::shm::wait::LIVENESS_CHECK_EVERY).min(deadline);
            if let Some(l) = p.next_line(step, "its report")? {
                break l;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "peer {} missed its deadline waiting for its report",
                    p.name
                ));
            }
            if let Some(e) = rest
                .iter_mut()
                .chain(watched.iter_mut())
                .find_map(Running::gone)
            {
                return Err(e);
            }
        };
        out.push(p.parse_report(&line)?);
    }
    Ok(out)
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
    let b = spawn(&opts.exe, &args[1], inherit, env, "B")?;
    let a = spawn(&opts.exe, &args[0], inherit, env, "A")?;
    let mut ab = [a, b];
    for p in ab.iter_mut().rev() {
        p.ready(deadline)?;
    }
    after_ready();
    let both = |ab: &mut [Running]| -> Result<(PeerReport, PeerReport), String> {
        ab[1].go()?;
        ab[0].go()?;
        // A failed peer ends the point at once (the other is killed on drop).
        let mut r = reports(ab, &mut [], deadline)?.into_iter();
        Ok((r.next().expect("A's"), r.next().expect("B's")))
    };
    both(&mut ab).map_err(|e| blame(&mut ab, e))
}

/// A point's error, with the peers that a signal ended (a crash, or a
/// kill from outside) named: the peer that lost its partner often fails
/// first, with an error that names only a pid or an end of file.
fn blame<'a>(peers: impl IntoIterator<Item = &'a mut Running>, err: String) -> String {
    use std::os::unix::process::ExitStatusExt;
    let grace = Instant::now() + Duration::from_millis(200);
    let mut killed = Vec::new();
    for p in peers {
        loop {
            match p.child.try_wait() {
                Ok(Some(status)) => {
                    if let Some(sig) = status.signal() {
                        killed.push(format!(
                            "peer {} (pid {}) was ended by signal {sig}{}",
                            p.name,
                            p.child.id(),
                            if sig == libc::SIGKILL {
                                " (SIGKILL)"
                            } else {
                                ""
                            }
                        ));
                    }
                    break;
                }
                Ok(None) if Instant::now() < grace => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => break,
            }
        }
    }
    if killed.is_empty() {
        err
    } else {
        format!("{}: {err}", killed.join("; "))
    }
}

/// Messages (or calls) per second and payload bytes per second, when
/// `measured` says there is something to divide.
fn throughput_of(measured: bool, per_s: impl FnOnce() -> f64, size: usize) -> Option<Throughput> {
    measured.then(|| {
        let per_s = per_s();
        Throughput {
            msgs_per_s: per_s,
            bytes_per_s: per_s * size as f64,
        }
    })
}

/// How a deliberately skipped point's `error` begins.
pub const SKIPPED: &str = "skipped:";

/// Runs a fan-in, fan-out or mpmc point: producers on side A and consumers
/// on side B of one shared channel; the coordinator ends the stream once
/// every producer has left, then checks exactly-once across consumers.
fn run_multi(
    spec: &PointSpec,
    opts: &RunOpts,
    mut rec: PointRecord,
    cpus: &[usize],
    warmup: u64,
    iters: u64,
) -> PointRecord {
    let Strategy::Transport(kind) = spec.strategy else {
        rec.error = Some("the floor is measured with pingpong".into());
        return rec;
    };
    let reqrep = spec.pattern == Pattern::Reqrep;
    if reqrep && kind == TransportKind::ShmQueue {
        return run_shm_reqrep(spec, opts, rec, cpus, warmup, iters);
    }
    if reqrep && !matches!(kind, TransportKind::ManagerUnix | TransportKind::ManagerTcp) {
        rec.error = Some(format!(
            "reqrep calls a server's objects: a manager's, or shm-queue's dictionary; {} has none",
            kind.name()
        ));
        return rec;
    }
    if !spec.strategy.multi_party() {
        rec.error = Some(format!(
            "{} links two processes; fan-in, fan-out and mpmc run over shm-queue and the managers",
            kind.name()
        ));
        return rec;
    }
    if kind == TransportKind::ShmQueue
        && spec.size > crate::transport::shm_queue::ShmQueue::SLOT_LIMIT
    {
        rec.error = Some(format!(
            "shm-queue shared by several processes carries messages of at most {} bytes (one slot each)",
            crate::transport::shm_queue::ShmQueue::SLOT_LIMIT
        ));
        return rec;
    }
    let link = LinkOpts {
        wait: spec.wait,
        capacity: link_capacity(spec.size, 256),
        max_message: spec.size,
        exe: opts.exe.clone(),
        label: format!("bench-{}", kind.name()),
    };
    let (np, nc) = (spec.producers, if reqrep { 0 } else { spec.consumers });
    let pinned = !rec.cpus.is_empty();
    let args = |addr: &str, side: Side, i: usize| {
        let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
        PeerArgs::for_point(spec, addr, side, i, (warmup, iters), cpu)
    };
    let outcome: Result<(Vec<PeerReport>, Vec<PeerReport>), String> = with_transport!(kind, T => {
        match T::setup(&link) {
            Err(e) => Err(format!("setting up the link: {e}")),
            Ok((mut setup, ep)) => (|| {
                let deadline = Instant::now() + opts.deadline;
                let mut consumers = (0..nc)
                    .map(|i| spawn(&opts.exe, &args(&ep.addr, Side::B, i), &ep.inherit, &ep.env, &format!("consumer {i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut producers = (0..np)
                    .map(|i| spawn(&opts.exe, &args(&ep.addr, Side::A, i), &ep.inherit, &ep.env, &format!("producer {i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                for p in consumers.iter_mut().chain(producers.iter_mut()) {
                    p.ready(deadline)?;
                }
                setup.children_started();
                for p in consumers.iter_mut().chain(producers.iter_mut()) {
                    p.go()?;
                }
                let sent = reports(&mut producers, &mut consumers, deadline)?;
                if reqrep {
                    return Ok((sent, Vec::new()));
                }
                setup.end_stream().map_err(|e| format!("ending the stream: {e}"))?;
                let got = reports(&mut consumers, &mut [], deadline)?;
                Ok((sent, got))
            })(),
        }
    });
    match outcome {
        Err(e) => rec.error = Some(e),
        // Every call was checked by its client.
        Ok((clients, _)) if reqrep => fill_reqrep(&mut rec, spec, &clients, 0),
        Ok((sent, got)) => {
            let per = warmup + iters;
            let Ok(codec) = Codec::new(spec.size) else {
                rec.error = Some(format!("no messages of {} bytes", spec.size));
                return rec;
            };
            let expected: u64 = (0..np as u64)
                .flat_map(|id| (0..per).map(move |i| (id, i)))
                .map(|(id, i)| peer::tagged_seq(&codec, id, i))
                .fold(0u64, |acc, s| acc.wrapping_add(crate::peer::mix64(s)));
            let received: u64 = got.iter().map(|r| r.messages).sum();
            let digest = got.iter().fold(0u64, |acc, r| acc.wrapping_add(r.digest));
            if received != np as u64 * per {
                rec.error = Some(format!(
                    "consumers received {received} messages where {} were sent (lost or duplicated)",
                    np as u64 * per
                ));
                return rec;
            }
            if digest != expected {
                rec.error = Some(
                    "every message count is right but not every message arrived exactly once"
                        .into(),
                );
                return rec;
            }
            rec.validated = true;
            let first = got
                .iter()
                .filter(|r| r.messages > 0)
                .map(|r| r.first_ns)
                .min()
                .unwrap_or(0);
            let last = got.iter().map(|r| r.last_ns).max().unwrap_or(0);
            rec.messages = received;
            rec.elapsed_ns = last.saturating_sub(first);
            rec.throughput = throughput_of(
                rec.elapsed_ns > 0,
                || received.saturating_sub(1) as f64 * 1e9 / rec.elapsed_ns as f64,
                spec.size,
            );
            let hists: Vec<&[(u64, u64)]> = got.iter().map(|r| r.latency_hist.as_slice()).collect();
            rec.latency_ns = peer::merged_latency(&hists);
            let cpu: u64 = sent.iter().chain(&got).map(|r| r.cpu_ns).sum();
            rec.cpu_ns_per_msg = Some(cpu as f64 / received.max(1) as f64);
        }
    }
    rec
}

/// A reqrep point's figures from its clients' reports (each call checked
/// by its client) and the server's CPU time, if it is a peer.
fn fill_reqrep(rec: &mut PointRecord, spec: &PointSpec, clients: &[PeerReport], server_cpu: u64) {
    rec.validated = true;
    let calls: u64 = clients.iter().map(|r| r.messages).sum();
    let first = clients.iter().map(|r| r.first_ns).min().unwrap_or(0);
    let last = clients.iter().map(|r| r.last_ns).max().unwrap_or(0);
    rec.messages = calls;
    rec.elapsed_ns = last.saturating_sub(first);
    rec.throughput = throughput_of(
        rec.elapsed_ns > 0,
        || calls as f64 * 1e9 / rec.elapsed_ns as f64,
        spec.size,
    );
    let hists: Vec<&[(u64, u64)]> = clients.iter().map(|r| r.latency_hist.as_slice()).collect();
    rec.latency_ns = peer::merged_latency(&hists);
    let cpu: u64 = clients.iter().map(|r| r.cpu_ns).sum::<u64>() + server_cpu;
    rec.cpu_ns_per_msg = Some(cpu as f64 / calls.max(1) as f64);
}

/// reqrep over shared memory: a server peer owns a dictionary that N
/// client peers call through shm queues ([`shm_dict`]). Beyond each
/// client's checks, the server must have served exactly the calls the
/// clients made.
fn run_shm_reqrep(
    spec: &PointSpec,
    opts: &RunOpts,
    mut rec: PointRecord,
    cpus: &[usize],
    warmup: u64,
    iters: u64,
) -> PointRecord {
    let np = spec.producers;
    let setup = match shm_dict::Setup::create(np, spec.size, spec.wait) {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e);
            return rec;
        }
    };
    let pinned = !rec.cpus.is_empty();
    let args = |side: Side, i: usize| {
        let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
        PeerArgs::for_point(spec, &setup.addr, side, i, (warmup, iters), cpu)
    };
    let outcome = (|| {
        let deadline = Instant::now() + opts.deadline;
        let mut server = spawn(&opts.exe, &args(Side::B, 0), &[], &[], "server")?;
        let mut clients = (0..np)
            .map(|i| {
                spawn(
                    &opts.exe,
                    &args(Side::A, i),
                    &[],
                    &[],
                    &format!("client {i}"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for p in std::iter::once(&mut server).chain(clients.iter_mut()) {
            p.ready(deadline)?;
        }
        for p in std::iter::once(&mut server).chain(clients.iter_mut()) {
            p.go()?;
        }
        let reports = reports(&mut clients, std::slice::from_mut(&mut server), deadline)?;
        setup.close();
        let served = server.report(deadline)?;
        Ok::<_, String>((reports, served))
    })();
    match outcome {
        Err(e) => rec.error = Some(e),
        Ok((clients, served)) => {
            let made = np as u64 * 2 * (warmup + iters);
            if served.messages != made {
                rec.error = Some(format!(
                    "the server answered {} calls where the clients made {made}",
                    served.messages
                ));
                return rec;
            }
            fill_reqrep(&mut rec, spec, &clients, served.cpu_ns);
        }
    }
    rec
}

/// A point's record before it is measured, and the CPUs its peers may use.
fn new_record(spec: &PointSpec, opts: &RunOpts) -> (PointRecord, Vec<usize>) {
    let cpus = record::allowed_cpus();
    // Peer processes (a manager's reqrep point's only peers are its
    // clients; its server is the manager's own process, counted among the
    // helpers; shm-queue's server is a peer).
    let peers = if spec.pattern == Pattern::Reqrep && spec.strategy.helpers() > 0 {
        spec.producers
    } else {
        spec.producers + spec.consumers
    };
    let busy = peers + spec.strategy.helpers();
    let oversubscribed = busy > cpus.len();
    let pinned = opts.pin && peers <= cpus.len();
    let mut rec = PointRecord::unmeasured(
        spec.strategy.name(),
        spec.pattern.name(),
        spec.size,
        (spec.producers, spec.consumers),
        spec.wait_name(),
    );
    rec.pinned = pinned;
    rec.oversubscribed = oversubscribed;
    rec.harness_ns_per_msg = Codec::new(spec.size).ok().map(|c| c.calibrate());
    if pinned {
        rec.cpus = cpus[..peers].to_vec();
    }
    (rec, cpus)
}

/// Fills a one-to-one point's figures from its peers' reports (A, B).
fn fill_pair(rec: &mut PointRecord, spec: &PointSpec, a: &PeerReport, b: &PeerReport) {
    rec.validated = true;
    rec.error = None;
    let measured = if spec.pattern.round_trips() { a } else { b };
    rec.messages = measured.messages;
    rec.elapsed_ns = measured.elapsed_ns;
    rec.latency_ns = measured.latency;
    rec.batched_mean_ns = a.batched_mean_ns;
    rec.throughput = throughput_of(
        measured.elapsed_ns > 0 && measured.messages > 0,
        || measured.messages as f64 * 1e9 / measured.elapsed_ns as f64,
        spec.size,
    );
    // Both peers' CPU over the messages each side handled.
    let total_msgs = if spec.pattern.round_trips() {
        (a.messages * 2).max(1)
    } else {
        measured.messages.max(1)
    };
    rec.cpu_ns_per_msg = Some((a.cpu_ns + b.cpu_ns) as f64 / total_msgs as f64);
}

/// The buffer a point's link gets for `depth` messages of `size` bytes:
/// at least 64 KiB and at most 4 MiB, the copy floor's budget. Deeper
/// buffers spill out of the caches: over a 16 MiB ring a 1 MiB round trip
/// took 1.8× as long as over a 4 MiB one, on the VM this was measured on.
fn link_capacity(size: usize, depth: usize) -> usize {
    size.saturating_mul(depth).clamp(64 << 10, 4 << 20)
}

/// Measures one point. A failure is recorded in the result, never as a number.
pub fn run_point(spec: &PointSpec, opts: &RunOpts) -> PointRecord {
    let (mut rec, cpus) = new_record(spec, opts);
    let pinned = !rec.cpus.is_empty();
    let busy = if spec.pattern == Pattern::Reqrep && spec.strategy.helpers() > 0 {
        rec.producers + spec.strategy.helpers()
    } else {
        rec.producers + rec.consumers + spec.strategy.helpers()
    };
    let (warmup, iters) = opts.counts(spec);
    if rec.oversubscribed && spec.strategy.has_wait() && spec.wait.kind == WaitKind::Spin {
        rec.error = Some(format!(
            "{SKIPPED} pure spin with {busy} busy processes on {} CPUs measures the scheduler, not the channel; \
             see the spin-yield, spin-park and park points",
            cpus.len()
        ));
        return rec;
    }
    let make_args = |addr: &str, side: Side| {
        let cpu = pinned.then(|| cpus[if side == Side::A { 0 } else { 1 }]);
        PeerArgs::for_point(spec, addr, side, 0, (warmup, iters), cpu)
    };
    if spec.pattern.is_multi() {
        return run_multi(spec, opts, rec, &cpus, warmup, iters);
    }
    let before = adjacent_floor(spec, opts, &rec.cpus);
    let result = match spec.strategy {
        Strategy::Floor => {
            let measurable = match spec.pattern {
                Pattern::Pingpong => true,
                Pattern::Stream => spec.wait.kind == WaitKind::Spin,
                Pattern::PingpongLate => spec.wait.kind == WaitKind::Park,
                _ => false,
            };
            if !measurable {
                Err(
                    "the floor is measured with pingpong, with stream when it spins, and with \
                     pingpong-late when it parks"
                        .to_owned(),
                )
            } else {
                run_floor(spec, opts, make_args)
            }
        }
        Strategy::FloorCopy => {
            if spec.pattern == Pattern::Pingpong && spec.wait.kind == WaitKind::Spin {
                run_floor(spec, opts, make_args)
            } else {
                Err("the copy floor of a round trip is measured with pingpong, spinning".to_owned())
            }
        }
        Strategy::Transport(kind) => {
            let link = LinkOpts {
                wait: spec.wait,
                capacity: link_capacity(spec.size, 16),
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
        Ok((a, b)) => fill_pair(&mut rec, spec, &a, &b),
    }
    if let Some(before) = before
        && rec.validated
        && let Some(after) = adjacent_floor(spec, opts, &rec.cpus)
    {
        rec.adjacent_floors = vec![before, after];
    }
    rec
}

/// Both peers of a floor point (`spec.strategy` is a floor).
fn run_floor(
    spec: &PointSpec,
    opts: &RunOpts,
    make_args: impl Fn(&str, Side) -> PeerArgs,
) -> Result<(PeerReport, PeerReport), String> {
    let name = unique_name("floor");
    let body = if spec.strategy == Strategy::FloorCopy {
        peer::floor_copy_len(spec.size)
    } else if spec.pattern == Pattern::Stream {
        peer::floor_stream_len(spec.size)
    } else {
        256
    };
    let region = Region::create(&name, Kind::Raw, body, [0; 6]).map_err(|e| e.to_string())?;
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
}

/// The key figure of the floor that matches a one-to-one pingpong or
/// stream point (the spin floor's median round trip; the copy floor's
/// messages per second at the point's size), measured briefly on the
/// point's CPUs. `None` for other points, unpinned ones, or when the
/// floor could not be measured (the point stands without it).
fn adjacent_floor(spec: &PointSpec, opts: &RunOpts, cpus: &[usize]) -> Option<f64> {
    // The copy floor of a round trip has the spin floor beside it too, so
    // that a strategy's multiple of it can be read off the two ratios to
    // the spin floor taken at their own moments.
    if spec.strategy == Strategy::Floor {
        return None;
    }
    if cpus.len() != 2 || opts.fixed_count.is_some() {
        return None;
    }
    let floor = match spec.pattern {
        Pattern::Pingpong => {
            PointSpec::one_to_one(Strategy::Floor, Pattern::Pingpong, 8, Wait::SPIN)
        }
        Pattern::Stream => {
            PointSpec::one_to_one(Strategy::Floor, Pattern::Stream, spec.size, Wait::SPIN)
        }
        _ => return None,
    };
    // An eighth of a point's count: long enough for a median, short
    // enough to sit right beside the point.
    let (_, iters) = opts.counts(&floor);
    let cap = if spec.pattern == Pattern::Pingpong {
        5_000
    } else {
        100_000
    };
    let iters = (iters / 8).clamp(200, cap);
    let warmup = (iters / 4).max(1);
    let make_args = |addr: &str, side: Side| {
        let cpu = cpus[if side == Side::A { 0 } else { 1 }];
        PeerArgs::for_point(&floor, addr, side, 0, (warmup, iters), Some(cpu))
    };
    let (a, b) = run_floor(&floor, opts, make_args).ok()?;
    let mut rec =
        PointRecord::unmeasured("floor", floor.pattern.name(), floor.size, (1, 1), "spin");
    fill_pair(&mut rec, &floor, &a, &b);
    crate::report::analysis::key_figure(&rec)
}

/// A point measured in rounds by peers started once, as criterion's
/// `iter_custom` wants: [`Session::start`] starts and lines up the peers
/// and runs a warm-up round; each [`Session::round`] measures `n` more
/// exchanges or messages, checked as always; [`Session::finish`] (or
/// dropping it) ends the peers. One-to-one pingpong and stream, the floors,
/// and fan-in, fan-out and mpmc (whose consumers publish their progress in
/// shared memory, so the coordinator sees a round end; every message is
/// checked exactly once when the session finishes).
pub struct Session {
    spec: PointSpec,
    opts: RunOpts,
    rec: PointRecord,
    /// One-to-one: A and B. Multi-party: the producers.
    peers: Vec<Running>,
    /// Multi-party: the consumers.
    consumers: Vec<Running>,
    /// Multi-party: where the consumers publish what they received.
    progress: Option<Region>,
    /// Multi-party: messages each producer has sent.
    sent: u64,
    link: SessionLink,
    finished: bool,
}

/// What a session's peers use, kept until they are done.
enum SessionLink {
    Floor(#[allow(dead_code)] Region),
    Transport(Box<dyn LinkSetup>),
}

impl Session {
    /// Starts the peers of `spec` and runs `opts.warmup` exchanges or
    /// messages untimed.
    pub fn start(spec: &PointSpec, opts: &RunOpts) -> Result<Session, String> {
        if spec.pattern == Pattern::Reqrep {
            return Err("reqrep is not measured in sessions".into());
        }
        let multi = spec.pattern.is_multi();
        if multi && !spec.strategy.multi_party() {
            return Err(format!(
                "{} links two processes; fan-in, fan-out and mpmc run over shm-queue and the managers",
                spec.strategy.name()
            ));
        }
        let (rec, cpus) = new_record(spec, opts);
        let pinned = !rec.cpus.is_empty();
        let (np, nc) = (spec.producers, spec.consumers);
        let progress = if multi {
            let r = Region::create(&unique_name("progress"), Kind::Raw, 128 * nc, [0; 6])
                .map_err(|e| e.to_string())?;
            r.publish();
            Some(r)
        } else {
            None
        };
        let progress_name = progress.as_ref().map(|r| r.name().to_owned());
        // Producers (or A) take rounds; multi-party consumers publish progress.
        let args = |addr: &str, side: Side, i: usize| {
            let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
            let mut a = PeerArgs::for_point(spec, addr, side, i, (0, 0), cpu);
            if multi && side == Side::B {
                a.progress = progress_name.clone();
            } else {
                a.rounds = true;
            }
            a
        };
        let deadline = Instant::now() + opts.deadline;
        let line_up = |addr: &str, inherit: &[i32], env: &[(String, String)]| {
            let side = |side: Side, n: usize| {
                (0..n)
                    .map(|i| {
                        let name = format!("{}{i}", side.name().to_uppercase());
                        spawn(&opts.exe, &args(addr, side, i), inherit, env, &name)
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let mut bs = side(Side::B, nc)?;
            let mut as_ = side(Side::A, np)?;
            for p in bs.iter_mut().chain(as_.iter_mut()) {
                p.ready(deadline)?;
            }
            if !multi {
                // Reports come back in this order: A, then B.
                as_.append(&mut bs);
            }
            Ok::<_, String>((as_, bs))
        };
        let ((peers, consumers), link) = match spec.strategy {
            Strategy::FloorCopy => {
                return Err("the copy floor of a round trip is measured in points".into());
            }
            Strategy::Floor => {
                let name = unique_name("floor");
                let region =
                    Region::create(&name, Kind::Raw, 256, [0; 6]).map_err(|e| e.to_string())?;
                region.publish();
                (line_up(&name, &[], &[])?, SessionLink::Floor(region))
            }
            Strategy::Transport(kind) => {
                let link = LinkOpts {
                    wait: spec.wait,
                    capacity: link_capacity(spec.size, if multi { 256 } else { 16 }),
                    max_message: spec.size,
                    exe: opts.exe.clone(),
                    label: format!("bench-{}", kind.name()),
                };
                with_transport!(kind, T => {
                    let (mut setup, ep) = T::setup(&link).map_err(|e| format!("setting up the link: {e}"))?;
                    let peers = line_up(&ep.addr, &ep.inherit, &ep.env)?;
                    setup.children_started();
                    (peers, SessionLink::Transport(Box::new(setup)))
                })
            }
        };
        let mut s = Session {
            spec: *spec,
            opts: opts.clone(),
            rec,
            peers,
            consumers,
            progress,
            sent: 0,
            link,
            finished: false,
        };
        for p in s.consumers.iter_mut().chain(s.peers.iter_mut()) {
            p.go()?;
        }
        s.round(opts.warmup.max(1))?;
        Ok(s)
    }

    /// Tells every round-taking peer `round n` and collects their reports.
    fn tell_round(&mut self, n: u64, deadline: Instant) -> Result<Vec<PeerReport>, String> {
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            let told = match p.stdin.as_mut() {
                None => Err("control channel closed".to_owned()),
                Some(stdin) => writeln!(stdin, "round {n}")
                    .and_then(|()| stdin.flush())
                    .map_err(|e| format!("telling peer {} to go on: {e}", p.name)),
            };
            if let Err(e) = told {
                return Err(blame(self.peers.iter_mut().chain(&mut self.consumers), e));
            }
        }
        reports(&mut self.peers, &mut self.consumers, deadline)
            .map_err(|e| blame(self.peers.iter_mut().chain(&mut self.consumers), e))
    }

    /// Measures `n` round trips (pingpong: `n` timed one by one into the
    /// histogram, then `n` timed as one batch), `n` messages (stream), or
    /// about `n` messages in all, split among the producers (multi-party:
    /// from the first producer's start to the last message any consumer
    /// received).
    pub fn round(&mut self, n: u64) -> Result<PointRecord, String> {
        let n = n.max(2);
        let deadline = Instant::now() + self.opts.deadline;
        if self.progress.is_none() {
            let reports = self.tell_round(n, deadline)?;
            let mut rec = self.rec.clone();
            fill_pair(&mut rec, &self.spec, &reports[0], &reports[1]);
            return Ok(rec);
        }
        let np = self.spec.producers as u64;
        let per = (n / np).max(1);
        let reports = self.tell_round(per, deadline)?;
        self.sent += per;
        let want = np * self.sent;
        let region = self.progress.as_ref().expect("multi-party");
        let slots = (0..self.spec.consumers)
            .map(|j| progress_slot(region, j))
            .collect::<Result<Vec<_>, _>>()?;
        // Acquire: pairs with each consumer's Release store of its count.
        let received = || -> u64 {
            slots
                .iter()
                .map(|(c, _)| c.load(std::sync::atomic::Ordering::Acquire))
                .sum()
        };
        // Consumers' liveness is looked at every few milliseconds, not on
        // every poll: each look is a system call per consumer, taken from
        // the CPUs the consumers are being measured on.
        let mut next_look = Instant::now();
        loop {
            let got = received();
            if got == want {
                break;
            }
            if got > want {
                return Err(format!(
                    "consumers received {got} messages where {want} were sent (duplicated)"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "consumers received {got} of {want} messages by the deadline (lost or stuck)"
                ));
            }
            // A consumer that exited will not catch up.
            let now = Instant::now();
            let exited = if now >= next_look {
                next_look = now + crate::shm::wait::LIVENESS_CHECK_EVERY;
                self.consumers
                    .iter_mut()
                    .position(|c| matches!(c.child.try_wait(), Ok(Some(_))))
            } else {
                None
            };
            if let Some(i) = exited {
                let e = format!(
                    "{} exited with {got} of {want} messages received",
                    self.consumers[i].name
                );
                return Err(blame(self.peers.iter_mut().chain(&mut self.consumers), e));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let first = reports.iter().map(|r| r.first_ns).min().unwrap_or(0);
        let last = slots
            .iter()
            .map(|(_, l)| l.load(std::sync::atomic::Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let mut rec = self.rec.clone();
        rec.validated = true;
        rec.messages = np * per;
        rec.elapsed_ns = last.saturating_sub(first);
        rec.throughput = throughput_of(
            rec.elapsed_ns > 0,
            || rec.messages as f64 * 1e9 / rec.elapsed_ns as f64,
            self.spec.size,
        );
        let cpu: u64 = reports.iter().map(|r| r.cpu_ns).sum();
        // Producers' CPU only: the consumers report theirs at the end.
        rec.cpu_ns_per_msg = Some(cpu as f64 / rec.messages as f64);
        Ok(rec)
    }

    /// Ends the session: the peers close and exit. Multi-party: the stream
    /// ends, and every message sent must have been received exactly once
    /// across the consumers (their counts and digests of sequence numbers).
    pub fn finish(mut self) -> Result<(), String> {
        self.finished = true;
        self.end()
    }

    fn end(&mut self) -> Result<(), String> {
        for p in &mut self.peers {
            if let Some(stdin) = p.stdin.as_mut() {
                let _ = writeln!(stdin, "end").and_then(|()| stdin.flush());
            }
            p.stdin = None;
        }
        let t0 = Instant::now();
        for p in &mut self.peers {
            while t0.elapsed() < Duration::from_secs(2) {
                if matches!(p.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.progress.is_none() {
            return Ok(());
        }
        if let SessionLink::Transport(setup) = &mut self.link {
            setup
                .end_stream()
                .map_err(|e| format!("ending the stream: {e}"))?;
        }
        let deadline = Instant::now() + self.opts.deadline;
        let (mut count, mut digest) = (0u64, 0u64);
        for p in &mut self.consumers {
            let r = p.report(deadline)?;
            count += r.messages;
            digest = digest.wrapping_add(r.digest);
        }
        let np = self.spec.producers as u64;
        let codec = Codec::new(self.spec.size)?;
        let mut want = 0u64;
        for id in 0..np {
            for i in 0..self.sent {
                want = want.wrapping_add(crate::peer::mix64(peer::tagged_seq(&codec, id, i)));
            }
        }
        if count != np * self.sent {
            return Err(format!(
                "consumers received {count} messages where {} were sent",
                np * self.sent
            ));
        }
        if digest != want {
            return Err("every count is right but not every message arrived exactly once".into());
        }
        Ok(())
    }

    /// The peers' process ids (one-to-one: A, B; multi-party: producers,
    /// then consumers).
    pub fn peer_pids(&self) -> Vec<u32> {
        self.peers
            .iter()
            .chain(&self.consumers)
            .map(|p| p.child.id())
            .collect()
    }

    /// The peers' names in errors (`A`, `B`, `producer 0`, …), in the
    /// order of [`Session::peer_pids`].
    pub fn peer_names(&self) -> Vec<String> {
        self.peers
            .iter()
            .chain(&self.consumers)
            .map(|p| p.name.clone())
            .collect()
    }

    /// The time `n` exchanges or messages took in `rec` (a round of `n`):
    /// pingpong's batch phase; otherwise first to last, per message (or
    /// interval), times `n`.
    pub fn duration(rec: &PointRecord, n: u64) -> Duration {
        let ns = match rec.pattern.as_str() {
            "pingpong" => rec.batched_mean_ns.unwrap_or(0.0) * n as f64,
            _ => rec.elapsed_ns as f64 * n as f64 / rec.messages.max(1) as f64,
        };
        Duration::from_nanos(ns as u64)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the peers are reaped (or killed) either way.
            let _ = self.end();
        }
    }
}
