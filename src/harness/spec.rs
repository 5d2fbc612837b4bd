//! The vocabulary: what a point is ([`PointSpec`]: a [`Strategy`], a
//! [`Pattern`], a size, a wait, process counts) and how hard it is
//! measured ([`RunOpts`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::record::LATE_REPLY_NS;
use crate::shm::Wait;
use crate::transport::{Caps, Shared, TransportKind, Waits};

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
    /// N clients calling a server's dictionary, each call a request and a
    /// reply: `dict[k] = message`, then `dict[k]`.
    Reqrep,
    /// N clients calling a manager's lists, each its own:
    /// `list.append(message)`, then `list[i]` (`i` the index it went to).
    ReqrepList,
    /// N clients calling a manager's Namespace, each its own attribute:
    /// `ns.x = message`, then `ns.x`.
    ReqrepNamespace,
    /// N clients calling a manager's `Value('d')`s, each its own:
    /// `value.value = v`, then `value.value` (8 bytes, whatever the size).
    ReqrepValue,
    /// Pingpong whose echo works [`LATE_REPLY_NS`] on each message
    /// before answering: what waiting costs when the answer is slow (the
    /// round trip includes that time).
    PingpongLate,
    /// Open loop: one peer sends on a schedule (message *i* at
    /// `t0 + i / rate`), the other receives; latency from the intended
    /// send time ([`super::rate`]).
    Rate,
    /// Reqrep in open loop: N clients call a server's dictionary at an
    /// aggregate offered rate, each call timed from its intended time.
    ReqrepRate,
}

impl Pattern {
    /// Every pattern this harness runs.
    pub const ALL: [Pattern; 12] = [
        Pattern::Pingpong,
        Pattern::Stream,
        Pattern::FanIn,
        Pattern::FanOut,
        Pattern::Mpmc,
        Pattern::Reqrep,
        Pattern::ReqrepList,
        Pattern::ReqrepNamespace,
        Pattern::ReqrepValue,
        Pattern::PingpongLate,
        Pattern::Rate,
        Pattern::ReqrepRate,
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
            Pattern::ReqrepList => "reqrep-list",
            Pattern::ReqrepNamespace => "reqrep-namespace",
            Pattern::ReqrepValue => "reqrep-value",
            Pattern::PingpongLate => "pingpong-late",
            Pattern::Rate => "rate",
            Pattern::ReqrepRate => "reqrep-rate",
        }
    }

    /// What it measures, in a line (`ipcbench list`).
    pub fn description(self) -> &'static str {
        match self {
            Pattern::Pingpong => "round trips between two processes; the median round trip",
            Pattern::Stream => "one process sends, the other receives; messages per second",
            Pattern::FanIn => "N producers, one consumer, one shared channel",
            Pattern::FanOut => "one producer, N consumers, one shared channel",
            Pattern::Mpmc => "N producers, M consumers, one shared channel",
            Pattern::Reqrep => {
                "N clients calling a server's dictionary: dict[k] = message, then dict[k]"
            }
            Pattern::ReqrepList => {
                "N clients calling a manager's lists: list.append(message), then list[i]"
            }
            Pattern::ReqrepNamespace => {
                "N clients calling a manager's Namespace: ns.x = message, then ns.x"
            }
            Pattern::ReqrepValue => {
                "N clients calling a manager's Value('d')s: value.value = v, then value.value (8 B)"
            }
            Pattern::PingpongLate => {
                "pingpong whose echo works 200 µs before answering: what waiting costs when the answer is slow"
            }
            Pattern::Rate => {
                "open loop: one sender on a schedule, at offered loads; latency from each message's intended time"
            }
            Pattern::ReqrepRate => {
                "reqrep in open loop at an offered rate; each call timed from its intended time"
            }
        }
    }

    /// Whether one side sends and the other answers each message
    /// (pingpong, late or not): the initiator's figures are the point's.
    pub fn round_trips(self) -> bool {
        matches!(self, Pattern::Pingpong | Pattern::PingpongLate)
    }

    /// How long the answering side works on each message before it
    /// answers: [`LATE_REPLY_NS`] for `pingpong-late`, else 0.
    pub fn echo_work_ns(self) -> u64 {
        if self == Pattern::PingpongLate {
            LATE_REPLY_NS
        } else {
            0
        }
    }

    /// Whether several processes share one channel (or server).
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Pattern::FanIn
                | Pattern::FanOut
                | Pattern::Mpmc
                | Pattern::Reqrep
                | Pattern::ReqrepRate
                | Pattern::ReqrepList
                | Pattern::ReqrepNamespace
                | Pattern::ReqrepValue
        )
    }

    /// Whether clients call a server's objects (reqrep over any of them,
    /// paced or not).
    pub fn calls(self) -> bool {
        matches!(self, Pattern::Reqrep | Pattern::ReqrepRate) || self.manager_object()
    }

    /// Whether clients call one of a manager's objects other than its
    /// dictionary (a list, a Namespace, a `Value`): only a manager's
    /// server serves them.
    pub fn manager_object(self) -> bool {
        matches!(
            self,
            Pattern::ReqrepList | Pattern::ReqrepNamespace | Pattern::ReqrepValue
        )
    }

    /// Whether the pattern is open loop (its points carry an offered load).
    pub fn open_loop(self) -> bool {
        matches!(self, Pattern::Rate | Pattern::ReqrepRate)
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
                    "unknown pattern `{s}`: use pingpong, stream, fan-in, fan-out, mpmc, reqrep, reqrep-list, reqrep-namespace, reqrep-value, pingpong-late, rate or reqrep-rate"
                )
            })
    }
}

