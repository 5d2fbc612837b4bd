//! A single-producer single-consumer ring of variable-length frames.
//!
//! The ring is `capacity` bytes (a power of two) plus a control block. Both
//! sides count bytes with monotonic 64-bit positions — `tail` (bytes ever
//! committed, written only by the producer) and `head` (bytes ever released,
//! written only by the consumer) — on separate cache lines; a position's
//! offset in the ring is `pos & (capacity - 1)`. Each side keeps a private
//! copy of the other's position and reloads it only when that copy says the
//! ring is full (producer) or empty (consumer), so in a steady stream each
//! side touches the other's cache line once per batch, not once per frame.
//!
//! A frame is an 8-byte header (`len: u32`, `tag: u32`, little-endian) and
//! `len` bytes, padded to 8. Frames never wrap: when a frame does not fit
//! between its offset and the end of the ring, the producer writes a pad
//! marker (`len == u32::MAX`) there and starts the frame at offset 0. That
//! keeps every frame contiguous, so the zero-copy API hands out one slice:
//! [`Producer::claim`] → fill → [`WriteGrant::commit`], and
//! [`Consumer::read`] → use → drop the [`ReadGrant`].
//!
//! The largest frame is `capacity / 2 - 8` bytes: a frame that size and its
//! worst-case pad always fit in an empty ring. Larger messages are the pipe's
//! and the transports' job (they fragment); asking the ring gives
//! [`RingError::TooLarge`].
//!
//! Everything read from shared memory is checked before use (positions
//! against the capacity, lengths against the limit and the published tail),
//! so a corrupt or hostile peer gives [`RingError::Corrupt`], never an
//! out-of-bounds access.

use std::marker::PhantomData;
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

/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 8;
/// The smallest capacity a ring may have.
pub const MIN_CAPACITY: usize = 32;
/// The largest capacity a ring may have (1 TiB).
pub const MAX_CAPACITY: usize = 1 << 40;
/// The `len` of a pad marker.
const PAD: u32 = u32::MAX;

/// The ring's shared control block.
#[repr(C)]
pub(crate) struct RingCtrl {
    /// Bytes ever committed. Written only by the producer (Release); read by
    /// the consumer (Acquire) when its copy says the ring is empty.
    tail: CachePadded<AtomicU64>,
    /// Bytes ever released. Written only by the consumer (Release); read by
    /// the producer (Acquire) when its copy says the ring is full.
    head: CachePadded<AtomicU64>,
    /// Where the consumer sleeps (parking strategies) until a frame arrives.
    readable: CachePadded<Notifier>,
    /// Where the producer sleeps (parking strategies) until space frees up.
    writable: CachePadded<Notifier>,
    /// Who holds each end, and whether it closed.
    ends: CachePadded<Ends>,
}

#[repr(C)]
struct Ends {
    producer: PeerSlot,
    consumer: PeerSlot,
    /// Set (Release) when the producer is dropped: no more frames.
    producer_closed: AtomicU32,
    /// Set (Release) when the consumer is dropped: frames are not read.
    consumer_closed: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RingCtrl>() == 5 * 128);

impl RingCtrl {
    fn new() -> Self {
        RingCtrl {
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            readable: CachePadded(Notifier::new()),
            writable: CachePadded(Notifier::new()),
            ends: CachePadded(Ends {
                producer: PeerSlot::new(),
                consumer: PeerSlot::new(),
                producer_closed: AtomicU32::new(0),
                consumer_closed: AtomicU32::new(0),
            }),
        }
    }
}

/// Why a ring operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// No room now (`try_` calls only). The payload was borrowed, so the
    /// caller still has it.
    #[error("ring is full")]
    Full,
    /// Nothing to read now (`try_` calls only).
    #[error("ring is empty")]
    Empty,
    /// The frame is larger than the ring can hold in one piece.
    #[error(
        "frame of {len} bytes exceeds this ring's limit of {max} bytes (half its capacity less the 8-byte header): fragment it, or create the ring larger"
    )]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// The other end closed: for a consumer, every frame was read (end of
    /// stream); for a producer, nobody will read what is sent.
    #[error("the other end closed the ring")]
    Closed,
    /// A blocking call's timeout passed.
    #[error("timed out waiting on the ring")]
    Timeout,
    /// The other end's process died without closing.
    #[error("peer process {} died without closing its end of the ring", .0.pid)]
    PeerGone(PeerId),
    /// Shared memory holds something no correct peer writes.
    #[error("ring memory is corrupt: {0}")]
    Corrupt(&'static str),
    /// The end is held by another live handle.
    #[error("the {role} end of this ring is already held by process {}", .holder.pid)]
    RoleTaken {
        /// `producer` or `consumer`.
        role: &'static str,
        /// Who holds it.
        holder: PeerId,
    },
    /// The capacity is not a power of two in range.
    #[error("ring capacity {0} must be a power of two from 32 bytes to 1 TiB")]
    BadCapacity(usize),
    /// The region could not be made or opened.
    #[cfg(not(loom))]
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl From<WaitError> for RingError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => RingError::Timeout,
            WaitError::PeerGone(p) => RingError::PeerGone(p),
        }
    }
}

