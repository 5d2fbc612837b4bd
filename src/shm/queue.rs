//! A bounded multi-producer multi-consumer queue of byte items, for any
//! number of processes: the shared-memory counterpart of
//! `multiprocessing.Queue`.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue: `capacity` slots
//! (a power of two), each stamped with a sequence number. A producer at
//! position `pos` may fill slot `pos % capacity` when its stamp equals `pos`;
//! it claims the position by advancing `tail` with a CAS, copies the item in
//! and stamps the slot `pos + 1` (Release). A consumer at `pos` may take the
//! slot when its stamp equals `pos + 1`; it claims the position by advancing
//! `head`, copies the item out and stamps the slot `pos + capacity`, which is
//! what the producer one lap later waits for. Stamps are 64-bit and never wrap
//! in practice.
//!
//! Each slot holds one item of at most `slot_size` bytes (its stamp, its
//! length and its bytes share cache lines). Larger items are refused with
//! [`QueueError::TooLarge`].
//!
//! The queue is not lock-free in the strict sense: a producer that dies
//! between its claim and its stamp leaves a hole consumers cannot pass. That
//! is why every handle registers its process (at most [`MAX_PEERS`] live
//! ones: a handle beyond them is refused, a dead process's registration is
//! taken over), and a blocked call reports [`QueueError::PeerGone`] when a
//! death blocks it: every registered process of the other side has died,
//! or the slot it waits on was claimed by a process that died before
//! finishing it. A dead consumer does not stop a producer while live
//! consumers drain the queue.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use super::liveness::{PeerId, PeerSlot};
#[cfg(not(loom))]
use super::mem::Backing;
use super::mem::{Shared, SlotLayout, round_up};
#[cfg(not(loom))]
use super::region::{Kind, Region, RegionError};
use super::sync::{AtomicU32, AtomicU64, CachePadded, Ordering};
use super::wait::{Notifier, Wait, WaitCtx, WaitError, block_until};

/// How many processes (handles) the queue can track for liveness.
pub const MAX_PEERS: usize = 64;
/// Bytes before a slot's payload: the stamp (8), the length (4) and a tag (4).
const SLOT_HEADER: usize = 16;
/// The largest slot.
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// The largest total data size of one queue.
pub const MAX_QUEUE_BYTES: usize = 1 << 36;

const ROLE_PUT: u32 = 1;
const ROLE_GET: u32 = 2;
/// A joinable queue's putter between raising the count of unfinished
/// items and its item entering the queue: if it dies there, `join` must
/// not wait for that item.
const ROLE_PUTTING: u32 = 4;

/// The queue's shared control block.
#[repr(C)]
pub(crate) struct QueueCtrl {
    /// Next position to fill. Advanced by producers with CAS.
    tail: CachePadded<AtomicU64>,
    /// Next position to take. Advanced by consumers with CAS.
    head: CachePadded<AtomicU64>,
    /// Where consumers sleep until an item is stamped.
    not_empty: CachePadded<Notifier>,
    /// Where producers sleep until a slot is freed.
    not_full: CachePadded<Notifier>,
    /// Set (Release) by `close`: no more puts.
    closed: CachePadded<AtomicU32>,
    /// Processes that use the queue, for liveness checks.
    peers: [PeerSlot; MAX_PEERS],
    /// What each registered process does (`ROLE_PUT`, `ROLE_GET` bits).
    roles: [AtomicU32; MAX_PEERS],
    /// The last dead process whose registration was given to another
    /// (when every slot was taken), and its roles: a hole it left stays
    /// explained.
    buried: PeerSlot,
    buried_roles: AtomicU32,
}

impl QueueCtrl {
    fn new() -> Self {
        QueueCtrl {
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            not_empty: CachePadded(Notifier::new()),
            not_full: CachePadded(Notifier::new()),
            closed: CachePadded(AtomicU32::new(0)),
            peers: std::array::from_fn(|_| PeerSlot::new()),
            roles: std::array::from_fn(|_| AtomicU32::new(0)),
            buried: PeerSlot::new(),
            buried_roles: AtomicU32::new(0),
        }
    }

    /// A registered process with a role in `roles` that died without
    /// leaving (or the last such one whose registration was reclaimed).
    fn dead_peer(&self, roles: u32) -> Option<PeerId> {
        self.registered(roles)
            .find_map(PeerSlot::dead_holder)
            .or_else(|| {
                // Relaxed: as in `registered`.
                (self.buried_roles.load(Ordering::Relaxed) & roles != 0)
                    .then(|| self.buried.dead_holder())
                    .flatten()
            })
    }

