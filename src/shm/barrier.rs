//! A barrier for a fixed number of parties, shared by processes, like
//! `multiprocessing.Barrier`: `wait` returns once `parties` waits have
//! arrived, each with its arrival index, and the barrier is ready for the
//! next generation.
//!
//! One word holds the generation and whether the barrier is broken (and
//! why); the last to arrive moves the generation on with a CAS, and a
//! waiter that gives up (its timeout, a participant's death, `abort`)
//! breaks it with a CAS on the same word: exactly one of the two wins, so
//! no generation both passes and breaks. A broken barrier stays broken:
//! every waiter, now and later, gets [`BarrierError`] — never a hang.
//!
//! Every handle holds a member slot naming its process, and each slot
//! records the generation its holder last arrived at. A waiter that finds
//! a member dead that has not arrived in this generation knows the
//! generation can never complete: it breaks the barrier and names the
//! dead. (`multiprocessing` would wait for ever.)

use std::sync::Arc;
use std::time::Duration;

use super::liveness::{PeerId, PeerSlot};
use super::mem::{Shared, SlotLayout};
#[cfg(not(loom))]
use super::mem::{create_block, open_block};
#[cfg(not(loom))]
use super::region::{Kind, RegionError};
use super::sync::{AtomicU32, CachePadded, Ordering};
use super::wait::{Notifier, Wait, WaitCtx, WaitError, block_until};

/// Handles a barrier can have at once (processes, or threads on the heap).
#[cfg(not(loom))]
pub const MAX_MEMBERS: usize = 64;
/// Under loom: few, so that models stay small.
#[cfg(loom)]
pub const MAX_MEMBERS: usize = 3;

/// The state word: the generation above, why it broke (0: whole) below.
const REASON_BITS: u32 = 4;
const REASON_MASK: u32 = (1 << REASON_BITS) - 1;
const ABORTED: u32 = 1;
const TIMED_OUT: u32 = 2;
const DIED: u32 = 3;
const CORRUPT: u32 = 4;

fn generation(state: u32) -> u32 {
    state >> REASON_BITS
}

fn whole(generation: u32) -> u32 {
    generation << REASON_BITS
}

/// The generation after `g`, wrapping within the word.
fn next(g: u32) -> u32 {
    g.wrapping_add(1) & (u32::MAX >> REASON_BITS)
}

/// Why a barrier wait failed.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The barrier was broken, now or before: by `abort`, a waiter's
    /// timeout, a participant's death or garbage in its words.
    #[error("the barrier is broken: {0}")]
    Broken(String),
    /// This wait timed out; the barrier is now broken for everyone.
    #[error("timed out waiting at the barrier (it is now broken for every waiter)")]
    Timeout,
    /// This wait found a participant dead that had not arrived; the
    /// barrier is now broken for everyone.
    #[error("process {} died before arriving at the barrier (it is now broken for every waiter)", .0.pid)]
    PeerGone(PeerId),
    /// Every member slot is taken.
    #[error("the barrier has {MAX_MEMBERS} handles already")]
    Full,
    /// The region could not be made or opened.
    #[cfg(not(loom))]
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// The barrier's shared words.
#[repr(C)]
pub(crate) struct BarrierCtrl {
    /// Generation and broken reason (see the module's text).
    state: CachePadded<AtomicU32>,
    /// Arrivals in this generation.
    count: CachePadded<AtomicU32>,
    /// Who broke it by dying, if anyone.
    culprit: PeerSlot,
    /// Where waiters sleep.
    woken: CachePadded<Notifier>,
    /// The processes holding handles.
    members: [PeerSlot; MAX_MEMBERS],
    /// The generation (+1; 0: never) each member last arrived at.
    arrived: [AtomicU32; MAX_MEMBERS],
}