/// A ring's fixed parameters, kept privately by every handle (never re-read
/// from shared memory, so a peer cannot change them under us).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingCfg {
    cap: u64,
    wait: Wait,
}

impl RingCfg {
    pub(crate) fn new(capacity: usize, wait: Wait) -> Result<RingCfg, RingError> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(RingError::BadCapacity(capacity));
        }
        Ok(RingCfg {
            cap: capacity as u64,
            wait,
        })
    }

    #[inline(always)]
    fn mask(&self) -> u64 {
        self.cap - 1
    }

    /// The largest frame payload.
    #[inline(always)]
    pub(crate) fn max_payload(&self) -> usize {
        self.cap as usize / 2 - FRAME_HEADER
    }

    /// Bytes of shared memory one ring needs.
    pub(crate) fn footprint(&self) -> usize {
        Shared::<RingCtrl>::footprint(self.cap as usize)
    }

    /// Region parameters that record this configuration.
    #[cfg(not(loom))]
    pub(crate) fn to_params(self) -> [u64; 6] {
        let w = self.wait.encode();
        [self.cap, w[0], w[1], 0, 0, 0]
    }

    /// Reads and checks a configuration recorded by [`RingCfg::to_params`].
    #[cfg(not(loom))]
    pub(crate) fn from_region(region: &Region, rings: usize) -> Result<RingCfg, RingError> {
        let p = region.params();
        let wait = Wait::decode([p[1], p[2]])
            .ok_or_else(|| region.bad_params(format!("unknown waiting strategy code {}", p[1])))?;
        let cap = usize::try_from(p[0]).map_err(|_| region.bad_params("capacity overflows"))?;
        let cfg = RingCfg::new(cap, wait)
            .map_err(|e| RingError::Region(region.bad_params(e.to_string())))?;
        if region.body_len() < rings * cfg.footprint() {
            return Err(region
                .bad_params("body smaller than its capacity needs")
                .into());
        }
        Ok(cfg)
    }
}

/// The shared part and the configuration, as every handle holds them.
#[derive(Clone)]
pub(crate) struct RingRef {
    shared: Arc<Shared<RingCtrl>>,
    cfg: RingCfg,
}

impl RingRef {
    /// A ring on the heap.
    pub(crate) fn heap(cfg: RingCfg) -> RingRef {
        RingRef {
            shared: Arc::new(Shared::heap(
                RingCtrl::new(),
                cfg.cap as usize,
                SlotLayout::NONE,
                &|_| 0,
            )),
            cfg,
        }
    }

    /// A ring placed at `offset` in `backing`, initialised if `init`.
    ///
    /// # Safety
    /// As for `Shared::place`: `offset + cfg.footprint()` fits, and when not
    /// `init` a ring with this configuration was initialised there.
    #[cfg(not(loom))]
    pub(crate) unsafe fn place(
        backing: Arc<Backing>,
        offset: usize,
        cfg: RingCfg,
        init: bool,
    ) -> RingRef {
        let ctrl = init.then(RingCtrl::new);
        RingRef {
            // SAFETY: forwarded contract.
            shared: Arc::new(unsafe {
                Shared::place(
                    backing,
                    offset,
                    ctrl,
                    cfg.cap as usize,
                    SlotLayout::NONE,
                    None,
                )
            }),
            cfg,
        }
    }

    fn ctrl(&self) -> &RingCtrl {
        self.shared.ctrl()
    }

    /// Whether positions read from shared memory can be a ring's: both on
    /// a frame boundary (multiples of 8) and at most a capacity apart, the
    /// tail ahead (positions wrap past `u64::MAX`, so the distance is a
    /// wrapping difference). Anything else was written by a hostile or
    /// broken peer, and attaching over it would write or read outside the
    /// ring.
    fn check_positions(&self, tail: u64, head: u64) -> Result<(), RingError> {
        if !tail.is_multiple_of(8) || !head.is_multiple_of(8) {
            return Err(RingError::Corrupt(
                "a ring position is not on a frame boundary",
            ));
        }
        if tail.wrapping_sub(head) > self.cfg.cap {
            return Err(RingError::Corrupt(
                "the ring's positions are further apart than it holds",
            ));
        }
        Ok(())
    }

    /// Attaches as the producer.
    pub(crate) fn producer(&self) -> Result<Producer, RingError> {
        let me = PeerId::current();
        self.ctrl()
            .ends
            .producer
            .claim(me)
            .map_err(|holder| RingError::RoleTaken {
                role: "producer",
                holder,
            })?;
        // A new producer reopens the stream a previous one may have closed.
        // Relaxed: only the closed flag's own value matters to readers.
        self.ctrl().ends.producer_closed.store(0, Ordering::Relaxed);
        // Acquire: see the positions a previous producer or consumer left.
        let tail = self.ctrl().tail.load(Ordering::Acquire);
        let head = self.ctrl().head.load(Ordering::Acquire);
        if let Err(e) = self.check_positions(tail, head) {
            self.ctrl().ends.producer.release(me);
            return Err(e);
        }
        Ok(Producer {
            ring: self.clone(),
            tail,
            head_cache: head,
            me,
            _not_sync: PhantomData,
        })
    }

