//! The measuring side of a point, run in a child process
//! (`ipcbench peer bench …`).
//!
//! Control channel (not the one under test): the peer connects, prints
//! `ready` on its standard output, waits for `go` on its standard input, so
//! no start-up is timed, then measures and prints one JSON [`PeerReport`].
//! Every message is checked with [`Codec`]; a failed check ends the point.

use std::io::{BufRead, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::msg::{Codec, now_ns};
use super::record::{Latency, cpu_time_ns};
use crate::shm::futex::Futex;
use crate::transport::{Conn, TransportError};

/// What one peer measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerReport {
    /// Messages (or round trips) measured.
    pub messages: u64,
    /// Time they took.
    pub elapsed_ns: u64,
    /// RTT (pingpong initiator) or one-way latency (stream receiver).
    pub latency: Option<Latency>,
    /// Pingpong: mean RTT of a batch timed as a whole.
    pub batched_mean_ns: Option<f64>,
    /// This peer's CPU time over the measured phase.
    pub cpu_ns: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Multi-party receivers: the sum of a hash of every sequence number
    /// received, so the coordinator can check that each message arrived
    /// exactly once across all receivers.
    #[serde(default)]
    pub digest: u64,
    /// Multi-party receivers: `CLOCK_MONOTONIC` times of the first and last
    /// message received (one clock for every process).
    #[serde(default)]
    pub first_ns: u64,
    /// See `first_ns`.
    #[serde(default)]
    pub last_ns: u64,
    /// Multi-party receivers: the one-way latency histogram as
    /// (value, count) pairs, merged by the coordinator.
    #[serde(default)]
    pub latency_hist: Vec<(u64, u64)>,
}

/// Waits at the start barrier: says `ready`, then waits for `go`.
pub fn barrier() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("control channel: {e}"))?;
    match line.trim() {
        "go" => Ok(()),
        other => Err(format!("control channel said {other:?} instead of go")),
    }
}

