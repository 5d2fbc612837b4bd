//! Open loop (`rate`): a one-to-one link loaded at an offered rate.
//!
//! The sender sends message *i* at its intended time `t0 + i / rate` and
//! never waits for the receiver; a send that blocks on a full channel
//! delays what follows, and nothing is skipped. The receiver times every
//! message from its intended send time (the latency a caller whose work
//! arrives at that rate sees: corrected for coordinated omission) and from
//! its actual one (what a closed loop would report). A stalled receiver
//! then counts its stall for every message that should have been sent
//! during it, not once.
//!
//! Each strategy (at a size and a wait) is first measured unpaced: its
//! capacity under the same per-message work (a clock read and a checked,
//! stamped message). Offered loads are fractions of that capacity, or
//! absolute rates shared by all strategies; an absolute rate past
//! [`MAX_OVERLOAD`] times the capacity is skipped (it would only queue).

use std::collections::HashMap;

use crate::record::{PointRecord, RateFigures, Status};
use crate::shm::{Wait, WaitKind};
use crate::transport::{LinkSetup, Side, Transport, TransportKind, Waits};

use super::child::paced::Stall;
use super::control::PeerArgs;
use super::error::{HarnessError, settle};
use super::measure::merged_latency;
use super::point::{link_opts, new_record, within_budget};
use super::spec::{Pattern, PointSpec, RunOpts, Strategy};
use super::supervise::run_pair;
use super::validate::STAMPED_SIZE;

/// The intended send time of message `i` of a schedule that starts at
/// `t0` and sends one message every `period_ns` (one formula for both
/// peers, so they agree to the nanosecond).
#[inline]
pub fn due(t0: u64, i: u64, period_ns: f64) -> u64 {
    t0 + (i as f64 * period_ns) as u64
}

/// How an open-loop sender waits for a message's intended time: as the
/// strategy's own waiting would (spin on the clock, yield, or sleep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Reads the clock until the time comes.
    Spin,
    /// Yields the CPU until the time comes.
    Yield,
    /// Sleeps until `spin_ns` (at least the timer's oversleep) before the
    /// time, then spins.
    SpinSleep {
        /// The strategy's spin budget.
        spin_ns: u64,
    },
    /// Sleeps until the timer's oversleep before the time, then spins.
    Sleep,
}

impl Pace {
    /// The pace of transport `kind` waiting with `wait` (one that blocks
    /// in the kernel has no wait of its own: its sender sleeps).
    pub fn of(wait: Wait, kind: TransportKind) -> Pace {
        if kind.caps().waits == Waits::Kernel {
            return Pace::Sleep;
        }
        match wait.kind {
            WaitKind::Spin => Pace::Spin,
            WaitKind::SpinYield => Pace::Yield,
            WaitKind::SpinPark => Pace::SpinSleep {
                spin_ns: wait.spin.as_nanos() as u64,
            },
            WaitKind::Park => Pace::Sleep,
        }
    }

    /// The name results give it.
    pub fn name(self) -> &'static str {
        match self {
            Pace::Spin => "spin",
            Pace::Yield => "yield",
            Pace::SpinSleep { .. } => "sleep, then spin the spin budget",
            Pace::Sleep => "sleep, then spin the timer's oversleep",
        }
    }
}

/// What a sleep is first assumed to oversleep by.
const FIRST_OVERSLEEP_NS: u64 = 50_000;
/// The most a sleeping sender wakes early by.
const MAX_OVERSLEEP_NS: u64 = 500_000;

/// An open-loop sender's waiting for each intended time, at a [`Pace`].
///
/// A sleeping sender wakes early by what its sleeps overslept of late and
/// spins the rest: on a virtual machine a timer wakes a sleeper tens of
/// microseconds late, which every message's corrected latency would
/// otherwise carry. How late the sender still was is the point's
/// lateness. The time it spent pacing, awake and asleep, is counted, so
/// that the sender's CPU per message is what sending cost, not waiting
/// for the clock ([`Pacer::sending_cpu`]).
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    oversleep_ns: u64,
    busy_ns: u64,
    slept_ns: u64,
}