    /// Attaches as the consumer.
    pub(crate) fn consumer(&self) -> Result<Consumer, RingError> {
        let me = PeerId::current();
        self.ctrl()
            .ends
            .consumer
            .claim(me)
            .map_err(|holder| RingError::RoleTaken {
                role: "consumer",
                holder,
            })?;
        // Relaxed: as for the producer's flag.
        self.ctrl().ends.consumer_closed.store(0, Ordering::Relaxed);
        let head = self.ctrl().head.load(Ordering::Acquire);
        let tail = self.ctrl().tail.load(Ordering::Acquire);
        if let Err(e) = self.check_positions(tail, head) {
            self.ctrl().ends.consumer.release(me);
            return Err(e);
        }
        Ok(Consumer {
            ring: self.clone(),
            st: ConsState {
                head,
                tail_cache: head,
                last: 0,
            },
            me,
            _not_sync: PhantomData,
        })
    }
}

/// A ring: create or open it, then attach as producer or consumer.
///
/// ```
/// use ipcbench::shm::{Ring, Wait};
/// let ring = Ring::on_heap(4096, Wait::SPIN).unwrap();
/// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
/// tx.send(b"hello", None).unwrap();
/// let mut buf = Vec::new();
/// rx.recv(&mut buf, None).unwrap();
/// assert_eq!(buf, b"hello");
/// ```
pub struct Ring {
    ring: RingRef,
}

impl Ring {
    /// A ring of `capacity` bytes on the heap, for threads of one process.
    pub fn on_heap(capacity: usize, wait: Wait) -> Result<Ring, RingError> {
        Ok(Ring {
            ring: RingRef::heap(RingCfg::new(capacity, wait)?),
        })
    }

    /// Creates a ring of `capacity` bytes in a new region `name`. Dropping
    /// the last handle made from this one unlinks the name.
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: usize, wait: Wait) -> Result<Ring, RingError> {
        let cfg = RingCfg::new(capacity, wait)?;
        let region = Region::create(name, Kind::Ring, cfg.footprint(), cfg.to_params())?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the region's body is exactly one footprint and new.
        let ring = unsafe { RingRef::place(backing.clone(), 0, cfg, true) };
        if let Some(r) = backing.region() {
            r.publish();
        }
        Ok(Ring { ring })
    }

    /// Opens the ring in region `name`, made by [`Ring::create`] in any process.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Ring, RingError> {
        let region = Region::open(name, Kind::Ring)?;
        let cfg = RingCfg::from_region(&region, 1)?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the region is published (open checks it) and its body
        // holds one ring of this configuration (checked by `from_region`).
        let ring = unsafe { RingRef::place(backing, 0, cfg, false) };
        Ok(Ring { ring })
    }

    /// Attaches as the producer; fails if a live handle already is.
    pub fn producer(&self) -> Result<Producer, RingError> {
        self.ring.producer()
    }

    /// Attaches as the consumer; fails if a live handle already is.
    pub fn consumer(&self) -> Result<Consumer, RingError> {
        self.ring.consumer()
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.cfg.cap as usize
    }

    /// The largest frame payload.
    pub fn max_payload(&self) -> usize {
        self.ring.cfg.max_payload()
    }

    /// The waiting strategy both ends use.
    pub fn wait(&self) -> Wait {
        self.ring.cfg.wait
    }

    /// How many sides are counted asleep waiting for a frame and for room
    /// (diagnostics and tests).
    #[doc(hidden)]
    pub fn sleepers(&self) -> (u32, u32) {
        let c = self.ring.ctrl();
        (c.readable.sleepers(), c.writable.sleepers())
    }

    /// Test support: publishes a frame header no correct producer writes,
    /// as a hostile peer with access to the memory could — a length beyond
    /// the ring's limit (`oversized`), or a plausible length that runs past
    /// the published tail. It does so as the producer: the role is taken
    /// first (so it is refused while a live producer holds it, and never
    /// races with one), and the handle is returned, holding the stream open
    /// mid-frame until it is dropped.
    #[doc(hidden)]
    pub fn inject_garbage(&self, oversized: bool) -> Result<Producer, RingError> {
        self.ring.inject_garbage(oversized)
    }
}

impl RingRef {
    pub(crate) fn inject_garbage(&self, oversized: bool) -> Result<Producer, RingError> {
        let p = self.producer()?;
        let off = (p.tail & self.cfg.mask()) as usize;
        let len = if oversized {
            u32::MAX - 1
        } else {
            self.cfg.max_payload() as u32
        };
        // SAFETY: the header at the tail is in bounds (the producer's tail
        // was checked to be on a frame boundary when it attached), and only
        // the producer, which we are, writes there.
        unsafe {
            self.shared.data.write_u32(off, len);
            self.shared.data.write_u32(off + 4, 0);
        }
        let ctrl = self.ctrl();
        ctrl.tail
            .store(p.tail.wrapping_add(FRAME_HEADER as u64), Ordering::Release);
        ctrl.readable.notify(u32::MAX);
        Ok(p)
    }
}

