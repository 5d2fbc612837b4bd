//! The floors' peers: one cache line bounced between two processes, a
//! futex ping-pong, and the copy floors of a stream and of a round trip.

use super::super::control::PeerReport;
use super::super::measure::{cpu_time_ns, histogram, now_ns, summary};
use super::bodies::{STAMP_EVERY, busy_for, timed_exchanges, timed_exchanges_from};
use crate::shm::futex::Futex;

/// The floor with spinning: one cache line bounced between two processes.
/// Side A writes odd values and waits for the next even one; side B the
/// reverse. No queue, no framing, no copy.
pub fn floor_spin(
    word: &std::sync::atomic::AtomicU64,
    initiator: bool,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    floor_spin_from(word, initiator, 0, warmup, iters)
}

/// [`floor_spin`] from exchange `first` (a session's later rounds).
pub fn floor_spin_from(
    word: &std::sync::atomic::AtomicU64,
    initiator: bool,
    first: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    use std::sync::atomic::Ordering;
    // Acquire/Release: each hand-off publishes the previous step (the
    // value itself is all there is).
    let wait_for = |v: u64| {
        while word.load(Ordering::Acquire) != v {
            std::hint::spin_loop();
        }
    };
    if initiator {
        timed_exchanges_from(first, warmup, iters, |seq| {
            word.store(2 * seq + 1, Ordering::Release);
            wait_for(2 * seq + 2);
            Ok(())
        })
    } else {
        let cpu0 = cpu_time_ns();
        let total = warmup + 2 * iters;
        for seq in first..first + total {
            wait_for(2 * seq + 1);
            word.store(2 * seq + 2, Ordering::Release);
        }
        Ok(PeerReport {
            messages: total,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        })
    }
}

/// Slots of the copy floor's stream for messages of `size`: about 4 MiB
/// of buffering (deeper buffers than that spill out of the caches and make
/// the floor slower, not faster), at least 4 slots and at most 1024.
pub fn floor_slots(size: usize) -> usize {
    ((4 << 20) / size.max(1)).clamp(4, 1024)
}

/// The bytes of the copy floor's region for messages of `size`.
pub fn floor_stream_len(size: usize) -> usize {
    floor_slots(size) * floor_stride(size)
}

fn floor_stride(size: usize) -> usize {
    64 + size.div_ceil(64) * 64
}

/// Numbers a floor's message `i` in its first and last 8 bytes (`buf`
/// holds at least 8).
fn number_ends(buf: &mut [u8], i: u64) {
    let n = buf.len();
    buf[..8].copy_from_slice(&i.to_le_bytes());
    buf[n - 8..].copy_from_slice(&i.to_le_bytes());
}

/// Checks that a floor's message carries number `i` at both ends (`buf`
/// holds at least 8 bytes).
fn check_ends(buf: &[u8], i: u64) -> Result<(), String> {
    let n = buf.len();
    let at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]));
    match (at(0), at(n - 8)) {
        (a, b) if a == i && b == i => Ok(()),
        (a, b) => Err(format!(
            "message {i}: carries {a} at its start and {b} at its end"
        )),
    }
}

