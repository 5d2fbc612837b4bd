//! `raw-sync`: a shared slot per direction, handed over with the `raw_sync`
//! crate's process-shared pthread `Mutex` and auto-reset `Event`s, the way
//! that crate is used: the sender waits for `empty`, fills the slot under
//! the mutex and sets `full`; the receiver waits for `full`, empties the
//! slot under the mutex and sets `empty`. Messages larger than the slot are
//! cut into slot-sized pieces flagged `MORE`; a piece flagged `CLOSE` ends
//! the stream.
//!
//! `raw_sync` 0.1.5 adds a timeout to the current time without carrying
//! nanoseconds into seconds, so a timeout with a fractional second can make
//! the wait fail with an invalid time; waits here therefore use whole-second
//! slices, checking between them whether the peer process is alive (its
//! pthread mutex is not robust: a holder that dies leaves it locked).
//!
//! Checked against the crate's own documentation (its README's table of
//! primitives and `examples/events.rs`): `Event::new(ptr, true)` makes an
//! auto-reset event (a pthread condition variable with its flag), opened
//! by the other process with `Event::from_existing`, set with
//! `EventState::Signaled` and waited on with a `Timeout` — as here, and
//! the `Mutex` beside it likewise. The example waits with
//! `Timeout::Infinite` or whole seconds; a timed wait, as here, reads the
//! clock once and takes the event's mutex with `pthread_mutex_timedlock`
//! before `pthread_cond_timedwait`, where a wait for ever takes it with
//! `pthread_mutex_lock` before `pthread_cond_wait`: a clock read per wait
//! more, tens of nanoseconds beside a hand-off that wakes a sleeping
//! process (not measured apart). The crate also offers `BusyEvent` (a
//! byte polled in a loop), a spinning hand-off its users could pick for
//! latency; this strategy measures the blocking `Event`, the one the
//! crate's table calls the generic event, so its rows stand beside the
//! other kernel waits, not beside the spinning ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::raw_sync::Timeout;
use ::raw_sync::events::{Event, EventImpl, EventInit, EventState};
use ::raw_sync::locks::{LockImpl, LockInit, Mutex};

use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    addr_rest,
};
use crate::shm::liveness::{PeerId, PeerSlot};
use crate::shm::region::{Kind, Region};
use crate::shm::unique_name;

const MORE: u64 = 1;
const CLOSE: u64 = 2;
/// Bytes reserved for the mutex, and for each event, in a direction's block.
const MUTEX_SPACE: usize = 128;
const EVENT_SPACE: usize = 256;
/// Offsets inside a direction's block.
const FULL_AT: usize = MUTEX_SPACE;
const EMPTY_AT: usize = FULL_AT + EVENT_SPACE;
const LEN_AT: usize = EMPTY_AT + EVENT_SPACE;
const FLAGS_AT: usize = LEN_AT + 8;
const DATA_AT: usize = LEN_AT + 128;
/// The region's own header: one peer slot per side.
const PEERS_SIZE: usize = 128;
/// The largest slot.
const MAX_SLOT: usize = 1 << 20;

/// The `raw-sync` strategy.
pub struct RawSync;

/// The region, owned by the coordinator.
pub struct RawSyncSetup {
    _region: Arc<Region>,
}

impl LinkSetup for RawSyncSetup {}

fn block_size(slot: usize) -> usize {
    (DATA_AT + slot).next_multiple_of(128)
}

fn rs_err(what: &str, e: Box<dyn std::error::Error>) -> TransportError {
    TransportError::Setup(format!("raw_sync {what}: {e}"))
}

/// One direction's primitives, made or found in the region.
struct Direction {
    mutex: Box<dyn LockImpl>,
    full: Box<dyn EventImpl>,
    empty: Box<dyn EventImpl>,
    base: *mut u8,
    slot: usize,
}

