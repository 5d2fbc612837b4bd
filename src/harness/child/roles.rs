//! Roles the `ipcbench` binary plays in a child process (`ipcbench peer …`).
//!
//! A coordinator creates the shared structures, starts peers with the
//! names of the regions, and reads one result line from each peer's
//! standard output. Every frame or item a peer moves is checked: its length
//! and every byte are derived from `(seed, sequence number)`, so a lost,
//! duplicated, reordered, truncated or corrupted message is an error, not a
//! number.

use crate::shm::sync::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub use crate::harness::validate::mix64;
use crate::shm::region::{Kind, Region, RegionError};
use crate::shm::{Pipe, PipeError, Queue, QueueError, Ring, RingError, Semaphore};
use crate::transport::{Conn, Endpoint, LinkOpts, Side, Transport, TransportError, TransportKind};

/// The frames of a test role: the length and content of frame `seq` of a
/// run seeded `seed`, derived from both.
#[derive(Debug, Clone, Copy)]
pub struct Frames {
    /// The run's seed.
    pub seed: u64,
    /// The largest length [`Frames::len`] returns.
    pub max_len: usize,
}

impl Frames {
    /// The length of message `seq`: uniform in `0..=max_len`.
    #[inline]
    pub fn len(&self, seq: u64) -> usize {
        (mix64(self.seed ^ seq.rotate_left(32)) % (self.max_len as u64 + 1)) as usize
    }

    /// Fills `buf` with the content of message `seq`: the sequence number
    /// first (as far as it fits), then pseudo-random words.
    #[inline]
    pub fn fill(&self, seq: u64, buf: &mut [u8]) {
        let mut state = mix64(self.seed.wrapping_add(seq));
        let (head, rest) = buf.split_at_mut(buf.len().min(8));
        head.copy_from_slice(&seq.to_le_bytes()[..head.len()]);
        let mut chunks = rest.chunks_exact_mut(8);
        for c in &mut chunks {
            state = mix64(state);
            c.copy_from_slice(&state.to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let n = tail.len();
        tail.copy_from_slice(&mix64(state ^ 1).to_le_bytes()[..n]);
    }

    /// Checks that `got` is message `seq`, byte for byte.
    pub fn check(&self, seq: u64, got: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        let len = self.len(seq);
        if got.len() != len {
            return Err(format!(
                "message {seq}: length {} where {len} was sent",
                got.len()
            ));
        }
        scratch.resize(len, 0);
        self.fill(seq, scratch);
        if got != &scratch[..] {
            let at = got
                .iter()
                .zip(scratch.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            if len >= 8 {
                let seen = u64::from_le_bytes(got[..8].try_into().unwrap_or_default());
                if seen != seq {
                    return Err(format!(
                        "message {seq}: carries sequence number {seen} (lost, duplicated or reordered)"
                    ));
                }
            }
            return Err(format!("message {seq}: byte {at} differs (corrupted)"));
        }
        Ok(())
    }
}

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

/// One line a peer prints on success: `ok key=value …`.
pub fn result_line(fields: &[(&str, u64)]) -> String {
    let mut s = String::from("ok");
    for (k, v) in fields {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// Parses a [`result_line`]; `None` if it is not one.
pub fn parse_result_line(line: &str) -> Option<Vec<(String, u64)>> {
    let rest = line.trim().strip_prefix("ok")?;
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Sends `frames` checked frames into ring `region`, then closes it.
pub fn ring_send(region: &str, frames: u64, pat: Frames) -> Result<String, PeerError> {
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
    Ok(result_line(&[
        ("frames", frames),
        ("bytes", bytes),
        ("elapsed_ns", ns),
    ]))
}

/// Receives and checks `frames` frames from ring `region`, then expects the
/// end of the stream.
pub fn ring_recv(
    region: &str,
    frames: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<String, PeerError> {
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
    Ok(result_line(&[
        ("frames", frames),
        ("bytes", bytes),
        ("elapsed_ns", ns),
    ]))
}

/// Puts items `id * items .. (id + 1) * items` into queue `region`; each
/// item is 16 bytes: its number and a checksum of it.
pub fn queue_put(
    region: &str,
    id: u64,
    items: u64,
    timeout: Duration,
) -> Result<String, PeerError> {
    let q = Queue::open(region)?;
    for i in id * items..(id + 1) * items {
        let mut item = [0u8; 16];
        item[..8].copy_from_slice(&i.to_le_bytes());
        item[8..].copy_from_slice(&mix64(i).to_le_bytes());
        q.put(&item, Some(timeout))?;
    }
    Ok(result_line(&[("items", items)]))
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
pub fn queue_get(region: &str, seen: &str, timeout: Duration) -> Result<String, PeerError> {
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
    Ok(result_line(&[("items", got)]))
}

/// Echoes every message received on end 1 of pipe `region` until end 0
/// closes, or until `count` messages were echoed (then closes end 1).
pub fn pipe_echo(region: &str, count: Option<u64>, timeout: Duration) -> Result<String, PeerError> {
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
    Ok(result_line(&[("messages", n)]))
}

/// Adds 1 to the plain (non-atomic) u64 at the start of raw region
/// `counter` `iters` times, each time holding semaphore `sem` as a mutex.
pub fn sem_count(
    sem: &str,
    counter: &str,
    iters: u64,
    timeout: Duration,
) -> Result<String, PeerError> {
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
    Ok(result_line(&[("iters", iters)]))
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
) -> Result<String, PeerError> {
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
    Ok(result_line(&[("messages", n)]))
}

/// Sends `n` checked messages, then closes.
pub fn link_send<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    n: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<String, PeerError> {
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
    Ok(result_line(&[("messages", n), ("bytes", bytes)]))
}

/// Receives and checks `n` messages, then expects the end of the stream.
pub fn link_recv<T: Transport>(
    addr: &str,
    side: Side,
    opts: &LinkOpts,
    n: u64,
    pat: Frames,
    timeout: Duration,
) -> Result<String, PeerError> {
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
    Ok(result_line(&[("messages", n), ("bytes", bytes)]))
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

    #[test]
    fn result_lines_round_trip() {
        let l = result_line(&[("frames", 3), ("elapsed_ns", 99)]);
        assert_eq!(
            parse_result_line(&l).unwrap(),
            vec![("frames".to_owned(), 3), ("elapsed_ns".to_owned(), 99)]
        );
        assert!(parse_result_line("error: x").is_none());
    }
}
