//! A process-shared counting semaphore on a futex, and `Lock` and `Event`
//! built on its control block, as in `multiprocessing`.
//!
//! The control block is a count and a [`Notifier`]. `acquire` takes a
//! permit with a CAS (count > 0 → count − 1, Acquire); `release` gives one
//! back (Release) and wakes one sleeper if any announced itself. A `Lock`
//! is one word instead: 0 when free, else its holder's identity (pid and
//! start time), taken by one CAS and given back by one store, so that no
//! moment exists when the lock is taken and nobody is named as holding it.
//! A waiter whose holder died learns who (`multiprocessing` would wait
//! forever) and may take the lock over from the dead. An `Event` uses the
//! count as its flag: 1 when set.

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

/// Why a semaphore, lock or event operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SemError {
    /// The timeout passed.
    #[error("timed out")]
    Timeout,
    /// A lock's holder died holding it.
    #[error("process {} died holding the lock", .0.pid)]
    PeerGone(PeerId),
    /// A lock owned by a thread (an `RLock`, a `Condition`'s) was released,
    /// waited on or notified by a thread that does not hold it.
    #[error("the lock is not held by this thread (release, wait and notify need it)")]
    NotOwner,
    /// A condition has as many waiters as it has room for.
    #[error("the condition already has {max} waiters")]
    TooManyWaiters {
        /// The room.
        max: usize,
    },
    /// `release` would raise the count above its bound.
    #[error("semaphore released too many times (its bound is {max})")]
    Overflow {
        /// The bound.
        max: u32,
    },
    /// The region could not be made or opened.
    #[cfg(not(loom))]
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl From<WaitError> for SemError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => SemError::Timeout,
            WaitError::PeerGone(p) => SemError::PeerGone(p),
        }
    }
}

/// The shared control block of a semaphore, lock or event.
#[repr(C)]
pub(crate) struct SemCtrl {
    /// Permits (semaphore, lock) or the flag (event).
    count: CachePadded<AtomicU32>,
    /// Where waiters sleep.
    released: CachePadded<Notifier>,
    /// A lock: 0 when free, else who holds it (unused otherwise).
    holder: PeerSlot,
}

impl SemCtrl {
    fn new(count: u32) -> Self {
        SemCtrl {
            count: CachePadded(AtomicU32::new(count)),
            released: CachePadded(Notifier::new()),
            holder: PeerSlot::new(),
        }
    }
}

/// The common handle: control block, bound and strategy.
#[derive(Clone)]
struct SemCore {
    shared: Arc<Shared<SemCtrl>>,
    max: u32,
    wait: Wait,
}

impl SemCore {
    fn heap(initial: u32, max: u32, wait: Wait) -> SemCore {
        SemCore {
            shared: Arc::new(Shared::heap(
                SemCtrl::new(initial),
                0,
                SlotLayout::NONE,
                &|_| 0,
            )),
            max,
            wait,
        }
    }

    #[cfg(not(loom))]
    fn create(
        name: &str,
        kind: Kind,
        initial: u32,
        max: u32,
        wait: Wait,
    ) -> Result<SemCore, SemError> {
        let w = wait.encode();
        let params = [u64::from(initial), u64::from(max), w[0], w[1], 0, 0];
        Ok(SemCore {
            shared: create_block(name, kind, SemCtrl::new(initial), params)?,
            max,
            wait,
        })
    }

    #[cfg(not(loom))]
    fn open(name: &str, kind: Kind) -> Result<SemCore, SemError> {
        let (shared, (max, wait)) = open_block(name, kind, |region| {
            let p = region.params();
            let wait = Wait::decode([p[2], p[3]])
                .ok_or_else(|| region.bad_params("unknown waiting strategy"))?;
            let max = u32::try_from(p[1]).map_err(|_| region.bad_params("bound overflows"))?;
            Ok((max, wait))
        })?;
        Ok(SemCore { shared, max, wait })
    }

