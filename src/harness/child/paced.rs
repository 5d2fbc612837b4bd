//! The two bodies of the open-loop pattern (`rate`): a sender that sends
//! message *i* at its intended time and never waits for the receiver,
//! and a receiver that times each message from that intended time
//! (corrected for coordinated omission) and from its actual send time.

use super::super::control::PeerReport;
use super::super::measure::{Batches, cpu_time_ns, encode, histogram, now_ns, pairs, summary};
use super::super::rate::{Pace, Pacer, due};
use super::super::validate::Codec;
use super::bodies::{expect_end, terr};
use crate::transport::Conn;

/// Sends messages `0..warmup + iters`, message `i` at
/// `due(t0, i, period_ns)` (all at once when `period_ns` is 0), waiting
/// for that time as `pace` says. Each message carries its actual send
/// time; message 0 is sent at `t0` and carries it, so the receiver knows
/// the schedule. A send that blocks (a full channel) delays the messages
/// after it; none is skipped. The report's `lateness_hist` is the
/// sender's own lateness over the measured messages: its actual send time less the
/// intended one, or less the end of the send before when that was later
/// (time blocked on a full channel is the channel's, in the corrected
/// latency). Its CPU time leaves out the pacing ([`Pacer::sending_cpu`]).
pub fn rate_send<C: Conn>(
    mut conn: C,
    codec: &Codec,
    (warmup, iters): (u64, u64),
    period_ns: f64,
    pace: Pace,
) -> Result<PeerReport, String> {
    let mut pacer = Pacer::new(pace);
    let mut out = codec.buffer();
    let mut late = histogram();
    let mut mark = pacer.mark();
    let t0 = now_ns();
    // When the last send returned.
    let mut free = t0;
    for i in 0..warmup + iters {
        let at = due(t0, i, period_ns);
        if i == warmup {
            mark = pacer.mark();
        }
        let sent = if i == 0 { t0 } else { pacer.until(at) };
        codec.stamp(&mut out, i, sent);
        conn.send(&out).map_err(terr)?;
        if i >= warmup && period_ns > 0.0 {
            // Its own lateness: a message whose time came while the last
            // send blocked (a full channel) is late by the channel's doing.
            late.saturating_record(sent.saturating_sub(at.max(free)).max(1));
        }
        // Read unpaced too: the capacity is measured doing the same work.
        free = now_ns();
    }
    // What sending cost: the pacing left out.
    let cpu = pacer.sending_cpu(&mark);
    conn.close().map_err(terr)?;
    Ok(PeerReport {
        messages: iters,
        lateness_hist: pairs(&late),
        cpu_ns: cpu,
        first_ns: t0,
        ..PeerReport::default()
    })
}

/// What a stall of the receiver looks like (a test's deliberately slow
/// receiver): `ns` asleep after every `every` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Messages between stalls.
    pub every: u64,
    /// How long each stall lasts.
    pub ns: u64,
}

