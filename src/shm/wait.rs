//! Waiting strategies, and the one loop that every blocking call goes through.
//!
//! | strategy     | while the condition is false                                  |
//! |--------------|---------------------------------------------------------------|
//! | `spin`       | spin (a CPU pause per check) until it holds                   |
//! | `spin-yield` | spin for the budget, then `sched_yield` between checks        |
//! | `spin-park`  | spin for the budget, then sleep on a futex until notified     |
//! | `park`       | sleep on a futex at once                                      |
//!
//! The budget matters: on the VMs this suite was written on, a futex wake
//! across cores costs ~25 µs one way while a spinning hand-off costs ~65 ns.
//! Spinning for about the cost of one sleep and wake bounds the loss to about
//! twice the best choice made with hindsight, so that is the default.
//!
//! Sleeping and waking use a [`Notifier`], an event count: a sleeper reads
//! the epoch, announces itself, re-checks its condition and sleeps only while
//! the epoch is unchanged; a notifier bumps the epoch and calls the kernel
//! only when someone has announced itself. When nobody sleeps, notifying is
//! one fence and one load: no system call.
//!
//! Every blocking wait can take a timeout, and checks every
//! [`LIVENESS_CHECK_EVERY`] whether the peers it waits for are alive, so a
//! crashed peer gives [`WaitError::PeerGone`] instead of a hang.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::futex::Futex;
use super::liveness::PeerId;
use super::sync::{AtomicU32, Instant, Ordering, POLLS_PER_CLOCK, fence, spin_hint, yield_now};

/// How often a blocked wait checks the liveness of its peers.
#[cfg(not(loom))]
pub const LIVENESS_CHECK_EVERY: Duration = Duration::from_millis(10);
/// Never, in a model: its threads do not die, and a look at the peers
/// (loads of every registration) would multiply the interleavings to
/// explore. Deaths are tested between real processes.
#[cfg(loom)]
pub const LIVENESS_CHECK_EVERY: Duration = Duration::from_secs(1 << 40);

/// The default spin budget before yielding or parking.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// What a waiting side does while its condition does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitKind {
    /// Spin until the condition holds. Lowest latency; burns a core; collapses
    /// when there are more busy processes than cores.
    Spin,
    /// Spin for the budget, then yield the CPU between checks.
    SpinYield,
    /// Spin for the budget, yield for as long again, then sleep on a futex.
    SpinPark,
    /// Sleep on a futex at once.
    Park,
}

/// A waiting strategy and its spin budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wait {
    /// What to do.
    pub kind: WaitKind,
    /// How long to spin before yielding or parking (unused by `Spin` and `Park`).
    pub spin: Duration,
}

impl Wait {
    /// Pure spinning.
    pub const SPIN: Wait = Wait {
        kind: WaitKind::Spin,
        spin: DEFAULT_SPIN,
    };
    /// Spin, then yield.
    pub const SPIN_YIELD: Wait = Wait {
        kind: WaitKind::SpinYield,
        spin: DEFAULT_SPIN,
    };
    /// Spin, then park.
    pub const SPIN_PARK: Wait = Wait {
        kind: WaitKind::SpinPark,
        spin: DEFAULT_SPIN,
    };
    /// Park at once.
    pub const PARK: Wait = Wait {
        kind: WaitKind::Park,
        spin: Duration::ZERO,
    };
    /// Every strategy, with default budgets.
    pub const ALL: [Wait; 4] = [Wait::SPIN, Wait::SPIN_YIELD, Wait::SPIN_PARK, Wait::PARK];

    /// The same strategy with another spin budget.
    pub fn with_spin(self, spin: Duration) -> Wait {
        Wait { spin, ..self }
    }

    /// Whether a side using this strategy may sleep in the kernel, so that
    /// the other side must notify it.
    #[inline(always)]
    pub fn parks(&self) -> bool {
        matches!(self.kind, WaitKind::SpinPark | WaitKind::Park)
    }