impl BarrierCtrl {
    fn new() -> Self {
        BarrierCtrl {
            state: CachePadded(AtomicU32::new(0)),
            count: CachePadded(AtomicU32::new(0)),
            culprit: PeerSlot::new(),
            woken: CachePadded(Notifier::new()),
            members: std::array::from_fn(|_| PeerSlot::new()),
            arrived: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// A handle to a barrier for `parties` waits: one member of it.
pub struct Barrier {
    shared: Arc<Shared<BarrierCtrl>>,
    parties: u32,
    wait: Wait,
    me: PeerId,
    slot: usize,
}

impl Barrier {
    fn join(
        shared: Arc<Shared<BarrierCtrl>>,
        parties: u32,
        wait: Wait,
    ) -> Result<Barrier, BarrierError> {
        let me = PeerId::current();
        let slot = (0..MAX_MEMBERS)
            .find(|&i| shared.ctrl().members[i].claim_free(me))
            .ok_or(BarrierError::Full)?;
        Ok(Barrier {
            shared,
            parties,
            wait,
            me,
            slot,
        })
    }

    /// A barrier on the heap for `parties` (≥ 1) waits, for threads: give
    /// each thread its own [`Barrier::handle`].
    pub fn on_heap(parties: u32, wait: Wait) -> Barrier {
        let shared = Arc::new(Shared::heap(
            BarrierCtrl::new(),
            0,
            SlotLayout::NONE,
            &|_| 0,
        ));
        Self::join(shared, parties.max(1), wait).expect("a new barrier has free slots")
    }

    /// Creates a barrier for `parties` (≥ 1) waits in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, parties: u32, wait: Wait) -> Result<Barrier, BarrierError> {
        let w = wait.encode();
        let parties = parties.max(1);
        let params = [u64::from(parties), w[0], w[1], 0, 0, 0];
        let shared = create_block(name, Kind::Barrier, BarrierCtrl::new(), params)?;
        Self::join(shared, parties, wait)
    }

    /// Opens the barrier in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Barrier, BarrierError> {
        let (shared, (parties, wait)) = open_block(name, Kind::Barrier, |region| {
            let p = region.params();
            let wait = Wait::decode([p[1], p[2]])
                .ok_or_else(|| region.bad_params("unknown waiting strategy"))?;
            let parties = u32::try_from(p[0])
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| region.bad_params("parties out of range"))?;
            Ok((parties, wait))
        })?;
        Self::join(shared, parties, wait)
    }

    /// Another member of the same barrier (a thread's own handle).
    pub fn handle(&self) -> Result<Barrier, BarrierError> {
        Self::join(self.shared.clone(), self.parties, self.wait)
    }

