//! A re-entrant lock (`multiprocessing.RLock`) and a condition variable
//! with its lock (`multiprocessing.Condition`), shared by processes.
//!
//! Both rest on one owned lock: a holder word naming the process (taken
//! by one CAS, as [`Lock`](super::Lock)'s is, so that a holder that dies
//! is named and can be taken over), the holding thread's number within
//! that process, and how many times the holder has taken it. Only the
//! holder writes the last two, and clears the thread before it hands the
//! lock back, so no other thread ever reads its own number there.
//!
//! The condition gives each waiter a slot of its own: a state word it
//! sleeps on, the ticket it took (its place in line), and its process.
//! `wait` fills a slot while it holds the lock and only then lets go of
//! the lock; `notify` (which must hold the lock) marks the `n` oldest
//! waiting slots notified and wakes each on its own word. So a notify
//! wakes at most `n` waiters, in the order they came, a wake-up given to
//! one waiter cannot be taken by another (a notifier that waits at once
//! does not take back what it gave), and one that comes between a
//! waiter's letting go and its sleep is seen before it sleeps. A waiter
//! that times out takes the lock back and reads its slot under it:
//! notified, or not and it leaves. A waiter that dies while waiting keeps
//! its slot until a later waiter finds no free one and reclaims the dead
//! (one notify may go to it meanwhile: a waiter that gives a timeout never
//! hangs on that, and `multiprocessing`'s notifier would hang outright).

use std::sync::Arc;
use std::time::Duration;

use super::liveness::{PeerId, PeerSlot};
use super::mem::{Shared, SlotLayout};
#[cfg(not(loom))]
use super::mem::{create_block, open_block};
#[cfg(not(loom))]
use super::region::Kind;
use super::semaphore::SemError;
use super::sync::{AtomicU32, AtomicU64, CachePadded, Instant, Ordering, thread_token};
use super::wait::{Notifier, Wait, WaitCtx, WaitError, block_until};

/// The owned lock's shared words.
#[repr(C)]
pub(crate) struct OwnedCtrl {
    /// 0 when free, else the holding process.
    holder: PeerSlot,
    /// The holding thread's [`thread_token`]; 0 while the lock changes hands.
    thread: AtomicU64,
    /// How many times the holder has taken the lock.
    depth: AtomicU32,
    /// Where takers wait.
    released: CachePadded<Notifier>,
}

impl OwnedCtrl {
    fn new() -> Self {
        OwnedCtrl {
            holder: PeerSlot::new(),
            thread: AtomicU64::new(0),
            depth: AtomicU32::new(0),
            released: CachePadded(Notifier::new()),
        }
    }
}

/// One handle's view of an owned lock: the words, who "I" am, the strategy.
struct Owned<'a> {
    c: &'a OwnedCtrl,
    me: PeerId,
    wait: Wait,
}

impl Owned<'_> {
    /// Whether the calling thread of this process holds the lock.
    #[inline]
    fn is_mine(&self) -> bool {
        // Relaxed: only the holder writes `thread`, and a thread reads its
        // own number there only if it wrote it last (it holds the lock).
        self.c.holder.get() == Some(self.me)
            && self.c.thread.load(Ordering::Relaxed) == thread_token()
    }

    /// Takes the lock once more if this thread holds it, else if it is free.
    #[inline]
    fn try_acquire(&self) -> Result<bool, SemError> {
        if self.is_mine() {
            // Relaxed: only the holder touches the depth.
            let d = self.c.depth.load(Ordering::Relaxed);
            let d = d
                .checked_add(1)
                .ok_or(SemError::Overflow { max: u32::MAX })?;
            self.c.depth.store(d, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(self.c.holder.take(self.me) && {
            self.mark_held(1);
            true
        })
    }

    /// Records the calling thread as the holder, `depth` times over.
    #[inline]
    fn mark_held(&self, depth: u32) {
        // Relaxed: ordered for the next holder by the holder word's
        // Release hand-back, and read by others only to compare.
        self.c.thread.store(thread_token(), Ordering::Relaxed);
        self.c.depth.store(depth, Ordering::Relaxed);
    }

    fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        if self.try_acquire()? {
            return Ok(());
        }
        let ctx = WaitCtx {
            wait: self.wait,
            notifier: &self.c.released,
            timeout,
            dead_peer: || self.c.holder.dead_holder(),
        };
        block_until(ctx, || match self.try_acquire() {
            Ok(false) => None,
            other => Some(other),
        })??;
        Ok(())
    }

    /// Lets go of the lock `levels` times, or wholly with `None`; returns
    /// how many times it was held. Only the holding thread may.
    fn release(&self, levels: Option<u32>) -> Result<u32, SemError> {
        if !self.is_mine() {
            return Err(SemError::NotOwner);
        }
        // Relaxed: only the holder touches the depth. A depth of 0 while
        // held is garbage a hostile writer left: the lock is let go.
        let d = self.c.depth.load(Ordering::Relaxed).max(1);
        if let Some(n) = levels
            && n < d
        {
            self.c.depth.store(d - n, Ordering::Relaxed);
            return Ok(d);
        }
        self.c.depth.store(0, Ordering::Relaxed);
        self.c.thread.store(0, Ordering::Relaxed);
        if self.c.holder.hand_back().is_some() && self.wait.parks() {
            self.c.released.notify(1);
        }
        Ok(d)
    }

    fn take_over(&self, dead: PeerId) -> bool {
        let taken = !dead.is_alive() && self.c.holder.take_over(dead, self.me);
        if taken {
            self.mark_held(1);
        }
        taken
    }
}