impl Direction {
    /// # Safety
    /// `base` points at a direction block of `block_size(slot)` bytes inside
    /// a mapping that outlives the result; `create` only once per block,
    /// before anyone else uses it.
    unsafe fn new(base: *mut u8, slot: usize, create: bool) -> Result<Direction, TransportError> {
        // SAFETY: the offsets lie inside the block (caller's contract), and
        // sizes were checked against the reserved space in `check_sizes`.
        unsafe {
            let len_ptr = base.add(LEN_AT);
            let (mutex, full, empty) = if create {
                let (m, _) = Mutex::new(base, len_ptr).map_err(|e| rs_err("mutex", e))?;
                let (f, _) = Event::new(base.add(FULL_AT), true).map_err(|e| rs_err("event", e))?;
                let (e, _) =
                    Event::new(base.add(EMPTY_AT), true).map_err(|e| rs_err("event", e))?;
                e.set(EventState::Signaled)
                    .map_err(|e| rs_err("event set", e))?;
                (m, f, e)
            } else {
                let (m, _) = Mutex::from_existing(base, len_ptr).map_err(|e| rs_err("mutex", e))?;
                let (f, _) =
                    Event::from_existing(base.add(FULL_AT)).map_err(|e| rs_err("event", e))?;
                let (e, _) =
                    Event::from_existing(base.add(EMPTY_AT)).map_err(|e| rs_err("event", e))?;
                (m, f, e)
            };
            Ok(Direction {
                mutex,
                full,
                empty,
                base,
                slot,
            })
        }
    }
}

fn check_sizes(p: *mut u8) -> Result<(), TransportError> {
    let (m, e) = (Mutex::size_of(Some(p)), Event::size_of(Some(p)));
    if m > MUTEX_SPACE || e > EVENT_SPACE {
        return Err(TransportError::Setup(format!(
            "raw_sync objects are larger than the space reserved for them ({m}, {e} bytes)"
        )));
    }
    Ok(())
}

/// One side: sends on one direction, receives on the other.
pub struct RawSyncConn {
    tx: Direction,
    rx: Direction,
    peers: *const PeerSlot,
    other: usize,
    me: PeerId,
    my_slot: usize,
    max: usize,
    timeout: Option<Duration>,
    closed: bool,
    peer_closed: bool,
    _region: Arc<Region>,
}

// SAFETY: the pthread objects behind the boxes live in shared memory and are
// not tied to a thread (no lock is held between calls); the raw pointers
// point into the mapping the connection keeps alive.
unsafe impl Send for RawSyncConn {}

impl RawSyncConn {
    fn peer_slot(&self, i: usize) -> &PeerSlot {
        // SAFETY: two slots at the start of the mapping, alive with `_region`.
        unsafe { &*self.peers.add(i) }
    }

