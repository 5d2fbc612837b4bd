//! What a peer does with its link, one body per pattern: round trips,
//! streams, multi-party sends and receives, dictionary calls. Each body
//! takes a range of sequence numbers, so a point and a session's rounds
//! run the same code.

use super::super::control::PeerReport;
use super::super::measure::{
    Batches, MARKS, StreamTimes, cpu_time_ns, encode, histogram, now_ns, pairs, summary,
};
use super::super::validate::Codec;
use crate::transport::manager::Proxy;
use crate::transport::stream::StreamIo;
use crate::transport::{Conn, TransportError};

/// Runs `warmup` untimed exchanges, `iters` exchanges each timed into a
/// histogram, then `iters` more timed as one batch: `warmup + 2 * iters`
/// in all, with sequence numbers from `first` (a session's rounds go on
/// where the last one stopped). `exchange(seq)` does one round trip of
/// message `seq`.
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
    let start = now_ns();
    let mut b = Batches::new(iters, start);
    for _ in 0..iters {
        let t0 = now_ns();
        exchange(seq)?;
        let t1 = now_ns();
        b.sample(t1 - t0);
        b.tick(|| t1);
        seq += 1;
    }
    let end = now_ns();
    let elapsed = end - start;
    let (batches, h) = b.finish(end);
    let tb = now_ns();
    for _ in 0..iters {
        exchange(seq)?;
        seq += 1;
    }
    let batch_ns = now_ns() - tb;
    Ok(PeerReport {
        messages: iters,
        elapsed_ns: elapsed,
        latency: summary(&h),
        batched_mean_ns: Some(batch_ns as f64 / iters.max(1) as f64),
        cpu_ns: cpu_time_ns() - cpu0,
        measured_ns: elapsed + batch_ns,
        batches,
        histogram: encode(&h),
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

/// A transport error as the text of a peer's report.
pub fn terr(e: TransportError) -> String {
    e.to_string()
}

/// Pingpong, initiating side, from exchange `first`: `warmup` untimed
/// round trips, then `iters` timed one by one and `iters` as a batch
/// ([`timed_exchanges_from`]). Each sends message `seq` and checks its
/// echo where it lies when the transport can (no copy out).
pub fn pingpong_exchanges<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    first: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let mut out = codec.buffer();
    let mut back = Vec::with_capacity(codec.size());
    timed_exchanges_from(first, warmup, iters, |seq| {
        codec.stamp(&mut out, seq, 0);
        conn.send(&out).map_err(terr)?;
        conn.recv_with(&mut back, |m| codec.check(m, seq).map(drop))
            .map_err(terr)?
    })
}

/// Pingpong, echoing side: checks messages `seqs`, works on each for
/// `think_ns` (0 but for `pingpong-late`) and sends it back.
pub fn echo_seqs<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    seqs: std::ops::Range<u64>,
    think_ns: u64,
) -> Result<PeerReport, String> {
    let mut buf = Vec::with_capacity(codec.size());
    let cpu0 = cpu_time_ns();
    let n = seqs.end - seqs.start;
    for seq in seqs {
        // Checked where it lies and sent back from there when the
        // transport can (one copy, as the round trip's floor makes).
        conn.echo_with(&mut buf, |m| {
            codec.check(m, seq)?;
            busy_for(think_ns);
            Ok::<_, String>(())
        })
        .map_err(terr)??;
    }
    Ok(PeerReport {
        messages: n,
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// Expects the end of the stream: the other side closed, and sent
/// nothing more.
pub fn expect_end<C: Conn>(conn: &mut C) -> Result<(), String> {
    let mut buf = Vec::new();
    match conn.recv(&mut buf) {
        Err(TransportError::Closed) => Ok(()),
        Ok(n) => Err(format!("an extra message of {n} bytes after the last one")),
        Err(e) => Err(terr(e)),
    }
}

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
    send_each(conn, codec, seqs, |i| i)
}

/// Sends message `seq_of(i)` for every `i` of `seqs`, one in
/// [`STAMP_EVERY`] stamped with its send time: the one sending body of
/// streams and of multi-party producers. `first_ns` is when it started.
fn send_each<C: Conn>(
    conn: &mut C,
    codec: &Codec,
    seqs: std::ops::Range<u64>,
    seq_of: impl Fn(u64) -> u64,
) -> Result<PeerReport, String> {
    let mut out = codec.buffer();
    let cpu0 = cpu_time_ns();
    let first = now_ns();
    let n = seqs.end - seqs.start;
    for i in seqs {
        let ts = if codec.stamped() && i % STAMP_EVERY == 0 {
            now_ns()
        } else {
            0
        };
        codec.stamp(&mut out, seq_of(i), ts);
        conn.send(&out).map_err(terr)?;
    }
    Ok(PeerReport {
        messages: n,
        cpu_ns: cpu_time_ns() - cpu0,
        first_ns: first,
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
    expect_end(&mut conn)?;
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
    let cpu0 = cpu_time_ns();
    let mut times = StreamTimes::new(measured, seqs.end);
    for seq in seqs {
        // Checked where it lies when the transport can (no copy out).
        let ts = conn
            .recv_with(&mut buf, |m| codec.check(m, seq))
            .map_err(terr)??;
        times.received(seq, ts);
    }
    Ok(PeerReport {
        cpu_ns: cpu_time_ns() - cpu0,
        ..times.report()
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
    send_each(conn, codec, seqs, |i| tagged_seq(codec, id, i))
}

/// Where a consumer of a session publishes what it received: a count and
/// the time of the last message, for the coordinator to see a round end.
pub struct Progress<'a> {
    /// Messages received so far.
    pub count: &'a crate::shm::sync::AtomicU64,
    /// `CLOCK_MONOTONIC` time of the last one.
    pub last_ns: &'a crate::shm::sync::AtomicU64,
}

/// Multi-party, receiving side: receives until the stream ends, checking
/// every message and that each producer's messages come in order; reports
/// a digest of what it received for the exactly-once check.
/// Notes the time every `step` messages ([`PeerReport::marks`]).
pub fn multi_recv<C: Conn>(
    conn: C,
    codec: &Codec,
    producers: usize,
    step: u64,
) -> Result<PeerReport, String> {
    multi_recv_progress(conn, codec, producers, step, None)
}

/// [`multi_recv`], publishing its progress after every message.
pub fn multi_recv_progress<C: Conn>(
    mut conn: C,
    codec: &Codec,
    producers: usize,
    step: u64,
    progress: Option<Progress<'_>>,
) -> Result<PeerReport, String> {
    let step = step.max(1);
    let mut marks = Vec::with_capacity(MARKS as usize);
    let mut to_mark = step;
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
        // A countdown, not `count % step`: no division per message.
        to_mark -= 1;
        if to_mark == 0 {
            marks.push(now);
            to_mark = step;
        }
        digest = digest.wrapping_add(crate::harness::validate::mix64(seq));
        if let Some(p) = &progress {
            use crate::shm::sync::Ordering;
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
        marks,
        mark_step: step,
        ..PeerReport::default()
    })
}

/// An object a server owns, called by a client: a write, then a read that
/// must give back what was written. A manager's dictionary (its proxy
/// itself), list, Namespace or `Value` ([`ListCalls`], [`NamespaceCalls`],
/// [`ValueCalls`]), or the shared-memory dictionary.
pub trait ObjectCalls {
    /// Writes `value` under `key` (`dict[key] = value`).
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Reads what the last `set` of `key` wrote into `out`; false when
    /// the server has nothing under `key`.
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String>;
}

impl<S: StreamIo> ObjectCalls for Proxy<S> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.dict_set(key, value).map_err(terr)
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        self.dict_get(key, out).map(|f| f.is_some()).map_err(terr)
    }
}

/// A manager's list named `key`, the caller's alone: `set` is
/// `list.append(value)`, whose answer (the new length) must be one more
/// than the last; `get` is `list[i]`, `i` the index the value went to.
pub struct ListCalls<S: StreamIo> {
    proxy: Proxy<S>,
    len: u64,
}

impl<S: StreamIo> ListCalls<S> {
    /// Calls through `proxy`, on lists this client has not appended to.
    pub fn new(proxy: Proxy<S>) -> Self {
        ListCalls { proxy, len: 0 }
    }
}

impl<S: StreamIo> ObjectCalls for ListCalls<S> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let n = self.proxy.list_append(key, value).map_err(terr)?;
        let want = self.len + 1;
        if n != want {
            return Err(format!(
                "append {want}: the list's length is {n} where {want} was expected"
            ));
        }
        self.len = n;
        Ok(())
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let Some(last) = self.len.checked_sub(1) else {
            return Ok(false);
        };
        let i = i64::try_from(last).map_err(|_| "a list longer than i64".to_owned())?;
        self.proxy.list_get(key, i, out).map_err(terr)?;
        Ok(true)
    }
}