/// The floor of a stream: one process copies each message from its own
/// buffer into one of the shared slots and flags it; the other
/// copies it out into its own buffer and frees the slot. No framing, no
/// checksum: a plain copy in and a plain copy out, the least a copying
/// channel does. The slots: [`floor_slots`]. The receiver checks each message's number (its first and
/// last 8 bytes) and that the flag is the one expected.
///
/// # Safety
///
/// `base` must point to [`floor_stream_len`]`(size)` bytes of shared
/// memory, 64-byte aligned, zeroed before either side starts, alive for
/// the call, used by exactly one sender and one receiver.
pub unsafe fn floor_stream(
    base: *mut u8,
    size: usize,
    sender: bool,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let stride = floor_stride(size);
    let slots = floor_slots(size);
    let slot = |i: u64| {
        let at = (i as usize % slots) * stride;
        // SAFETY: `at + stride` is within the region (the caller's
        // promise); the flag and the time are aligned words, only used
        // atomically; the data follows them.
        unsafe {
            (
                &*(base.add(at) as *const AtomicU64),
                &*(base.add(at + 8) as *const AtomicU64),
                base.add(at + 64),
            )
        }
    };
    let total = warmup + iters;
    let cpu0 = cpu_time_ns();
    let mut buf = vec![0x5Au8; size.max(8)];
    if sender {
        let first = now_ns();
        for i in 0..total {
            let (flag, ts, data) = slot(i);
            // SYNC POINT: slot freed — Acquire pairs with the receiver's
            // Release after its copy out.
            while flag.load(Ordering::Acquire) != 0 {
                std::hint::spin_loop();
            }
            number_ends(&mut buf, i);
            // SAFETY: the slot is ours until the flag below; `size` bytes
            // of data follow its header line.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), data, size) };
            let t = if i >= warmup && i % STAMP_EVERY == 0 {
                now_ns()
            } else {
                0
            };
            // Relaxed: published by the flag.
            ts.store(t, Ordering::Relaxed);
            // SYNC POINT: slot filled.
            flag.store(i + 1, Ordering::Release);
        }
        return Ok(PeerReport {
            messages: total,
            elapsed_ns: now_ns() - first,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        });
    }
    let mut h = histogram();
    let (mut first, mut last) = (0, 0);
    for i in 0..total {
        let (flag, ts, data) = slot(i);
        // SYNC POINT: slot filled — Acquire pairs with the sender's Release.
        let f = loop {
            match flag.load(Ordering::Acquire) {
                0 => std::hint::spin_loop(),
                f => break f,
            }
        };
        if f != i + 1 {
            return Err(format!(
                "slot flagged with message {} where {i} was due",
                f - 1
            ));
        }
        // SAFETY: the slot is ours until we free it below.
        unsafe { std::ptr::copy_nonoverlapping(data, buf.as_mut_ptr(), size) };
        let t = ts.load(Ordering::Relaxed);
        // SYNC POINT: slot freed.
        flag.store(0, Ordering::Release);
        if size >= 8 {
            check_ends(&buf[..size], i)?;
        }
        if i >= warmup {
            let now = if t != 0 || i == warmup || i + 1 == total {
                now_ns()
            } else {
                0
            };
            if t != 0 {
                h.saturating_record(now.saturating_sub(t).max(1));
            }
            if i == warmup {
                first = now;
            }
            if i + 1 == total {
                last = now;
            }
        }
    }
    Ok(PeerReport {
        messages: iters.saturating_sub(1),
        elapsed_ns: last.saturating_sub(first),
        latency: summary(&h),
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// The bytes of one direction's slot of the copy floor of a round trip:
/// a flag word and the message after it, in the flag's cache line when it
/// fits, each slot on lines of its own.
fn floor_copy_stride(size: usize) -> usize {
    (8 + size).div_ceil(128) * 128
}

/// The bytes of the copy floor of a round trip's region for messages of
/// `size`: a slot each way.
pub fn floor_copy_len(size: usize) -> usize {
    2 * floor_copy_stride(size)
}

/// The copy floor of a round trip: one slot per direction, as any duplex
/// channel made of two one-way channels has, each a flag word followed by
/// the message. Side A copies message `seq` from its own buffer into the
/// A→B slot and flags it; side B waits for the flag, copies the message
/// out, checks its number (its first and last 8 bytes), copies it into the
/// B→A slot and flags that; A waits, copies the echo out and checks it. No
/// framing, no checksum, no positions: the least a round trip of `size`
/// bytes over two one-way channels moves. (The spin floor is one word that
/// both directions share, which no pair of channels can be.)
///
/// # Safety
///
/// `base` must point to [`floor_copy_len`]`(size)` bytes of shared memory,
/// 128-byte aligned, zeroed before either side starts, alive for the call,
/// used by exactly one side A and one side B; `size` is at least 8.
pub unsafe fn floor_copy_pingpong(
    base: *mut u8,
    size: usize,
    initiator: bool,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let stride = floor_copy_stride(size);
    let slot = |dir: usize| {
        // SAFETY: slot `dir` (0: A→B, 1: B→A) lies within the region (the
        // caller's promise); its flag is an aligned word used only
        // atomically, its message follows it.
        unsafe {
            let at = base.add(dir * stride);
            (&*(at as *const AtomicU64), at.add(8))
        }
    };
    let (out, inp) = if initiator {
        (slot(0), slot(1))
    } else {
        (slot(1), slot(0))
    };
    let mut buf = vec![0x5Au8; size];
    // Message `seq` is flagged `seq + 1` each way.
    let send = |buf: &[u8], seq: u64| {
        // SAFETY: the peer reads this slot only after our flag below, and
        // is done with the last message in it (its flag, which we saw,
        // came after its copy out).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), out.1, size) };
        // SYNC POINT: message in its slot.
        out.0.store(seq + 1, Ordering::Release);
    };
    let recv = |buf: &mut [u8], seq: u64| -> Result<(), String> {
        // SYNC POINT: message in its slot — Acquire pairs with the
        // sender's Release.
        loop {
            match inp.0.load(Ordering::Acquire) {
                f if f == seq + 1 => break,
                f if f <= seq => std::hint::spin_loop(),
                f => return Err(format!("slot flagged {f} where {} was due", seq + 1)),
            }
        }
        // SAFETY: the slot is ours to read until we answer.
        unsafe { std::ptr::copy_nonoverlapping(inp.1, buf.as_mut_ptr(), size) };
        check_ends(buf, seq)
    };
    if initiator {
        timed_exchanges(warmup, iters, |seq| {
            number_ends(&mut buf, seq);
            send(&buf, seq);
            recv(&mut buf, seq)
        })
    } else {
        let cpu0 = cpu_time_ns();
        let total = warmup + 2 * iters;
        for seq in 0..total {
            recv(&mut buf, seq)?;
            send(&buf, seq);
        }
        Ok(PeerReport {
            messages: total,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        })
    }
}

/// The floor with parking: a futex ping-pong, every hand-off a wake-up.
/// The echoing side works `think_ns` on each step before it answers (0
/// but for `pingpong-late`).
pub fn floor_park(
    ping: &Futex,
    pong: &Futex,
    initiator: bool,
    warmup: u64,
    iters: u64,
    think_ns: u64,
) -> Result<PeerReport, String> {
    floor_park_inner(ping, pong, initiator, 0, (warmup, iters), think_ns)
}

/// [`floor_park`] from exchange `first` (a session's later rounds).
pub fn floor_park_from(
    ping: &Futex,
    pong: &Futex,
    initiator: bool,
    first: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    floor_park_inner(ping, pong, initiator, first, (warmup, iters), 0)
}

fn floor_park_inner(
    ping: &Futex,
    pong: &Futex,
    initiator: bool,
    first: u64,
    (warmup, iters): (u64, u64),
    think_ns: u64,
) -> Result<PeerReport, String> {
    use std::sync::atomic::Ordering;
    let wait_for = |f: &Futex, v: u32| loop {
        let cur = f.load();
        if cur == v {
            return;
        }
        f.wait(cur, None);
    };
    if initiator {
        timed_exchanges_from(first, warmup, iters, |seq| {
            let v = seq as u32 + 1;
            // Release: publishes the step to the peer's Acquire load.
            ping.word().store(v, Ordering::Release);
            ping.wake(1);
            wait_for(pong, v);
            Ok(())
        })
    } else {
        let cpu0 = cpu_time_ns();
        let total = warmup + 2 * iters;
        for seq in first..first + total {
            let v = seq as u32 + 1;
            wait_for(ping, v);
            busy_for(think_ns);
            // Release: as above.
            pong.word().store(v, Ordering::Release);
            pong.wake(1);
        }
        Ok(PeerReport {
            messages: total,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Zeroed, 128-byte aligned memory standing in for a floor's region.
    struct Block(Vec<[u8; 128]>);

    impl Block {
        fn new(len: usize) -> Block {
            Block(vec![[0; 128]; len.div_ceil(128)])
        }
        fn addr(&mut self) -> usize {
            self.0.as_mut_ptr() as usize
        }
    }

    #[test]
    fn the_copy_floor_of_a_round_trip_checks_every_echo() {
        for size in [8, 64, 1000] {
            let mut mem = Block::new(floor_copy_len(size));
            let base = mem.addr();
            // SAFETY: `mem` outlives both sides (joined below), holds
            // floor_copy_len(size) zeroed, aligned bytes; one side each.
            let echo = std::thread::spawn(move || unsafe {
                floor_copy_pingpong(base as *mut u8, size, false, 10, 100)
            });
            // SAFETY: as above.
            let a = unsafe { floor_copy_pingpong(base as *mut u8, size, true, 10, 100) }.unwrap();
            let b = echo.join().unwrap().unwrap();
            assert_eq!((a.messages, b.messages), (100, 210), "{size} B");
            assert!(a.latency.is_some() && a.batched_mean_ns.is_some());
        }
        // An echo that answers with the wrong message fails the initiator.
        let size = 64;
        let mut mem = Block::new(floor_copy_len(size));
        let base = mem.addr();
        let stride = floor_copy_len(size) / 2;
        let rogue = std::thread::spawn(move || {
            // SAFETY: the A→B flag and the B→A slot of `mem`, alive until
            // joined; the flag is only used atomically.
            let (ab, ba) = unsafe {
                let p = base as *mut u8;
                (
                    &*(p as *const AtomicU64),
                    (&*(p.add(stride) as *const AtomicU64), p.add(stride + 8)),
                )
            };
            while ab.load(Ordering::Acquire) != 1 {
                std::hint::spin_loop();
            }
            // SAFETY: the B→A message area, ours until flagged.
            unsafe { std::ptr::write_bytes(ba.1, 7, size) };
            ba.0.store(1, Ordering::Release);
        });
        // SAFETY: as above; the rogue plays side B.
        let e = unsafe { floor_copy_pingpong(base as *mut u8, size, true, 0, 10) }.unwrap_err();
        rogue.join().unwrap();
        assert!(e.contains("message 0"), "{e}");
    }
}
