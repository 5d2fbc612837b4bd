//! The floors' own protocols: the least two processes can do to hand a
//! turn or a message to each other, against which every channel is read.
//! Built on the core's atomics, futex and byte views like the ring and the
//! queue, so the models in `tests/loom.rs` check them too; the harness
//! times them (`harness::child::floors`).
//!
//! - [`FloorKind::Spin`]: one word bounced between two processes. Side A
//!   posts `2s + 1` for exchange `s`, side B answers `2s + 2`. No queue, no
//!   framing, no copy: what the hardware allows.
//! - [`FloorKind::Park`]: a futex word each way; every hand-off a wake-up:
//!   what the kernel allows.
//! - [`FloorKind::CopyStream`]: the copy floor of a stream. Slots of one
//!   message each (a flag word, the send time, the message on lines of its
//!   own); the sender copies message `i` into slot `i mod slots` and flags
//!   it `i + 1`, the receiver reads it where it lies and frees the slot
//!   (flag 0).
//! - [`FloorKind::CopyRoundTrip`]: the copy floor of a round trip. A slot
//!   each way (a flag word and the message, in the flag's line when it
//!   fits); message `seq` is flagged `seq + 1`, as any duplex channel made
//!   of two one-way channels must at least do. The answering side reads
//!   the message where it lies and copies it straight into its own slot.
//!
//! So each message is written into shared memory once and read once on
//! the other side: the least work any channel does for it.
//!
//! Every received message's flag is checked against the one due, so a lost
//! or repeated hand-off is an error, never a faster floor.

use std::sync::Arc;

use super::futex::Futex;
#[cfg(not(loom))]
use super::mem::Backing;
use super::mem::{Shared, SlotLayout, round_up};
#[cfg(not(loom))]
use super::region::{Kind, Region, RegionError};
use super::sync::{AtomicU64, CachePadded, Ordering, spin_hint};

/// Which floor a [`Floor`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    /// One word bounced between two processes.
    Spin,
    /// A futex ping-pong.
    Park,
    /// The copy floor of a stream.
    CopyStream,
    /// The copy floor of a round trip.
    CopyRoundTrip,
}

impl FloorKind {
    fn code(self) -> u64 {
        match self {
            FloorKind::Spin => 1,
            FloorKind::Park => 2,
            FloorKind::CopyStream => 3,
            FloorKind::CopyRoundTrip => 4,
        }
    }

    #[cfg(not(loom))]
    fn from_code(c: u64) -> Option<FloorKind> {
        Some(match c {
            1 => FloorKind::Spin,
            2 => FloorKind::Park,
            3 => FloorKind::CopyStream,
            4 => FloorKind::CopyRoundTrip,
            _ => return None,
        })
    }

    /// Whether its messages are copied (and so must be at least 8 bytes,
    /// numbered at both ends by their users).
    fn copies(self) -> bool {
        matches!(self, FloorKind::CopyStream | FloorKind::CopyRoundTrip)
    }
}

/// A direction of a two-sided floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From side A (the initiator) to side B.
    AToB = 0,
    /// From side B back to side A.
    BToA = 1,
}

/// What went wrong with a floor.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// A flag held another message than the one due: a hand-off was lost
    /// or repeated, or the memory was scribbled on.
    #[error("slot flagged with message {got} where {due} was due")]
    Out {
        /// The message the flag names.
        got: u64,
        /// The message due.
        due: u64,
    },
    /// Messages of this size cannot go through this floor.
    #[error("the copy floors move messages of at least 8 bytes, not {0}")]
    Size(usize),
    /// The region could not be made or opened, or holds no floor.
    #[cfg(not(loom))]
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// The control block: the spin floor's word and the park floor's futex
/// words, each on lines of its own.
#[repr(C)]
struct FloorCtrl {
    /// The spin floor's turn.
    turn: CachePadded<AtomicU64>,
    /// The park floor's A→B word.
    ping: CachePadded<Futex>,
    /// The park floor's B→A word.
    pong: CachePadded<Futex>,
    /// The stream floor: messages sent (written by the sender only).
    tail: CachePadded<AtomicU64>,
    /// The stream floor: messages received (written by the receiver only).
    head: CachePadded<AtomicU64>,
}