/// Where a reserved frame goes.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    /// Offset of the frame header.
    frame_off: usize,
    /// Offset of a pad marker to write first, if the frame wraps.
    pad_at: Option<usize>,
    /// Bytes reserved for the payload.
    len: usize,
    /// The tail after committing the full reservation.
    new_tail: u64,
}

/// The writing end. `Send` (it can move to another thread) but not `Sync`:
/// its private position is not shared.
pub struct Producer {
    ring: RingRef,
    /// Bytes committed by us; equals the shared tail.
    tail: u64,
    /// The consumer's head as last loaded; may be stale (only ever behind).
    head_cache: u64,
    me: PeerId,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl Producer {
    /// The largest frame payload.
    pub fn max_payload(&self) -> usize {
        self.ring.cfg.max_payload()
    }

    /// Finds room for a frame of `len` bytes, without waiting.
    #[inline]
    fn reserve(&mut self, len: usize) -> Result<Reservation, RingError> {
        let cfg = self.ring.cfg;
        if len > cfg.max_payload() {
            return Err(RingError::TooLarge {
                len,
                max: cfg.max_payload(),
            });
        }
        let rec = (FRAME_HEADER + round_up(len, 8)) as u64;
        let off = self.tail & cfg.mask();
        let to_end = cfg.cap - off;
        let need = if rec <= to_end { rec } else { to_end + rec };
        if need > cfg.cap - self.tail.wrapping_sub(self.head_cache) {
            // SYNC POINT: space released — pairs with the consumer's Release
            // store of `head`; its reads of the bytes we are about to
            // overwrite are done.
            let head = self.ring.ctrl().head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(head) > cfg.cap {
                return Err(RingError::Corrupt("consumer position is outside the ring"));
            }
            self.head_cache = head;
            if need > cfg.cap - self.tail.wrapping_sub(head) {
                // Relaxed: only whether to give up; a late view costs a retry.
                if self
                    .ring
                    .ctrl()
                    .ends
                    .consumer_closed
                    .load(Ordering::Relaxed)
                    != 0
                {
                    return Err(RingError::Closed);
                }
                return Err(RingError::Full);
            }
        }
        let (frame_off, pad_at) = if rec <= to_end {
            (off as usize, None)
        } else {
            (0, Some(off as usize))
        };
        Ok(Reservation {
            frame_off,
            pad_at,
            len,
            new_tail: self.tail.wrapping_add(need),
        })
    }

    /// Publishes a reserved frame holding `len <= r.len` bytes.
    #[inline]
    fn publish(&mut self, r: Reservation, len: usize, tag: u32) {
        debug_assert!(len <= r.len);
        let data = &self.ring.shared.data;
        // SAFETY: the reservation lies in the free part of the ring, which
        // the consumer does not read until we publish the new tail below.
        unsafe {
            if let Some(p) = r.pad_at {
                data.write_u32(p, PAD);
            }
            data.write_u32(r.frame_off, len as u32);
            data.write_u32(r.frame_off + 4, tag);
        }
        let new_tail = r
            .new_tail
            .wrapping_sub((round_up(r.len, 8) - round_up(len, 8)) as u64);
        self.tail = new_tail;
        // SYNC POINT: frame published — the header and payload written above
        // become visible to the consumer's Acquire load of `tail`.
        self.ring.ctrl().tail.store(new_tail, Ordering::Release);
        if self.ring.cfg.wait.parks() {
            self.ring.ctrl().readable.notify(1);
        }
    }

    /// Finds room, waiting as the ring's strategy says: room already there
    /// is found inline, waiting is [`Producer::reserve_waiting`]'s.
    #[inline]
    fn reserve_blocking(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<Reservation, RingError> {
        match self.reserve(len) {
            Err(RingError::Full) => self.reserve_waiting(len, timeout),
            other => other,
        }
    }

    #[inline(never)]
    fn reserve_waiting(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<Reservation, RingError> {
        let ring = self.ring.clone();
        let ctx = WaitCtx {
            wait: ring.cfg.wait,
            notifier: &ring.ctrl().writable,
            timeout,
            dead_peer: || ring.ctrl().ends.consumer.dead_holder(),
        };
        block_until(ctx, || match self.reserve(len) {
            Err(RingError::Full) => None,
            other => Some(other),
        })?
    }

    /// Sends one frame with a tag, waiting for room.
    #[inline]
    pub(crate) fn send_tagged(
        &mut self,
        data: &[u8],
        tag: u32,
        timeout: Option<Duration>,
    ) -> Result<(), RingError> {
        let r = self.reserve_blocking(data.len(), timeout)?;
        // SAFETY: the payload area of our reservation, unpublished.
        unsafe {
            self.ring
                .shared
                .data
                .write(r.frame_off + FRAME_HEADER, data)
        };
        self.publish(r, data.len(), tag);
        Ok(())
    }

    /// Copies `data` in as one frame if there is room now.
    #[inline]
    pub fn try_send(&mut self, data: &[u8]) -> Result<(), RingError> {
        let r = self.reserve(data.len())?;
        // SAFETY: the payload area of our reservation, unpublished.
        unsafe {
            self.ring
                .shared
                .data
                .write(r.frame_off + FRAME_HEADER, data)
        };
        self.publish(r, data.len(), 0);
        Ok(())
    }

    /// Copies `data` in as one frame, waiting for room up to `timeout`
    /// (`None`: forever, unless the consumer dies or closes).
    #[inline]
    pub fn send(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<(), RingError> {
        self.send_tagged(data, 0, timeout)
    }

    /// Claims room for a frame of exactly `len` bytes to fill in place,
    /// waiting up to `timeout`. Nothing is visible until
    /// [`WriteGrant::commit`]; dropping the grant abandons it.
    #[cfg(not(loom))]
    #[inline]
    pub fn claim(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<WriteGrant<'_>, RingError> {
        let r = self.reserve_blocking(len, timeout)?;
        Ok(WriteGrant { p: self, r })
    }

    /// Like [`Producer::claim`] but without waiting.
    #[cfg(not(loom))]
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<WriteGrant<'_>, RingError> {
        let r = self.reserve(len)?;
        Ok(WriteGrant { p: self, r })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let ctrl = self.ring.ctrl();
        // SYNC POINT: end of stream — everything published before is visible
        // to a consumer that sees the flag with Acquire.
        ctrl.ends.producer_closed.store(1, Ordering::Release);
        ctrl.ends.producer.release(self.me);
        ctrl.readable.notify(u32::MAX);
    }
}

/// Room in the ring to fill in place. Derefs to the payload bytes.
#[cfg(not(loom))]
pub struct WriteGrant<'a> {
    p: &'a mut Producer,
    r: Reservation,
}

#[cfg(not(loom))]
impl WriteGrant<'_> {
    /// Publishes the whole frame.
    #[inline]
    pub fn commit(self) {
        let len = self.r.len;
        self.commit_len(len);
    }

    /// Publishes the first `len` bytes as the frame (`len` ≤ the claimed length).
    #[inline]
    pub fn commit_len(self, len: usize) {
        assert!(
            len <= self.r.len,
            "commit_len({len}) beyond the claimed {} bytes",
            self.r.len
        );
        self.p.publish(self.r, len, 0);
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: our unpublished reservation; no other process touches
        // it, and in this one the only `&mut` to it comes from `deref_mut`,
        // which borrows the grant mutably (so never beside this slice). A
        // shared slice, not a `&mut` made through `&self`: two derefs
        // would otherwise hold aliasing `&mut`s.
        unsafe {
            self.p
                .ring
                .shared
                .data
                .slice(self.r.frame_off + FRAME_HEADER, self.r.len)
        }
    }
}

#[cfg(not(loom))]
impl std::ops::DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: our unpublished reservation; `&mut self` makes this the
        // only slice of it.
        unsafe {
            self.p
                .ring
                .shared
                .data
                .slice_mut(self.r.frame_off + FRAME_HEADER, self.r.len)
        }
    }
}