    /// Whether a registered process with a role in `roles` is alive.
    fn live_peer(&self, roles: u32) -> bool {
        self.registered(roles)
            .any(|p| p.get().is_some() && p.dead_holder().is_none())
    }

    /// The registration slots of processes with a role in `roles`.
    fn registered(&self, roles: u32) -> impl Iterator<Item = &PeerSlot> {
        self.peers
            .iter()
            .zip(&self.roles)
            // Relaxed: a stale role only delays the report by one check.
            .filter(move |(_, r)| r.load(Ordering::Relaxed) & roles != 0)
            .map(|(p, _)| p)
    }

    /// The dead process a waiter stuck at `pos` is waiting on, if any: a
    /// dead process of the other side (`roles`) blocks it only when no
    /// process of that side is left alive, or when the slot it waits on
    /// was claimed and is never finished (`claimed`: the claim is still
    /// open), the same claim seen at the check before (`seen`; checks are
    /// milliseconds apart, a live claim lasts well under one).
    fn blocking_death(&self, roles: u32, claimed: Option<u64>, seen: &Cell<u64>) -> Option<PeerId> {
        let dead = self.dead_peer(roles)?;
        if !self.live_peer(roles) {
            return Some(dead);
        }
        let stuck = match claimed {
            Some(pos) => seen.replace(pos) == pos,
            None => {
                seen.set(u64::MAX);
                false
            }
        };
        stuck.then_some(dead)
    }
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No free slot now (`_nowait` calls). The item was borrowed; the caller
    /// still has it.
    #[error("queue is full")]
    Full,
    /// No item now (`_nowait` calls).
    #[error("queue is empty")]
    Empty,
    /// The item does not fit in a slot.
    #[error(
        "item of {len} bytes exceeds this queue's slot size of {max} bytes: create the queue with larger slots"
    )]
    TooLarge {
        /// The item's length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The queue was closed: no more puts; a get finds it drained.
    #[error("the queue is closed")]
    Closed,
    /// A blocking call's timeout passed.
    #[error("timed out waiting on the queue")]
    Timeout,
    /// A process on the other side died without leaving.
    #[error("process {} died while using the queue", .0.pid)]
    PeerGone(PeerId),
    /// Shared memory holds something no correct peer writes.
    #[error("queue memory is corrupt: {0}")]
    Corrupt(&'static str),
    /// The parameters are impossible.
    #[error(
        "queue of {capacity} slots of {slot_size} bytes: capacity must be a power of two ≥ 2, slots at most 1 GiB, the whole at most 64 GiB"
    )]
    BadSize {
        /// Slots asked for.
        capacity: usize,
        /// Bytes per slot asked for.
        slot_size: usize,
    },
    /// `task_done` was called more times than items were put.
    #[error("task_done() called more times than items were put")]
    TooManyTaskDone,
    /// More processes use the queue than it can watch over; a joinable put
    /// from this one is refused, since its death would go unseen.
    #[error(
        "{MAX_PEERS} live processes already use this queue: it cannot watch over another, so this handle is refused (a process that died unseen would hang the others); use fewer processes or more queues"
    )]
    Untracked,
    /// The region could not be made or opened.
    #[cfg(not(loom))]
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl From<WaitError> for QueueError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => QueueError::Timeout,
            WaitError::PeerGone(p) => QueueError::PeerGone(p),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct QueueCfg {
    capacity: u64,
    slot_size: usize,
    stride: usize,
    wait: Wait,
}

impl QueueCfg {
    fn new(capacity: usize, slot_size: usize, wait: Wait) -> Result<QueueCfg, QueueError> {
        // The slot's size is checked before any arithmetic on it: a size
        // near `usize::MAX` would overflow the sum below.
        let stride = (slot_size <= MAX_SLOT_SIZE).then(|| round_up(SLOT_HEADER + slot_size, 64));
        let ok = capacity.is_power_of_two()
            && capacity >= 2
            && stride
                .and_then(|s| capacity.checked_mul(s))
                .is_some_and(|b| b <= MAX_QUEUE_BYTES);
        let (true, Some(stride)) = (ok, stride) else {
            return Err(QueueError::BadSize {
                capacity,
                slot_size,
            });
        };
        Ok(QueueCfg {
            capacity: capacity as u64,
            slot_size,
            stride,
            wait,
        })
    }

    fn data_len(&self) -> usize {
        self.capacity as usize * self.stride
    }

    fn slots(&self) -> SlotLayout {
        SlotLayout {
            count: self.capacity as usize,
            stride: self.stride,
        }
    }
}

