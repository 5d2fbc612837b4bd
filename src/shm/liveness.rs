//! Who is on the other side, and is it still alive?
//!
//! A process is named by its pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`, in clock ticks since boot), so a pid the kernel has
//! handed to a new process is not mistaken for the peer that died. A zombie
//! (killed but not yet reaped) counts as dead.

use std::sync::Mutex;

use super::sync::{AtomicU64, Ordering};

/// A process, as its pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (0 if unknown).
    pub start: u64,
}

/// What `/proc` says of a pid.
struct ProcStat {
    state: u8,
    ppid: u32,
    start: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or
    // parentheses, so fields are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // After ppid (4) come pgrp (5) … starttime (22): 17 more fields.
    let start = fields.nth(17)?.parse().ok()?;
    Some(ProcStat { state, ppid, start })
}

/// The parent of process `pid`, if it exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|s| s.ppid)
}

impl PeerId {
    /// This process. Its start time is read once per process: the cache
    /// is keyed by the pid, so a child forked without exec (which inherits
    /// the cache) reads its own rather than passing for its parent.
    pub fn current() -> PeerId {
        static ME: Mutex<Option<PeerId>> = Mutex::new(None);
        let pid = std::process::id();
        let mut me = ME.lock().unwrap_or_else(|e| e.into_inner());
        match *me {
            Some(id) if id.pid == pid => id,
            _ => {
                let start = proc_stat(pid).map_or(0, |s| s.start);
                let id = PeerId { pid, start };
                *me = Some(id);
                id
            }
        }
    }

    /// Whether the process still runs: it exists, is not a zombie, and
    /// started when this id says it did.
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        match proc_stat(self.pid) {
            None => false,
            Some(s) => {
                !matches!(s.state, b'Z' | b'X' | b'x') && (self.start == 0 || s.start == self.start)
            }
        }
    }
}

/// A place in shared memory where a process says it holds a role.
///
/// One 64-bit word: the pid in the low 22 bits (Linux pids stay below
/// 2^22, `PID_MAX_LIMIT`) and the start time above, so a reader never sees
/// one holder's pid with another's start time. 0 means free.
#[repr(C)]
pub struct PeerSlot {
    word: AtomicU64,
}

const PID_BITS: u32 = 22;

impl PeerId {
    fn pack(self) -> u64 {
        debug_assert!(self.pid < 1 << PID_BITS);
        (self.start << PID_BITS) | u64::from(self.pid)
    }

    fn unpack(w: u64) -> Option<PeerId> {
        (w != 0).then_some(PeerId {
            pid: (w & ((1 << PID_BITS) - 1)) as u32,
            start: w >> PID_BITS,
        })
    }
}

impl Default for PeerSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerSlot {
    /// A free slot.
    pub fn new() -> Self {
        PeerSlot {
            word: AtomicU64::new(0),
        }
    }