/// A manager's Namespace: `set` is `ns.<key> = value`, `get` is `ns.<key>`.
pub struct NamespaceCalls<S: StreamIo>(pub Proxy<S>);

impl<S: StreamIo> ObjectCalls for NamespaceCalls<S> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.ns_set(key, value).map_err(terr)
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        self.0.ns_get(key, out).map(|f| f.is_some()).map_err(terr)
    }
}

/// A manager's `Value('d')` named `key`: `set` is `value.value = v`, `v`
/// the double whose bits are the 8-byte message ([`VALUE_SIZE`]); `get`
/// is `value.value`, its bits the message read back (the server keeps a
/// double's 8 bytes as they came, so every message survives the trip).
///
/// [`VALUE_SIZE`]: crate::harness::spec::VALUE_SIZE
pub struct ValueCalls<S: StreamIo>(pub Proxy<S>);

impl<S: StreamIo> ObjectCalls for ValueCalls<S> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let bits: [u8; 8] = value
            .try_into()
            .map_err(|_| format!("a Value('d') holds 8 bytes, not {}", value.len()))?;
        self.0
            .value_set(key, f64::from_le_bytes(bits))
            .map_err(terr)
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        out.clear();
        match self.0.value_get(key).map_err(terr)? {
            Some(v) => {
                out.extend_from_slice(&v.to_le_bytes());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Request/response, a client of a server's dictionary: `warmup + iters`
/// rounds of two calls, `dict[k] = message` then `dict[k]`, each call
/// timed; the value read back must be the message written. Notes the
/// time every `step` measured calls ([`PeerReport::marks`]).
pub fn reqrep_client(
    mut proxy: impl ObjectCalls,
    codec: &Codec,
    id: u64,
    (warmup, iters): (u64, u64),
    step: u64,
) -> Result<PeerReport, String> {
    if warmup + iters >= 1 << producer_shift(codec) {
        return Err(format!(
            "at most {} calls per client",
            (1u64 << producer_shift(codec)) - 1
        ));
    }
    let step = step.max(1);
    let mut marks = Vec::with_capacity(MARKS as usize);
    let mut next_mark = step;
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
            while calls >= next_mark {
                marks.push(t2);
                next_mark += step;
            }
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
        marks,
        mark_step: step,
        ..PeerReport::default()
    })
}