/// A handle on a queue. Every process (or thread) uses its own handle;
/// a handle is `Send` but not `Sync`. [`Clone`] makes another handle.
pub struct Queue {
    shared: Arc<Shared<QueueCtrl>>,
    cfg: QueueCfg,
    me: PeerId,
    /// Our registration slot, once we have put or got.
    slot: Cell<Option<usize>>,
    /// The roles registered in it.
    roles: Cell<u32>,
}

impl Queue {
    /// A queue on the heap, for threads of one process.
    pub fn on_heap(capacity: usize, slot_size: usize, wait: Wait) -> Result<Queue, QueueError> {
        let cfg = QueueCfg::new(capacity, slot_size, wait)?;
        let shared = Shared::heap(QueueCtrl::new(), cfg.data_len(), cfg.slots(), &|i| i as u64);
        Ok(Self::from_parts(Arc::new(shared), cfg))
    }

    /// Creates a queue of `capacity` slots of `slot_size` bytes in a new
    /// region `name`; dropping the last handle made from this one unlinks it.
    #[cfg(not(loom))]
    pub fn create(
        name: &str,
        capacity: usize,
        slot_size: usize,
        wait: Wait,
    ) -> Result<Queue, QueueError> {
        let cfg = QueueCfg::new(capacity, slot_size, wait)?;
        let w = wait.encode();
        let params = [cfg.capacity, slot_size as u64, w[0], w[1], 0, 0];
        let body = Shared::<QueueCtrl>::footprint(cfg.data_len());
        let region = Region::create(name, Kind::Queue, body, params)?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the body is exactly one footprint, new and unpublished.
        let shared = unsafe {
            Shared::place(
                backing.clone(),
                0,
                Some(QueueCtrl::new()),
                cfg.data_len(),
                cfg.slots(),
                Some(&|i| i as u64),
            )
        };
        if let Some(r) = backing.region() {
            r.publish();
        }
        Ok(Self::from_parts(Arc::new(shared), cfg))
    }