    /// The strategy's name as the CLI and the results files spell it.
    pub fn name(&self) -> &'static str {
        match self.kind {
            WaitKind::Spin => "spin",
            WaitKind::SpinYield => "spin-yield",
            WaitKind::SpinPark => "spin-park",
            WaitKind::Park => "park",
        }
    }

    /// The name with its spin budget when that is not the default
    /// (`spin-park@20`), as results record it, so that two budgets never
    /// share a name.
    pub fn label(&self) -> String {
        if self.kind == WaitKind::Park || self.spin == DEFAULT_SPIN {
            self.name().to_owned()
        } else {
            format!("{}@{}", self.name(), self.spin.as_micros())
        }
    }

    /// Packs the strategy into two words for a shared-memory header.
    pub fn encode(&self) -> [u64; 2] {
        let k = match self.kind {
            WaitKind::Spin => 1,
            WaitKind::SpinYield => 2,
            WaitKind::SpinPark => 3,
            WaitKind::Park => 4,
        };
        [k, self.spin.as_nanos().min(u64::MAX as u128) as u64]
    }

    /// Unpacks [`Wait::encode`]; `None` for an unknown kind.
    pub fn decode(words: [u64; 2]) -> Option<Wait> {
        let kind = match words[0] {
            1 => WaitKind::Spin,
            2 => WaitKind::SpinYield,
            3 => WaitKind::SpinPark,
            4 => WaitKind::Park,
            _ => return None,
        };
        Some(Wait {
            kind,
            spin: Duration::from_nanos(words[1]),
        })
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Wait {
    type Err = String;
    /// `spin`, `spin-yield`, `spin-park`, `park`; a budget may follow an `@`
    /// in microseconds (`spin-park@20`).
    fn from_str(s: &str) -> Result<Wait, String> {
        let (name, budget) = match s.split_once('@') {
            Some((n, b)) => (n, Some(b)),
            None => (s, None),
        };
        let base = Wait::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown waiting strategy `{name}`: use spin, spin-yield, spin-park or park"
                )
            })?;
        match budget {
            None => Ok(base),
            Some(b) => {
                let us: u64 = b.parse().map_err(|_| {
                    format!("spin budget `{b}` is not a whole number of microseconds")
                })?;
                Ok(base.with_spin(Duration::from_micros(us)))
            }
        }
    }
}

/// Why a blocking wait gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The timeout passed with the condition still false.
    #[error("timed out")]
    Timeout,
    /// A peer this wait depends on died without closing its end.
    #[error("peer process {} died without closing its end", .0.pid)]
    PeerGone(PeerId),
}

/// An event count on a futex: the place one side sleeps and the other wakes it.
#[repr(C)]
pub struct Notifier {
    /// Bumped by every notification that finds a sleeper; sleepers wait on it.
    epoch: Futex,
    /// Who is between [`Notifier::prepare`] and [`Notifier::cancel`], as
    /// one word: the count of sleepers (low 16 bits), a generation (6
    /// bits) that moves when a notifier finds the count stale (see
    /// [`Notifier::wake`]), and a ticket bumped by every announcement (the
    /// top 10 bits, so that it wraps without carrying into the others).
    sleepers: AtomicU32,
}

/// The sleepers' count in [`Notifier::sleepers`].
const COUNT_MASK: u32 = 0xffff;
/// The generation's place and bits.
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x3f << GEN_SHIFT;
/// One announcement: one more sleeper and the next ticket.
const ANNOUNCE: u32 = 1 | 1 << 22;

fn generation(w: u32) -> u32 {
    (w & GEN_MASK) >> GEN_SHIFT
}

