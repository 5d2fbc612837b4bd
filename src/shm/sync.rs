//! The one place atomics, cells and spin hints come from.
//!
//! Under `--cfg loom` every type here is loom's, so the ring, the queue and the
//! semaphore can be model-checked on stable Rust (`RUSTFLAGS="--cfg loom" cargo
//! test --test loom`). Everywhere else they are the standard library's.
//!
//! The rest of the crate (regions, the harness, the transports) takes its
//! atomics from here too: a test (`tests/layers.rs`) fails on any other
//! `std::sync::atomic` in `src/`.
//!
//! Data bytes (frame payloads, queue slots) go through [`Bytes`], which under
//! loom is an array of tracked cells: a missing Release/Acquire pair around a
//! payload then shows up as a data race in the model, not only as a wrong
//! index.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use model_clock::Instant;
/// The clock waits read: the standard one, or under loom a model clock.
#[cfg(not(loom))]
pub(crate) use std::time::Instant;

/// Polls between two readings of the clock in a spin, a yield and a
/// yield-only wait: enough to keep the clock's cost small, and one under
/// loom, where every poll is a branch of the model.
#[cfg(not(loom))]
pub(crate) const POLLS_PER_CLOCK: [usize; 3] = [64, 4, 16];
#[cfg(loom)]
pub(crate) const POLLS_PER_CLOCK: [usize; 3] = [1, 1, 1];

/// Time under loom: each reading moves the reading thread's clock on by
/// [`model_clock::STEP`], from 0 in every execution, so that the wait loop
/// the core runs — its spin budget, its yield phase, its deadlines — is the
/// one the models check, and every execution sees the same times.
#[cfg(loom)]
pub(crate) mod model_clock {
    use std::cell::Cell;
    use std::time::Duration;

    /// How far one reading moves the clock: past a spin budget at once.
    pub(crate) const STEP: Duration = Duration::from_millis(1);

    loom::thread_local! {
        static NOW: Cell<Duration> = Cell::new(Duration::ZERO);
    }

    /// A reading of the model clock.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) struct Instant(Duration);

    impl Instant {
        pub(crate) fn now() -> Instant {
            NOW.with(|c| {
                let t = c.get() + STEP;
                c.set(t);
                Instant(t)
            })
        }

        pub(crate) fn saturating_duration_since(&self, earlier: Instant) -> Duration {
            self.0.saturating_sub(earlier.0)
        }
    }

    impl std::ops::Add<Duration> for Instant {
        type Output = Instant;
        fn add(self, d: Duration) -> Instant {
            Instant(self.0 + d)
        }
    }

    impl std::ops::Sub for Instant {
        type Output = Duration;
        fn sub(self, earlier: Instant) -> Duration {
            self.0.saturating_sub(earlier.0)
        }
    }
}