    #[inline(always)]
    fn ctrl(&self) -> &SemCtrl {
        self.shared.ctrl()
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        let count = &self.ctrl().count;
        // Relaxed: a guess; the CAS below is what takes the permit.
        let mut c = count.load(Ordering::Relaxed);
        loop {
            if c == 0 {
                return false;
            }
            // SYNC POINT: permit — Acquire pairs with the Release in
            // `release`: what the releaser did before is visible to us.
            match count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        if self.try_acquire() {
            return Ok(());
        }
        let c = self.ctrl();
        let ctx = WaitCtx {
            wait: self.wait,
            notifier: &c.released,
            timeout,
            dead_peer: || None,
        };
        block_until(ctx, || self.try_acquire().then_some(()))?;
        Ok(())
    }

    #[inline]
    fn release(&self) -> Result<(), SemError> {
        let count = &self.ctrl().count;
        // Relaxed: a guess; the CAS below is what gives the permit back.
        let mut c = count.load(Ordering::Relaxed);
        loop {
            if c >= self.max {
                return Err(SemError::Overflow { max: self.max });
            }
            // SYNC POINT: permit.
            match count.compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if self.wait.parks() {
            self.ctrl().released.notify(1);
        }
        Ok(())
    }
}

/// A counting semaphore shared by processes, like `multiprocessing.Semaphore`
/// (or `BoundedSemaphore`, given a bound).
#[derive(Clone)]
pub struct Semaphore {
    core: SemCore,
}

impl Semaphore {
    /// A semaphore on the heap, for threads. `max` bounds the count
    /// (`u32::MAX` for no bound).
    pub fn on_heap(initial: u32, max: u32, wait: Wait) -> Semaphore {
        Semaphore {
            core: SemCore::heap(initial, max, wait),
        }
    }

    /// Creates a semaphore in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, initial: u32, max: u32, wait: Wait) -> Result<Semaphore, SemError> {
        Ok(Semaphore {
            core: SemCore::create(name, Kind::Semaphore, initial, max, wait)?,
        })
    }

    /// Opens the semaphore in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Semaphore, SemError> {
        Ok(Semaphore {
            core: SemCore::open(name, Kind::Semaphore)?,
        })
    }

    /// Takes a permit if one is free now.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.core.try_acquire()
    }

    /// Takes a permit, waiting up to `timeout` (`None`: forever).
    #[inline]
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        self.core.acquire(timeout)
    }

    /// Gives a permit back and wakes one waiter.
    #[inline]
    pub fn release(&self) -> Result<(), SemError> {
        self.core.release()
    }

    /// Free permits now.
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot.
        self.core.ctrl().count.load(Ordering::Relaxed)
    }
}

/// A lock shared by processes, like `multiprocessing.Lock`: not recursive;
/// a waiter whose holder died gets [`SemError::PeerGone`] naming it, and
/// may then take the lock over ([`Lock::take_over`]). The lock is its
/// holder word alone (the control block's count is not used).
#[derive(Clone)]
pub struct Lock {
    core: SemCore,
    me: PeerId,
}

/// Holds a [`Lock`]; releases it on drop.
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl Lock {
    /// A lock on the heap, for threads.
    pub fn on_heap(wait: Wait) -> Lock {
        Lock {
            core: SemCore::heap(0, 1, wait),
            me: PeerId::current(),
        }
    }

    /// Creates a lock in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, wait: Wait) -> Result<Lock, SemError> {
        Ok(Lock {
            core: SemCore::create(name, Kind::Lock, 0, 1, wait)?,
            me: PeerId::current(),
        })
    }

    /// Opens the lock in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Lock, SemError> {
        Ok(Lock {
            core: SemCore::open(name, Kind::Lock)?,
            me: PeerId::current(),
        })
    }

    /// Takes the lock if it is free now.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.core.ctrl().holder.take(self.me)
    }

    /// Takes the lock, waiting up to `timeout`. A holder that died holding
    /// it is [`SemError::PeerGone`].
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<(), SemError> {
        if self.try_acquire() {
            return Ok(());
        }
        let c = self.core.ctrl();
        let ctx = WaitCtx {
            wait: self.core.wait,
            notifier: &c.released,
            timeout,
            dead_peer: || c.holder.dead_holder(),
        };
        block_until(ctx, || self.try_acquire().then_some(()))?;
        Ok(())
    }

    /// Takes the lock from `dead`, the holder a [`SemError::PeerGone`]
    /// named, if it still holds it: what it protects may be half-updated,
    /// which the caller is now to mend. Returns whether it did (false:
    /// someone else took it over first, or `dead` was not the holder).
    pub fn take_over(&self, dead: PeerId) -> bool {
        !dead.is_alive() && self.core.ctrl().holder.take_over(dead, self.me)
    }

    /// Who holds the lock now, if anyone.
    pub fn holder(&self) -> Option<PeerId> {
        self.core.ctrl().holder.get()
    }

    /// Takes the lock and returns a guard that releases it.
    pub fn lock(&self, timeout: Option<Duration>) -> Result<LockGuard<'_>, SemError> {
        self.acquire(timeout)?;
        Ok(LockGuard { lock: self })
    }

    /// Releases the lock (which any process may do, as in
    /// `multiprocessing`); releasing a free lock does nothing.
    #[inline]
    pub fn release(&self) {
        let c = self.core.ctrl();
        if c.holder.hand_back().is_some() && self.core.wait.parks() {
            c.released.notify(1);
        }
    }

    /// Whether the lock is held now.
    pub fn is_locked(&self) -> bool {
        self.holder().is_some()
    }
}