/// `EVERY:NS`, as `--stall` takes it.
impl std::str::FromStr for Stall {
    type Err = String;
    fn from_str(s: &str) -> Result<Stall, String> {
        let bad = || format!("--stall takes EVERY:NS (messages, nanoseconds), not {s:?}");
        let (every, ns) = s.split_once(':').ok_or_else(bad)?;
        Ok(Stall {
            every: every.parse().map_err(|_| bad())?,
            ns: ns.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.every, self.ns)
    }
}

/// Receives and checks messages `0..warmup + iters` sent by
/// [`rate_send`] on a schedule of `period_ns`, then expects the end of the
/// stream. For each measured message: the latency from its intended send
/// time (the report's `latency`, `histogram` and `batches`) and from its
/// actual one (`uncorrected_hist`). `messages` and `elapsed_ns` span the first
/// to the last measured arrival.
pub fn rate_recv<C: Conn>(
    mut conn: C,
    codec: &Codec,
    (warmup, iters): (u64, u64),
    period_ns: f64,
    stall: Option<Stall>,
) -> Result<PeerReport, String> {
    let mut buf = Vec::with_capacity(codec.size());
    let mut cpu0 = cpu_time_ns();
    let mut uncorrected = histogram();
    let mut batches = Batches::new(iters, 0);
    let (mut t0, mut first, mut last) = (0u64, 0u64, 0u64);
    for seq in 0..warmup + iters {
        let sent = conn
            .recv_with(&mut buf, |m| codec.check(m, seq))
            .map_err(terr)??;
        let now = now_ns();
        if seq == 0 {
            t0 = sent;
        }
        if let Some(s) = stall
            && s.every > 0
            && (seq + 1) % s.every == 0
        {
            std::thread::sleep(std::time::Duration::from_nanos(s.ns));
        }
        if seq < warmup {
            continue;
        }
        if seq == warmup {
            cpu0 = cpu_time_ns();
            first = now;
            batches = Batches::new(iters, now);
        }
        // Unpaced, every message is due at once: only the uncorrected
        // latency means anything.
        let intended = if period_ns > 0.0 {
            due(t0, seq, period_ns)
        } else {
            sent
        };
        batches.sample(now.saturating_sub(intended));
        batches.tick(|| now);
        uncorrected.saturating_record(now.saturating_sub(sent).max(1));
        last = now;
    }
    let cpu = cpu_time_ns() - cpu0;
    expect_end(&mut conn)?;
    let (batches, h) = batches.finish(last);
    let took = last.saturating_sub(first);
    Ok(PeerReport {
        messages: iters,
        elapsed_ns: took,
        latency: summary(&h),
        uncorrected_hist: pairs(&uncorrected),
        cpu_ns: cpu,
        measured_ns: took,
        batches,
        histogram: encode(&h),
        first_ns: t0,
        ..PeerReport::default()
    })
}

/// A reqrep client in open loop: its calls (a `set` of message *i*, then a
/// `get` that must return it) go out on a schedule of one every
/// `period_ns` (all at once when 0), whatever the server does; each call
/// is timed from its intended time (`latency_hist`) and from when it
/// went out (`uncorrected_hist`), and the client's own lateness is kept
/// (`lateness_hist`). A call waits for its answer, as a proxy's does, so
/// a slow answer delays the calls after it: that delay is in their
/// corrected latency.
pub fn calls_paced(
    mut proxy: impl super::bodies::ObjectCalls,
    codec: &Codec,
    id: u64,
    (warmup, iters): (u64, u64),
    step: u64,
    period_ns: f64,
    pace: Pace,
) -> Result<PeerReport, String> {
    use super::bodies::{producer_shift, tagged_seq};
    if warmup + iters >= 1 << producer_shift(codec) {
        return Err(format!(
            "at most {} calls per client",
            (1u64 << producer_shift(codec)) - 1
        ));
    }
    let mut pacer = Pacer::new(pace);
    let step = step.max(1);
    let mut marks = Vec::new();
    let mut next_mark = step;
    let key = format!("client-{id}");
    let mut out = codec.buffer();
    let mut back = Vec::with_capacity(codec.size());
    let (mut corrected, mut uncorrected, mut late) = (histogram(), histogram(), histogram());
    let mut mark = pacer.mark();
    let (mut first, mut calls) = (0, 0u64);
    let t0 = now_ns();
    let mut free = t0;
    for i in 0..warmup + iters {
        let seq = tagged_seq(codec, id, i);
        codec.stamp(&mut out, seq, 0);
        if i == warmup {
            mark = pacer.mark();
        }
        for k in [2 * i, 2 * i + 1] {
            let at = due(t0, k, period_ns);
            let sent = pacer.until(at);
            if k == 2 * warmup {
                first = sent;
            }
            if k % 2 == 0 {
                proxy.set(key.as_bytes(), &out)?;
            } else if !proxy.get(key.as_bytes(), &mut back)? {
                return Err(format!("call {k}: the value just written is missing"));
            } else {
                codec.check(&back, seq)?;
            }
            let done = now_ns();
            if i >= warmup {
                let intended = if period_ns > 0.0 { at } else { sent };
                corrected.saturating_record(done.saturating_sub(intended).max(1));
                uncorrected.saturating_record(done.saturating_sub(sent).max(1));
                if period_ns > 0.0 {
                    late.saturating_record(sent.saturating_sub(at.max(free)).max(1));
                }
                calls += 1;
                while calls >= next_mark {
                    marks.push(done);
                    next_mark += step;
                }
            }
            free = done;
        }
    }
    let last = now_ns();
    let cpu = pacer.sending_cpu(&mark);
    Ok(PeerReport {
        messages: calls,
        elapsed_ns: last - first,
        cpu_ns: cpu,
        first_ns: first,
        last_ns: last,
        latency_hist: pairs(&corrected),
        uncorrected_hist: pairs(&uncorrected),
        lateness_hist: pairs(&late),
        marks,
        mark_step: step,
        ..PeerReport::default()
    })
}
