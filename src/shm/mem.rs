//! Where a structure's shared state lives: a mapped [`Region`] (between
//! processes) or the heap (threads, unit tests and loom models).
//!
//! Every structure is a control block `C` (`#[repr(C)]`, atomics only),
//! optionally followed by an array of per-slot atomic words, followed by
//! data bytes. In a region or a plain heap block they are laid out in one
//! piece of memory:
//!
//! ```text
//! [ C, padded to 128 ][ data: slot words interleaved with bytes, see `Words` ]
//! ```
//!
//! Under loom the control block is boxed, the words are a vector of loom
//! atomics and the bytes are tracked cells, so the same code is checked.

#[cfg(not(loom))]
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

#[cfg(not(loom))]
use super::region::Region;
use super::sync::{AtomicU64, Bytes};

/// The alignment of control blocks, slots and data areas.
pub(crate) const ALIGN: usize = 128;

/// Rounds `n` up to a multiple of `to` (a power of two).
#[inline]
pub(crate) const fn round_up(n: usize, to: usize) -> usize {
    (n + to - 1) & !(to - 1)
}

/// The offset of the data area after a control block `C`.
pub(crate) const fn data_offset<C>() -> usize {
    round_up(std::mem::size_of::<C>(), ALIGN)
}

/// What keeps a structure's memory alive.
pub(crate) enum Backing {
    /// A mapped region, unlinked on drop if we created it.
    #[cfg(not(loom))]
    Region(Region),
    /// A heap block.
    #[cfg(not(loom))]
    Heap { ptr: NonNull<u8>, layout: Layout },
    /// Loom: the parts own themselves.
    #[cfg(loom)]
    Model,
}

// SAFETY: the backing only owns memory; access to it is ordered by the
// structures built on it.
unsafe impl Send for Backing {}
// SAFETY: as above.
unsafe impl Sync for Backing {}

impl Backing {
    /// A zeroed heap block of `len` bytes, aligned to [`ALIGN`].
    #[cfg(not(loom))]
    pub(crate) fn heap(len: usize) -> Backing {
        let layout = Layout::from_size_align(len.max(ALIGN), ALIGN).expect("layout fits in isize");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Backing::Heap { ptr, layout }
    }

    /// The first byte and the length of the memory.
    #[cfg(not(loom))]
    pub(crate) fn span(&self) -> (*mut u8, usize) {
        match self {
            Backing::Region(r) => (r.body_ptr(), r.body_len()),
            Backing::Heap { ptr, layout } => (ptr.as_ptr(), layout.size()),
        }
    }

    /// The region, if this is one.
    #[cfg(not(loom))]
    pub(crate) fn region(&self) -> Option<&Region> {
        match self {
            Backing::Region(r) => Some(r),
            Backing::Heap { .. } => None,
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if let Backing::Heap { ptr, layout } = self {
            // SAFETY: allocated in `heap` with this layout, freed once.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), *layout) };
        }
    }
}

/// Per-slot atomic words, `stride` bytes apart, interleaved with the data
/// bytes (a slot's word is its first 8 bytes), so a slot's sequence number
/// and its payload share cache lines.
pub(crate) struct Words {
    #[cfg(not(loom))]
    base: *mut u8,
    #[cfg(not(loom))]
    stride: usize,
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
    count: usize,
}

impl Words {
    /// The `i`-th word. Panics (in debug) if out of range; callers mask `i`.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.count);
        #[cfg(not(loom))]
        // SAFETY: `i < count`, the words were laid out (8-aligned, in bounds)
        // when this was built, and the backing outlives `self`.
        unsafe {
            &*(self.base.add(i * self.stride) as *const AtomicU64)
        }
        #[cfg(loom)]
        &self.words[i]
    }
}

/// A structure's shared state: control block, slot words and data bytes.
pub(crate) struct Shared<C> {
    ctrl: NonNull<C>,
    pub(crate) words: Words,
    pub(crate) data: Bytes,
    /// Keeps the memory alive.
    _backing: Arc<Backing>,
}

// SAFETY: `C` is made of atomics (`Sync`); words and bytes are ordered by the
// structure; the backing keeps the memory alive for as long as any `Shared`.
unsafe impl<C: Sync> Send for Shared<C> {}
// SAFETY: as above.
unsafe impl<C: Sync> Sync for Shared<C> {}

/// How to lay out slot words inside the data area.
#[derive(Clone, Copy)]
pub(crate) struct SlotLayout {
    /// Number of slots (0 for none).
    pub count: usize,
    /// Bytes from one slot to the next; the first 8 hold the slot's word.
    pub stride: usize,
}

impl SlotLayout {
    /// No slots.
    pub(crate) const NONE: SlotLayout = SlotLayout {
        count: 0,
        stride: 0,
    };
}

impl<C> Shared<C> {
    /// The bytes one structure needs: control block plus data.
    pub(crate) const fn footprint(data_len: usize) -> usize {
        data_offset::<C>() + round_up(data_len, ALIGN)
    }