    /// Opens the queue in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Queue, QueueError> {
        let region = Region::open(name, Kind::Queue)?;
        let p = region.params();
        let bad = |why: &str| QueueError::Region(region.bad_params(why));
        let wait = Wait::decode([p[2], p[3]]).ok_or_else(|| bad("unknown waiting strategy"))?;
        let (Ok(capacity), Ok(slot_size)) = (usize::try_from(p[0]), usize::try_from(p[1])) else {
            return Err(bad("sizes overflow"));
        };
        let cfg = QueueCfg::new(capacity, slot_size, wait).map_err(|e| bad(&e.to_string()))?;
        if region.body_len() < Shared::<QueueCtrl>::footprint(cfg.data_len()) {
            return Err(bad("body smaller than its sizes need"));
        }
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: published, and large enough for this configuration (checked).
        let shared = unsafe { Shared::place(backing, 0, None, cfg.data_len(), cfg.slots(), None) };
        Ok(Self::from_parts(Arc::new(shared), cfg))
    }

    fn from_parts(shared: Arc<Shared<QueueCtrl>>, cfg: QueueCfg) -> Queue {
        Queue {
            shared,
            cfg,
            me: PeerId::current(),
            slot: Cell::new(None),
            roles: Cell::new(0),
        }
    }

    /// Slots in the queue.
    pub fn capacity(&self) -> usize {
        self.cfg.capacity as usize
    }

    /// The largest item.
    pub fn slot_size(&self) -> usize {
        self.cfg.slot_size
    }

    /// The waiting strategy.
    pub fn wait(&self) -> Wait {
        self.cfg.wait
    }

    /// Items in the queue now (approximate while others put or get).
    pub fn len(&self) -> usize {
        let c = self.ctrl();
        // Relaxed: a snapshot, documented as approximate.
        let t = c.tail.load(Ordering::Relaxed);
        let h = c.head.load(Ordering::Relaxed);
        t.saturating_sub(h).min(self.cfg.capacity) as usize
    }

    /// Whether [`Queue::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    fn ctrl(&self) -> &QueueCtrl {
        self.shared.ctrl()
    }

    /// Records that this process puts or gets, so the other side can tell
    /// if it dies. Takes a free slot, or else the slot of a process that
    /// died (remembered as `buried`, so a hole it left stays explained);
    /// with neither, refuses the handle ([`QueueError::Untracked`]).
    #[cold]
    fn register(&self, role: u32) -> Result<(), QueueError> {
        let c = self.ctrl();
        let idx = match self.slot.get() {
            Some(i) => i,
            None => {
                let i = match c.peers.iter().position(|p| p.claim_free(self.me)) {
                    Some(i) => i,
                    None => self.reclaim().ok_or(QueueError::Untracked)?,
                };
                self.slot.set(Some(i));
                i
            }
        };
        self.roles.set(self.roles.get() | role);
        // Relaxed: read only by liveness checks, which tolerate staleness.
        c.roles[idx].fetch_or(role, Ordering::Relaxed);
        Ok(())
    }

    /// Takes over the slot of a registered process that died, burying it.
    #[cold]
    fn reclaim(&self) -> Option<usize> {
        let c = self.ctrl();
        c.peers.iter().enumerate().find_map(|(i, p)| {
            let dead = p.dead_holder()?;
            // Relaxed: as in `register`.
            let roles = c.roles[i].load(Ordering::Relaxed);
            if !p.take_over(dead, self.me) {
                return None;
            }
            c.buried.set(Some(dead));
            c.buried_roles.store(roles, Ordering::Relaxed);
            c.roles[i].store(0, Ordering::Relaxed);
            Some(i)
        })
    }

    /// A process that got from the queue, or died in the middle of a
    /// joinable put ([`Queue::mark_putting`]), without leaving.
    pub(crate) fn dead_getter_or_putting(&self) -> Option<PeerId> {
        self.ctrl().dead_peer(ROLE_GET | ROLE_PUTTING)
    }

    /// Says (`on`) or unsays that this process is inside a joinable put,
    /// registering it as a putter first. Returns false when the handle
    /// could not be registered (more processes than slots), so its death
    /// would go unseen.
    pub(crate) fn mark_putting(&self, on: bool) -> bool {
        if self.roles.get() & ROLE_PUT == 0 && self.register(ROLE_PUT).is_err() {
            return false;
        }
        let Some(idx) = self.slot.get() else {
            return false;
        };
        let r = &self.ctrl().roles[idx];
        // Relaxed: the count raised after this (with Release) orders it;
        // clearing it publishes nothing.
        if on {
            r.fetch_or(ROLE_PUTTING, Ordering::Relaxed);
        } else {
            r.fetch_and(!ROLE_PUTTING, Ordering::Relaxed);
        }
        true
    }

    /// Puts `item` if a slot is free now.
    #[inline]
    pub fn put_nowait(&self, item: &[u8]) -> Result<(), QueueError> {
        if self.roles.get() & ROLE_PUT == 0 {
            self.register(ROLE_PUT)?;
        }
        self.try_put(item)
    }

    #[inline]
    fn try_put(&self, item: &[u8]) -> Result<(), QueueError> {
        self.try_put_tagged(item, 0)
    }

    /// Puts with a tag stored beside the length (for fragmenting links).
    #[inline]
    fn try_put_tagged(&self, item: &[u8], tag: u32) -> Result<(), QueueError> {
        let cfg = &self.cfg;
        if item.len() > cfg.slot_size {
            return Err(QueueError::TooLarge {
                len: item.len(),
                max: cfg.slot_size,
            });
        }
        let c = self.ctrl();
        // Relaxed: `close` is advisory for racing puts (see `close`).
        if c.closed.load(Ordering::Relaxed) != 0 {
            return Err(QueueError::Closed);
        }
        let mask = cfg.capacity - 1;
        // Relaxed: the position is only a guess; the slot stamp (Acquire)
        // below is what orders the data.
        let mut pos = c.tail.load(Ordering::Relaxed);
        loop {
            // SYNC POINT: slot freed — pairs with the consumer's Release
            // stamp `pos + capacity`; its read of the old item is done.
            let stamp = self
                .shared
                .words
                .get((pos & mask) as usize)
                .load(Ordering::Acquire);
            let diff = stamp.wrapping_sub(pos) as i64;
            if diff == 0 {
                // Relaxed: the CAS only decides who owns position `pos`; the
                // data is ordered by the stamps.
                match c.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                // The slot still holds the item from one lap ago.
                return Err(QueueError::Full);
            } else {
                // Another producer took `pos`; having seen its stamp (Acquire)
                // we must also see its advance of `tail`.
                let t = c.tail.load(Ordering::Relaxed);
                if t == pos {
                    return Err(QueueError::Corrupt(
                        "slot stamped ahead of the queue's tail",
                    ));
                }
                pos = t;
            }
        }
        let i = (pos & mask) as usize;
        let base = i * cfg.stride;
        // SAFETY: we own slot `i` between the claim and the stamp below; the
        // range is inside the slot (item.len() <= slot_size checked above).
        unsafe {
            self.shared.data.write_u32(base + 8, item.len() as u32);
            self.shared.data.write_u32(base + 12, tag);
            self.shared.data.write(base + SLOT_HEADER, item);
        }
        // SYNC POINT: item published — the length and bytes written above
        // become visible to the consumer that loads this stamp with Acquire.
        self.shared
            .words
            .get(i)
            .store(pos.wrapping_add(1), Ordering::Release);
        if cfg.wait.parks() {
            c.not_empty.notify(1);
        }
        Ok(())
    }

    /// Puts `item`, waiting up to `timeout` for a free slot (`None`: until
    /// one frees, the queue closes, or a consumer process dies).
    #[inline]
    pub fn put(&self, item: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        self.put_tagged(item, 0, timeout)
    }

    /// [`Queue::put`] with a tag the getter receives (see `get_tagged`).
    #[inline]
    pub(crate) fn put_tagged(
        &self,
        item: &[u8],
        tag: u32,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        if self.roles.get() & ROLE_PUT == 0 {
            self.register(ROLE_PUT)?;
        }
        match self.try_put_tagged(item, tag) {
            Err(QueueError::Full) => self.put_waiting(item, tag, timeout),
            other => other,
        }
    }

    /// [`Queue::put_tagged`] once the queue was found full: the wait, out
    /// of the caller's loop (as the ring's).
    #[inline(never)]
    fn put_waiting(
        &self,
        item: &[u8],
        tag: u32,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        let c = self.ctrl();
        let seen = Cell::new(u64::MAX);
        let ctx = WaitCtx {
            wait: self.cfg.wait,
            notifier: &c.not_full,
            timeout,
            dead_peer: || c.blocking_death(ROLE_GET, self.unfinished_get(), &seen),
        };
        block_until(ctx, || match self.try_put_tagged(item, tag) {
            Err(QueueError::Full) => None,
            other => Some(other),
        })?
    }

    /// Takes the oldest item into `buf` (resized to fit) if there is one now.
    #[inline]
    pub fn get_nowait(&self, buf: &mut Vec<u8>) -> Result<usize, QueueError> {
        if self.roles.get() & ROLE_GET == 0 {
            self.register(ROLE_GET)?;
        }
        self.try_get(buf)
    }

    #[inline]
    fn try_get(&self, buf: &mut Vec<u8>) -> Result<usize, QueueError> {
        self.try_get_tagged(buf).map(|(len, _)| len)
    }

    #[inline]
    fn try_get_tagged(&self, buf: &mut Vec<u8>) -> Result<(usize, u32), QueueError> {
        self.try_get_with(|item, tag| {
            buf.clear();
            buf.extend_from_slice(item);
            (item.len(), tag)
        })
    }

    /// Takes the oldest item if there is one now and hands it to `f` with
    /// its tag where it lies, in the slot (held until `f` returns).
    #[inline]
    fn try_get_with<R>(&self, f: impl FnOnce(&[u8], u32) -> R) -> Result<R, QueueError> {
        let cfg = &self.cfg;
        let c = self.ctrl();
        let mask = cfg.capacity - 1;
        // Relaxed: a guess, as in `try_put`.
        let mut pos = c.head.load(Ordering::Relaxed);
        loop {
            // SYNC POINT: item published (see `try_put`).
            let stamp = self
                .shared
                .words
                .get((pos & mask) as usize)
                .load(Ordering::Acquire);
            let diff = stamp.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                // Relaxed: as for the producers' CAS.
                match c.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                return Err(self.empty_or_closed(pos));
            } else {
                let h = c.head.load(Ordering::Relaxed);
                if h == pos {
                    return Err(QueueError::Corrupt(
                        "slot stamped ahead of the queue's head",
                    ));
                }
                pos = h;
            }
        }
        let i = (pos & mask) as usize;
        let base = i * cfg.stride;
        // SAFETY: we own slot `i` between the claim and the stamp below, and
        // its contents were published by the stamp we loaded with Acquire.
        let (len, tag) = unsafe {
            (
                self.shared.data.read_u32(base + 8) as usize,
                self.shared.data.read_u32(base + 12),
            )
        };
        let result = if len > cfg.slot_size {
            Err(QueueError::Corrupt("item length exceeds the slot size"))
        } else {
            // SAFETY: as above; `len <= slot_size` keeps it inside the slot.
            Ok(unsafe {
                self.shared
                    .data
                    .with_slice(base + SLOT_HEADER, len, |item| f(item, tag))
            })
        };
        // SYNC POINT: slot freed (see `try_put`).
        self.shared
            .words
            .get(i)
            .store(pos.wrapping_add(cfg.capacity), Ordering::Release);
        if cfg.wait.parks() {
            c.not_full.notify(1);
        }
        result
    }

    /// The position a getter waits on when a putter claimed it and has not
    /// stamped it yet (`None` when nothing is claimed there).
    #[cold]
    fn unfinished_put(&self) -> Option<u64> {
        let c = self.ctrl();
        // Relaxed: a look for liveness checks, repeated before it counts.
        let head = c.head.load(Ordering::Relaxed);
        let tail = c.tail.load(Ordering::Relaxed);
        (tail > head && self.stamp_at(head) != head.wrapping_add(1)).then_some(head)
    }

    /// The position a putter waits on when the getter that claimed its
    /// slot a lap before has not freed it yet (`None` when none has).
    #[cold]
    fn unfinished_get(&self) -> Option<u64> {
        let c = self.ctrl();
        // Relaxed: as above.
        let tail = c.tail.load(Ordering::Relaxed);
        let head = c.head.load(Ordering::Relaxed);
        let last_lap = tail.wrapping_sub(self.cfg.capacity);
        (head > last_lap && self.stamp_at(tail) != tail).then_some(tail)
    }

    /// The stamp of the slot of position `pos`, for liveness checks
    /// (Relaxed: a look, repeated before it counts).
    #[cold]
    fn stamp_at(&self, pos: u64) -> u64 {
        self.shared
            .words
            .get((pos & (self.cfg.capacity - 1)) as usize)
            .load(Ordering::Relaxed)
    }

    /// `Empty`, or `Closed` once the queue is closed and drained.
    #[cold]
    fn empty_or_closed(&self, head: u64) -> QueueError {
        let c = self.ctrl();
        // SYNC POINT: close — Acquire pairs with the Release in `close`.
        if c.closed.load(Ordering::Acquire) != 0 && c.tail.load(Ordering::Acquire) <= head {
            QueueError::Closed
        } else {
            QueueError::Empty
        }
    }

    /// Takes the oldest item into `buf`, waiting up to `timeout` (`None`:
    /// until an item comes, the queue is closed and drained, or a producer
    /// process dies).
    #[inline]
    pub fn get(&self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<usize, QueueError> {
        self.get_tagged(buf, timeout).map(|(len, _)| len)
    }

    /// [`Queue::get`] that also returns the item's tag.
    #[inline]
    pub(crate) fn get_tagged(
        &self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<(usize, u32), QueueError> {
        self.get_with(timeout, |item, tag| {
            buf.clear();
            buf.extend_from_slice(item);
            (item.len(), tag)
        })
    }

    /// Takes the oldest item, waiting up to `timeout` as [`Queue::get`],
    /// and hands it to `f` with its tag where it lies, in the slot (no
    /// copy out; the slot is freed when `f` returns). A putter rewrites a
    /// slot only after it is freed, but a hostile process that maps the
    /// queue could write under `f`: for items from a peer you do not
    /// trust, use [`Queue::get`], which copies once.
    #[inline]
    pub(crate) fn get_with<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8], u32) -> R,
    ) -> Result<R, QueueError> {
        if self.roles.get() & ROLE_GET == 0 {
            self.register(ROLE_GET)?;
        }
        // `f` is called once: by the look here or by the wait's.
        let mut f = Some(f);
        match self.try_get_with(|item, tag| (f.take().expect("called once"))(item, tag)) {
            Err(QueueError::Empty) => {}
            other => return other,
        }
        self.get_waiting(timeout, &mut |item, tag| {
            (f.take().expect("called once"))(item, tag)
        })
    }

    /// [`Queue::get_with`] once the queue was found empty: the wait, out
    /// of the caller's loop (as the ring's).
    #[inline(never)]
    fn get_waiting<R>(
        &self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(&[u8], u32) -> R,
    ) -> Result<R, QueueError> {
        let c = self.ctrl();
        let seen = Cell::new(u64::MAX);
        let ctx = WaitCtx {
            wait: self.cfg.wait,
            notifier: &c.not_empty,
            timeout,
            dead_peer: || c.blocking_death(ROLE_PUT, self.unfinished_put(), &seen),
        };
        block_until(ctx, || match self.try_get_with(&mut *f) {
            Err(QueueError::Empty) => None,
            other => Some(other),
        })?
    }

    /// Closes the queue for everyone: later puts fail with `Closed`, and gets
    /// drain what is there, then fail with `Closed`. Call it once producers
    /// are done; a put racing with it may land after consumers saw the end.
    pub fn close(&self) {
        let c = self.ctrl();
        // SYNC POINT: close.
        c.closed.store(1, Ordering::Release);
        c.not_empty.notify(u32::MAX);
        c.not_full.notify(u32::MAX);
    }

    /// Test support: stamps the next slot as filled with a length no
    /// correct producer writes (beyond the slot if `oversized`, else one
    /// that reads as a fragment whose rest never comes).
    #[doc(hidden)]
    pub fn inject_garbage(&self, oversized: bool) {
        let c = self.ctrl();
        let pos = c.tail.fetch_add(1, Ordering::AcqRel);
        let i = (pos & (self.cfg.capacity - 1)) as usize;
        let base = i * self.cfg.stride;
        let len = if oversized { u32::MAX - 1 } else { 0 };
        // SAFETY: slot `i` is ours between the claim above and the stamp
        // below (as in `try_put`), and the header is inside the slot.
        unsafe {
            self.shared.data.write_u32(base + 8, len);
            self.shared
                .data
                .write_u32(base + 12, if oversized { 0 } else { 1 });
        }
        self.shared
            .words
            .get(i)
            .store(pos.wrapping_add(1), Ordering::Release);
        c.not_empty.notify(u32::MAX);
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.ctrl().closed.load(Ordering::Acquire) != 0
    }
}

