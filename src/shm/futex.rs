//! Futex wait and wake on a 32-bit word shared between processes.
//!
//! The word lives in shared memory, so the *shared* futex operations are used
//! (no `FUTEX_PRIVATE_FLAG`): the kernel keys waiters by the physical page,
//! which is what lets a process wake a waiter in another process.
//!
//! Semantics (futex(2)): `wait(expected)` sleeps only if the word still holds
//! `expected` when the kernel looks, atomically with queueing the waiter; a
//! `wake` after a change of the word therefore cannot be lost. Wake-ups may be
//! spurious, so every caller re-checks its condition in a loop.
//!
//! Under `--cfg loom` the kernel is modelled by a mutex and a condition
//! variable with the same check-then-sleep atomicity, so the model explores
//! lost-wake-up interleavings of the code above it. Timeouts are ignored in
//! the model; the models do not use them.

use std::time::Duration;

use super::sync::{AtomicU32, Ordering};

/// What a [`Futex::wait`] returned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken, or returned spuriously (signal): re-check the condition.
    Woken,
    /// The word did not hold the expected value; nothing slept.
    Changed,
    /// The timeout passed.
    TimedOut,
}

/// A 32-bit word that processes can sleep on.
#[cfg(not(loom))]
#[repr(transparent)]
pub struct Futex(AtomicU32);

/// A 32-bit word that threads can sleep on (loom model).
#[cfg(loom)]
pub struct Futex {
    word: AtomicU32,
    /// How many are asleep in `wait`.
    lock: loom::sync::Mutex<u32>,
    cond: loom::sync::Condvar,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Futex>() == 4);

impl Futex {
    /// A futex word holding `v`.
    pub fn new(v: u32) -> Self {
        #[cfg(not(loom))]
        {
            Futex(AtomicU32::new(v))
        }
        #[cfg(loom)]
        {
            Futex {
                word: AtomicU32::new(v),
                lock: loom::sync::Mutex::new(0),
                cond: loom::sync::Condvar::new(),
            }
        }
    }

    /// The word itself.
    #[inline(always)]
    pub fn word(&self) -> &AtomicU32 {
        #[cfg(not(loom))]
        {
            &self.0
        }
        #[cfg(loom)]
        {
            &self.word
        }
    }

    /// Sleeps while the word equals `expected`, for at most `timeout`.
    #[cfg(not(loom))]
    pub fn wait(&self, expected: u32, timeout: Option<Duration>) -> FutexWait {
        let ts;
        let ts_ptr = match timeout {
            Some(d) => {
                ts = libc::timespec {
                    tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                };
                &ts as *const libc::timespec
            }
            None => std::ptr::null(),
        };
        // SAFETY: the word is a valid, aligned u32 for the duration of the
        // call (we hold `&self`); FUTEX_WAIT reads it and does not write; the
        // timespec pointer is null or points at a live local.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if r == 0 {
            return FutexWait::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => FutexWait::Changed,
            Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
            // EINTR: a signal arrived; the caller re-checks.
            _ => FutexWait::Woken,
        }
    }

    /// Wakes at most `n` sleepers; returns how many were woken.
    #[cfg(not(loom))]
    pub fn wake(&self, n: u32) -> u32 {
        let n = n.min(i32::MAX as u32);
        // SAFETY: as for `wait`; FUTEX_WAKE only uses the address as a key.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAKE,
                n,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        r.max(0) as u32
    }

    /// Sleeps while the word equals `expected` (model: the check and the
    /// sleep are atomic under the mutex, as in the kernel; a waker takes
    /// the sleeper off the count, as the kernel takes it off the queue).
    #[cfg(loom)]
    pub fn wait(&self, expected: u32, _timeout: Option<Duration>) -> FutexWait {
        let mut asleep = self.lock.lock().unwrap();
        if self.word.load(Ordering::SeqCst) != expected {
            return FutexWait::Changed;
        }
        *asleep += 1;
        drop(self.cond.wait(asleep).unwrap());
        FutexWait::Woken
    }

    /// Wakes exactly `min(n, asleep)` sleepers, as the kernel does, and
    /// returns how many: a caller that wakes one where two wait for it,
    /// or that does something else when nobody was asleep, is modelled.
    #[cfg(loom)]
    pub fn wake(&self, n: u32) -> u32 {
        let mut asleep = self.lock.lock().unwrap();
        let k = (*asleep).min(n);
        *asleep -= k;
        for _ in 0..k {
            self.cond.notify_one();
        }
        k
    }

    /// Loads the word (`Acquire`; see the caller for what it pairs with).
    #[inline(always)]
    pub fn load(&self) -> u32 {
        self.word().load(Ordering::Acquire)
    }
}