/// The size of a `reqrep-value` point: a `Value('d')` holds 8 bytes,
/// whatever the run's sizes.
pub const VALUE_SIZE: usize = 8;

/// What is measured: a transport, or a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The raw floor (cache line with `spin`, futex with `park`, the copy
    /// floor of a stream).
    Floor,
    /// The copy floor of a round trip: a slot per direction, the message
    /// copied in and out ([`floors::floor_copy_pingpong`]).
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

    /// What it can do: its registry row's, or the floors' (their waiting
    /// is ours to choose; they join two processes).
    pub fn caps(self) -> Caps {
        match self {
            Strategy::Floor | Strategy::FloorCopy => Caps {
                waits: Waits::Chosen,
                shared: Shared::Nothing,
                shared_limit: None,
                late_answer: false,
                task_farm: false,
                helpers: 0,
                network: false,
            },
            Strategy::Transport(k) => k.caps(),
        }
    }

    /// Whether the strategy waits in user space (shared memory), so that
    /// its waiting is a dimension of its points; otherwise it blocks in
    /// the kernel.
    pub fn has_wait(self) -> bool {
        self.caps().waits != Waits::Kernel
    }

    /// The waiting strategies of `asked` this strategy measures: one that
    /// polls spins or yields, so every wait but pure spin becomes
    /// `spin-yield` for it.
    pub fn waits_of(self, asked: &[Wait]) -> Vec<Wait> {
        if self.caps().waits != Waits::Polls {
            return asked.to_vec();
        }
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
        out
    }

    /// Whether several processes can send into (and receive from) one of
    /// its channels, as fan-in, fan-out and mpmc need.
    pub fn multi_party(self) -> bool {
        self.caps().multi_party()
    }

    /// Processes busy during a point besides the peers.
    pub fn helpers(self) -> usize {
        self.caps().helpers
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
    pub fn wait_name(&self) -> String {
        if self.strategy.has_wait() {
            self.wait.label()
        } else {
            "kernel".into()
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
    /// The least time a one-to-one point's timed part takes (the same for
    /// every strategy, Python's included).
    pub budget: Duration,
    /// A peer to kill on purpose, and when (the fault tests; never set by
    /// a run from the command line).
    pub fault: Option<super::fault::Fault>,
    /// Network strategies' far side on another host ([`super::hosts`]):
    /// what of a point of a strategy whose row says `network` goes there
    /// ([`FarSide`]: side B, side A, a server, a farm's workers) starts
    /// through its prefix, and what stays listens at its address. The
    /// scheduler sets it for [`Measurement::Hosts`] only.
    pub far: Option<super::hosts::Far>,
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
            budget: Duration::from_millis(500),
            fault: None,
            far: None,
        }
    }
}