impl Clone for Queue {
    /// Another handle on the same queue, with its own registration.
    fn clone(&self) -> Queue {
        Self::from_parts(self.shared.clone(), self.cfg)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(i) = self.slot.get() {
            let c = self.ctrl();
            // Relaxed: the slot release below is Release.
            c.roles[i].store(0, Ordering::Relaxed);
            c.peers[i].release(self.me);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_empty_and_sizes() {
        let q = Queue::on_heap(4, 16, Wait::SPIN).unwrap();
        let mut buf = Vec::new();
        assert!(matches!(q.get_nowait(&mut buf), Err(QueueError::Empty)));
        for i in 0..4u8 {
            q.put_nowait(&[i; 3]).unwrap();
        }
        assert!(matches!(q.put_nowait(b"x"), Err(QueueError::Full)));
        assert_eq!(q.len(), 4);
        for i in 0..4u8 {
            assert_eq!(q.get_nowait(&mut buf).unwrap(), 3);
            assert_eq!(buf, [i; 3]);
        }
        assert!(matches!(
            q.put_nowait(&[0; 17]),
            Err(QueueError::TooLarge { len: 17, max: 16 })
        ));
        q.put_nowait(&[]).unwrap();
        assert_eq!(q.get_nowait(&mut buf).unwrap(), 0);
        assert!(matches!(
            Queue::on_heap(3, 8, Wait::SPIN),
            Err(QueueError::BadSize { .. })
        ));
    }

    #[test]
    fn close_drains_then_reports_closed() {
        let q = Queue::on_heap(8, 8, Wait::PARK).unwrap();
        q.put(b"1", None).unwrap();
        q.close();
        assert!(matches!(q.put(b"2", None), Err(QueueError::Closed)));
        let mut buf = Vec::new();
        q.get(&mut buf, None).unwrap();
        assert_eq!(buf, b"1");
        assert!(matches!(q.get(&mut buf, None), Err(QueueError::Closed)));
    }

    #[test]
    fn timeouts() {
        for w in Wait::ALL {
            let q = Queue::on_heap(2, 8, w).unwrap();
            let mut buf = Vec::new();
            let t = Some(Duration::from_millis(5));
            assert!(matches!(q.get(&mut buf, t), Err(QueueError::Timeout)));
            q.put(b"a", t).unwrap();
            q.put(b"b", t).unwrap();
            assert!(matches!(q.put(b"c", t), Err(QueueError::Timeout)));
        }
    }

    #[test]
    fn threads_mpmc_nothing_lost_or_duplicated() {
        for w in [Wait::SPIN_YIELD, Wait::SPIN_PARK, Wait::PARK] {
            let q = Queue::on_heap(16, 8, w).unwrap();
            let (producers, consumers, per) = (3u64, 3, 5000u64);
            let mut hs = Vec::new();
            for p in 0..producers {
                let q = q.clone();
                hs.push(std::thread::spawn(move || {
                    for i in 0..per {
                        q.put(&(p * per + i).to_le_bytes(), Some(Duration::from_secs(30)))
                            .unwrap();
                    }
                    Vec::new()
                }));
            }
            for _ in 0..consumers {
                let q = q.clone();
                hs.push(std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = Vec::new();
                    loop {
                        match q.get(&mut buf, Some(Duration::from_secs(30))) {
                            Ok(_) => got.push(u64::from_le_bytes(buf[..8].try_into().unwrap())),
                            Err(QueueError::Closed) => return got,
                            Err(e) => panic!("{w}: {e}"),
                        }
                    }
                }));
            }
            let mut all = Vec::new();
            let mut hs = hs.into_iter();
            for h in hs.by_ref().take(producers as usize) {
                h.join().unwrap();
            }
            q.close();
            for h in hs {
                all.extend(h.join().unwrap());
            }
            all.sort_unstable();
            assert_eq!(all, (0..producers * per).collect::<Vec<_>>(), "{w}");
        }
    }