    /// Waits for `ev` in whole-second slices, checking the peer's life and
    /// our timeout between them.
    fn wait(&self, ev: &dyn EventImpl) -> Result<(), TransportError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            if ev.wait(Timeout::Val(Duration::from_secs(1))).is_ok() {
                return Ok(());
            }
            if let Some(p) = self.peer_slot(self.other).dead_holder() {
                return Err(TransportError::PeerGone(format!(
                    "process {} died without closing",
                    p.pid
                )));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TransportError::Timeout);
            }
        }
    }

    fn send_piece(&mut self, flags: u64, piece: &[u8]) -> Result<(), TransportError> {
        self.wait(&*self.tx.empty)?;
        {
            let _g = self.tx.mutex.lock().map_err(|e| rs_err("lock", e))?;
            // SAFETY: the slot is ours between `empty` and `full`, and the
            // mutex is held; `piece` fits (callers cut to the slot size).
            unsafe {
                std::ptr::write_unaligned(self.tx.base.add(LEN_AT) as *mut u64, piece.len() as u64);
                std::ptr::write_unaligned(self.tx.base.add(FLAGS_AT) as *mut u64, flags);
                std::ptr::copy_nonoverlapping(
                    piece.as_ptr(),
                    self.tx.base.add(DATA_AT),
                    piece.len(),
                );
            }
        }
        self.tx
            .full
            .set(EventState::Signaled)
            .map_err(|e| rs_err("event set", e))
    }

    /// Receives one piece, appending it to `buf`; returns its flags.
    fn recv_piece(&mut self, buf: &mut Vec<u8>) -> Result<u64, TransportError> {
        self.wait(&*self.rx.full)?;
        let flags;
        {
            let _g = self.rx.mutex.lock().map_err(|e| rs_err("lock", e))?;
            // SAFETY: the slot is ours between `full` and `empty`, under the mutex.
            let len = unsafe { std::ptr::read_unaligned(self.rx.base.add(LEN_AT) as *const u64) };
            // SAFETY: as above.
            flags = unsafe { std::ptr::read_unaligned(self.rx.base.add(FLAGS_AT) as *const u64) };
            if len as usize > self.rx.slot || flags & !(MORE | CLOSE) != 0 {
                return Err(TransportError::Malformed(format!(
                    "slot holds {len} bytes with flags {flags:#x}; a slot holds at most {} bytes",
                    self.rx.slot
                )));
            }
            if buf.len() + len as usize > self.max {
                return Err(TransportError::Malformed(format!(
                    "message grows past the limit of {} bytes",
                    self.max
                )));
            }
            let start = buf.len();
            buf.resize(start + len as usize, 0);
            // SAFETY: `len` is within the slot (checked), under the mutex.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.rx.base.add(DATA_AT),
                    buf[start..].as_mut_ptr(),
                    len as usize,
                )
            };
        }
        self.rx
            .empty
            .set(EventState::Signaled)
            .map_err(|e| rs_err("event set", e))?;
        Ok(flags)
    }

    fn close_inner(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let r = if self.peer_closed {
            Ok(())
        } else {
            self.send_piece(CLOSE, &[])
        };
        self.peer_slot(self.my_slot).release(self.me);
        r
    }
}

impl Conn for RawSyncConn {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        let slot = self.tx.slot;
        if msg.len() <= slot {
            return self.send_piece(0, msg);
        }
        let mut chunks = msg.chunks(slot).peekable();
        while let Some(c) = chunks.next() {
            let flags = if chunks.peek().is_some() { MORE } else { 0 };
            self.send_piece(flags, c)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        if self.peer_closed {
            return Err(TransportError::Closed);
        }
        buf.clear();
        let mut first = true;
        loop {
            let flags = self.recv_piece(buf)?;
            if flags & CLOSE != 0 {
                self.peer_closed = true;
                return Err(if first {
                    TransportError::Closed
                } else {
                    TransportError::PeerGone(
                        "the stream ended in the middle of a message (truncated)".into(),
                    )
                });
            }
            first = false;
            if flags & MORE == 0 {
                return Ok(buf.len());
            }
        }
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.close_inner()
    }
}

impl Drop for RawSyncConn {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

/// Maps the region and finds (or makes) both directions in it.
///
/// # Safety
/// `create` only from `setup`, on a new unpublished region.
unsafe fn directions(
    region: &Region,
    create: bool,
) -> Result<(Direction, Direction, usize), TransportError> {
    let slot = region.params()[0] as usize;
    if slot == 0 || slot > MAX_SLOT || region.body_len() < PEERS_SIZE + 2 * block_size(slot) {
        return Err(TransportError::Setup(format!(
            "raw-sync region {} has impossible sizes",
            region.name()
        )));
    }
    let base = region.body_ptr();
    // SAFETY: both blocks lie inside the body (checked above); `create` per
    // the caller's contract.
    unsafe {
        check_sizes(base.add(PEERS_SIZE))?;
        let ab = Direction::new(base.add(PEERS_SIZE), slot, create)?;
        let ba = Direction::new(base.add(PEERS_SIZE + block_size(slot)), slot, create)?;
        Ok((ab, ba, slot))
    }
}

impl Transport for RawSync {
    const NAME: &'static str = "raw-sync";
    type Setup = RawSyncSetup;
    type Conn = RawSyncConn;