/// What of a point runs on the far host between two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarSide {
    /// Side B (it connects; side A listens): a one-to-one point's echo or
    /// receiver.
    B,
    /// Side A: the senders or the clients of a channel whose receivers or
    /// server bind listeners here (ZeroMQ's, which a process on another
    /// host cannot inherit); they connect.
    A,
    /// The strategy's server (a manager's): every process is its client
    /// here.
    Server,
    /// A task farm's workers, connecting to its master here (over a link
    /// each, or ZeroMQ's `DEALER`s to its `ROUTER`).
    Workers,
    /// A task farm's workers and the manager's server whose queues they
    /// share; the master reaches the server from here.
    ServerAndWorkers,
}

/// What of a point of `strategy` at `pattern` can run on another host: a
/// strategy whose row says `network`, any pattern but a late answer.
fn far_side(strategy: Strategy, pattern: Pattern) -> Option<FarSide> {
    let Strategy::Transport(kind) = strategy else {
        return None;
    };
    let caps = kind.caps();
    if !caps.network || pattern == Pattern::PingpongLate {
        return None;
    }
    if caps.helpers > 0 {
        Some(FarSide::Server)
    } else if !pattern.is_multi() && !pattern.calls() {
        Some(FarSide::B)
    } else if caps.shared == crate::transport::Shared::Sockets {
        Some(FarSide::A)
    } else {
        None
    }
}

fn crosses_hosts(strategy: Strategy, pattern: Pattern) -> bool {
    far_side(strategy, pattern).is_some()
}

/// What of a task farm over `kind` can run on another host: the workers
/// of a network strategy's farm, with its server if it has one.
fn farm_far_side(kind: crate::transport::TransportKind) -> Option<FarSide> {
    let caps = kind.caps();
    (caps.network && caps.task_farm).then_some(if caps.helpers > 0 {
        FarSide::ServerAndWorkers
    } else {
        FarSide::Workers
    })
}

impl FarSide {
    /// As results name it (`far_side`).
    pub fn name(self) -> &'static str {
        match self {
            FarSide::B => crate::record::FAR_SIDE_B,
            FarSide::A => crate::record::FAR_SIDE_A,
            FarSide::Server => crate::record::FAR_SERVER,
            FarSide::Workers => crate::record::FAR_WORKERS,
            FarSide::ServerAndWorkers => crate::record::FAR_SERVER_AND_WORKERS,
        }
    }
}

impl RunOpts {
    /// The far host of `spec`'s point, if the run has one and this point
    /// can cross hosts ([`far_side`]), with what runs there.
    pub fn far_for(
        &self,
        strategy: Strategy,
        pattern: Pattern,
    ) -> Option<(&super::hosts::Far, FarSide)> {
        let far = self.far.as_ref()?;
        Some((far, far_side(strategy, pattern)?))
    }

    /// The far host of a task farm over `kind`, if the run has one and
    /// the farm can cross hosts ([`farm_far_side`]), with what runs there.
    pub fn far_farm(
        &self,
        kind: crate::transport::TransportKind,
    ) -> Option<(&super::hosts::Far, FarSide)> {
        let far = self.far.as_ref()?;
        Some((far, farm_far_side(kind)?))
    }

    /// The far host a peer of `side` runs on, if that side is the far one.
    pub fn far_peer(
        &self,
        strategy: Strategy,
        pattern: Pattern,
        side: crate::transport::Side,
    ) -> Option<&super::hosts::Far> {
        use crate::transport::Side;
        match (self.far_for(strategy, pattern)?, side) {
            ((far, FarSide::B), Side::B) | ((far, FarSide::A), Side::A) => Some(far),
            _ => None,
        }
    }

    /// Where the near side listens for peers on the far host, if some go
    /// there.
    pub fn near_listen(&self, strategy: Strategy, pattern: Pattern) -> Option<std::net::IpAddr> {
        match self.far_for(strategy, pattern)? {
            (far, FarSide::A | FarSide::B) => Some(far.listen),
            _ => None,
        }
    }