/// A sleeper's announcement: the epoch to sleep on and the generation its
/// count belongs to.
#[derive(Clone, Copy)]
struct Announced {
    epoch: u32,
    generation: u32,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier {
    /// A notifier nobody waits on.
    pub fn new() -> Self {
        Notifier {
            epoch: Futex::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Announces a sleeper and returns what it sleeps on. The caller must
    /// re-check its condition after this and before [`Notifier::sleep`].
    #[inline]
    fn prepare(&self) -> Announced {
        // Acquire pairs with the Release bump in `notify`: a sleeper that
        // reads a bumped epoch sees what was published before the bump.
        let epoch = self.epoch.load();
        let was = self.sleepers.fetch_add(ANNOUNCE, Ordering::SeqCst);
        // SYNC POINT: sleeper announced. This fence and the one in `notify`
        // are totally ordered: either the notifier's load of `sleepers` sees
        // our increment, or our re-check of the condition (after this fence)
        // sees what the notifier published before its fence. No lost wake-up.
        fence(Ordering::SeqCst);
        Announced {
            epoch,
            generation: generation(was),
        }
    }

    /// Sleeps until the epoch moves on from `a`'s, a wake-up, or `timeout`.
    #[inline]
    fn sleep(&self, a: Announced, timeout: Option<Duration>) {
        self.epoch.wait(a.epoch, timeout);
    }

    /// Withdraws the announcement `a` made by [`Notifier::prepare`], unless
    /// a notifier has since dropped the count it was in ([`Notifier::wake`]).
    #[inline]
    fn cancel(&self, a: Announced) {
        // Relaxed: a stale count only costs a notifier one unneeded wake call.
        let _ = self
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (generation(w) == a.generation && w & COUNT_MASK != 0).then(|| w - 1)
            });
    }

    /// Wakes up to `n` sleepers if there are any. Call after publishing the
    /// change the sleepers wait for.
    #[inline]
    pub fn notify(&self, n: u32) {
        // SYNC POINT: sleeper announced (see `prepare`).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        let w = self.sleepers.load(Ordering::Relaxed);
        if w & COUNT_MASK != 0 {
            self.wake(n, w);
        }
    }

    /// Bumps the epoch and wakes up to `n` sleepers, `seen` being the
    /// sleepers' word [`Notifier::notify`] read.
    ///
    /// A sleeper killed between announcing and withdrawing leaves the count
    /// one too high for good, and every later notification would make a
    /// system call for nobody. So a wake-up that finds nobody asleep in the
    /// kernel drops the count to 0 in a new generation, if no one has
    /// announced since `seen` (same ticket): every sleeper counted in
    /// `seen` read its epoch before this bump, so it is not asleep on the
    /// new epoch — it is dead, or its sleep returns at once and it polls
    /// and announces again. Their later `cancel`s see the new generation
    /// and leave the new count alone.
    #[cold]
    fn wake(&self, n: u32, seen: u32) {
        // Release: a sleeper that reads the new epoch in `prepare` also sees
        // what was published before this notification.
        self.epoch.word().fetch_add(1, Ordering::Release);
        if self.epoch.wake(n) == 0 {
            let next = (seen & !(COUNT_MASK | GEN_MASK))
                | ((generation(seen) + 1) << GEN_SHIFT & GEN_MASK);
            // Relaxed: as in `cancel`.
            let _ =
                self.sleepers
                    .compare_exchange(seen, next, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The sleepers counted now (diagnostics and tests).
    #[doc(hidden)]
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a snapshot.
        self.sleepers.load(Ordering::Relaxed) & COUNT_MASK
    }
}

/// What a blocked wait watches besides its condition.
pub(crate) struct WaitCtx<'a, F: Fn() -> Option<PeerId>> {
    /// The strategy.
    pub wait: Wait,
    /// Where to sleep, for parking strategies.
    pub notifier: &'a Notifier,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Returns a peer this wait depends on that has died, if any.
    pub dead_peer: F,
}

/// Runs `poll` until it returns `Some`, waiting in between as the strategy
/// says. Gives up on the timeout or when a peer dies.
#[inline]
pub(crate) fn block_until<R, F: Fn() -> Option<PeerId>>(
    ctx: WaitCtx<'_, F>,
    mut poll: impl FnMut() -> Option<R>,
) -> Result<R, WaitError> {
    if let Some(r) = poll() {
        return Ok(r);
    }
    block_slow(ctx, &mut poll)
}

/// The part of [`block_until`] after the first failed poll. A peer seen
/// dead gets one more poll first: what it committed just before it died
/// (between the last poll and the liveness check) is still delivered.
#[inline(never)]
fn block_slow<R, F: Fn() -> Option<PeerId>>(
    ctx: WaitCtx<'_, F>,
    poll: &mut impl FnMut() -> Option<R>,
) -> Result<R, WaitError> {
    match block_waiting(ctx, poll) {
        Err(WaitError::PeerGone(p)) => poll().ok_or(WaitError::PeerGone(p)),
        r => r,
    }
}

/// Waits as the strategy says until `poll` returns `Some`, the timeout
/// passes or a peer this wait depends on dies.
#[inline(never)]
fn block_waiting<R, F: Fn() -> Option<PeerId>>(
    ctx: WaitCtx<'_, F>,
    poll: &mut impl FnMut() -> Option<R>,
) -> Result<R, WaitError> {
    {
        let start = Instant::now();
        let deadline = ctx.timeout.map(|t| start + t);
        let next_check = std::cell::Cell::new(start + LIVENESS_CHECK_EVERY);
        // Returns the error to give up with, if any; called every few µs at most.
        let check = |now: Instant| -> Result<(), WaitError> {
            if let Some(d) = deadline
                && now >= d
            {
                return Err(WaitError::Timeout);
            }
            if now >= next_check.get() {
                next_check.set(now + LIVENESS_CHECK_EVERY);
                if let Some(p) = (ctx.dead_peer)() {
                    return Err(WaitError::PeerGone(p));
                }
            }
            Ok(())
        };
        let budget = match ctx.wait.kind {
            WaitKind::Spin => None,
            WaitKind::Park => Some(Duration::ZERO),
            WaitKind::SpinYield | WaitKind::SpinPark => Some(ctx.wait.spin),
        };
        // Phase 1: spin, reading the clock once every 64 pauses (`park`
        // skips it: it sleeps as soon as the condition is false).
        'spin: loop {
            if budget == Some(Duration::ZERO) {
                break 'spin;
            }
            for _ in 0..POLLS_PER_CLOCK[0] {
                if let Some(r) = poll() {
                    return Ok(r);
                }
                spin_hint();
            }
            let now = Instant::now();
            check(now)?;
            if let Some(b) = budget
                && now - start >= b
            {
                break 'spin;
            }
        }
        // Phase 2 of spin-park: yield the CPU, up to the budget again,
        // before sleeping. When more processes are busy than there are
        // CPUs, the one that will end this wait is often waiting for this
        // CPU: yielding lets it run, and most waits end here, without a
        // sleep and the wake-up system call it costs the other side.
        if ctx.wait.kind == WaitKind::SpinPark {
            let until = Instant::now() + ctx.wait.spin;
            loop {
                for _ in 0..POLLS_PER_CLOCK[1] {
                    yield_now();
                    if let Some(r) = poll() {
                        return Ok(r);
                    }
                }
                let now = Instant::now();
                check(now)?;
                if now >= until {
                    break;
                }
            }
        }
        // Phase 3: yield or park.
        loop {
            match ctx.wait.kind {
                WaitKind::Spin => unreachable!("spin has no budget"),
                WaitKind::SpinYield => {
                    for _ in 0..POLLS_PER_CLOCK[2] {
                        yield_now();
                        if let Some(r) = poll() {
                            return Ok(r);
                        }
                    }
                }
                WaitKind::SpinPark | WaitKind::Park => {
                    let a = ctx.notifier.prepare();
                    if let Some(r) = poll() {
                        ctx.notifier.cancel(a);
                        return Ok(r);
                    }
                    let now = Instant::now();
                    let mut slice = next_check.get().saturating_duration_since(now);
                    if let Some(d) = deadline {
                        slice = slice.min(d.saturating_duration_since(now));
                    }
                    ctx.notifier
                        .sleep(a, Some(slice.max(Duration::from_micros(1))));
                    ctx.notifier.cancel(a);
                    if let Some(r) = poll() {
                        return Ok(r);
                    }
                }
            }
            check(Instant::now())?;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Wait::ALL {
            assert_eq!(w.name().parse::<Wait>().unwrap(), w);
            assert_eq!(Wait::decode(w.encode()), Some(w));
        }
        let w: Wait = "spin-park@20".parse().unwrap();
        assert_eq!(w.spin, Duration::from_micros(20));
        assert_eq!(w.label(), "spin-park@20");
        assert_eq!(w.label().parse::<Wait>().unwrap(), w);
        assert_eq!(Wait::SPIN_PARK.label(), "spin-park");
        assert!("spinny".parse::<Wait>().unwrap_err().contains("spin-park"));
        assert!("spin@x".parse::<Wait>().is_err());
        assert_eq!(Wait::decode([9, 0]), None);
    }

    #[test]
    fn a_dead_sleepers_count_is_dropped_by_the_next_wake_up_that_finds_nobody() {
        let n = Notifier::new();
        // A sleeper that announced itself and died before withdrawing.
        let _dead = n.prepare();
        assert_eq!(n.sleepers(), 1);
        n.notify(1);
        assert_eq!(n.sleepers(), 0, "the stale count survived a futile wake-up");
        // A live sleeper counted before the drop withdraws nothing from the
        // new count; one counted after withdraws its own.
        let old = n.prepare();
        n.notify(1);
        let new = n.prepare();
        assert_eq!(n.sleepers(), 1);
        n.cancel(old);
        assert_eq!(
            n.sleepers(),
            1,
            "a withdrawal from an old generation counted"
        );
        n.cancel(new);
        assert_eq!(n.sleepers(), 0);
        // Tickets wrap without touching the count or the generation.
        for _ in 0..3000 {
            let a = n.prepare();
            n.cancel(a);
        }
        assert_eq!(n.sleepers(), 0);
    }

    #[test]
    fn a_sleeper_between_announcing_and_sleeping_is_not_lost_when_the_count_is_dropped() {
        // The notifier drops the count while the sleeper has announced but
        // is not yet asleep: its sleep on the old epoch returns at once.
        let n = Notifier::new();
        let a = n.prepare();
        n.notify(1);
        assert_eq!(n.sleepers(), 0);
        let t0 = Instant::now();
        n.sleep(a, Some(Duration::from_secs(5)));
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "slept on a moved epoch"
        );
        n.cancel(a);
        assert_eq!(n.sleepers(), 0);
    }

    #[test]
    fn every_strategy_times_out() {
        for w in Wait::ALL {
            let n = Notifier::new();
            let t0 = Instant::now();
            let r: Result<(), _> = block_until(
                WaitCtx {
                    wait: w.with_spin(Duration::from_micros(100)),
                    notifier: &n,
                    timeout: Some(Duration::from_millis(30)),
                    dead_peer: || None,
                },
                || None,
            );
            assert_eq!(r, Err(WaitError::Timeout), "{w}");
            assert!(t0.elapsed() >= Duration::from_millis(30), "{w}");
        }
    }

    #[test]
    fn dead_peer_ends_the_wait() {
        let gone = PeerId { pid: 0, start: 0 };
        for w in Wait::ALL {
            let n = Notifier::new();
            let r: Result<(), _> = block_until(
                WaitCtx {
                    wait: w,
                    notifier: &n,
                    timeout: Some(Duration::from_secs(10)),
                    dead_peer: || Some(gone),
                },
                || None,
            );
            assert_eq!(r, Err(WaitError::PeerGone(gone)), "{w}");
        }
    }

    #[test]
    fn what_a_peer_committed_just_before_it_died_is_still_delivered() {
        // The item lands between the last poll and the liveness check
        // that sees its sender dead: one more poll finds it.
        let gone = PeerId { pid: 0, start: 0 };
        for w in Wait::ALL {
            let n = Notifier::new();
            let committed = std::cell::Cell::new(false);
            let r = block_until(
                WaitCtx {
                    wait: w,
                    notifier: &n,
                    timeout: Some(Duration::from_secs(10)),
                    dead_peer: || {
                        committed.set(true);
                        Some(gone)
                    },
                },
                || committed.get().then_some(7),
            );
            assert_eq!(r, Ok(7), "{w}");
        }
    }

    #[test]
    fn parked_waiter_is_woken_by_notify() {
        use crate::shm::sync::AtomicBool;
        use std::sync::Arc;
        let n = Arc::new(Notifier::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (n2, f2) = (n.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            block_until(
                WaitCtx {
                    wait: Wait::PARK,
                    notifier: &n2,
                    timeout: Some(Duration::from_secs(20)),
                    dead_peer: || None,
                },
                || f2.load(crate::shm::sync::Ordering::Acquire).then_some(()),
            )
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, crate::shm::sync::Ordering::Release);
        n.notify(1);
        assert_eq!(t.join().unwrap(), Ok(()));
    }
}