    fn setup(opts: &LinkOpts) -> Result<(RawSyncSetup, Endpoint), TransportError> {
        let slot = opts.capacity.clamp(4096, MAX_SLOT);
        let name = unique_name(&opts.label);
        let region = Region::create(
            &name,
            Kind::Raw,
            PEERS_SIZE + 2 * block_size(slot),
            [slot as u64, 0, 0, 0, 0, 0],
        )
        .map_err(|e| TransportError::Setup(e.to_string()))?;
        // SAFETY: a new region, initialised once here before publishing.
        unsafe { directions(&region, true)? };
        region.publish();
        Ok((
            RawSyncSetup {
                _region: Arc::new(region),
            },
            Endpoint::new(format!("{}:{name}", Self::NAME), Vec::new()),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<RawSyncConn, TransportError> {
        let name = addr_rest(&ep.addr, Self::NAME)?;
        let region = Arc::new(
            Region::open(name, Kind::Raw).map_err(|e| TransportError::Setup(e.to_string()))?,
        );
        // SAFETY: an initialised, published region.
        let (ab, ba, _) = unsafe { directions(&region, false)? };
        let (tx, rx, my_slot) = match side {
            Side::A => (ab, ba, 0),
            Side::B => (ba, ab, 1),
        };
        let peers = region.body_ptr() as *const PeerSlot;
        let me = PeerId::current();
        // SAFETY: the first PEERS_SIZE bytes of the body hold two peer slots.
        let mine = unsafe { &*peers.add(my_slot) };
        mine.claim(me).map_err(|holder| {
            TransportError::Setup(format!(
                "side {} is already held by process {}",
                side.name(),
                holder.pid
            ))
        })?;
        Ok(RawSyncConn {
            tx,
            rx,
            peers,
            other: 1 - my_slot,
            me,
            my_slot,
            max: opts.max_message,
            timeout: None,
            closed: false,
            peer_closed: false,
            _region: region,
        })
    }
}

impl Inject for RawSync {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let name = addr_rest(&ep.addr, Self::NAME)?;
        let region =
            Region::open(name, Kind::Raw).map_err(|e| TransportError::Setup(e.to_string()))?;
        // SAFETY: an initialised, published region.
        let (ab, ba, slot) = unsafe { directions(&region, false)? };
        let (inbound, stand_in) = match victim {
            Side::A => (ba, 1),
            Side::B => (ab, 0),
        };
        // The stand-in registers as a process that has already died, so
        // that a victim waiting for the rest of a message learns it.
        let peers = region.body_ptr() as *const PeerSlot;
        let dead = PeerId {
            pid: PeerId::current().pid,
            start: 1,
        };
        // SAFETY: the peer slots at the start of the body.
        unsafe { &*peers.add(stand_in) }.set(Some(dead));
        let (len, flags) = match what {
            Malformation::OversizedLength => (u64::MAX / 2, 0),
            Malformation::Truncated => (slot as u64 / 2, MORE),
        };
        inbound
            .empty
            .wait(Timeout::Val(Duration::from_secs(1)))
            .map_err(|e| rs_err("wait", e))?;
        {
            let _g = inbound.mutex.lock().map_err(|e| rs_err("lock", e))?;
            // SAFETY: the slot is ours between `empty` and `full`.
            unsafe {
                std::ptr::write_unaligned(inbound.base.add(LEN_AT) as *mut u64, len);
                std::ptr::write_unaligned(inbound.base.add(FLAGS_AT) as *mut u64, flags);
            }
        }
        inbound
            .full
            .set(EventState::Signaled)
            .map_err(|e| rs_err("event set", e))?;
        Ok(Box::new(()))
    }
}