/// An event shared by processes, like `multiprocessing.Event`.
#[derive(Clone)]
pub struct Event {
    core: SemCore,
}

impl Event {
    /// An event on the heap, for threads.
    pub fn on_heap(wait: Wait) -> Event {
        Event {
            core: SemCore::heap(0, 1, wait),
        }
    }

    /// Creates an event (not set) in a new region `name`.
    #[cfg(not(loom))]
    pub fn create(name: &str, wait: Wait) -> Result<Event, SemError> {
        Ok(Event {
            core: SemCore::create(name, Kind::Event, 0, 1, wait)?,
        })
    }

    /// Opens the event in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Event, SemError> {
        Ok(Event {
            core: SemCore::open(name, Kind::Event)?,
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let c = self.core.ctrl();
        // SYNC POINT: event — what the setter did before is visible to a
        // waiter that sees the flag with Acquire.
        if c.count.swap(1, Ordering::Release) == 0 && self.core.wait.parks() {
            c.released.notify(u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing.
        self.core.ctrl().count.store(0, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // SYNC POINT: event.
        self.core.ctrl().count.load(Ordering::Acquire) != 0
    }

    /// Waits up to `timeout` for the flag; returns whether it is set.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SemError> {
        let c = self.core.ctrl();
        let ctx = WaitCtx {
            wait: self.core.wait,
            notifier: &c.released,
            timeout,
            dead_peer: || None,
        };
        match block_until(ctx, || self.is_set().then_some(())) {
            Ok(()) => Ok(true),
            Err(WaitError::Timeout) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counting_and_bound() {
        let s = Semaphore::on_heap(2, 3, Wait::PARK);
        assert!(s.try_acquire() && s.try_acquire() && !s.try_acquire());
        assert!(matches!(
            s.acquire(Some(Duration::from_millis(5))),
            Err(SemError::Timeout)
        ));
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert!(matches!(s.release(), Err(SemError::Overflow { max: 3 })));
        assert_eq!(s.value(), 3);
    }

    #[test]
    fn lock_excludes_threads() {
        for w in Wait::ALL {
            let lock = Lock::on_heap(w);
            let counter = Arc::new(crate::shm::sync::AtomicU64::new(0));
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let (lock, counter) = (lock.clone(), counter.clone());
                    std::thread::spawn(move || {
                        for _ in 0..2000 {
                            let _g = lock.lock(Some(Duration::from_secs(30))).unwrap();
                            // A non-atomic read-modify-write, made safe by the lock.
                            let v = counter.load(crate::shm::sync::Ordering::Relaxed);
                            counter.store(v + 1, crate::shm::sync::Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(
                counter.load(crate::shm::sync::Ordering::Relaxed),
                6000,
                "{w}"
            );
            assert!(!lock.is_locked());
        }
    }

    #[test]
    fn dead_holder_is_reported() {
        let lock = Lock::on_heap(Wait::PARK);
        let dead = PeerId {
            pid: PeerId::current().pid,
            start: 1,
        };
        lock.core.ctrl().holder.set(Some(dead));
        assert!(!lock.try_acquire());
        assert!(
            matches!(lock.acquire(Some(Duration::from_secs(5))), Err(SemError::PeerGone(p)) if p == dead)
        );
        // Taken over from the dead, once; then it is ours to release.
        let alive = PeerId::current();
        assert!(!lock.take_over(alive), "a live holder is not taken over");
        assert!(lock.take_over(dead));
        assert_eq!(lock.holder(), Some(alive));
        assert!(!lock.take_over(dead), "taken over once");
        lock.release();
        assert!(!lock.is_locked());
        lock.release();
        assert!(lock.try_acquire(), "releasing a free lock leaves it free");
    }

    #[test]
    fn event_set_clear_wait() {
        let e = Event::on_heap(Wait::SPIN_PARK);
        assert!(!e.is_set());
        assert!(!e.wait(Some(Duration::from_millis(5))).unwrap());
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait(Some(Duration::from_secs(30))).unwrap());
        std::thread::sleep(Duration::from_millis(10));
        e.set();
        assert!(t.join().unwrap());
        assert!(e.is_set());
        e.clear();
        assert!(!e.is_set());
    }
}