/// A frame found by the consumer.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Offset of the payload.
    off: usize,
    len: usize,
    tag: u32,
    /// The head after releasing it.
    next: u64,
}

/// The consumer's private positions.
struct ConsState {
    /// Bytes released by us (plus pads skipped since), at or ahead of the shared head.
    head: u64,
    /// The producer's tail as last loaded; may be stale (only ever behind).
    tail_cache: u64,
    /// Bytes of the last frame read (its header included): the likely size
    /// of the next one.
    last: usize,
}

impl ConsState {
    /// Finds the next frame without waiting; `Empty` if there is none.
    #[inline]
    fn peek(&mut self, ring: &RingRef) -> Result<Frame, RingError> {
        let cfg = ring.cfg;
        let data = &ring.shared.data;
        loop {
            if self.head == self.tail_cache {
                // SYNC POINT: frame published (see `Producer::publish`).
                let tail = ring.ctrl().tail.load(Ordering::Acquire);
                if tail == self.head {
                    return Err(RingError::Empty);
                }
                if tail.wrapping_sub(self.head) > cfg.cap {
                    return Err(RingError::Corrupt("producer position is outside the ring"));
                }
                self.tail_cache = tail;
            }
            let avail = self.tail_cache.wrapping_sub(self.head);
            let off = (self.head & cfg.mask()) as usize;
            // SAFETY: `off` is below the capacity (masked) and 8-aligned:
            // `head` was on a frame boundary when this consumer attached
            // (`check_positions`) and moves only by whole records and pads,
            // each a multiple of 8, as is the capacity; so the 8-byte header
            // is in bounds. It lies in the published part (`avail` > 0).
            let len = unsafe { data.read_u32(off) };
            if len == PAD {
                let skip = cfg.cap - off as u64;
                if skip > avail {
                    return Err(RingError::Corrupt(
                        "pad marker runs past the published tail",
                    ));
                }
                self.head = self.head.wrapping_add(skip);
                continue;
            }
            let len = len as usize;
            if len > cfg.max_payload() {
                return Err(RingError::Corrupt("frame length exceeds the ring's limit"));
            }
            let rec = FRAME_HEADER + round_up(len, 8);
            if rec as u64 > avail || off + rec > cfg.cap as usize {
                return Err(RingError::Corrupt(
                    "frame runs past the published tail or the ring's end",
                ));
            }
            // SAFETY: in bounds and published (checked above).
            let tag = unsafe { data.read_u32(off + 4) };
            self.last = rec;
            return Ok(Frame {
                off: off + FRAME_HEADER,
                len,
                tag,
                next: self.head.wrapping_add(rec as u64),
            });
        }
    }