impl FloorCtrl {
    fn new() -> FloorCtrl {
        FloorCtrl {
            turn: CachePadded(AtomicU64::new(0)),
            ping: CachePadded(Futex::new(0)),
            pong: CachePadded(Futex::new(0)),
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
        }
    }
}

/// Where a stream slot's message lies: right after its (unused) slot
/// word when both fit in a cache line (small messages lie packed), else
/// on lines of its own (a message copied and checked across misaligned
/// lines read half as fast at 64 KiB).
fn stream_msg_off(size: usize) -> usize {
    if size + 8 <= 64 { 8 } else { 64 }
}
/// Where a round trip slot's message lies: right after its flag.
const TRIP_MSG_OFF: usize = 8;

/// The bytes a link (and the stream floor) gets for `depth` messages of
/// `size` bytes: at least 64 KiB and at most 4 MiB. Deeper buffers spill
/// out of the caches: over a 16 MiB ring a 1 MiB round trip took 1.8× as
/// long as over a 4 MiB one, on the VM this was measured on.
pub fn room_for(size: usize, depth: usize) -> usize {
    size.saturating_mul(depth).clamp(64 << 10, 4 << 20)
}

/// How a floor of `kind` lays out messages of `size` bytes: (slots, stride).
/// The stream's messages lie packed one after another (each after an
/// 8-byte word, as a ring's frame header), in as much room as the
/// harness's links get (16 messages, 64 KiB to 4 MiB): a floor with deeper
/// buffers spills out of the caches where the links it bounds do not (at
/// 64 KiB, 64 slots made the floor a third as fast as a ring of 1 MiB),
/// and one with a flag line per message moves twice the lines a packed
/// ring does for small messages (at 8 B, shm-pipe read 0.85× such a floor).
fn layout(kind: FloorKind, size: usize) -> SlotLayout {
    match kind {
        FloorKind::Spin | FloorKind::Park => SlotLayout::NONE,
        FloorKind::CopyStream => {
            let off = stream_msg_off(size);
            let stride = round_up(off + size, if off == 8 { 8 } else { 64 });
            SlotLayout {
                // Two slots under loom: enough to wrap, few enough to model.
                count: if cfg!(loom) {
                    2
                } else {
                    (room_for(size, 16) / stride).clamp(4, 1 << 16)
                },
                stride,
            }
        }
        FloorKind::CopyRoundTrip => SlotLayout {
            count: 2,
            stride: round_up(TRIP_MSG_OFF + size, 128),
        },
    }
}

/// A floor: its shared state and how it is laid out. Both sides hold one
/// (opened from the same region, or the same heap value shared between
/// threads); which side a call is made from is the caller's to keep
/// straight, as the protocols above say.
pub struct Floor {
    shared: Arc<Shared<FloorCtrl>>,
    kind: FloorKind,
    size: usize,
    slots: SlotLayout,
}

impl Floor {
    fn check(kind: FloorKind, size: usize) -> Result<SlotLayout, FloorError> {
        if kind.copies() && size < 8 {
            return Err(FloorError::Size(size));
        }
        Ok(layout(kind, size))
    }

    /// A floor on the heap, for threads (tests, loom models).
    pub fn on_heap(kind: FloorKind, size: usize) -> Result<Floor, FloorError> {
        let slots = Floor::check(kind, size)?;
        Ok(Floor {
            shared: Arc::new(Shared::heap(
                FloorCtrl::new(),
                slots.count * slots.stride,
                slots,
                &|_| 0,
            )),
            kind,
            size,
            slots,
        })
    }