/// The process's CPU time, the clock and a pacer's counts at one moment
/// ([`Pacer::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct PaceMark {
    cpu: u64,
    wall: u64,
    busy: u64,
    slept: u64,
}

impl Pacer {
    /// A pacer at `pace`. A sleeping one asks the kernel for a timer
    /// slack of 1 ns (by default a sleep may end up to 50 µs late).
    pub fn new(pace: Pace) -> Pacer {
        if matches!(pace, Pace::SpinSleep { .. } | Pace::Sleep) {
            // SAFETY: prctl with an integer argument; no memory is passed.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            }
        }
        Pacer {
            pace,
            oversleep_ns: FIRST_OVERSLEEP_NS,
            busy_ns: 0,
            slept_ns: 0,
        }
    }

    /// Waits until `at` (CLOCK_MONOTONIC ns) and returns the time it
    /// then read: at or after `at`, never before.
    #[inline]
    pub fn until(&mut self, at: u64) -> u64 {
        let entered = super::measure::now_ns();
        let mut now = entered;
        let mut slept = 0;
        while now < at {
            let early = match self.pace {
                Pace::Spin | Pace::Yield => u64::MAX,
                Pace::SpinSleep { spin_ns } => spin_ns.max(self.oversleep_ns),
                Pace::Sleep => self.oversleep_ns,
            };
            if at - now > early {
                let wake = at - early;
                sleep_until(wake);
                let woke = super::measure::now_ns();
                slept += woke - now;
                let late = woke.saturating_sub(wake);
                self.oversleep_ns =
                    ((self.oversleep_ns * 7 + late * 2) / 8).clamp(1_000, MAX_OVERSLEEP_NS);
                now = woke;
                continue;
            }
            if self.pace == Pace::Yield {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            now = super::measure::now_ns();
        }
        self.busy_ns += (now - entered).saturating_sub(slept);
        self.slept_ns += slept;
        now
    }

    /// Where the CPU time of what follows is counted from.
    pub fn mark(&self) -> PaceMark {
        PaceMark {
            cpu: super::measure::cpu_time_ns(),
            wall: super::measure::now_ns(),
            busy: self.busy_ns,
            slept: self.slept_ns,
        }
    }

    /// The CPU time since `from` spent other than pacing: the process's
    /// CPU time in the share of its waking time it did not spend pacing.
    /// (Pacing is timed by the clock, and a process that shares its CPU is
    /// not running all that time: subtracting the time itself would take
    /// off more than the pacing's CPU.)
    pub fn sending_cpu(&self, from: &PaceMark) -> u64 {
        let cpu = super::measure::cpu_time_ns().saturating_sub(from.cpu);
        let awake =
            (super::measure::now_ns() - from.wall).saturating_sub(self.slept_ns - from.slept);
        let busy = self.busy_ns - from.busy;
        if awake == 0 {
            return cpu;
        }
        (cpu as f64 * (1.0 - (busy as f64 / awake as f64).min(1.0))) as u64
    }

    /// The time spent pacing so far other than asleep (spinning, yielding).
    pub fn busy_ns(&self) -> u64 {
        self.busy_ns
    }

    /// The time spent pacing so far asleep.
    pub fn slept_ns(&self) -> u64 {
        self.slept_ns
    }
}

/// Sleeps until `at` (CLOCK_MONOTONIC ns), or less if a signal comes.
fn sleep_until(at: u64) {
    let ts = libc::timespec {
        tv_sec: (at / 1_000_000_000) as libc::time_t,
        tv_nsec: (at % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; no remainder is asked for (absolute).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

/// An offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// As fast as the link goes: the capacity the fractions refer to.
    Unpaced,
    /// Messages per second.
    PerSec(f64),
    /// A percentage of the strategy's capacity measured in this run.
    OfCapacity(u32),
}

impl Load {
    /// The name in results and on the command line (`max`, `10k`, `80%`).
    pub fn label(self) -> String {
        match self {
            Load::Unpaced => "max".into(),
            Load::OfCapacity(p) => format!("{p}%"),
            Load::PerSec(r) => {
                let (v, unit) = if r >= 1e6 && r % 1e6 == 0.0 {
                    (r / 1e6, "M")
                } else if r >= 1e3 && r % 1e3 == 0.0 {
                    (r / 1e3, "k")
                } else {
                    (r, "")
                };
                format!("{v}{unit}")
            }
        }
    }

    /// The messages per second offered, given the capacity measured
    /// (`None`: unpaced, or a fraction of a capacity not known).
    pub fn per_s(self, capacity: Option<f64>) -> Option<f64> {
        match self {
            Load::Unpaced => None,
            Load::PerSec(r) => Some(r),
            Load::OfCapacity(p) => capacity.map(|c| c * f64::from(p) / 100.0),
        }
    }
}

impl std::str::FromStr for Load {
    type Err = String;
    fn from_str(s: &str) -> Result<Load, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "bad rate `{s}`: give messages per second (`500`, `10k`, `1M`), a percentage of \
                 the strategy's capacity (`80%`), or `max`"
            )
        };
        if t == "max" {
            return Ok(Load::Unpaced);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.parse::<u32>() {
                Ok(p) if (1..=1000).contains(&p) => Ok(Load::OfCapacity(p)),
                _ => Err(bad()),
            };
        }
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1e3),
            Some((i, 'M' | 'm')) => (&t[..i], 1e6),
            _ => (t, 1.0),
        };
        match num.parse::<f64>() {
            Ok(v) if v.is_finite() && v * mult >= 1.0 && v * mult <= 1e9 => {
                Ok(Load::PerSec(v * mult))
            }
            _ => Err(bad()),
        }
    }
}