    /// Takes the slot for `me` if it is free or its holder is dead.
    /// Returns the live holder (possibly this very process) otherwise.
    pub fn claim(&self, me: PeerId) -> Result<(), PeerId> {
        loop {
            // Relaxed: the slot publishes nothing but itself.
            let cur = self.word.load(Ordering::Relaxed);
            // The holder is this very process (same pid *and* start time),
            // or alive: a dead process that had our pid is not us.
            if let Some(holder) = PeerId::unpack(cur)
                && (holder == me || holder.is_alive())
            {
                return Err(holder);
            }
            if self
                .word
                .compare_exchange(cur, me.pack(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Takes the slot for `me` only if it is free (a dead holder's slot is
    /// left as it is, so its death stays visible). Returns whether it did.
    pub fn claim_free(&self, me: PeerId) -> bool {
        // Relaxed: the slot publishes nothing but itself.
        self.word.load(Ordering::Relaxed) == 0
            && self
                .word
                .compare_exchange(0, me.pack(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Frees the slot if `me` holds it.
    pub fn release(&self, me: PeerId) {
        // Release: a process that frees its slot and then exits has freed
        // it before anyone can see it gone (see `dead_holder`).
        let _ = self
            .word
            .compare_exchange(me.pack(), 0, Ordering::Release, Ordering::Relaxed);
    }

    /// Records `holder` unconditionally (tests, and stand-ins whose
    /// holder is known by construction).
    pub fn set(&self, holder: Option<PeerId>) {
        // Relaxed: as above.
        self.word
            .store(holder.map_or(0, PeerId::pack), Ordering::Relaxed);
    }

    /// Takes a free slot for `me` as a lock is taken: one CAS from free
    /// to `me`, so the slot is never taken without saying by whom.
    /// Returns whether it did.
    #[inline]
    pub fn take(&self, me: PeerId) -> bool {
        // SYNC POINT: lock — Acquire pairs with the Release in `hand_back`:
        // what the last holder did under the lock is visible to us.
        self.word
            .compare_exchange(0, me.pack(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Frees the slot whoever holds it (a lock any process may release),
    /// in one store; returns who held it.
    #[inline]
    pub fn hand_back(&self) -> Option<PeerId> {
        // SYNC POINT: lock — Release: what we did under the lock happens
        // before the next `take`.
        PeerId::unpack(self.word.swap(0, Ordering::Release))
    }

    /// Takes the slot for `me` from `dead`, if `dead` still holds it.
    /// Returns whether it did.
    pub fn take_over(&self, dead: PeerId, me: PeerId) -> bool {
        // SYNC POINT: lock — Acquire: what the dead holder wrote before it
        // died is as visible as it will ever be.
        self.word
            .compare_exchange(dead.pack(), me.pack(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The holder, if any.
    pub fn get(&self) -> Option<PeerId> {
        // Relaxed: as above.
        PeerId::unpack(self.word.load(Ordering::Relaxed))
    }

    /// The holder if it has died without freeing the slot.
    pub fn dead_holder(&self) -> Option<PeerId> {
        let holder = self.get()?;
        if holder.is_alive() {
            return None;
        }
        // The holder may have freed the slot and exited between our read
        // and our look at it: that is a process that left, not one that
        // died holding the slot, so the word is read again. Its release
        // came before its exit, and we saw the exit through /proc: the
        // kernel's exit path and our read of /proc order the two (this is
        // not a Release/Acquire pairing of the word's own). Acquire pairs
        // with `release` for whoever goes on to take the slot.
        (PeerId::unpack(self.word.load(Ordering::Acquire)) == Some(holder)).then_some(holder)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_has_a_start_time() {
        let me = PeerId::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0);
        assert!(me.is_alive());
    }

    #[test]
    fn a_child_forked_without_exec_is_itself() {
        let parent = PeerId::current();
        // SAFETY: the child only reads /proc and exits; glibc keeps malloc
        // usable in a forked child.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let me = PeerId::current();
            let right = me.pid == std::process::id() && me != parent && me.is_alive();
            // SAFETY: ends the child without running the parent's test harness.
            unsafe { libc::_exit(if right { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the forked child took itself for its parent (status {status:#x})"
        );
    }

    #[test]
    fn reused_pid_with_other_start_time_is_dead() {
        let me = PeerId::current();
        let impostor = PeerId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!impostor.is_alive());
        assert!(!PeerId { pid: 0, start: 0 }.is_alive());
    }

    #[test]
    fn reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = child.id();
        child.wait().unwrap();
        assert!(!PeerId { pid: id, start: 0 }.is_alive());
    }

    #[test]
    fn slot_claim_and_release() {
        let slot = PeerSlot::new();
        let me = PeerId::current();
        slot.claim(me).unwrap();
        assert_eq!(slot.get(), Some(me));
        assert_eq!(slot.dead_holder(), None);
        assert_eq!(slot.claim(me), Err(me), "a role is held once");
        assert!(!slot.claim_free(me));
        slot.release(me);
        assert_eq!(slot.get(), None);
        let dead = PeerId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(slot.claim_free(dead));
        assert_eq!(slot.dead_holder(), Some(dead));
        assert!(!slot.claim_free(me), "a dead holder's slot stays visible");
        // A dead process that had our pid (the kernel reused it) holds
        // nothing of ours: claim takes its slot.
        assert_eq!(slot.claim(me), Ok(()));
        assert_eq!(slot.get(), Some(me));
    }
}