    #[test]
    fn corrupt_stamps_and_lengths_are_errors() {
        let q = Queue::on_heap(4, 8, Wait::SPIN).unwrap();
        let mut buf = Vec::new();
        q.put_nowait(b"abc").unwrap();
        // SAFETY: test only; no other thread touches the queue.
        unsafe { q.shared.data.write_u32(8, 1 << 30) };
        assert!(matches!(
            q.get_nowait(&mut buf),
            Err(QueueError::Corrupt(_))
        ));
        q.shared.words.get(1).store(1_000_000, Ordering::Release);
        assert!(matches!(
            q.get_nowait(&mut buf),
            Err(QueueError::Corrupt(_))
        ));
    }

    /// A process of `roles` that died, as the queue's registrations see
    /// it: this process's pid with another start time.
    fn ghost(q: &Queue, slot: usize, roles: u32) -> PeerId {
        let me = PeerId::current();
        let ghost = PeerId {
            pid: me.pid,
            start: me.start + 1,
        };
        q.ctrl().peers[slot].set(Some(ghost));
        q.ctrl().roles[slot].store(roles, Ordering::Relaxed);
        ghost
    }

    #[test]
    fn a_slot_size_near_the_top_of_usize_is_refused_not_overflowed() {
        for slot in [usize::MAX, usize::MAX - 8, MAX_SLOT_SIZE + 1] {
            assert!(
                matches!(
                    Queue::on_heap(4, slot, Wait::SPIN),
                    Err(QueueError::BadSize { .. })
                ),
                "{slot}"
            );
        }
    }