    /// Where a network strategy's server runs when it is on the far host
    /// (the manager's; every process stays here as its client, as a
    /// `BaseManager`'s clients reach a server on another machine).
    pub fn far_server(
        &self,
        strategy: Strategy,
        pattern: Pattern,
    ) -> Option<crate::transport::RemoteHost> {
        match self.far_for(strategy, pattern)? {
            (f, FarSide::Server) => Some(crate::transport::RemoteHost {
                prefix: f.prefix.clone(),
                addr: f.addr,
            }),
            _ => None,
        }
    }
}

impl RunOpts {
    /// The count a point of `spec` is first measured with, to learn how
    /// long a message takes before [`RunOpts::grown_count`] sizes it for
    /// the budget. A one-to-one point starts with at most the least it
    /// may measure ([`MIN_ROUND_TRIPS`] or [`MIN_MESSAGES`]): the
    /// profile's count took 29 s over raw-sync's 8 B stream (300,000
    /// messages at 10 k/s) where the budget is half a second. A point many
    /// share starts with at most [`MULTI_PROBE`] messages in all (the
    /// profile's count over a manager's proxies took 34 s). Counts that are
    /// fixed, or a zero budget, keep the profile's count.
    pub fn first_count(&self, spec: &PointSpec) -> (u64, u64) {
        let (warmup, iters) = self.counts(spec);
        if self.fixed_count.is_some() {
            return (warmup, iters);
        }
        if !spec.pattern.is_multi() {
            if self.budget.is_zero() {
                return (warmup, iters);
            }
            return (warmup, iters.min(self.least(spec)));
        }
        let probe = (MULTI_PROBE / spec.producers.max(1) as u64).clamp(10, iters.max(10));
        (warmup.min(probe / 10).max(1), probe)
    }

    /// The least round trips or messages `spec` measures in all, when the
    /// budget allows ([`MIN_ROUND_TRIPS`], [`MIN_MESSAGES`]).
    fn least(&self, spec: &PointSpec) -> u64 {
        if spec.pattern.round_trips() || spec.pattern.calls() {
            MIN_ROUND_TRIPS
        } else {
            MIN_MESSAGES
        }
    }