    /// Asks for the next frame's first cache line and, if it is the size
    /// of the last one, its last, so that they are fetched alongside the
    /// tail rather than one after the other once the tail shows the frame.
    #[inline(always)]
    fn prefetch_next(&self, ring: &RingRef) {
        let off = (self.head & ring.cfg.mask()) as usize;
        let end = off + self.last.saturating_sub(1);
        ring.shared.data.prefetch(off);
        if end / 64 != off / 64 {
            ring.shared.data.prefetch(end);
        }
    }

    /// Hands a frame's space back to the producer.
    #[inline]
    fn release(&mut self, ring: &RingRef, next: u64) {
        self.head = next;
        // SYNC POINT: space released — our reads of the frame are done before
        // the producer's Acquire load of `head` lets it overwrite them.
        ring.ctrl().head.store(next, Ordering::Release);
        if ring.cfg.wait.parks() {
            ring.ctrl().writable.notify(1);
        }
    }

    /// `Empty`, or `Closed` if the producer has closed and every frame was read.
    #[inline]
    fn empty_or_closed(&mut self, ring: &RingRef) -> RingError {
        // SYNC POINT: end of stream (see `Drop for Producer`).
        if ring.ctrl().ends.producer_closed.load(Ordering::Acquire) != 0 {
            // Frames published before the close are visible now: look again.
            match self.peek(ring) {
                Err(RingError::Empty) => RingError::Closed,
                // A frame is there after all: report Empty so the caller retries.
                Ok(_) => RingError::Empty,
                Err(e) => e,
            }
        } else {
            RingError::Empty
        }
    }
}

/// The reading end. `Send` but not `Sync`, like [`Producer`].
pub struct Consumer {
    ring: RingRef,
    st: ConsState,
    me: PeerId,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl Consumer {
    /// The largest frame payload.
    pub fn max_payload(&self) -> usize {
        self.ring.cfg.max_payload()
    }

    #[inline]
    fn try_frame(&mut self) -> Result<Frame, RingError> {
        match self.st.peek(&self.ring) {
            Err(RingError::Empty) => Err(self.st.empty_or_closed(&self.ring)),
            other => other,
        }
    }

    /// The next frame, waiting up to `timeout`: a frame already there is
    /// found inline, in the caller's loop (a call per frame, its result
    /// passed through memory, cost a stream of 8-byte messages more than
    /// the look itself); waiting is [`Consumer::frame_waiting`]'s.
    #[inline]
    fn frame_blocking(&mut self, timeout: Option<Duration>) -> Result<Frame, RingError> {
        match self.st.peek(&self.ring) {
            Err(RingError::Empty) => self.frame_waiting(timeout),
            other => other,
        }
    }

    #[inline(never)]
    fn frame_waiting(&mut self, timeout: Option<Duration>) -> Result<Frame, RingError> {
        match self.try_frame() {
            Err(RingError::Empty) => {}
            other => return other,
        }
        let ring = &self.ring;
        let st = &mut self.st;
        let ctx = WaitCtx {
            wait: ring.cfg.wait,
            notifier: &ring.ctrl().readable,
            timeout,
            dead_peer: || ring.ctrl().ends.producer.dead_holder(),
        };
        // A consumer that has waited a few looks is waiting for a frame
        // that is not being written yet (a reply, the next request): it asks
        // for the frame's lines with every look, so they arrive with the
        // tail. One that keeps finding frames at once (a flowing stream)
        // does not: it would pull lines the producer is still filling.
        let mut looks = 0u32;
        block_until(ctx, || {
            looks += 1;
            if looks > 2 {
                st.prefetch_next(ring);
            }
            match st.peek(ring) {
                Err(RingError::Empty) => match st.empty_or_closed(ring) {
                    RingError::Empty => None,
                    e => Some(Err(e)),
                },
                other => Some(other),
            }
        })?
    }

    /// Copies the next frame into `buf` (resized to fit), returning its tag.
    fn take_into(&mut self, f: Frame, buf: &mut Vec<u8>) -> u32 {
        buf.clear();
        buf.resize(f.len, 0);
        // SAFETY: the frame is published and ours until released.
        unsafe { self.ring.shared.data.read(f.off, buf) };
        self.st.release(&self.ring, f.next);
        f.tag
    }

    /// Appends the next frame to `buf`, waiting up to `timeout`; returns its
    /// length and tag.
    pub(crate) fn recv_append(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<(usize, u32), RingError> {
        let f = self.frame_blocking(timeout)?;
        let start = buf.len();
        buf.resize(start + f.len, 0);
        // SAFETY: the frame is published and ours until released.
        unsafe { self.ring.shared.data.read(f.off, &mut buf[start..]) };
        self.st.release(&self.ring, f.next);
        Ok((f.len, f.tag))
    }

    /// Waits up to `timeout` until a frame can be read or the stream ended.
    /// Returns `true` if a read would not block.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, RingError> {
        match self.frame_blocking(timeout) {
            Ok(_) | Err(RingError::Closed) => Ok(true),
            Err(RingError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copies the next frame into `buf` if one is there now.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RingError> {
        let f = self.try_frame()?;
        self.take_into(f, buf);
        Ok(f.len)
    }

    /// Copies the next frame into `buf`, waiting up to `timeout` (`None`:
    /// until a frame arrives, the producer closes, or it dies). The frame
    /// is read once and released: checks made on `buf` hold, whatever the
    /// producer does to the ring afterwards (the path for a peer you do not
    /// trust; see [`Consumer::read`]).
    #[inline]
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<usize, RingError> {
        let f = self.frame_blocking(timeout)?;
        self.take_into(f, buf);
        Ok(f.len)
    }

    /// Borrows the next frame in place, waiting up to `timeout`. Its space
    /// is handed back when the grant is dropped.
    ///
    /// Zero-copy trusts the producer: it assumes that a frame, once
    /// published, is not written again until this consumer releases it
    /// (as [`Producer`] guarantees). A hostile process that maps the ring
    /// can break that; then the bytes under the slice may change while
    /// they are read (a check of them may not hold for a later use), which
    /// Rust's rules for `&[u8]` do not allow. For a peer you do not trust,
    /// use [`Consumer::recv`] (or `recv_append`): it copies the frame once
    /// and releases it, so what you check is what you use. Either way the
    /// ring's own control data (positions, lengths, pads) is checked
    /// before use, and the frame lies inside the ring.
    #[cfg(not(loom))]
    #[inline]
    pub fn read(&mut self, timeout: Option<Duration>) -> Result<ReadGrant<'_>, RingError> {
        let f = self.frame_blocking(timeout)?;
        Ok(ReadGrant { c: self, f })
    }

    /// Like [`Consumer::read`] without waiting.
    #[cfg(not(loom))]
    #[inline]
    pub fn try_read(&mut self) -> Result<ReadGrant<'_>, RingError> {
        let f = self.try_frame()?;
        Ok(ReadGrant { c: self, f })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let ctrl = self.ring.ctrl();
        // Release: pairs with nothing that reads data; the producer only
        // learns not to wait any more.
        ctrl.ends.consumer_closed.store(1, Ordering::Release);
        ctrl.ends.consumer.release(self.me);
        ctrl.writable.notify(u32::MAX);
    }
}

/// A frame borrowed in place. Derefs to its payload; dropping it hands the
/// space back to the producer. See [`Consumer::read`] for what reading in
/// place assumes of the producer.
#[cfg(not(loom))]
pub struct ReadGrant<'a> {
    c: &'a mut Consumer,
    f: Frame,
}

#[cfg(not(loom))]
impl ReadGrant<'_> {
    /// The frame's tag.
    pub fn tag(&self) -> u32 {
        self.f.tag
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for ReadGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the frame is published and ours until released on drop.
        unsafe { self.c.ring.shared.data.slice(self.f.off, self.f.len) }
    }
}