/// A number unique to the calling thread among this process's threads,
/// never 0: what tells two threads of one process apart where a lock is
/// owned by a thread (an `RLock`, a `Condition`'s lock), as Python's are.
/// A forked child's thread keeps its parent's number; the process's own
/// identity tells the two apart.
pub(crate) fn thread_token() -> u64 {
    #[cfg(loom)]
    loom::thread_local! {
        static TOKEN: u64 = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    #[cfg(not(loom))]
    thread_local! {
        static TOKEN: u64 = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// The next [`thread_token`]; a plain std atomic even under loom: it only
/// hands out distinct numbers and is no part of any model.
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One pause in a spin loop. Under loom it yields to the scheduler so that a
/// spinning thread lets the model run the thread it waits for.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives the rest of this time slice to another runnable thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// A byte area that two sides hand over to each other through atomics.
///
/// Outside loom it is a raw pointer and a length into memory owned by
/// someone else (a mapped region or a heap block); the owner outlives it.
/// Under loom it owns one tracked cell per byte.
pub(crate) struct Bytes {
    #[cfg(not(loom))]
    ptr: *mut u8,
    #[cfg(loom)]
    cells: std::sync::Arc<[loom::cell::UnsafeCell<u8>]>,
    len: usize,
}

// SAFETY: `Bytes` is a view of memory whose accesses are ordered by the
// structure that owns it (ring indices, slot sequence numbers); sending the
// view to another thread does not by itself access anything.
unsafe impl Send for Bytes {}
// SAFETY: as above; concurrent access to disjoint or hand-over-ordered byte
// ranges is what every caller's SAFETY comment argues.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid for reads and writes for as long as the
    /// returned value (and every clone of it) lives.
    #[cfg(not(loom))]
    pub(crate) unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        Bytes { ptr, len }
    }

    /// A fresh zeroed area of `len` tracked bytes (loom only).
    #[cfg(loom)]
    pub(crate) fn new_tracked(len: usize) -> Self {
        let cells: Vec<_> = (0..len).map(|_| loom::cell::UnsafeCell::new(0u8)).collect();
        Bytes {
            cells: cells.into(),
            len,
        }
    }

    /// Copies `src` to `off..off+src.len()`.
    ///
    /// # Safety
    /// The range is in bounds and no other party reads or writes it until the
    /// caller publishes it with a Release store.
    #[inline]
    pub(crate) unsafe fn write(&self, off: usize, src: &[u8]) {
        debug_assert!(off + src.len() <= self.len);
        #[cfg(not(loom))]
        // SAFETY: in bounds and exclusively ours until published (caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len());
        }
        #[cfg(loom)]
        for (i, b) in src.iter().enumerate() {
            // SAFETY: exclusive access to this byte per the caller's contract;
            // loom checks the claim.
            self.cells[off + i].with_mut(|p| unsafe { *p = *b });
        }
    }

    /// Copies `off..off+dst.len()` into `dst`.
    ///
    /// # Safety
    /// The range is in bounds and was published to us with a Release store we
    /// observed with an Acquire load; its writer does not touch it until we
    /// hand it back.
    #[inline]
    pub(crate) unsafe fn read(&self, off: usize, dst: &mut [u8]) {
        debug_assert!(off + dst.len() <= self.len);
        #[cfg(not(loom))]
        // SAFETY: in bounds and published to us (caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len());
        }
        #[cfg(loom)]
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: published to us per the caller's contract; loom checks it.
            self.cells[off + i].with(|p| *b = unsafe { *p });
        }
    }

    /// Calls `f` with `off..off+len` in place (outside loom; under loom,
    /// with a copy read through the tracked cells).
    ///
    /// # Safety
    /// As for [`Bytes::read`], while `f` runs.
    #[inline]
    pub(crate) unsafe fn with_slice<R>(
        &self,
        off: usize,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        #[cfg(not(loom))]
        // SAFETY: forwarded contract.
        return f(unsafe { self.slice(off, len) });
        #[cfg(loom)]
        {
            let mut copy = vec![0u8; len];
            // SAFETY: forwarded contract.
            unsafe { self.read(off, &mut copy) };
            f(&copy)
        }
    }

    /// Copies `len` bytes from `from` to `to` inside the area (the ranges
    /// do not overlap).
    ///
    /// # Safety
    /// The source range as for [`Bytes::read`], the destination as for
    /// [`Bytes::write`].
    #[inline]
    pub(crate) unsafe fn copy_within(&self, from: usize, to: usize, len: usize) {
        debug_assert!(from + len <= self.len && to + len <= self.len);
        debug_assert!(from + len <= to || to + len <= from);
        #[cfg(not(loom))]
        // SAFETY: in bounds, disjoint, and each side ours per the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(from), self.ptr.add(to), len);
        }
        #[cfg(loom)]
        {
            let mut copy = vec![0u8; len];
            // SAFETY: forwarded contract.
            unsafe {
                self.read(from, &mut copy);
                self.write(to, &copy);
            }
        }
    }

    /// Writes a little-endian u32 at `off`.
    ///
    /// # Safety
    /// As for [`Bytes::write`].
    #[inline]
    pub(crate) unsafe fn write_u32(&self, off: usize, v: u32) {
        // SAFETY: forwarded contract.
        unsafe { self.write(off, &v.to_le_bytes()) }
    }

    /// Reads a little-endian u32 at `off`.
    ///
    /// # Safety
    /// As for [`Bytes::read`].
    #[inline]
    pub(crate) unsafe fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        // SAFETY: forwarded contract.
        unsafe { self.read(off, &mut b) };
        u32::from_le_bytes(b)
    }

    /// A mutable slice of `off..off+len` for zero-copy writes.
    ///
    /// # Safety
    /// As for [`Bytes::write`], for as long as the slice lives.
    #[cfg(not(loom))]
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= self.len);
        // SAFETY: in bounds and exclusively ours (caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }

    /// Asks the CPU to bring the cache line holding byte `off` close (a
    /// hint: no memory is read in the language's sense, so it cannot race
    /// with a writer). Out-of-range offsets are ignored. No-op under loom
    /// and off x86-64.
    #[inline(always)]
    pub(crate) fn prefetch(&self, off: usize) {
        #[cfg(all(not(loom), target_arch = "x86_64"))]
        if off < self.len {
            // SAFETY: `_mm_prefetch` has no memory-safety requirements (it
            // never faults); the address is in bounds anyway.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(self.ptr.add(off) as *const i8);
            }
        }
        #[cfg(any(loom, not(target_arch = "x86_64")))]
        let _ = off;
    }

    /// A shared slice of `off..off+len` for zero-copy reads.
    ///
    /// # Safety
    /// As for [`Bytes::read`], for as long as the slice lives.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.len);
        // SAFETY: in bounds and published to us (caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }
}

/// Pads and aligns a value to 128 bytes, so that two values written by
/// different processes never share a cache line. 128 rather than 64 because
/// recent x86 cores prefetch cache lines in adjacent pairs.
#[repr(C, align(128))]
#[derive(Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