    /// Creates the floor of `kind` for messages of `size` in a new region
    /// `name` (unlinked when the returned value is dropped).
    #[cfg(not(loom))]
    pub fn create(name: &str, kind: FloorKind, size: usize) -> Result<Floor, FloorError> {
        let slots = Floor::check(kind, size)?;
        let data = slots.count * slots.stride;
        let params = [kind.code(), size as u64, 0, 0, 0, 0];
        let region = Region::create(
            name,
            Kind::Floor,
            Shared::<FloorCtrl>::footprint(data),
            params,
        )?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the body is one footprint, new and unpublished; the slot
        // words lie inside the data area (count × stride bytes).
        let shared = unsafe {
            Shared::place(
                backing.clone(),
                0,
                Some(FloorCtrl::new()),
                data,
                slots,
                Some(&|_| 0),
            )
        };
        if let Some(r) = backing.region() {
            r.publish();
        }
        Ok(Floor {
            shared: Arc::new(shared),
            kind,
            size,
            slots,
        })
    }

    /// Opens the floor in region `name`: its kind and size are read from
    /// the region and checked against its length.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Floor, FloorError> {
        let region = Region::open(name, Kind::Floor)?;
        let p = region.params();
        let kind = FloorKind::from_code(p[0]).ok_or_else(|| region.bad_params("unknown floor"))?;
        let size = usize::try_from(p[1])
            .ok()
            .filter(|s| *s <= 1 << 30)
            .ok_or_else(|| region.bad_params("message size out of range"))?;
        let slots = Floor::check(kind, size)?;
        let data = slots.count * slots.stride;
        if region.body_len() < Shared::<FloorCtrl>::footprint(data) {
            return Err(region.bad_params("body too small for its slots").into());
        }
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: published and large enough for the control block and the
        // slots (checked).
        let shared = unsafe { Shared::place(backing, 0, None, data, slots, None) };
        Ok(Floor {
            shared: Arc::new(shared),
            kind,
            size,
            slots,
        })
    }

    /// Which floor this is.
    pub fn kind(&self) -> FloorKind {
        self.kind
    }

    /// The size of its messages.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The spin floor: posts turn `v`.
    #[inline]
    pub fn post_turn(&self, v: u64) {
        // SYNC POINT: turn handed over — Release pairs with the other
        // side's Acquire in `await_turn` (the value itself is all there is).
        self.shared.ctrl().turn.store(v, Ordering::Release);
    }

    /// The spin floor: spins until turn `v` is posted.
    #[inline]
    pub fn await_turn(&self, v: u64) {
        // SYNC POINT: turn handed over.
        while self.shared.ctrl().turn.load(Ordering::Acquire) != v {
            spin_hint();
        }
    }

    fn futex(&self, dir: Dir) -> &Futex {
        match dir {
            Dir::AToB => &self.shared.ctrl().ping,
            Dir::BToA => &self.shared.ctrl().pong,
        }
    }

    /// The park floor: posts step `v` in direction `dir` and wakes the
    /// other side.
    #[inline]
    pub fn post(&self, dir: Dir, v: u32) {
        let f = self.futex(dir);
        // SYNC POINT: step posted — Release pairs with the Acquire load in
        // `await_post`; the wake after the store cannot be lost (futex(2)).
        f.word().store(v, Ordering::Release);
        f.wake(1);
    }

    /// The park floor: sleeps until step `v` is posted in direction `dir`.
    #[inline]
    pub fn await_post(&self, dir: Dir, v: u32) {
        let f = self.futex(dir);
        loop {
            // SYNC POINT: step posted (`load` is Acquire).
            let cur = f.load();
            if cur == v {
                return;
            }
            f.wait(cur, None);
        }
    }

    /// The slot of a stream's message `i`: by a mask where the slot count
    /// is a power of two (as a ring's positions are), else by division. A
    /// division on every message made the 8 B stream floor slower than
    /// shm-pipe's ring (0.76x it, in a run here), which masks.
    #[inline(always)]
    fn stream_slot(&self, i: u64) -> usize {
        let count = self.slots.count as u64;
        (if count.is_power_of_two() {
            i & (count - 1)
        } else {
            i % count
        }) as usize
    }

    /// The copy floor of a stream, sending side: waits for room for
    /// message `i` (`head` is the sender's last look at the receiver's
    /// count, refreshed only when the ring seems full), copies `msg` (the
    /// floor's size) into its slot and publishes it.
    #[inline]
    pub fn stream_send(&self, i: u64, msg: &[u8], head: &mut u64) {
        debug_assert!(self.kind == FloorKind::CopyStream && msg.len() == self.size);
        let count = self.slots.count as u64;
        while i.wrapping_sub(*head) >= count {
            // SYNC POINT: room — Acquire pairs with the receiver's Release
            // after it read the slot.
            *head = self.shared.ctrl().head.load(Ordering::Acquire);
            if i.wrapping_sub(*head) >= count {
                spin_hint();
            }
        }
        let at = self.stream_slot(i) * self.slots.stride + stream_msg_off(self.size);
        // SAFETY: slot `i mod count` is free (the receiver has counted past
        // message `i - count`, and reads this slot again only after the
        // Release below); in bounds: the stride holds the word and `size`
        // bytes.
        unsafe { self.shared.data.write(at, msg) };
        // SYNC POINT: message published — Release pairs with the
        // receiver's Acquire of `tail`.
        self.shared.ctrl().tail.store(i + 1, Ordering::Release);
    }

    /// The copy floor of a stream, receiving side: waits for message `i`
    /// (`tail` is the receiver's last look at the sender's count,
    /// refreshed only when it has caught up), hands it to `check` where it
    /// lies (no copy out), counts it received, and returns what `check`
    /// said. A count more than the slots ahead (memory scribbled on) is an
    /// error.
    #[inline]
    pub fn stream_recv<R>(
        &self,
        i: u64,
        tail: &mut u64,
        check: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FloorError> {
        debug_assert!(self.kind == FloorKind::CopyStream);
        let count = self.slots.count as u64;
        let at = self.stream_slot(i) * self.slots.stride + stream_msg_off(self.size);
        let mut looks = 0u32;
        while *tail <= i {
            // SYNC POINT: message published — Acquire pairs with the
            // sender's Release.
            *tail = self.shared.ctrl().tail.load(Ordering::Acquire);
            if *tail <= i {
                // Caught up with the sender: ask for the message's first
                // and last lines, so they come with the count (as a ring's
                // consumer does; without it, shm-ring read 0.75× this
                // floor at 1 KiB).
                looks += 1;
                if looks > 2 {
                    self.shared.data.prefetch(at);
                    self.shared.data.prefetch(at + self.size - 1);
                }
                spin_hint();
            }
        }
        if *tail - i > count {
            return Err(FloorError::Out {
                got: *tail - 1,
                due: i,
            });
        }
        // SAFETY: published to us by the count we saw; the sender rewrites
        // this slot only after our count below; in bounds as in send.
        let r = unsafe { self.shared.data.with_slice(at, self.size, check) };
        // SYNC POINT: slot freed (after `check` read it).
        self.shared.ctrl().head.store(i + 1, Ordering::Release);
        Ok(r)
    }

    /// The copy floor of a round trip: copies `msg` (the floor's size)
    /// into direction `dir`'s slot and flags it as message `seq`. The
    /// other side must be done with the slot's last message (it answered
    /// it, or this is the first).
    #[inline]
    pub fn trip_send(&self, dir: Dir, seq: u64, msg: &[u8]) {
        debug_assert!(self.kind == FloorKind::CopyRoundTrip && msg.len() == self.size);
        let s = dir as usize;
        // SAFETY: the other side reads this slot only after our flag
        // below, and is done with its last message (its answer, which we
        // saw, came after its copy out); in bounds: the stride holds the
        // flag and `size` bytes.
        unsafe {
            self.shared
                .data
                .write(s * self.slots.stride + TRIP_MSG_OFF, msg)
        };
        // SYNC POINT: message in its slot — Release pairs with the
        // Acquire in `trip_recv`.
        self.shared.words.get(s).store(seq + 1, Ordering::Release);
    }

    /// The copy floor of a round trip: waits for message `seq` in
    /// direction `dir`'s slot and hands it to `check` where it lies. A
    /// flag past the one due is an error.
    #[inline]
    pub fn trip_recv<R>(
        &self,
        dir: Dir,
        seq: u64,
        check: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FloorError> {
        debug_assert!(self.kind == FloorKind::CopyRoundTrip);
        self.trip_await(dir, seq)?;
        // SAFETY: published to us by the flag; ours to read until we answer.
        Ok(unsafe {
            self.shared.data.with_slice(
                dir as usize * self.slots.stride + TRIP_MSG_OFF,
                self.size,
                check,
            )
        })
    }

    /// The copy floor of a round trip, answering side: waits for message
    /// `seq` in the A→B slot, copies it straight into the B→A slot, hands
    /// that copy to `check` (the bytes read once from the other side, then
    /// checked where they were written) and flags it — the answer written
    /// into shared memory once. Copying first lets the copy pull the
    /// message across at full speed, as a channel's copy out does.
    #[inline]
    pub fn trip_echo<R>(&self, seq: u64, check: impl FnOnce(&[u8]) -> R) -> Result<R, FloorError> {
        debug_assert!(self.kind == FloorKind::CopyRoundTrip);
        self.trip_await(Dir::AToB, seq)?;
        let from = Dir::AToB as usize * self.slots.stride + TRIP_MSG_OFF;
        let to = Dir::BToA as usize * self.slots.stride + TRIP_MSG_OFF;
        // SAFETY: the A→B slot holds message `seq`, published to us by the
        // flag and not touched by A until it sees our answer; the B→A slot
        // is ours as in `trip_send` until our flag below. The slots are a
        // stride apart, so they do not overlap.
        let r = unsafe {
            self.shared.data.copy_within(from, to, self.size);
            self.shared.data.with_slice(to, self.size, check)
        };
        // SYNC POINT: answer in its slot — Release pairs with the Acquire
        // in `trip_recv`.
        self.shared
            .words
            .get(Dir::BToA as usize)
            .store(seq + 1, Ordering::Release);
        Ok(r)
    }

    /// Waits for message `seq`'s flag in direction `dir`'s slot.
    #[inline]
    fn trip_await(&self, dir: Dir, seq: u64) -> Result<(), FloorError> {
        let flag = self.shared.words.get(dir as usize);
        // SYNC POINT: message in its slot.
        loop {
            match flag.load(Ordering::Acquire) {
                f if f == seq + 1 => return Ok(()),
                f if f <= seq => spin_hint(),
                f => {
                    return Err(FloorError::Out {
                        got: f - 1,
                        due: seq,
                    });
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_stream_count_out_of_range_is_an_error() {
        let f = Floor::on_heap(FloorKind::CopyStream, 8).unwrap();
        let (mut head, mut tail) = (0, 0);
        f.stream_send(0, &[1; 8], &mut head);
        assert!(f.stream_recv(0, &mut tail, |m| m == [1; 8]).unwrap());
        // A count scribbled far ahead of the message due.
        let slots = f.slots.count as u64;
        f.shared.ctrl().tail.store(3 + slots, Ordering::Release);
        let e = f.stream_recv(1, &mut tail, |_| ()).unwrap_err();
        assert!(matches!(e, FloorError::Out { due: 1, .. }), "{e}");
    }

    #[test]
    fn copy_floors_refuse_messages_under_8_bytes() {
        assert!(Floor::on_heap(FloorKind::CopyRoundTrip, 4).is_err());
        assert!(Floor::on_heap(FloorKind::Spin, 0).is_ok());
    }
}