#[cfg(not(loom))]
impl Drop for ReadGrant<'_> {
    #[inline]
    fn drop(&mut self) {
        self.c.st.release(&self.c.ring, self.f.next);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pattern(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    #[test]
    fn frames_of_every_size_survive_wrapping() {
        let ring = Ring::on_heap(256, Wait::SPIN).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut buf = Vec::new();
        for i in 0..2000 {
            let len = i % (ring.max_payload() + 1);
            let msg = pattern(i, len);
            tx.try_send(&msg).unwrap();
            assert_eq!(rx.try_recv(&mut buf).unwrap(), len);
            assert_eq!(buf, msg, "frame {i}");
        }
        assert!(matches!(rx.try_recv(&mut buf), Err(RingError::Empty)));
    }

    #[test]
    fn full_too_large_and_zero_copy() {
        let ring = Ring::on_heap(64, Wait::SPIN).unwrap();
        assert_eq!(ring.max_payload(), 24);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        assert!(matches!(
            tx.try_send(&[0; 25]),
            Err(RingError::TooLarge { len: 25, max: 24 })
        ));
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[2; 24]).unwrap();
        assert!(matches!(tx.try_send(&[3; 1]), Err(RingError::Full)));
        {
            let g = rx.try_read().unwrap();
            assert_eq!(&*g, &[1; 24]);
        }
        let mut g = tx.try_claim(10).unwrap();
        g.copy_from_slice(b"0123456789");
        g.commit_len(4);
        let mut buf = Vec::new();
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [2; 24]);
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"0123");
        // An abandoned claim publishes nothing.
        {
            let _abandoned = tx.try_claim(8).unwrap();
        }
        assert!(matches!(rx.try_recv(&mut buf), Err(RingError::Empty)));
    }

    #[test]
    fn close_drains_then_reports_end_of_stream() {
        let ring = Ring::on_heap(128, Wait::PARK).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        tx.send(b"a", None).unwrap();
        tx.send(b"", None).unwrap();
        drop(tx);
        let mut buf = Vec::new();
        assert_eq!(rx.recv(&mut buf, None).unwrap(), 1);
        assert_eq!(rx.recv(&mut buf, None).unwrap(), 0);
        assert!(matches!(rx.recv(&mut buf, None), Err(RingError::Closed)));
        assert!(rx.poll(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn producer_sees_closed_consumer_when_full() {
        let ring = Ring::on_heap(64, Wait::SPIN_PARK).unwrap();
        let (mut tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        drop(rx);
        tx.send(&[0; 24], None).unwrap();
        tx.send(&[0; 24], None).unwrap();
        assert!(matches!(tx.send(&[0; 24], None), Err(RingError::Closed)));
    }

    #[test]
    fn roles_are_taken_once() {
        let ring = Ring::on_heap(64, Wait::SPIN).unwrap();
        let tx = ring.producer().unwrap();
        assert!(matches!(
            ring.producer(),
            Err(RingError::RoleTaken {
                role: "producer",
                ..
            })
        ));
        drop(tx);
        ring.producer().unwrap();
        assert!(matches!(
            Ring::on_heap(100, Wait::SPIN),
            Err(RingError::BadCapacity(100))
        ));
    }

    #[test]
    fn timeouts_for_every_strategy() {
        for w in Wait::ALL {
            let ring = Ring::on_heap(64, w).unwrap();
            let (_tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            let mut buf = Vec::new();
            assert!(matches!(
                rx.recv(&mut buf, Some(Duration::from_millis(5))),
                Err(RingError::Timeout)
            ));
            assert!(!rx.poll(Some(Duration::from_millis(1))).unwrap());
        }
    }

    #[test]
    fn threads_stream_under_every_strategy() {
        for w in Wait::ALL {
            let ring = Ring::on_heap(1024, w).unwrap();
            let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            let n = 20_000;
            let t = std::thread::spawn(move || {
                for i in 0..n {
                    tx.send(&pattern(i, i % 300), None).unwrap();
                }
            });
            let mut buf = Vec::new();
            for i in 0..n {
                rx.recv(&mut buf, Some(Duration::from_secs(30))).unwrap();
                assert_eq!(buf, pattern(i, i % 300), "{w} frame {i}");
            }
            t.join().unwrap();
            assert!(matches!(rx.recv(&mut buf, None), Err(RingError::Closed)));
        }
    }

    #[test]
    fn corrupt_positions_and_lengths_are_errors() {
        let ring = Ring::on_heap(64, Wait::SPIN).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut buf = Vec::new();
        // A tail far beyond the head.
        ring.ring.ctrl().tail.store(1 << 20, Ordering::Release);
        assert!(matches!(rx.try_recv(&mut buf), Err(RingError::Corrupt(_))));
        // A plausible tail but a garbage length.
        ring.ring.ctrl().tail.store(16, Ordering::Release);
        // SAFETY: test only; nobody else touches the ring.
        unsafe { ring.ring.shared.data.write_u32(0, 1000) };
        assert!(matches!(rx.try_recv(&mut buf), Err(RingError::Corrupt(_))));
        // A head beyond the tail, seen by the producer once it thinks the ring full.
        ring.ring.ctrl().head.store(u64::MAX / 2, Ordering::Release);
        tx.try_send(&[0; 24]).unwrap();
        tx.try_send(&[0; 24]).unwrap();
        assert!(matches!(tx.try_send(&[0; 24]), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn garbage_positions_written_before_attaching_are_refused() {
        // (tail, head) a hostile or half-dead peer may leave behind.
        let cases: [(u64, u64); 5] = [
            (64 - 3, 0),       // unaligned tail: a pad would land past the data
            (16, 5),           // unaligned head: a header read past the ring
            (8, 16),           // head ahead of tail
            (1 << 20, 0),      // more in the ring than it holds
            (u64::MAX - 7, 0), // near the end of the positions' range
        ];
        for (tail, head) in cases {
            let ring = Ring::on_heap(64, Wait::SPIN).unwrap();
            ring.ring.ctrl().tail.store(tail, Ordering::Release);
            ring.ring.ctrl().head.store(head, Ordering::Release);
            assert!(
                matches!(ring.producer(), Err(RingError::Corrupt(_))),
                "producer attached over tail {tail} head {head}"
            );
            assert!(
                matches!(ring.consumer(), Err(RingError::Corrupt(_))),
                "consumer attached over tail {tail} head {head}"
            );
        }
        // Positions that wrapped past u64::MAX are fine: the ring works on.
        let ring = Ring::on_heap(64, Wait::SPIN).unwrap();
        let start = u64::MAX - 15;
        ring.ring.ctrl().tail.store(start, Ordering::Release);
        ring.ring.ctrl().head.store(start, Ordering::Release);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut buf = Vec::new();
        for i in 0..10u8 {
            tx.try_send(&[i; 20]).unwrap();
            rx.try_recv(&mut buf).unwrap();
            assert_eq!(buf, [i; 20]);
        }
        assert!(
            ring.ring.ctrl().tail.load(Ordering::Acquire) < start,
            "the positions wrapped"
        );
    }
}