/// A re-entrant lock shared by processes, like `multiprocessing.RLock`:
/// the thread holding it may take it again, and must let go as many
/// times; a release by any other thread or process is an error. A holder
/// that dies is named to the next taker, who may take it over.
#[derive(Clone)]
pub struct RLock {
    shared: Arc<Shared<OwnedCtrl>>,
    wait: Wait,
    me: PeerId,
}

/// Holds an [`RLock`] once; lets go of it on drop.
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl RLock {
    fn owned(&self) -> Owned<'_> {
        Owned {
            c: self.shared.ctrl(),
            me: self.me,
            wait: self.wait,
        }
    }

    /// A lock on the heap, for threads.
    pub fn on_heap(wait: Wait) -> RLock {
        RLock {
            shared: Arc::new(Shared::heap(OwnedCtrl::new(), 0, SlotLayout::NONE, &|_| 0)),
            wait,
            me: PeerId::current(),
        }
    }

    /// Creates a lock in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, wait: Wait) -> Result<RLock, SemError> {
        let w = wait.encode();
        Ok(RLock {
            shared: create_block(
                name,
                Kind::RLock,
                OwnedCtrl::new(),
                [w[0], w[1], 0, 0, 0, 0],
            )?,
            wait,
            me: PeerId::current(),
        })
    }

    /// Opens the lock in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<RLock, SemError> {
        let (shared, wait) = open_block(name, Kind::RLock, decode_wait)?;
        Ok(RLock {
            shared,
            wait,
            me: PeerId::current(),
        })
    }

    /// Takes the lock if this thread holds it or it is free now.
    pub fn try_acquire(&self) -> Result<bool, SemError> {
        self.owned().try_acquire()
    }

    /// Takes the lock (once more, if this thread holds it), waiting up to
    /// `timeout`. A holder that died holding it is [`SemError::PeerGone`].
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        self.owned().acquire(timeout)
    }

    /// Takes the lock and returns a guard that lets go of it once.
    pub fn lock(&self, timeout: Option<Duration>) -> Result<RLockGuard<'_>, SemError> {
        self.acquire(timeout)?;
        Ok(RLockGuard { lock: self })
    }

    /// Lets go of the lock once; it is free when let go of as many times as
    /// it was taken. [`SemError::NotOwner`] unless this thread holds it.
    pub fn release(&self) -> Result<(), SemError> {
        self.owned().release(Some(1)).map(|_| ())
    }

    /// Takes the lock from `dead`, the holder a [`SemError::PeerGone`]
    /// named, if it still holds it (once, whatever its depth was).
    pub fn take_over(&self, dead: PeerId) -> bool {
        self.owned().take_over(dead)
    }

    /// Who holds the lock now (the process), if anyone.
    pub fn holder(&self) -> Option<PeerId> {
        self.shared.ctrl().holder.get()
    }

    /// How many times the holder has taken it (0 when free).
    pub fn depth(&self) -> u32 {
        // Relaxed: a snapshot.
        self.shared.ctrl().depth.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
fn decode_wait(region: &super::region::Region) -> Result<Wait, super::region::RegionError> {
    let p = region.params();
    Wait::decode([p[0], p[1]]).ok_or_else(|| region.bad_params("unknown waiting strategy"))
}

/// Waiters a condition can have at once.
#[cfg(not(loom))]
pub const MAX_WAITERS: usize = 64;
/// Under loom: few, so that models stay small.
#[cfg(loom)]
pub const MAX_WAITERS: usize = 2;

/// A waiter slot's states.
const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

/// One waiter's place.
#[repr(C)]
pub(crate) struct WaiterSlot {
    /// The waiting process (for reclaiming a dead one's slot).
    owner: PeerSlot,
    /// [`FREE`], [`WAITING`] or [`NOTIFIED`]; set under the lock.
    state: AtomicU32,
    /// Its place in line (wrapping); set under the lock.
    ticket: AtomicU32,
    /// Where it sleeps.
    woken: Notifier,
}

/// A condition's shared words: its lock, then its waiters.
#[repr(C)]
pub(crate) struct CondCtrl {
    lock: OwnedCtrl,
    /// The next ticket; under the lock.
    next_ticket: AtomicU32,
    /// Slots ever used (the ones `notify` looks at); under the lock.
    used: AtomicU32,
    waiters: [WaiterSlot; MAX_WAITERS],
}

/// A condition variable with its own lock, shared by processes, like
/// `multiprocessing.Condition()` (whose lock is an `RLock`): `wait` and
/// `notify` need the lock held by the calling thread; `wait` lets go of it
/// however many times it was taken and takes it back as many.
#[derive(Clone)]
pub struct Condition {
    shared: Arc<Shared<CondCtrl>>,
    wait: Wait,
    me: PeerId,
}

impl Condition {
    fn owned(&self) -> Owned<'_> {
        Owned {
            c: &self.shared.ctrl().lock,
            me: self.me,
            wait: self.wait,
        }
    }

    fn new_ctrl() -> CondCtrl {
        CondCtrl {
            lock: OwnedCtrl::new(),
            next_ticket: AtomicU32::new(0),
            used: AtomicU32::new(0),
            waiters: std::array::from_fn(|_| WaiterSlot {
                owner: PeerSlot::new(),
                state: AtomicU32::new(FREE),
                ticket: AtomicU32::new(0),
                woken: Notifier::new(),
            }),
        }
    }

    /// A condition on the heap, for threads.
    pub fn on_heap(wait: Wait) -> Condition {
        Condition {
            shared: Arc::new(Shared::heap(Self::new_ctrl(), 0, SlotLayout::NONE, &|_| 0)),
            wait,
            me: PeerId::current(),
        }
    }

    /// Creates a condition in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, wait: Wait) -> Result<Condition, SemError> {
        let w = wait.encode();
        Ok(Condition {
            shared: create_block(
                name,
                Kind::Condition,
                Self::new_ctrl(),
                [w[0], w[1], 0, 0, 0, 0],
            )?,
            wait,
            me: PeerId::current(),
        })
    }

    /// Opens the condition in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Condition, SemError> {
        let (shared, wait) = open_block(name, Kind::Condition, decode_wait)?;
        Ok(Condition {
            shared,
            wait,
            me: PeerId::current(),
        })
    }

    /// Takes the condition's lock (once more, if this thread holds it).
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        self.owned().acquire(timeout)
    }

    /// Lets go of the condition's lock once.
    pub fn release(&self) -> Result<(), SemError> {
        self.owned().release(Some(1)).map(|_| ())
    }

    /// Takes the lock from `dead`, the holder a [`SemError::PeerGone`] named.
    pub fn take_over(&self, dead: PeerId) -> bool {
        self.owned().take_over(dead)
    }

    /// Slots to look at: those ever used, bounded (the word may be garbage).
    fn used(&self) -> usize {
        // Relaxed: under the lock.
        (self.shared.ctrl().used.load(Ordering::Relaxed) as usize).min(MAX_WAITERS)
    }

    /// A free slot for this waiter, under the lock: one never used, a
    /// free one, or one whose waiter died.
    fn claim_slot(&self) -> Result<&WaiterSlot, SemError> {
        let c = self.shared.ctrl();
        let used = self.used();
        let free = (0..used)
            .find(|&i| c.waiters[i].owner.claim_free(self.me))
            .or_else(|| {
                (used < MAX_WAITERS && c.waiters[used].owner.claim_free(self.me)).then(|| {
                    // Relaxed: under the lock.
                    c.used.store(used as u32 + 1, Ordering::Relaxed);
                    used
                })
            })
            .or_else(|| (0..used).find(|&i| c.waiters[i].owner.claim(self.me).is_ok()))
            .ok_or(SemError::TooManyWaiters { max: MAX_WAITERS })?;
        Ok(&c.waiters[free])
    }

    /// Waits to be notified, for up to `timeout`: lets go of the lock,
    /// sleeps, and takes the lock back (waiting for it as long as it
    /// takes) before it returns. Returns whether it was notified (false:
    /// timed out). Needs the lock held by this thread
    /// ([`SemError::NotOwner`]). A process that died holding the lock is
    /// [`SemError::PeerGone`], and the lock is then not held.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SemError> {
        let owned = self.owned();
        if !owned.is_mine() {
            return Err(SemError::NotOwner);
        }
        let c = self.shared.ctrl();
        let slot = self.claim_slot()?;
        // Relaxed: under the lock, whose hand-back publishes them to `notify`.
        let ticket = c.next_ticket.load(Ordering::Relaxed);
        c.next_ticket
            .store(ticket.wrapping_add(1), Ordering::Relaxed);
        slot.ticket.store(ticket, Ordering::Relaxed);
        slot.state.store(WAITING, Ordering::Relaxed);
        let depth = owned.release(None)?;
        let ctx = WaitCtx {
            wait: self.wait,
            notifier: &slot.woken,
            timeout,
            dead_peer: || c.lock.holder.dead_holder(),
        };
        // SYNC POINT: condition notified — Acquire pairs with the Release
        // in `notify`.
        let woke = block_until(ctx, || {
            (slot.state.load(Ordering::Acquire) == NOTIFIED).then_some(())
        });
        let leave = || {
            slot.state.store(FREE, Ordering::Relaxed);
            slot.owner.release(self.me);
        };
        let reacquired = match woke {
            // The lock's holder died: nobody can notify, and the lock is
            // not ours to take back until someone takes it over. The slot
            // is given up without the lock: only a notifier holding it
            // looks at it, and nobody can hold it now.
            Err(WaitError::PeerGone(p)) => Err(SemError::PeerGone(p)),
            _ => owned.acquire(None),
        };
        if let Err(e) = reacquired {
            leave();
            return Err(e);
        }
        owned.mark_held(depth);
        // Under the lock again: the state cannot change now.
        let notified = slot.state.load(Ordering::Relaxed) == NOTIFIED;
        leave();
        Ok(notified)
    }

    /// Waits until `ready()` holds, for up to `timeout` in all; returns its
    /// last value. `ready` is called with the lock held.
    pub fn wait_for(
        &self,
        mut ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SemError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if ready() {
                return Ok(true);
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    Some(d.saturating_duration_since(now))
                }
            };
            self.wait(left)?;
        }
    }

    /// Wakes up to `n` waiters, the longest waiting first. Needs the lock
    /// held by this thread ([`SemError::NotOwner`]); the woken take it back
    /// after the notifier lets go of it. Returns how many it woke.
    pub fn notify(&self, n: u32) -> Result<u32, SemError> {
        if !self.owned().is_mine() {
            return Err(SemError::NotOwner);
        }
        let c = self.shared.ctrl();
        let used = self.used();
        // Relaxed: under the lock.
        let next = c.next_ticket.load(Ordering::Relaxed);
        let mut woke = 0;
        while woke < n {
            // The oldest waiting slot: the longest wait behind the next ticket.
            let oldest = (0..used)
                .filter(|&i| c.waiters[i].state.load(Ordering::Relaxed) == WAITING)
                .max_by_key(|&i| next.wrapping_sub(c.waiters[i].ticket.load(Ordering::Relaxed)));
            let Some(i) = oldest else { break };
            let slot = &c.waiters[i];
            // SYNC POINT: condition notified.
            slot.state.store(NOTIFIED, Ordering::Release);
            if self.wait.parks() {
                slot.woken.notify(1);
            }
            woke += 1;
        }
        Ok(woke)
    }

    /// Wakes every waiter; returns how many.
    pub fn notify_all(&self) -> Result<u32, SemError> {
        self.notify(u32::MAX)
    }

    /// Who holds the condition's lock now (the process), if anyone.
    pub fn holder(&self) -> Option<PeerId> {
        self.shared.ctrl().lock.holder.get()
    }

    /// Waiters waiting and not yet notified (a snapshot).
    pub fn waiting(&self) -> u32 {
        let c = self.shared.ctrl();
        (0..self.used())
            .filter(|&i| c.waiters[i].state.load(Ordering::Relaxed) == WAITING)
            .count() as u32
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_rlock_is_re_entrant_for_its_thread_only() {
        let l = RLock::on_heap(Wait::PARK);
        assert!(matches!(l.release(), Err(SemError::NotOwner)));
        l.acquire(None).unwrap();
        l.acquire(None).unwrap();
        assert_eq!(l.depth(), 2);
        let other = l.clone();
        let t = std::thread::spawn(move || {
            // Another thread of the same process neither takes nor releases it.
            assert!(!other.try_acquire().unwrap());
            assert!(matches!(other.release(), Err(SemError::NotOwner)));
            assert!(matches!(
                other.acquire(Some(Duration::from_millis(5))),
                Err(SemError::Timeout)
            ));
            // Once let go of twice, it is free for this thread.
            other.acquire(Some(Duration::from_secs(30))).unwrap();
            other.release().unwrap();
        });
        std::thread::sleep(Duration::from_millis(20));
        l.release().unwrap();
        assert_eq!(l.holder(), Some(PeerId::current()), "held once more");
        l.release().unwrap();
        t.join().unwrap();
        assert_eq!(l.holder(), None);
        assert!(matches!(l.release(), Err(SemError::NotOwner)));
    }

    #[test]
    fn an_rlock_holder_that_died_is_named_and_taken_over_once() {
        let l = RLock::on_heap(Wait::PARK);
        let dead = PeerId {
            pid: PeerId::current().pid,
            start: 1,
        };
        l.shared.ctrl().holder.set(Some(dead));
        l.shared.ctrl().depth.store(3, Ordering::Relaxed);
        assert!(
            matches!(l.acquire(Some(Duration::from_secs(5))), Err(SemError::PeerGone(p)) if p == dead)
        );
        assert!(l.take_over(dead));
        assert!(!l.take_over(dead));
        assert_eq!(
            l.depth(),
            1,
            "taken over once, whatever the dead one's depth"
        );
        l.release().unwrap();
        assert_eq!(l.holder(), None);
    }

    #[test]
    fn a_condition_needs_its_lock_and_times_out_without_a_notify() {
        let c = Condition::on_heap(Wait::SPIN_PARK);
        assert!(matches!(c.wait(None), Err(SemError::NotOwner)));
        assert!(matches!(c.notify(1), Err(SemError::NotOwner)));
        c.acquire(None).unwrap();
        c.acquire(None).unwrap();
        assert!(!c.wait(Some(Duration::from_millis(5))).unwrap());
        // Held again as many times as before the wait.
        c.release().unwrap();
        c.release().unwrap();
        assert!(matches!(c.release(), Err(SemError::NotOwner)));
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn notify_wakes_at_most_n_the_oldest_first_and_no_one_takes_anothers_wake_up() {
        let c = Condition::on_heap(Wait::PARK);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..3)
            .map(|k| {
                let (mine, order) = (c.clone(), order.clone());
                let h = std::thread::spawn(move || {
                    mine.acquire(None).unwrap();
                    let notified = mine.wait(Some(Duration::from_secs(30))).unwrap();
                    order.lock().unwrap().push(k);
                    mine.release().unwrap();
                    notified
                });
                // One after the other, so that their places in line are known.
                while c.waiting() <= k {
                    std::thread::yield_now();
                }
                h
            })
            .collect();
        c.acquire(None).unwrap();
        assert_eq!(c.notify(1).unwrap(), 1);
        // The notifier waits at once: the wake-up it gave is not its own.
        assert!(!c.wait(Some(Duration::from_millis(50))).unwrap());
        c.release().unwrap();
        while order.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(*order.lock().unwrap(), [0], "one woken, the first in line");
        c.acquire(None).unwrap();
        assert_eq!(c.notify_all().unwrap(), 2);
        c.release().unwrap();
        for h in waiters {
            assert!(h.join().unwrap());
        }
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn a_condition_hands_items_through_one_slot() {
        for w in Wait::ALL {
            let c = Condition::on_heap(w);
            let slot = Arc::new(AtomicU64::new(0));
            let (c2, slot2) = (c.clone(), slot.clone());
            let consumer = std::thread::spawn(move || {
                for i in 1..=2000u64 {
                    c2.acquire(None).unwrap();
                    let got = c2
                        .wait_for(
                            || slot2.load(Ordering::Relaxed) != 0,
                            Some(Duration::from_secs(30)),
                        )
                        .unwrap();
                    assert!(got, "{w}: item {i} never came");
                    assert_eq!(slot2.swap(0, Ordering::Relaxed), i, "{w}");
                    c2.notify(1).unwrap();
                    c2.release().unwrap();
                }
            });
            for i in 1..=2000u64 {
                c.acquire(None).unwrap();
                assert!(
                    c.wait_for(
                        || slot.load(Ordering::Relaxed) == 0,
                        Some(Duration::from_secs(30))
                    )
                    .unwrap(),
                    "{w}: the slot was never emptied"
                );
                slot.store(i, Ordering::Relaxed);
                c.notify(1).unwrap();
                c.release().unwrap();
            }
            consumer.join().unwrap();
        }
    }
}
