//! Typed values and arrays shared by processes, like
//! `multiprocessing.Value('q')` and `Array('d', n)`: a region of elements,
//! with a [`Lock`] beside it unless asked for none (`lock=False`).
//!
//! Each element lives in its own aligned 8-byte word, whatever its type,
//! so every access is one atomic load or store and a torn value cannot be
//! read. `get` and `set` are Relaxed: like Python's `value += 1`, a
//! read-modify-write of several processes needs the lock (`get_lock`),
//! whose acquire and release order the accesses made under it.
//! [`Array::fetch_add`] is the lock-free alternative: one compare-and-swap
//! loop per element.

use crate::shm::sync::{AtomicU64, Ordering};
use std::marker::PhantomData;

use super::region::{Kind, Region, RegionError};
use super::semaphore::{Lock, SemError};
use super::wait::Wait;

/// An element type, named by Python's `array` type codes.
pub trait Elem: Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// The type code (`b'q'` for i64, `b'd'` for f64, …).
    const TYPECODE: u8;
    /// The value as the bits of its word.
    fn to_word(self) -> u64;
    /// The value a word holds.
    fn from_word(w: u64) -> Self;
    /// `self + other` (wrapping for integers).
    fn plus(self, other: Self) -> Self;
}

macro_rules! int_elem {
    ($t:ty, $code:literal) => {
        impl Elem for $t {
            const TYPECODE: u8 = $code;
            fn to_word(self) -> u64 {
                self as u64
            }
            fn from_word(w: u64) -> Self {
                w as $t
            }
            fn plus(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
        }
    };
}
int_elem!(i32, b'i');
int_elem!(u32, b'I');
int_elem!(i64, b'q');
int_elem!(u64, b'Q');

impl Elem for f32 {
    const TYPECODE: u8 = b'f';
    fn to_word(self) -> u64 {
        self.to_bits() as u64
    }
    fn from_word(w: u64) -> Self {
        f32::from_bits(w as u32)
    }
    fn plus(self, other: Self) -> Self {
        self + other
    }
}

impl Elem for f64 {
    const TYPECODE: u8 = b'd';
    fn to_word(self) -> u64 {
        self.to_bits()
    }
    fn from_word(w: u64) -> Self {
        f64::from_bits(w)
    }
    fn plus(self, other: Self) -> Self {
        self + other
    }
}

/// Why an array could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The region failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The lock failed.
    #[error("the array's lock: {0}")]
    Lock(#[from] SemError),
    /// The region holds another element type.
    #[error("`{name}` holds elements of type code '{found}', not '{wanted}'")]
    WrongType {
        /// The region.
        name: String,
        /// Its type code.
        found: char,
        /// The one asked for.
        wanted: char,
    },
    /// An empty or absurdly long array.
    #[error("an array has 1 to {max} elements, not {len}", max = MAX_LEN)]
    BadLength {
        /// What was asked or found.
        len: u64,
    },
}

/// The longest array (8 bytes an element: 8 GiB).
pub const MAX_LEN: usize = 1 << 30;

/// The name of an array's lock region.
fn lock_name(name: &str) -> String {
    format!("{name}-lock")
}

/// A fixed-length array of `T` shared by processes (`Array('d', n)`).
pub struct Array<T: Elem> {
    region: Region,
    lock: Option<Lock>,
    len: usize,
    _t: PhantomData<T>,
}

/// One shared value (`Value('q')`): an array of one.
pub type Value<T> = Array<T>;

impl<T: Elem> Array<T> {
    /// Creates an array of `init` in a new region `name`, with a lock
    /// (waiting with `wait`) unless `lock` is false.
    pub fn create(name: &str, init: &[T], lock: bool, wait: Wait) -> Result<Self, ValueError> {
        if init.is_empty() || init.len() > MAX_LEN {
            return Err(ValueError::BadLength {
                len: init.len() as u64,
            });
        }
        let params = [init.len() as u64, T::TYPECODE as u64, lock as u64, 0, 0, 0];
        let region = Region::create(name, Kind::Raw, init.len() * 8, params)?;
        let lock = if lock {
            Some(Lock::create(&lock_name(name), wait)?)
        } else {
            None
        };
        let a = Array {
            region,
            lock,
            len: init.len(),
            _t: PhantomData,
        };
        for (i, v) in init.iter().enumerate() {
            a.word(i).store(v.to_word(), Ordering::Relaxed);
        }
        // Publishing (Release) makes the initial values visible to openers.
        a.region.publish();
        Ok(a)
    }

    /// Creates one value (`Value('q', init)`).
    pub fn create_value(name: &str, init: T, lock: bool, wait: Wait) -> Result<Self, ValueError> {
        Self::create(name, &[init], lock, wait)
    }

    /// Opens the array in region `name`.
    pub fn open(name: &str) -> Result<Self, ValueError> {
        let region = Region::open(name, Kind::Raw)?;
        let [len, code, lock, ..] = region.params();
        if code != T::TYPECODE as u64 {
            return Err(ValueError::WrongType {
                name: name.to_owned(),
                found: char::from_u32(code as u32).unwrap_or('?'),
                wanted: T::TYPECODE as char,
            });
        }
        if len == 0 || len > MAX_LEN as u64 || (region.body_len() as u64) < len * 8 {
            return Err(ValueError::BadLength { len });
        }
        let lock = if lock != 0 {
            Some(Lock::open(&lock_name(name))?)
        } else {
            None
        };
        Ok(Array {
            region,
            lock,
            len: len as usize,
            _t: PhantomData,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.len, "index {i} out of an array of {}", self.len);
        // SAFETY: i < len and the body holds len words (checked at open or
        // made at create); the body is 64-byte aligned, so every word is
        // 8-aligned; atomics are valid for any bits; alive with `region`.
        unsafe { &*(self.region.body_ptr().add(i * 8) as *const AtomicU64) }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: an array has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The lock (`get_lock()`), unless the array was made without one.
    pub fn get_lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Element `i` (panics past the end, as indexing does).
    #[inline]
    pub fn get(&self, i: usize) -> T {
        // Relaxed: see the module's text; the lock orders what it guards.
        T::from_word(self.word(i).load(Ordering::Relaxed))
    }

    /// Sets element `i`.
    #[inline]
    pub fn set(&self, i: usize, v: T) {
        // Relaxed: see `get`.
        self.word(i).store(v.to_word(), Ordering::Relaxed);
    }

    /// The value of a one-element array (`.value`).
    #[inline]
    pub fn value(&self) -> T {
        self.get(0)
    }

    /// Sets the value of a one-element array.
    #[inline]
    pub fn set_value(&self, v: T) {
        self.set(0, v);
    }

    /// Adds `delta` to element `i` without the lock, atomically; returns
    /// the value before.
    #[inline]
    pub fn fetch_add(&self, i: usize, delta: T) -> T {
        let w = self.word(i);
        // AcqRel: each add is ordered with the adds before it in the
        // word's modification order.
        let old = w
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| {
                Some(T::from_word(bits).plus(delta).to_word())
            })
            .unwrap_or_else(|b| b);
        T::from_word(old)
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::unique_name;

    #[test]
    fn values_round_trip_and_types_are_checked() {
        let name = unique_name("val");
        let v = Value::<i64>::create_value(&name, -5, true, Wait::SPIN_PARK).unwrap();
        let w = Value::<i64>::open(&name).unwrap();
        assert_eq!(w.value(), -5);
        w.set_value(7);
        assert_eq!(v.value(), 7);
        assert_eq!(v.fetch_add(0, 3), 7);
        assert_eq!(w.value(), 10);
        assert!(w.get_lock().is_some());
        let e = Value::<f64>::open(&name).err().unwrap();
        assert!(e.to_string().contains("'q', not 'd'"), "{e}");

        let name = unique_name("arr");
        let a = Array::<f64>::create(&name, &[0.5; 4], false, Wait::SPIN).unwrap();
        let b = Array::<f64>::open(&name).unwrap();
        assert!(b.get_lock().is_none());
        b.set(3, 2.25);
        b.fetch_add(1, 1.0);
        assert_eq!(a.to_vec(), vec![0.5, 1.5, 0.5, 2.25]);
        let small =
            Array::<i32>::create(&unique_name("i32"), &[-1, i32::MAX], false, Wait::SPIN).unwrap();
        assert_eq!(small.fetch_add(1, 1), i32::MAX);
        assert_eq!(small.to_vec(), vec![-1, i32::MIN]);
        assert!(Array::<u32>::create(&unique_name("e"), &[], false, Wait::SPIN).is_err());
    }

    #[test]
    fn increments_under_the_lock_and_atomic_ones_are_exact() {
        let name = unique_name("inc");
        let a = Array::<u64>::create(&name, &[0, 0], true, Wait::SPIN_PARK).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let name = name.clone();
                std::thread::spawn(move || {
                    let a = Array::<u64>::open(&name).unwrap();
                    for _ in 0..20_000 {
                        let _g = a.get_lock().unwrap().lock(None).unwrap();
                        a.set(0, a.get(0) + 1);
                        drop(_g);
                        a.fetch_add(1, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(a.to_vec(), vec![80_000, 80_000]);
    }
}