pub(super) fn histogram() -> Histogram<u64> {
    // 1 ns to one hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as (value, count) pairs, for the coordinator to merge.
fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Percentiles of a histogram of nanoseconds.
pub fn latency_from(h: &Histogram<u64>) -> Option<Latency> {
    summary(h)
}

/// Percentiles of `samples` (nanoseconds).
pub fn latency_of(samples: &[u64]) -> Option<Latency> {
    let mut h = histogram();
    for &s in samples {
        h.saturating_record(s.max(1));
    }
    summary(&h)
}

fn summary(h: &Histogram<u64>) -> Option<Latency> {
    (!h.is_empty()).then(|| Latency {
        mean: h.mean(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: Some(h.value_at_quantile(0.9999)),
        max: h.max(),
    })
}

/// Runs `warmup` untimed exchanges, `iters` exchanges each timed into a
/// histogram, then `iters` more timed as one batch. `exchange(seq)` does one
/// round trip of message `seq`.
pub fn timed_exchanges(
    warmup: u64,
    iters: u64,
    exchange: impl FnMut(u64) -> Result<(), String>,
) -> Result<PeerReport, String> {
    timed_exchanges_from(0, warmup, iters, exchange)
}

/// [`timed_exchanges`] with sequence numbers from `first` (a session's
/// rounds go on where the last one stopped): `warmup + 2 * iters` in all.
pub fn timed_exchanges_from(
    first: u64,
    warmup: u64,
    iters: u64,
    mut exchange: impl FnMut(u64) -> Result<(), String>,
) -> Result<PeerReport, String> {
    let mut seq = first;
    for _ in 0..warmup {
        exchange(seq)?;
        seq += 1;
    }
    let cpu0 = cpu_time_ns();
    let mut h = histogram();
    let start = now_ns();
    for _ in 0..iters {
        let t0 = now_ns();
        exchange(seq)?;
        h.saturating_record(now_ns() - t0);
        seq += 1;
    }
    let elapsed = now_ns() - start;
    let tb = now_ns();
    for _ in 0..iters {
        exchange(seq)?;
        seq += 1;
    }
    let batched = (now_ns() - tb) as f64 / iters.max(1) as f64;
    Ok(PeerReport {
        messages: iters,
        elapsed_ns: elapsed,
        latency: summary(&h),
        batched_mean_ns: Some(batched),
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// Runs `warmup` untimed cycles, then `iters` cycles each timed into a
/// histogram (sent whole, for the coordinator to merge across processes),
/// with `CLOCK_MONOTONIC` times of the first and last timed cycle.
pub fn timed_cycles(
    warmup: u64,
    iters: u64,
    mut cycle: impl FnMut() -> Result<(), String>,
) -> Result<PeerReport, String> {
    for _ in 0..warmup {
        cycle()?;
    }
    let cpu0 = cpu_time_ns();
    let mut h = histogram();
    let first = now_ns();
    let mut t = first;
    for _ in 0..iters {
        cycle()?;
        let now = now_ns();
        h.saturating_record(now - t);
        t = now;
    }
    Ok(PeerReport {
        messages: iters,
        elapsed_ns: t - first,
        latency: summary(&h),
        cpu_ns: cpu_time_ns() - cpu0,
        first_ns: first,
        last_ns: t,
        latency_hist: pairs(&h),
        ..PeerReport::default()
    })
}

pub(super) fn terr(e: TransportError) -> String {
    e.to_string()
}

/// Pingpong, initiating side: sends message `seq`, waits for its echo.
pub fn pingpong_initiator<C: Conn>(
    mut conn: C,
    codec: &Codec,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let mut out = codec.buffer();
    let mut back = Vec::with_capacity(codec.size());
    let r = timed_exchanges(warmup, iters, |seq| {
        codec.stamp(&mut out, seq, 0);
        conn.send(&out).map_err(terr)?;
        // The echo is checked where it lies when it can be (no copy out).
        conn.recv_with(&mut back, |m| codec.check(m, seq).map(drop))
            .map_err(terr)?
    })?;
    conn.close().map_err(terr)?;
    Ok(r)
}

/// Pingpong, echoing side of a session's round: checks messages `seqs` and
/// sends each back.
pub fn echo_seqs<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    seqs: std::ops::Range<u64>,
) -> Result<PeerReport, String> {
    let mut buf = Vec::with_capacity(codec.size());
    let cpu0 = cpu_time_ns();
    let n = seqs.end - seqs.start;
    for seq in seqs {
        conn.recv(&mut buf).map_err(terr)?;
        codec.check(&buf, seq)?;
        conn.send(&buf).map_err(terr)?;
    }
    Ok(PeerReport {
        messages: n,
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// How long the echo of `pingpong-late` works on each message before it
/// answers: longer than a `spin-park` wait's spin and yield phases (50 µs
/// each by default), so the waiting side has gone to sleep.
pub const LATE_REPLY_NS: u64 = 200_000;

/// Keeps this CPU busy for `ns` nanoseconds (a peer "working" on a
/// message; a sleep would add the timer's slack).
pub fn busy_for(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = now_ns() + ns;
    while now_ns() < until {
        std::hint::spin_loop();
    }
}

/// Pingpong, echoing side: checks each message, works on it for
/// `think_ns` (0 for plain pingpong) and sends it back, until the
/// initiator closes.
pub fn pingpong_echo<C: Conn>(
    mut conn: C,
    codec: &Codec,
    think_ns: u64,
) -> Result<PeerReport, String> {
    let mut buf = Vec::with_capacity(codec.size());
    let cpu0 = cpu_time_ns();
    let mut seq = 0;
    loop {
        match conn.recv(&mut buf) {
            Ok(_) => {}
            Err(TransportError::Closed) => break,
            Err(e) => return Err(terr(e)),
        }
        codec.check(&buf, seq)?;
        busy_for(think_ns);
        conn.send(&buf).map_err(terr)?;
        seq += 1;
    }
    Ok(PeerReport {
        messages: seq,
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// One message in this many carries a send time (a clock read costs
/// about as much as a cache-line hand-off).
pub const STAMP_EVERY: u64 = 16;

/// Stream, sending side: messages `seqs`, one in [`STAMP_EVERY`] stamped
/// with its send time.
pub fn send_seqs<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    seqs: std::ops::Range<u64>,
) -> Result<PeerReport, String> {
    let mut out = codec.buffer();
    let cpu0 = cpu_time_ns();
    let n = seqs.end - seqs.start;
    for seq in seqs {
        let ts = if codec.stamped() && seq % STAMP_EVERY == 0 {
            now_ns()
        } else {
            0
        };
        codec.stamp(&mut out, seq, ts);
        conn.send(&out).map_err(terr)?;
    }
    Ok(PeerReport {
        messages: n,
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// Stream, sending side: `warmup + iters` messages, then close.
pub fn stream_send<C: Conn>(
    mut conn: C,
    codec: &Codec,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let mut r = send_seqs(&mut conn, codec, 0..warmup + iters)?;
    conn.close().map_err(terr)?;
    r.messages = iters;
    Ok(r)
}

/// Stream, receiving side: checks every message, times the measured ones
/// from the first to the last, and records one-way latency of the stamped
/// ones; then expects the end of the stream.
pub fn stream_recv<C: Conn>(
    mut conn: C,
    codec: &Codec,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let r = recv_seqs(&mut conn, codec, 0..warmup + iters, warmup)?;
    let mut buf = Vec::new();
    match conn.recv(&mut buf) {
        Err(TransportError::Closed) => {}
        Ok(n) => return Err(format!("an extra message of {n} bytes after the last one")),
        Err(e) => return Err(terr(e)),
    }
    Ok(r)
}

/// Stream, receiving side: checks messages `seqs`, times those from
/// `measured` on from the first to the last, and records the one-way
/// latency of the stamped ones.
pub fn recv_seqs<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    seqs: std::ops::Range<u64>,
    measured: u64,
) -> Result<PeerReport, String> {
    let mut buf = Vec::with_capacity(codec.size());
    let mut h = histogram();
    let cpu0 = cpu_time_ns();
    let (mut first, mut last) = (0, 0);
    let end = seqs.end;
    for seq in seqs {
        // Checked where it lies when the transport can (no copy out).
        let ts = conn
            .recv_with(&mut buf, |m| codec.check(m, seq))
            .map_err(terr)??;
        if seq >= measured {
            let now = if ts != 0 || seq == measured || seq + 1 == end {
                now_ns()
            } else {
                0
            };
            if ts != 0 {
                h.saturating_record(now.saturating_sub(ts));
            }
            if seq == measured {
                first = now;
            }
            if seq + 1 == end {
                last = now;
            }
        }
    }
    Ok(PeerReport {
        // Intervals between the first and the last measured message.
        messages: end.saturating_sub(measured).saturating_sub(1),
        elapsed_ns: last.saturating_sub(first),
        latency: summary(&h),
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// Bits of a multi-party sequence number below the producer's id, in
/// messages under 32 bytes (their sequence number is 32 bits).
pub const PRODUCER_SHIFT: u32 = 24;
/// The same in larger messages (a 64-bit sequence number): room for a
/// long session's rounds.
pub const PRODUCER_SHIFT_WIDE: u32 = 40;

/// Bits below the producer's id in messages of `codec`.
pub fn producer_shift(codec: &Codec) -> u32 {
    if codec.stamped() {
        PRODUCER_SHIFT_WIDE
    } else {
        PRODUCER_SHIFT
    }
}

/// The sequence number of message `i` of producer `id`.
pub fn tagged_seq(codec: &Codec, id: u64, i: u64) -> u64 {
    (id << producer_shift(codec)) | i
}

/// Multi-party, sending side: producer `id` sends `warmup + iters` messages
/// into the shared channel, then leaves (the stream goes on for others).
pub fn multi_send<C: Conn>(
    mut conn: C,
    codec: &Codec,
    id: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let r = multi_send_seqs(&mut conn, codec, id, 0..warmup + iters)?;
    conn.leave().map_err(terr)?;
    Ok(r)
}

/// Multi-party, sending side of a round: producer `id`'s messages `seqs`.
/// `first_ns` is when it started.
pub fn multi_send_seqs<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    id: u64,
    seqs: std::ops::Range<u64>,
) -> Result<PeerReport, String> {
    if seqs.end >= 1 << producer_shift(codec) {
        return Err(format!(
            "at most {} messages per producer at {} bytes",
            (1u64 << producer_shift(codec)) - 1,
            codec.size()
        ));
    }
    let mut out = codec.buffer();
    let cpu0 = cpu_time_ns();
    let first = now_ns();
    let n = seqs.end - seqs.start;
    for i in seqs {
        let seq = tagged_seq(codec, id, i);
        let ts = if codec.stamped() && i % STAMP_EVERY == 0 {
            now_ns()
        } else {
            0
        };
        codec.stamp(&mut out, seq, ts);
        conn.send(&out).map_err(terr)?;
    }
    Ok(PeerReport {
        messages: n,
        cpu_ns: cpu_time_ns() - cpu0,
        first_ns: first,
        ..PeerReport::default()
    })
}

/// Where a consumer of a session publishes what it received: a count and
/// the time of the last message, for the coordinator to see a round end.
pub struct Progress<'a> {
    /// Messages received so far.
    pub count: &'a std::sync::atomic::AtomicU64,
    /// `CLOCK_MONOTONIC` time of the last one.
    pub last_ns: &'a std::sync::atomic::AtomicU64,
}

/// Multi-party, receiving side: receives until the stream ends, checking
/// every message and that each producer's messages come in order; reports
/// a digest of what it received for the exactly-once check.
pub fn multi_recv<C: Conn>(conn: C, codec: &Codec, producers: usize) -> Result<PeerReport, String> {
    multi_recv_progress(conn, codec, producers, None)
}

/// [`multi_recv`], publishing its progress after every message.
pub fn multi_recv_progress<C: Conn>(
    mut conn: C,
    codec: &Codec,
    producers: usize,
    progress: Option<Progress<'_>>,
) -> Result<PeerReport, String> {
    let shift = producer_shift(codec);
    let mut buf = Vec::with_capacity(codec.size());
    let mut h = histogram();
    let mut last_seen: Vec<Option<u64>> = vec![None; producers];
    let cpu0 = cpu_time_ns();
    let (mut first, mut last, mut count, mut digest) = (0u64, 0u64, 0u64, 0u64);
    loop {
        match conn.recv(&mut buf) {
            Ok(_) => {}
            Err(TransportError::Closed) => break,
            Err(e) => return Err(terr(e)),
        }
        let (seq, ts) = codec.check_any(&buf)?;
        let (id, i) = ((seq >> shift) as usize, seq & ((1 << shift) - 1));
        let prev = last_seen
            .get_mut(id)
            .ok_or_else(|| format!("message {seq:#x} names producer {id} of {producers}"))?;
        if prev.is_some_and(|p| i <= p) {
            return Err(format!(
                "producer {id}: message {i} after message {} (duplicated or reordered)",
                prev.unwrap_or(0)
            ));
        }
        *prev = Some(i);
        let now = now_ns();
        if count == 0 {
            first = now;
        }
        last = now;
        if ts != 0 {
            h.saturating_record(now.saturating_sub(ts));
        }
        count += 1;
        digest = digest.wrapping_add(crate::peer::mix64(seq));
        if let Some(p) = &progress {
            use std::sync::atomic::Ordering;
            // Relaxed: the count is published (Release) after it.
            p.last_ns.store(now, Ordering::Relaxed);
            p.count.store(count, Ordering::Release);
        }
    }
    Ok(PeerReport {
        messages: count,
        elapsed_ns: last - first,
        cpu_ns: cpu_time_ns() - cpu0,
        digest,
        first_ns: first,
        last_ns: last,
        latency_hist: pairs(&h),
        ..PeerReport::default()
    })
}

/// A dictionary a server owns, called by a client: a manager's proxy, or
/// the shared-memory dictionary.
pub trait DictCalls {
    /// `dict[key] = value`.
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// `dict.get(key)` into `out`; false when the key is missing.
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String>;
}

impl<S: crate::transport::stream::StreamIo> DictCalls for crate::transport::manager::Proxy<S> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.dict_set(key, value).map_err(terr)
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        self.dict_get(key, out).map(|f| f.is_some()).map_err(terr)
    }
}

/// Request/response, a client of a server's dictionary: `warmup + iters`
/// rounds of two calls, `dict[k] = message` then `dict[k]`, each call
/// timed; the value read back must be the message written.
pub fn reqrep_client(
    mut proxy: impl DictCalls,
    codec: &Codec,
    id: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    if warmup + iters >= 1 << producer_shift(codec) {
        return Err(format!(
            "at most {} calls per client",
            (1u64 << producer_shift(codec)) - 1
        ));
    }
    let key = format!("client-{id}");
    let mut out = codec.buffer();
    let mut back = Vec::with_capacity(codec.size());
    let mut h = histogram();
    let cpu0 = cpu_time_ns();
    let (mut first, mut calls) = (0, 0);
    for i in 0..warmup + iters {
        let seq = tagged_seq(codec, id, i);
        codec.stamp(&mut out, seq, 0);
        let t0 = now_ns();
        if i == warmup {
            first = t0;
        }
        proxy.set(key.as_bytes(), &out)?;
        let t1 = now_ns();
        let found = proxy.get(key.as_bytes(), &mut back)?;
        let t2 = now_ns();
        if !found {
            return Err(format!("call {i}: the value just written is missing"));
        }
        codec.check(&back, seq)?;
        if i >= warmup {
            h.saturating_record(t1 - t0);
            h.saturating_record(t2 - t1);
            calls += 2;
        }
    }
    let last = now_ns();
    Ok(PeerReport {
        messages: calls,
        elapsed_ns: last - first,
        cpu_ns: cpu_time_ns() - cpu0,
        first_ns: first,
        last_ns: last,
        latency_hist: pairs(&h),
        ..PeerReport::default()
    })
}

/// Merges (value, count) pairs into latency percentiles.
pub fn merged_latency(parts: &[&[(u64, u64)]]) -> Option<Latency> {
    let mut h = histogram();
    for part in parts {
        for &(v, c) in *part {
            h.saturating_record_n(v.max(1), c);
        }
    }
    summary(&h)
}

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