    /// The waits that make a generation.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Waits until `parties` waits have arrived, for up to `timeout`;
    /// returns this wait's arrival index (0 for the first, `parties` − 1
    /// for the last, who releases the others).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32, BarrierError> {
        let c = self.shared.ctrl();
        // SYNC POINT: barrier generation — Acquire pairs with the last
        // arrival's Release: what every party did before the last
        // generation passed is visible here.
        let s = c.state.load(Ordering::Acquire);
        if s & REASON_MASK != 0 {
            return Err(self.broken(s));
        }
        let g = generation(s);
        // Relaxed: read only to find who has not arrived; a member whose
        // arrival is missed this way is still alive to be seen.
        c.arrived[self.slot].store(g.wrapping_add(1), Ordering::Relaxed);
        // AcqRel: the arrivals form one chain, so the last one's Release
        // of the new generation carries everyone's writes.
        let idx = c.count.fetch_add(1, Ordering::AcqRel);
        if idx >= self.parties {
            self.break_with(g, CORRUPT, None);
            return Err(self.broken(c.state.load(Ordering::Acquire)));
        }
        if idx == self.parties - 1 {
            // Relaxed: published by the Release below to the next arrivals.
            c.count.store(0, Ordering::Relaxed);
            // SYNC POINT: barrier generation.
            return match c.state.compare_exchange(
                whole(g),
                whole(next(g)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if self.wait.parks() {
                        c.woken.notify(u32::MAX);
                    }
                    Ok(idx)
                }
                Err(now) => Err(self.broken(now)),
            };
        }
        let poll = || {
            // SYNC POINT: barrier generation.
            let now = c.state.load(Ordering::Acquire);
            if generation(now) != g {
                Some(Ok(idx))
            } else if now & REASON_MASK != 0 {
                Some(Err(self.broken(now)))
            } else {
                None
            }
        };
        let ctx = WaitCtx {
            wait: self.wait,
            notifier: &c.woken,
            timeout,
            dead_peer: || self.dead_before_arriving(g),
        };
        match block_until(ctx, poll) {
            Ok(r) => r,
            Err(WaitError::Timeout) if self.break_with(g, TIMED_OUT, None) => {
                Err(BarrierError::Timeout)
            }
            Err(WaitError::PeerGone(p)) if self.break_with(g, DIED, Some(p)) => {
                Err(BarrierError::PeerGone(p))
            }
            // The generation passed or broke just as we gave up.
            Err(_) => poll().unwrap_or_else(|| Err(self.broken(c.state.load(Ordering::Acquire)))),
        }
    }

    /// A member other than this one that died without arriving in
    /// generation `g`.
    fn dead_before_arriving(&self, g: u32) -> Option<PeerId> {
        let c = self.shared.ctrl();
        (0..MAX_MEMBERS)
            .filter(|&i| i != self.slot)
            .filter(|&i| c.arrived[i].load(Ordering::Relaxed) != g.wrapping_add(1))
            .find_map(|i| c.members[i].dead_holder())
    }

    /// Breaks generation `g` for `reason` if it is still whole; returns
    /// whether this call broke it.
    fn break_with(&self, g: u32, reason: u32, culprit: Option<PeerId>) -> bool {
        let c = self.shared.ctrl();
        if culprit.is_some() {
            c.culprit.set(culprit);
        }
        // SYNC POINT: barrier generation (the culprit goes with it).
        let broke = c
            .state
            .compare_exchange(
                whole(g),
                whole(g) | reason,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if broke && self.wait.parks() {
            c.woken.notify(u32::MAX);
        }
        broke
    }

    fn broken(&self, state: u32) -> BarrierError {
        BarrierError::Broken(match state & REASON_MASK {
            ABORTED => "it was aborted".into(),
            TIMED_OUT => "a waiter timed out".into(),
            DIED => match self.shared.ctrl().culprit.get() {
                Some(p) => format!("process {} died before arriving", p.pid),
                None => "a participant died before arriving".into(),
            },
            CORRUPT => "more waits arrived than it has parties (its words are corrupt)".into(),
            r => format!("its state word holds an unknown reason {r} (garbage)"),
        })
    }

    /// Breaks the barrier: every waiter, now and later, gets
    /// [`BarrierError::Broken`].
    pub fn abort(&self) {
        let c = self.shared.ctrl();
        // Relaxed: a guess, checked by the CAS in `break_with`.
        let mut s = c.state.load(Ordering::Relaxed);
        while s & REASON_MASK == 0 && !self.break_with(generation(s), ABORTED, None) {
            s = c.state.load(Ordering::Relaxed);
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        // Relaxed: a snapshot.
        self.shared.ctrl().state.load(Ordering::Relaxed) & REASON_MASK != 0
    }

    /// Waits arrived in this generation (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot.
        self.shared.ctrl().count.load(Ordering::Relaxed)
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        self.shared.ctrl().members[self.slot].release(self.me);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn generations_pass_with_every_index_once() {
        for w in Wait::ALL {
            let b = Barrier::on_heap(3, w);
            let counter = Arc::new(super::super::sync::AtomicU64::new(0));
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let (b, counter) = (b.handle().unwrap(), counter.clone());
                    std::thread::spawn(move || {
                        let mut seen = Vec::new();
                        for round in 0..200u64 {
                            counter.fetch_add(1, Ordering::Relaxed);
                            seen.push(b.wait(Some(Duration::from_secs(30))).unwrap());
                            // Every party counted in this generation, none
                            // of the next yet: exact at every generation.
                            assert!(counter.load(Ordering::Relaxed) >= 3 * (round + 1));
                            b.wait(Some(Duration::from_secs(30))).unwrap();
                            assert!(counter.load(Ordering::Relaxed) <= 3 * (round + 2));
                        }
                        seen
                    })
                })
                .collect();
            let seen: Vec<Vec<u32>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            for round in 0..200 {
                let mut idx: Vec<u32> = seen.iter().map(|s| s[round]).collect();
                idx.sort_unstable();
                assert_eq!(idx, [0, 1, 2], "{w}: generation {round}");
            }
        }
    }

    #[test]
    fn a_timeout_breaks_it_for_everyone_and_abort_too() {
        let b = Barrier::on_heap(3, Wait::SPIN_PARK);
        let other = b.handle().unwrap();
        let t = std::thread::spawn(move || other.wait(Some(Duration::from_secs(30))));
        assert!(matches!(
            b.wait(Some(Duration::from_millis(20))),
            Err(BarrierError::Timeout)
        ));
        let e = t.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("a waiter timed out"), "{e}");
        assert!(b.is_broken());
        assert!(matches!(b.wait(None), Err(BarrierError::Broken(_))));

        let b = Barrier::on_heap(2, Wait::PARK);
        let other = b.handle().unwrap();
        let t = std::thread::spawn(move || other.wait(None));
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        b.abort();
        let e = t.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("aborted"), "{e}");
    }

    #[test]
    fn a_member_that_died_before_arriving_breaks_it_and_is_named() {
        let b = Barrier::on_heap(2, Wait::PARK);
        let dead = PeerId {
            pid: PeerId::current().pid,
            start: 1,
        };
        b.shared.ctrl().members[MAX_MEMBERS - 1].set(Some(dead));
        assert!(
            matches!(b.wait(Some(Duration::from_secs(30))), Err(BarrierError::PeerGone(p)) if p == dead)
        );
        let e = b.wait(None).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("process {} died", dead.pid)),
            "{e}"
        );
    }

    #[test]
    fn handles_are_counted_and_given_back() {
        let b = Barrier::on_heap(1, Wait::SPIN);
        let hs: Vec<_> = (1..MAX_MEMBERS).map(|_| b.handle().unwrap()).collect();
        assert!(matches!(b.handle(), Err(BarrierError::Full)));
        drop(hs);
        assert_eq!(b.wait(None).unwrap(), 0, "one party: passes at once");
        b.handle().unwrap();
    }
}
