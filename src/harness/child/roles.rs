//! Roles the `ipcbench` binary plays in a child process (`ipcbench peer …`).
//!
//! A coordinator (a test) creates the shared structures, starts peers
//! with the names of the regions, and reads each peer's report from its
//! standard output: the same [`PeerReport`] line, through the same
//! [`control::final_report`](super::super::control::final_report), as a
//! measuring peer's. Every frame or item a peer moves is checked: its length
//! and every byte are derived from `(seed, sequence number)`, so a lost,
//! duplicated, reordered, truncated or corrupted message is an error, not a
//! number.

use crate::shm::sync::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::super::control::PeerReport;
pub use crate::harness::validate::{Frames, mix64};
use crate::shm::region::{Kind, Region, RegionError};
use crate::shm::{
    Barrier, BarrierError, Condition, JoinableQueue, Lock, Pipe, PipeError, Queue, QueueError,
    Ring, RingError, Semaphore,
};
use crate::transport::{Conn, Endpoint, LinkOpts, Side, Transport, TransportError, TransportKind};

/// What a peer role failed with.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A ring operation failed.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// A queue operation failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// A pipe operation failed.
    #[error("pipe: {0}")]
    Pipe(#[from] PipeError),
    /// A semaphore operation failed.
    #[error("semaphore: {0}")]
    Sem(#[from] crate::shm::SemError),
    /// A barrier wait failed.
    #[error("barrier: {0}")]
    Barrier(#[from] BarrierError),
    /// A region could not be opened.
    #[error("{0}")]
    Region(#[from] RegionError),
    /// A message failed validation.
    #[error("validation failed: {0}")]
    Invalid(String),
    /// A transport call failed.
    #[error("{0}")]
    Transport(crate::transport::TransportError),
}

/// Sends `frames` checked frames into ring `region`, then closes it.
pub fn ring_send(region: &str, frames: u64, pat: Frames) -> Result<PeerReport, PeerError> {
    let ring = Ring::open(region)?;
    let mut tx = ring.producer()?;
    let t0 = Instant::now();
    let mut bytes = 0u64;
    for seq in 0..frames {
        let len = pat.len(seq);
        let mut g = tx.claim(len, None)?;
        pat.fill(seq, &mut g);
        g.commit();
        bytes += len as u64;
    }
    let ns = t0.elapsed().as_nanos() as u64;
    Ok(PeerReport {
        messages: frames,
        bytes,
        elapsed_ns: ns,
        ..PeerReport::default()
    })
}

/// Receives and checks `frames` frames from ring `region`, then expects the
/// end of the stream.
pub fn ring_recv(
    region: &str,
    frames: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let ring = Ring::open(region)?;
    let mut rx = ring.consumer()?;
    let mut scratch = Vec::new();
    let mut bytes = 0u64;
    let mut t0 = None;
    for seq in 0..frames {
        let g = rx.read(Some(timeout))?;
        // Timed from the first frame, so the sender's start-up is not counted.
        t0.get_or_insert_with(Instant::now);
        pat.check(seq, &g, &mut scratch)
            .map_err(PeerError::Invalid)?;
        bytes += g.len() as u64;
    }
    let ns = t0.map_or(0, |t| t.elapsed().as_nanos() as u64);
    match rx.recv(&mut scratch, Some(timeout)) {
        Err(RingError::Closed) => {}
        Ok(n) => {
            return Err(PeerError::Invalid(format!(
                "an extra frame of {n} bytes after the last one"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(PeerReport {
        messages: frames,
        bytes,
        elapsed_ns: ns,
        ..PeerReport::default()
    })
}

/// Puts items `id * items .. (id + 1) * items` into queue `region`; each
/// item is 16 bytes: its number and a checksum of it.
pub fn queue_put(
    region: &str,
    id: u64,
    items: u64,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let q = Queue::open(region)?;
    for i in id * items..(id + 1) * items {
        let mut item = [0u8; 16];
        item[..8].copy_from_slice(&i.to_le_bytes());
        item[8..].copy_from_slice(&mix64(i).to_le_bytes());
        q.put(&item, Some(timeout))?;
    }
    Ok(PeerReport {
        messages: items,
        ..PeerReport::default()
    })
}

/// Opens a raw region as an array of atomic bytes.
fn raw_bytes(region: &Region) -> &[AtomicU8] {
    // SAFETY: the body is `body_len` bytes of shared memory that lives as
    // long as `region`; AtomicU8 has the size and alignment of u8 and every
    // bit pattern is valid.
    unsafe { std::slice::from_raw_parts(region.body_ptr() as *const AtomicU8, region.body_len()) }
}

/// Gets items from queue `region` until it is closed and drained, marking
/// each item's number in the raw region `seen` (one byte per item).
pub fn queue_get(region: &str, seen: &str, timeout: Duration) -> Result<PeerReport, PeerError> {
    let q = Queue::open(region)?;
    let seen_region = Region::open(seen, Kind::Raw)?;
    let seen = raw_bytes(&seen_region);
    let mut buf = Vec::new();
    let mut got = 0u64;
    loop {
        match q.get(&mut buf, Some(timeout)) {
            Ok(_) => {}
            Err(QueueError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
        let (Ok(num), Ok(sum)) = (
            <[u8; 8]>::try_from(buf.get(..8).unwrap_or_default()),
            <[u8; 8]>::try_from(buf.get(8..16).unwrap_or_default()),
        ) else {
            return Err(PeerError::Invalid(format!(
                "item of {} bytes, expected 16",
                buf.len()
            )));
        };
        let i = u64::from_le_bytes(num);
        if u64::from_le_bytes(sum) != mix64(i) {
            return Err(PeerError::Invalid(format!("item {i}: checksum mismatch")));
        }
        let Some(cell) = seen.get(i as usize) else {
            return Err(PeerError::Invalid(format!(
                "item {i} is beyond the items sent"
            )));
        };
        // Relaxed: the coordinator reads the marks after every peer exited.
        cell.fetch_add(1, Ordering::Relaxed);
        got += 1;
    }
    Ok(PeerReport {
        messages: got,
        ..PeerReport::default()
    })
}

/// Echoes every message received on end 1 of pipe `region` until end 0
/// closes, or until `count` messages were echoed (then closes end 1).
pub fn pipe_echo(
    region: &str,
    count: Option<u64>,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let pipe = Pipe::open(region)?;
    let mut end = pipe.end(1)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        match end.recv(&mut buf, Some(timeout)) {
            Ok(_) => {
                end.send(&buf, Some(timeout))?;
                n += 1;
            }
            Err(PipeError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(PeerReport {
        messages: n,
        ..PeerReport::default()
    })
}

/// Adds 1 to the plain (non-atomic) u64 at the start of raw region
/// `counter` `iters` times, each time holding semaphore `sem` as a mutex.
pub fn sem_count(
    sem: &str,
    counter: &str,
    iters: u64,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let sem = Semaphore::open(sem)?;
    let region = Region::open(counter, Kind::Raw)?;
    let p = region.body_ptr() as *mut u64;
    for _ in 0..iters {
        sem.acquire(Some(timeout))?;
        // SAFETY: the region body is at least 8 bytes, 128-aligned, and every
        // process touches it only while holding the semaphore, whose
        // acquire/release order these accesses. Volatile, so the
        // read-modify-write really is a separate load and store: a broken
        // semaphore loses increments.
        unsafe {
            let v = std::ptr::read_volatile(p);
            std::hint::spin_loop();
            std::ptr::write_volatile(p, v + 1);
        }
        sem.release()?;
    }
    Ok(PeerReport {
        messages: iters,
        ..PeerReport::default()
    })
}

/// Takes and releases lock `lock` `iters` times as fast as it can: a
/// process to kill at a random moment, which is then as likely as it can
/// be to die while it takes or releases the lock.
pub fn lock_churn(lock: &str, iters: u64, timeout: Duration) -> Result<PeerReport, PeerError> {
    let lock = Lock::open(lock)?;
    for _ in 0..iters {
        drop(lock.lock(Some(timeout))?);
    }
    Ok(PeerReport {
        messages: iters,
        ..PeerReport::default()
    })
}

/// Passes barrier `barrier` `rounds` times, adding one to the counter in
/// raw region `counter` (under `lock`) between passes and checking after
/// each that every party's addition of that generation is there.
pub fn barrier_cycle(
    barrier: &str,
    counter: &str,
    lock: &str,
    rounds: u64,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let b = Barrier::open(barrier)?;
    let lock = Lock::open(lock)?;
    let region = Region::open(counter, Kind::Raw)?;
    // SAFETY: the raw region's body is at least 8 bytes and aligned; the
    // counter is only touched under the lock.
    let cell = region.body_ptr() as *mut u64;
    let parties = u64::from(b.parties());
    for r in 0..rounds {
        {
            let _g = lock.lock(Some(timeout))?;
            // SAFETY: see above.
            unsafe { cell.write_volatile(cell.read_volatile() + 1) };
        }
        b.wait(Some(timeout))?;
        let seen = {
            let _g = lock.lock(Some(timeout))?;
            // SAFETY: see above.
            unsafe { cell.read_volatile() }
        };
        // Every party added for this round; none can have added for the
        // next before the second pass.
        if seen != parties * (r + 1) {
            return Err(PeerError::Invalid(format!(
                "round {r}: the counter reads {seen}, not {}",
                parties * (r + 1)
            )));
        }
        b.wait(Some(timeout))?;
    }
    Ok(PeerReport {
        messages: rounds,
        ..PeerReport::default()
    })
}

/// Takes condition `cond`'s lock and holds it until killed (a notifier
/// that dies holding the lock).
pub fn condition_hold(cond: &str, timeout: Duration) -> Result<PeerReport, PeerError> {
    let c = Condition::open(cond)?;
    c.acquire(Some(timeout))?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Puts `items` 8-byte items into joinable queue `region`.
pub fn joinable_put(region: &str, items: u64, timeout: Duration) -> Result<PeerReport, PeerError> {
    let q = JoinableQueue::open(region)?;
    for i in 0..items {
        q.put(&i.to_le_bytes(), Some(timeout))?;
    }
    Ok(PeerReport {
        messages: items,
        ..PeerReport::default()
    })
}

// ---------------------------------------------------------------------------
// Roles over any transport.

impl From<TransportError> for PeerError {
    fn from(e: TransportError) -> Self {
        PeerError::Transport(e)
    }
}

/// A command that starts `exe peer link …` as side `side` of the link at
/// `ep`, inheriting the descriptors the link needs.
pub fn link_command(
    exe: &std::path::Path,
    kind: TransportKind,
    ep: &Endpoint,
    side: Side,
    max_message: usize,
    action: &[String],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["peer", "link", kind.name(), &ep.addr, side.name()])
        .arg(format!("--max-message={max_message}"))
        .args(action)
        .envs(ep.env.iter().map(|(k, v)| (k, v)));
    crate::transport::fd::inherit_in_child(&mut cmd, ep.inherit.clone());
    cmd
}

fn connect<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    timeout: Duration,
) -> Result<T::Conn, PeerError> {
    let mut conn = T::connect(&Endpoint::for_child(addr), side, opts)?;
    conn.set_timeout(Some(timeout))?;
    Ok(conn)
}

/// Echoes every message until the peer closes, or until `count` messages
/// were echoed (then closes).
pub fn link_echo<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    count: Option<u64>,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let mut conn = connect::<T>(addr, side, opts, timeout)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        match conn.recv(&mut buf) {
            Ok(_) => conn.send(&buf)?,
            Err(TransportError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
        n += 1;
    }
    conn.close()?;
    Ok(PeerReport {
        messages: n,
        ..PeerReport::default()
    })
}

/// Sends `n` checked messages, then closes.
pub fn link_send<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    n: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let mut conn = connect::<T>(addr, side, opts, timeout)?;
    let mut msg = Vec::new();
    let mut bytes = 0;
    for seq in 0..n {
        msg.resize(pat.len(seq), 0);
        pat.fill(seq, &mut msg);
        conn.send(&msg)?;
        bytes += msg.len() as u64;
    }
    conn.close()?;
    Ok(PeerReport {
        messages: n,
        bytes,
        ..PeerReport::default()
    })
}

/// Receives and checks `n` messages, then expects the end of the stream.
pub fn link_recv<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    n: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<PeerReport, PeerError> {
    let mut conn = connect::<T>(addr, side, opts, timeout)?;
    let (mut buf, mut scratch) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for seq in 0..n {
        conn.recv(&mut buf)?;
        pat.check(seq, &buf, &mut scratch)
            .map_err(PeerError::Invalid)?;
        bytes += buf.len() as u64;
    }
    match conn.recv(&mut buf) {
        Err(TransportError::Closed) => {}
        Ok(len) => {
            return Err(PeerError::Invalid(format!(
                "an extra message of {len} bytes after the last one"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(PeerReport {
        messages: n,
        bytes,
        ..PeerReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_detects_every_kind_of_damage() {
        let pat = Frames {
            seed: 42,
            max_len: 300,
        };
        let mut scratch = Vec::new();
        for seq in 0..200 {
            let mut m = vec![0; pat.len(seq)];
            pat.fill(seq, &mut m);
            pat.check(seq, &m, &mut scratch).unwrap();
            if m.len() > 9 {
                let mut bad = m.clone();
                bad[9] ^= 1;
                assert!(
                    pat.check(seq, &bad, &mut scratch)
                        .unwrap_err()
                        .contains("corrupted")
                );
                bad = m.clone();
                bad.pop();
                assert!(
                    pat.check(seq, &bad, &mut scratch)
                        .unwrap_err()
                        .contains("length")
                );
                let next = seq + 1;
                let mut other = vec![0; pat.len(next)];
                pat.fill(next, &mut other);
                if other.len() == m.len() {
                    assert!(pat.check(seq, &other, &mut scratch).is_err());
                }
            }
        }
        // Lengths cover the whole range.
        let lens: std::collections::HashSet<_> = (0..10_000).map(|s| pat.len(s)).collect();
        assert!(lens.contains(&0) && lens.contains(&300));
    }
}