/// How far past its capacity an absolute rate may go and still be
/// measured (past it, the channel only queues; the fractions' own 110%
/// shows that).
pub const MAX_OVERLOAD: f64 = 1.1;

/// The least messages a paced point measures (its p99 is then the 10th
/// worst), when that takes at most [`MIN_COUNT_SECONDS`].
pub const MIN_RATE_MESSAGES: u64 = 1_000;
/// See [`MIN_RATE_MESSAGES`].
pub const MIN_COUNT_SECONDS: f64 = 2.0;

/// One open-loop point: a one-to-one channel point of pattern `rate`, and
/// its offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    /// The strategy, size and wait (pattern [`Pattern::Rate`], 1×1).
    pub point: PointSpec,
    /// What is offered.
    pub load: Load,
}

impl RateSpec {
    /// The key its capacity is known by in a run.
    fn group(&self) -> (&'static str, String, usize, String, usize) {
        (
            self.point.pattern.name(),
            self.point.strategy.name().to_owned(),
            self.point.size,
            self.point.wait_name(),
            self.point.producers,
        )
    }
}

/// What a capacity is known by: pattern, strategy, size, wait, clients,
/// and whether between two hosts.
type Group = ((&'static str, String, usize, String, usize), bool);

/// The capacities measured so far in a run, by pattern, strategy, size,
/// wait and clients.
#[derive(Debug, Default)]
pub struct Capacities(HashMap<Group, f64>);

impl Capacities {
    /// Notes what an unpaced point measured.
    pub fn learn(&mut self, spec: &RateSpec, rec: &PointRecord) {
        if spec.load == Load::Unpaced
            && rec.status == Status::Ok
            && let Some(a) = rec.rate.achieved_per_s
        {
            self.0.insert((spec.group(), rec.hosts.is_some()), a);
        }
    }

    /// The capacity of `spec`'s strategy, size and wait, if measured (over
    /// loopback, or between two hosts: `between`).
    pub fn of(&self, spec: &RateSpec, between: bool) -> Option<f64> {
        self.0.get(&(spec.group(), between)).copied()
    }
}

/// The messages a point offered `per_s` measures: the profile's budget
/// of them, and at least [`MIN_RATE_MESSAGES`] when that takes at most
/// [`MIN_COUNT_SECONDS`]; and the warm-up before them, sent on the same
/// schedule.
pub fn paced_counts(opts: &RunOpts, per_s: f64) -> (u64, u64) {
    if let Some(n) = opts.fixed_count {
        return (opts.warmup.min(n / 10), n.max(2));
    }
    let budget = (per_s * opts.budget.as_secs_f64()) as u64;
    let least = MIN_RATE_MESSAGES.min((per_s * MIN_COUNT_SECONDS) as u64);
    let n = budget.max(least).max(10);
    (opts.warmup.min(n / 10).max(1), n)
}

/// Measures one open-loop point. `capacity` is what the unpaced point of
/// its strategy, size and wait measured in this run; `stall` makes the
/// receiver deliberately slow (tests).
pub fn run_point(
    spec: &RateSpec,
    opts: &RunOpts,
    capacity: Option<f64>,
    stall: Option<Stall>,
) -> PointRecord {
    let point = &spec.point;
    let (mut rec, cpus) = new_record(point, opts);
    rec.rate = RateFigures {
        load: Some(spec.load.label()),
        capacity_per_s: capacity,
        ..RateFigures::default()
    };
    let Strategy::Transport(kind) = point.strategy else {
        rec.skip("open-loop points run over transports; the floors are closed loops");
        return rec;
    };
    let one_to_one = point.producers == 1 && point.consumers == 1;
    if !(point.pattern == Pattern::Rate && one_to_one || point.pattern == Pattern::ReqrepRate) {
        rec.fail("an open-loop point is of pattern `rate` (one-to-one) or `reqrep-rate`");
        return rec;
    }
    if point.pattern == Pattern::ReqrepRate && !kind.caps().multi_party() {
        rec.fail(format!(
            "{} serves no dictionary; reqrep-rate runs over {}",
            kind.name(),
            super::multi::sharing_strategies()
        ));
        return rec;
    }
    if rec.oversubscribed && point.strategy.has_wait() && point.wait.kind == WaitKind::Spin {
        rec.skip(format!(
            "pure spin with more busy processes than the {} CPUs measures the scheduler, not the \
             channel; see the other waits' points",
            cpus.len()
        ));
        return rec;
    }
    if point.size < STAMPED_SIZE {
        rec.skip(format!(
            "open-loop messages carry their send time: {STAMPED_SIZE} B or more"
        ));
        return rec;
    }
    let per_s = spec.load.per_s(capacity);
    match (spec.load, per_s, capacity) {
        (Load::OfCapacity(_), None, _) => {
            rec.skip("its strategy's capacity (the unpaced point) was not measured in this run");
            return rec;
        }
        (Load::PerSec(r), _, Some(c)) if r > c * MAX_OVERLOAD => {
            rec.skip(format!(
                "{} per second is past {:.1}× the capacity of {:.0} per second measured in this run",
                spec.load.label(),
                MAX_OVERLOAD,
                c
            ));
            return rec;
        }
        _ => {}
    }
    rec.rate.offered_per_s = per_s;
    let pace = Pace::of(point.wait, kind);
    rec.rate.pace = Some(pace.name().to_owned());
    if point.pattern == Pattern::ReqrepRate {
        let clients = point.producers.max(1) as u64;
        // Calls in all, as for a one-to-one point; each client makes
        // pairs of them (a set, then a get).
        let (w, n) = match per_s {
            Some(r) => paced_counts(opts, r),
            None => opts.first_count(point),
        };
        let per_client = |c: u64| (c / (2 * clients)).max(1);
        let counts = (per_client(w), per_client(n));
        return match per_s {
            Some(r) => super::multi::calls_at(point, opts, rec, &cpus, counts, r),
            // Unpaced: the budget's worth, grown as a closed-loop point's.
            None => super::point::grow_to_budget(
                point,
                opts,
                counts.1,
                |n| super::multi::calls_at(point, opts, rec.clone(), &cpus, (counts.0, n), 0.0),
                |r| (r.status == Status::Ok).then_some(r.elapsed_ns),
            ),
        };
    }
    let pinned = !rec.cpus.is_empty();
    let link = link_opts(point, opts, kind);
    let make = |addr: &str, side: Side, counts: (u64, u64)| {
        let cpu = pinned.then(|| cpus[if side == Side::A { 0 } else { 1 }]);
        let mut a = PeerArgs::for_point(point, addr, side, 0, counts, cpu);
        a.rate = per_s.unwrap_or(0.0);
        a.stall = stall;
        a
    };
    let attempt = |w: u64, n: u64| {
        with_transport!(kind, T => match T::setup(&link) {
            Err(e) => Err(HarnessError::Setup(format!("setting up the link: {e}"))),
            Ok((mut setup, ep)) => run_pair(
                opts,
                [make(&ep.addr, Side::A, (w, n)), make(&ep.addr, Side::B, (w, n))],
                &ep.inherit,
                &ep.env,
                &mut || setup.children_started(),
            ),
        })
    };
    let measured = match per_s {
        None => within_budget(point, opts, opts.first_count(point), attempt),
        Some(r) => {
            let (w, n) = paced_counts(opts, r);
            attempt(w, n)
        }
    };
    match measured {
        Err(e) => settle(&mut rec, &e),
        Ok((a, b)) => fill(&mut rec, &a, &b),
    }
    rec
}

/// A rate point's figures from its sender's report (`a`) and its
/// receiver's (`b`).
fn fill(rec: &mut PointRecord, a: &super::PeerReport, b: &super::PeerReport) {
    rec.pass();
    rec.messages = b.messages;
    rec.elapsed_ns = b.elapsed_ns;
    rec.latency_ns = b.latency;
    rec.histogram = b.histogram.clone();
    rec.measured_ns = Some(b.measured_ns);
    rec.batches = b.batches.clone();
    let achieved = (b.elapsed_ns > 0 && b.messages > 1)
        .then(|| (b.messages - 1) as f64 * 1e9 / b.elapsed_ns as f64);
    rec.throughput =
        super::point::throughput_of(achieved.is_some(), || achieved.unwrap_or(0.0), rec.msg_size);
    rec.ci95 = crate::record::Ci95::of_point(rec);
    let per = b.messages.max(1) as f64;
    rec.cpu_ns_per_msg = Some((a.cpu_ns + b.cpu_ns) as f64 / per);
    let figures = &mut rec.rate;
    figures.achieved_per_s = achieved;
    figures.latency_uncorrected_ns = merged_latency(&[&b.uncorrected_hist]);
    figures.sender_lateness_ns = merged_latency(&[&a.lateness_hist]);
    figures.peer_cpu_ns_per_msg = Some([a.cpu_ns as f64 / per, b.cpu_ns as f64 / per]);
    figures.latency_growth = growth(&rec.batches);
}

/// How much the corrected median grew over the point: the median of its
/// last quarter of batches' medians over that of its first quarter (a
/// channel past its knee queues ever more; one pause at the end of an
/// otherwise steady point moves one batch, not a quarter).
fn growth(batches: &[(u64, f64)]) -> Option<f64> {
    let q = batches.len() / 4;
    if q == 0 {
        return None;
    }
    let median = |part: &[(u64, f64)]| {
        let mut v: Vec<u64> = part.iter().map(|b| b.0).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (first, last) = (median(&batches[..q]), median(&batches[batches.len() - q..]));
    (first > 0).then(|| last as f64 / first as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_parse_and_print_back() {
        for (text, load) in [
            ("max", Load::Unpaced),
            ("80%", Load::OfCapacity(80)),
            ("110%", Load::OfCapacity(110)),
            ("1k", Load::PerSec(1e3)),
            ("50k", Load::PerSec(5e4)),
            ("1M", Load::PerSec(1e6)),
            ("2.5k", Load::PerSec(2500.0)),
            ("700", Load::PerSec(700.0)),
        ] {
            assert_eq!(text.parse::<Load>(), Ok(load), "{text}");
        }
        assert_eq!(Load::PerSec(1e6).label(), "1M");
        assert_eq!(Load::PerSec(2500.0).label(), "2500");
        assert_eq!(Load::OfCapacity(95).label(), "95%");
        for bad in ["", "0", "k", "-5k", "0%", "fast", "1G", "nan"] {
            let e = bad.parse::<Load>().unwrap_err();
            assert!(e.contains("msgs") || e.contains("second"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_schedule_is_the_same_for_both_peers_and_exact() {
        assert_eq!(due(1_000, 0, 333.3), 1_000);
        assert_eq!(due(1_000, 3, 333.3), 1_999);
        // A million messages at 1 M/s end a second after the start.
        assert_eq!(due(5, 1_000_000, 1_000.0), 1_000_000_005);
    }

    #[test]
    fn paced_points_measure_the_budget_or_enough_for_a_tail() {
        let opts = RunOpts::default();
        // Half a second at 100 k/s.
        assert_eq!(paced_counts(&opts, 1e5).1, 50_000);
        // At 1 k/s, 1,000 messages (a second) rather than 500.
        assert_eq!(paced_counts(&opts, 1e3).1, 1_000);
        // At 100/s, what two seconds hold.
        assert_eq!(paced_counts(&opts, 100.0).1, 200);
    }

    #[test]
    fn growth_is_a_trend_over_quarters_not_one_batch() {
        let steady: Vec<(u64, f64)> = (0..20)
            .map(|i| (if i == 19 { 50_000 } else { 400 }, 1.0))
            .collect();
        assert_eq!(growth(&steady), Some(1.0));
        let queueing: Vec<(u64, f64)> = (1..=20).map(|i| (i * 1_000, 1.0)).collect();
        // Medians of 1..5 and 16..20 (thousands): 3 and 18.
        assert_eq!(growth(&queueing), Some(6.0));
        assert_eq!(growth(&queueing[..3]), None);
    }

    #[test]
    fn pacing_never_returns_early() {
        for pace in [
            Pace::Spin,
            Pace::Yield,
            Pace::SpinSleep { spin_ns: 20_000 },
            Pace::Sleep,
        ] {
            let mut pacer = Pacer::new(pace);
            for _ in 0..3 {
                let at = super::super::measure::now_ns() + 200_000;
                assert!(pacer.until(at) >= at, "{}", pace.name());
            }
            // Every wait is accounted for, busy or asleep.
            let (busy, slept) = (pacer.busy_ns(), pacer.slept_ns());
            assert!(
                busy + slept >= 3 * 190_000,
                "{}: {busy} + {slept} ns",
                pace.name()
            );
            match pace {
                // Spinning and yielding are busy all along.
                Pace::Spin | Pace::Yield => assert_eq!(slept, 0, "{}", pace.name()),
                // A sleeping sender sleeps: the first wait (200 µs) is longer
                // than its first guess at oversleeping (50 µs). Whether it
                // then spins depends on how late the machine woke it (a
                // loaded one may wake it past the deadline), so that is not
                // asserted.
                Pace::SpinSleep { .. } | Pace::Sleep => {
                    assert!(slept > 0, "{}", pace.name())
                }
            }
        }
    }
}