    /// Places a structure at byte `offset` of `backing`: writes `init` there
    /// (when creating) or trusts what is there (when opening a published
    /// region), followed by `data_len` bytes of data.
    ///
    /// # Safety
    /// `offset + footprint(data_len)` fits in the backing and `offset` is a
    /// multiple of [`ALIGN`]; when `init` is `None`, a `C` was initialised
    /// there before (by any process) and published; no other live `Shared`
    /// in this process was placed at an overlapping range by a different `C`.
    #[cfg(not(loom))]
    pub(crate) unsafe fn place(
        backing: Arc<Backing>,
        offset: usize,
        init: Option<C>,
        data_len: usize,
        slots: SlotLayout,
        words_init: Option<&dyn Fn(usize) -> u64>,
    ) -> Shared<C> {
        let (base, len) = backing.span();
        assert!(offset.is_multiple_of(ALIGN) && offset + Self::footprint(data_len) <= len);
        assert!(slots.count == 0 || slots.count * slots.stride <= data_len);
        // SAFETY: in bounds (asserted).
        let ctrl_ptr = unsafe { base.add(offset) } as *mut C;
        if let Some(c) = init {
            // SAFETY: in bounds, aligned, and not yet visible to any other
            // party (the region is not published, or the heap block is new).
            unsafe { ctrl_ptr.write(c) };
        }
        // SAFETY: in bounds (asserted).
        let data_ptr = unsafe { base.add(offset + data_offset::<C>()) };
        let words = Words {
            base: data_ptr,
            stride: slots.stride,
            count: slots.count,
        };
        if let Some(f) = words_init {
            for i in 0..slots.count {
                // Relaxed: published with the region (or before the handles
                // exist, for the heap).
                words.get(i).store(f(i), super::sync::Ordering::Relaxed);
            }
        }
        Shared {
            // SAFETY: derived from a non-null mapping or allocation.
            ctrl: unsafe { NonNull::new_unchecked(ctrl_ptr) },
            words,
            // SAFETY: the range is in bounds and the backing lives as long as
            // this `Shared` (it holds an `Arc` to it).
            data: unsafe { Bytes::from_raw(data_ptr, data_len) },
            _backing: backing,
        }
    }

    /// A structure on the heap, initialised with `init`.
    pub(crate) fn heap(
        init: C,
        data_len: usize,
        slots: SlotLayout,
        words_init: &dyn Fn(usize) -> u64,
    ) -> Shared<C> {
        #[cfg(not(loom))]
        {
            let backing = Arc::new(Backing::heap(Self::footprint(data_len)));
            // SAFETY: the block is exactly one footprint, fresh and aligned.
            unsafe { Self::place(backing, 0, Some(init), data_len, slots, Some(words_init)) }
        }
        #[cfg(loom)]
        {
            let words: Box<[AtomicU64]> = (0..slots.count)
                .map(|i| AtomicU64::new(words_init(i)))
                .collect();
            let ctrl = Box::into_raw(Box::new(init));
            Shared {
                // SAFETY: from `Box::into_raw`, never null; freed in `Drop`.
                ctrl: unsafe { NonNull::new_unchecked(ctrl) },
                words: Words {
                    words,
                    count: slots.count,
                },
                data: Bytes::new_tracked(data_len),
                _backing: Arc::new(Backing::Model),
            }
        }
    }

    /// The control block.
    #[inline(always)]
    pub(crate) fn ctrl(&self) -> &C {
        // SAFETY: initialised before this `Shared` was built and kept alive by
        // `backing` (or owned, under loom); only shared references are made.
        unsafe { self.ctrl.as_ref() }
    }
}

#[cfg(loom)]
impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        // SAFETY: under loom the control block was boxed in `heap` and each
        // `Shared` owns its own; it is freed once, here.
        drop(unsafe { Box::from_raw(self.ctrl.as_ptr()) });
    }
}

/// Makes region `name` of `kind` holding one control block, `init`, with no
/// data after it, and publishes it: the primitives made of one block (a
/// semaphore, a condition, a barrier).
#[cfg(not(loom))]
pub(crate) fn create_block<C>(
    name: &str,
    kind: super::region::Kind,
    init: C,
    params: [u64; 6],
) -> Result<Arc<Shared<C>>, super::region::RegionError> {
    let region = Region::create(name, kind, Shared::<C>::footprint(0), params)?;
    let backing = Arc::new(Backing::Region(region));
    // SAFETY: the body is one footprint, new and unpublished.
    let shared =
        unsafe { Shared::place(backing.clone(), 0, Some(init), 0, SlotLayout::NONE, None) };
    if let Some(r) = backing.region() {
        r.publish();
    }
    Ok(Arc::new(shared))
}

/// Opens the block [`create_block`] made in region `name`, after `check`
/// has read the region's parameters (and refused what it cannot use).
#[cfg(not(loom))]
pub(crate) fn open_block<C, T>(
    name: &str,
    kind: super::region::Kind,
    check: impl FnOnce(&Region) -> Result<T, super::region::RegionError>,
) -> Result<(Arc<Shared<C>>, T), super::region::RegionError> {
    let region = Region::open(name, kind)?;
    let t = check(&region)?;
    if region.body_len() < Shared::<C>::footprint(0) {
        return Err(region.bad_params("body too small"));
    }
    let backing = Arc::new(Backing::Region(region));
    // SAFETY: published and large enough (checked).
    let shared = unsafe { Shared::place(backing, 0, None, 0, SlotLayout::NONE, None) };
    Ok((Arc::new(shared), t))
}