    /// The (warm-up, measured) counts of exchanges or messages of `spec`
    /// in its profile.
    pub fn counts(&self, spec: &PointSpec) -> (u64, u64) {
        if let Some(n) = self.fixed_count {
            return (self.warmup, n.max(2));
        }
        match spec.pattern {
            Pattern::Reqrep
            | Pattern::ReqrepRate
            | Pattern::ReqrepList
            | Pattern::ReqrepNamespace
            | Pattern::ReqrepValue => {
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
            Pattern::Stream | Pattern::FanIn | Pattern::FanOut | Pattern::Mpmc | Pattern::Rate => {
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

/// The least round trips a one-to-one point measures (for its p99).
pub const MIN_ROUND_TRIPS: u64 = 1_000;
/// The least messages a stream measures (one in 16 carries a send time:
/// 625 latency samples).
pub const MIN_MESSAGES: u64 = 10_000;
/// The messages (or calls) a point many share first measures, in all.
pub const MULTI_PROBE: u64 = 2_000;
/// What reaching those minimums may cost, in budgets: beyond it a slow
/// strategy measures fewer (and says so by its count).
pub const MIN_COUNT_BUDGETS: u64 = 8;

impl RunOpts {
    /// The count a point of `spec` measures next, when `iters` (per
    /// producer, for a point many share) took `timed_ns` in its timed
    /// part: enough for [`RunOpts::budget`] (a fifth more, for a machine
    /// that speeds up) and for [`MIN_ROUND_TRIPS`] or [`MIN_MESSAGES`] in
    /// all (within [`MIN_COUNT_BUDGETS`] budgets). `None` when `iters`
    /// already did, or when counts are fixed.
    pub fn grown_count(&self, spec: &PointSpec, iters: u64, timed_ns: u64) -> Option<u64> {
        if self.fixed_count.is_some() || iters == 0 {
            return None;
        }
        let budget = self.budget.as_nanos() as u64;
        let least = self.least(spec);
        let least = if spec.pattern.is_multi() {
            least.div_ceil(spec.producers.max(1) as u64)
        } else {
            least
        };
        if timed_ns >= budget && iters >= least {
            return None;
        }
        let per = (timed_ns as f64 / iters as f64).max(1.0);
        let for_budget = (budget as f64 * 1.2 / per).ceil() as u64;
        let affordable = (budget as f64 * MIN_COUNT_BUDGETS as f64 / per) as u64;
        let want = for_budget.max(least.min(affordable));
        (want > iters).then_some(want)
    }
}

/// One measurement of any family: what the plan lists and the scheduler
/// runs, each giving one [`PointRecord`](crate::record::PointRecord).
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// A channel (one-to-one or shared by many) or a floor.
    Channel(PointSpec),
    /// A synchronisation primitive or a shared value.
    Primitive(super::sync::SyncSpec),
    /// A task farm.
    Farm(super::pool::PoolSpec),
    /// Starting a process.
    Startup(super::startup::Method),
    /// A one-to-one channel at an offered rate (open loop).
    Rate(super::rate::RateSpec),
    /// A network strategy's one-to-one channel (a `Channel` or a `Rate`)
    /// with its far side on the run's second host ([`RunOpts::far`]),
    /// planned right after the same measurement over loopback.
    Hosts(Box<Measurement>),
}

impl Measurement {
    /// What is measured, as results name it (`transport`).
    pub fn strategy_name(&self) -> &'static str {
        match self {
            Measurement::Channel(s) => s.strategy.name(),
            Measurement::Primitive(s) => s.prim.name(),
            Measurement::Farm(s) => s.kind.name(),
            Measurement::Startup(m) => m.name(),
            Measurement::Rate(r) => r.point.strategy.name(),
            Measurement::Hosts(m) => m.strategy_name(),
        }
    }

    /// The pattern, as results name it.
    pub fn pattern_name(&self) -> &'static str {
        match self {
            Measurement::Channel(s) => s.pattern.name(),
            Measurement::Primitive(s) => s.prim.pattern(),
            Measurement::Farm(s) => s.pattern(),
            Measurement::Startup(_) => super::startup::PATTERN,
            Measurement::Rate(r) => r.point.pattern.name(),
            Measurement::Hosts(m) => m.pattern_name(),
        }
    }

    /// Bytes per message (or shared bytes per cycle).
    pub fn size(&self) -> usize {
        match self {
            Measurement::Channel(s) => s.size,
            Measurement::Primitive(s) => s.prim.size(),
            Measurement::Farm(_) => super::pool::TASK_SIZE,
            Measurement::Startup(_) => super::startup::SIZE,
            Measurement::Rate(r) => r.point.size,
            Measurement::Hosts(m) => m.size(),
        }
    }

    /// The waiting strategy, as results name it.
    pub fn wait_name(&self) -> String {
        match self {
            Measurement::Channel(s) => s.wait_name(),
            Measurement::Primitive(s) => s.wait_name(),
            Measurement::Farm(s) => s.wait_name(),
            Measurement::Startup(_) => "kernel".into(),
            Measurement::Rate(r) => r.point.wait_name(),
            Measurement::Hosts(m) => m.wait_name(),
        }
    }

    /// Processes as results count them: producers (or clients, or the
    /// primitive's processes) and consumers (or workers).
    pub fn procs(&self) -> (usize, usize) {
        match self {
            Measurement::Channel(s) => (s.producers, s.consumers),
            Measurement::Primitive(s) => (s.procs, 1),
            Measurement::Farm(s) => (1, s.workers),
            Measurement::Startup(_) | Measurement::Rate(_) => (1, 1),
            Measurement::Hosts(m) => m.procs(),
        }
    }

    /// Between two hosts.
    pub fn between_hosts(&self) -> bool {
        matches!(self, Measurement::Hosts(_))
    }

    /// Whether the run's second host can take it: a channel of a network
    /// strategy ([`crosses_hosts`]), closed or open loop (an open-loop
    /// twin's load is a fraction of the capacity measured between the
    /// hosts), or its task farm ([`farm_far_side`]).
    pub fn can_cross_hosts(&self) -> bool {
        let (strategy, pattern) = match self {
            Measurement::Channel(s) => (s.strategy, s.pattern),
            Measurement::Rate(r) => (r.point.strategy, r.point.pattern),
            Measurement::Farm(s) => return farm_far_side(s.kind).is_some(),
            _ => return false,
        };
        crosses_hosts(strategy, pattern)
    }

    /// The measurement itself, or the one a `Hosts` twin measures.
    pub fn beneath_hosts(&self) -> &Measurement {
        match self {
            Measurement::Hosts(m) => m,
            m => m,
        }
    }

    /// Whether it is a floor (measured at least three times: every ratio
    /// of a report hangs on the floors).
    pub fn is_floor(&self) -> bool {
        matches!(
            self,
            Measurement::Channel(PointSpec {
                strategy: Strategy::Floor | Strategy::FloorCopy,
                ..
            })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportKind;

    fn fan_in(producers: usize) -> PointSpec {
        PointSpec {
            producers,
            ..PointSpec::one_to_one(
                Strategy::Transport(TransportKind::ShmQueue),
                Pattern::FanIn,
                64,
                Wait::SPIN,
            )
        }
    }

    #[test]
    fn a_point_many_share_starts_small_and_grows_to_the_budget() {
        let opts = RunOpts::default();
        let spec = fan_in(4);
        let (_, profile) = opts.counts(&spec);
        let (warmup, first) = opts.first_count(&spec);
        assert_eq!(first, MULTI_PROBE / 4);
        assert!(first < profile && warmup <= first / 10);
        // 500 per producer took 1 ms: half a second, a fifth more, is 300,000.
        let budget_ns = opts.budget.as_nanos() as u64;
        assert_eq!(
            opts.grown_count(&spec, 500, 1_000_000),
            Some(500 * budget_ns * 6 / 5 / 1_000_000)
        );
        // A slow channel: 500 took the whole budget, but 10,000 messages
        // in all (2,500 each) fit in 8 budgets.
        assert_eq!(opts.grown_count(&spec, 500, budget_ns), Some(2_500));
        // Enough of both: done.
        assert_eq!(opts.grown_count(&spec, 2_500, budget_ns), None);
    }

    #[test]
    fn a_one_to_one_point_starts_at_most_at_its_least_count() {
        let opts = RunOpts::default();
        let at = |pattern, size| {
            let one = PointSpec::one_to_one(
                Strategy::Transport(TransportKind::ShmRing),
                pattern,
                size,
                Wait::SPIN,
            );
            (opts.first_count(&one), opts.counts(&one))
        };
        // The profile moves a million 64 B messages; the first try, 10,000.
        let ((w, first), (pw, profile)) = at(Pattern::Stream, 64);
        assert_eq!((w, first), (pw, MIN_MESSAGES));
        assert!(profile > MIN_MESSAGES);
        // Fewer than the least in the profile: the profile's.
        let (first, profile) = at(Pattern::Stream, 1 << 20);
        assert_eq!(first, profile);
        assert!(profile.1 < MIN_MESSAGES);
        assert_eq!(at(Pattern::Pingpong, 64).0.1, MIN_ROUND_TRIPS);
        // Tests that count rather than time keep the profile's count.
        let counted = RunOpts {
            budget: Duration::ZERO,
            ..RunOpts::default()
        };
        let one = PointSpec::one_to_one(
            Strategy::Transport(TransportKind::ShmRing),
            Pattern::Stream,
            64,
            Wait::SPIN,
        );
        assert_eq!(counted.first_count(&one), counted.counts(&one));
    }

    #[test]
    fn fixed_counts_never_grow() {
        let opts = RunOpts {
            fixed_count: Some(100),
            ..RunOpts::default()
        };
        let spec = fan_in(2);
        assert_eq!(opts.first_count(&spec), opts.counts(&spec));
        assert_eq!(opts.grown_count(&spec, 100, 1), None);
    }
}