    #[test]
    fn only_the_death_that_blocks_a_waiter_is_reported() {
        let t = Some(Duration::from_millis(50));
        let q = Queue::on_heap(2, 8, Wait::SPIN_PARK).unwrap();
        let dead_getter = ghost(&q, 60, ROLE_GET);
        let dead_putter = ghost(&q, 61, ROLE_PUT);
        let getter = q.clone();
        let mut buf = Vec::new();
        assert!(matches!(
            getter.get_nowait(&mut buf),
            Err(QueueError::Empty)
        ));
        // A live getter is left: a full queue waits for it.
        q.put(b"1", None).unwrap();
        q.put(b"2", None).unwrap();
        assert!(matches!(q.put(b"3", t), Err(QueueError::Timeout)));
        // A live putter is left: an empty queue waits for it.
        getter.get(&mut buf, None).unwrap();
        getter.get(&mut buf, None).unwrap();
        assert!(matches!(getter.get(&mut buf, t), Err(QueueError::Timeout)));
        // A putter that claimed a slot and died leaves a hole nobody
        // fills: that death blocks the getter.
        q.ctrl().tail.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(
            getter.get(&mut buf, t),
            Err(QueueError::PeerGone(p)) if p == dead_putter
        ));
        // No live getter left: the dead one is what a full queue waits on.
        drop(getter);
        let q = Queue::on_heap(2, 8, Wait::SPIN_PARK).unwrap();
        let dead_getter2 = ghost(&q, 60, ROLE_GET);
        assert_eq!(dead_getter2, dead_getter);
        q.put(b"1", None).unwrap();
        q.put(b"2", None).unwrap();
        assert!(matches!(
            q.put(b"3", t),
            Err(QueueError::PeerGone(p)) if p == dead_getter
        ));
    }

    #[test]
    fn dead_registrations_are_reclaimed_and_a_handle_that_cannot_be_watched_is_refused() {
        let q = Queue::on_heap(4, 8, Wait::SPIN).unwrap();
        let mut ghosts = Vec::new();
        for i in 0..MAX_PEERS {
            ghosts.push(ghost(&q, i, ROLE_PUT));
        }
        // Every slot was held by a dead process: one is taken over.
        q.put(b"x", None).unwrap();
        assert_eq!(q.ctrl().buried.get(), Some(ghosts[0]));
        // Every slot held by a live process: a new handle is refused.
        for p in &q.ctrl().peers {
            p.set(Some(PeerId::current()));
        }
        let other = q.clone();
        let mut buf = Vec::new();
        assert!(matches!(
            other.get_nowait(&mut buf),
            Err(QueueError::Untracked)
        ));
        assert!(matches!(other.put(b"y", None), Err(QueueError::Untracked)));
        assert!(QueueError::Untracked.to_string().contains("refused"));
    }
}
