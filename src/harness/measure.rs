//! Clocks, CPU time and latency histograms: what every peer measures
//! with, in one place.

use hdrhistogram::Histogram;

use crate::record::Latency;

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process.
pub use super::validate::now_ns;

/// User + system CPU time of this process, in nanoseconds.
pub fn cpu_time_ns() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub use crate::record::hist::histogram;

/// A histogram as (value, count) pairs, for the coordinator to merge.
pub fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
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

/// The percentiles of a histogram of nanoseconds (`None` when empty).
pub fn summary(h: &Histogram<u64>) -> Option<Latency> {
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

/// How many times, in all, the receivers of a point many share (or its
/// clients) note the time as messages arrive: every [`mark_step`]
/// messages each.
pub const MARKS: u64 = 128;

/// Every how many messages a receiver of a point many share notes the
/// time, when `total` messages are to cross the channel among all of
/// them.
pub fn mark_step(total: u64) -> u64 {
    (total / MARKS).max(1)
}

/// A point many share, cut into [`BATCHES`] runs of about equal count
/// over all its receivers together: every receiver's marks (times it had
/// received another `step` messages) merged in time order, each batch's
/// messages per second from the marks that close it (median latency 0:
/// the receivers' latencies are not split by batch). `start_ns` is when
/// the first message arrived. Fewer marks than batches give as many
/// batches as marks.
pub fn merged_batches(start_ns: u64, marks: &[(u64, &[u64])]) -> Vec<(u64, f64)> {
    let mut events: Vec<(u64, u64)> = marks
        .iter()
        .flat_map(|&(step, times)| times.iter().map(move |&t| (t, step)))
        .collect();
    events.sort_unstable();
    let total: u64 = events.iter().map(|e| e.1).sum();
    let per = total.div_ceil(BATCHES).max(1);
    let (mut from, mut n) = (start_ns, 0u64);
    let mut out = Vec::with_capacity(BATCHES as usize);
    for (t, step) in events {
        n += step;
        if n >= per && t > from {
            out.push((0, n as f64 * 1e9 / (t - from) as f64));
            (from, n) = (t, 0);
        }
    }
    out
}

/// How many batches a point's measured messages are split into: enough
/// for a 95% interval of the median from their order statistics (6 is
/// the least that gives one; of 20, the 6th to the 15th: 95.9%).
pub const BATCHES: u64 = 20;

/// The measured messages of a point, cut into [`BATCHES`] runs of equal
/// count: each batch's median latency (of the samples it recorded) and
/// its messages per second, and every sample merged into one histogram.
/// Recording goes into the batch's histogram only; a batch is merged
/// when it closes, so a message costs one record as before.
pub struct Batches {
    per: u64,
    left: u64,
    start: u64,
    cur: Histogram<u64>,
    all: Histogram<u64>,
    out: Vec<(u64, f64)>,
}

impl Batches {
    /// Batches over `iters` messages, the first starting at `start_ns`.
    pub fn new(iters: u64, start_ns: u64) -> Batches {
        let per = iters.div_ceil(BATCHES).max(1);
        Batches {
            per,
            left: per,
            start: start_ns,
            cur: histogram(),
            all: histogram(),
            out: Vec::with_capacity(BATCHES as usize),
        }
    }

    /// Records one latency sample (nanoseconds).
    #[inline]
    pub fn sample(&mut self, ns: u64) {
        self.cur.saturating_record(ns.max(1));
    }

    /// Counts one message; `now` is asked for only when it closes a batch.
    #[inline]
    pub fn tick(&mut self, now: impl FnOnce() -> u64) {
        self.left -= 1;
        if self.left == 0 {
            self.close(self.per, now());
        }
    }

    fn close(&mut self, n: u64, now: u64) {
        let p50 = if self.cur.is_empty() {
            0
        } else {
            self.cur.value_at_quantile(0.5)
        };
        let per_s = n as f64 * 1e9 / now.saturating_sub(self.start).max(1) as f64;
        self.out.push((p50, per_s));
        let _ = self.all.add(&self.cur);
        self.cur.reset();
        self.start = now;
        self.left = self.per;
    }

    /// The batches (median ns, 0 when none was recorded; messages per
    /// second) and the whole histogram. A last batch shorter than half
    /// the others is merged into the histogram but not listed.
    pub fn finish(mut self, now: u64) -> (Vec<(u64, f64)>, Histogram<u64>) {
        let done = self.per - self.left;
        if done * 2 >= self.per {
            self.close(done, now);
        } else {
            let _ = self.all.add(&self.cur);
        }
        (self.out, self.all)
    }
}

pub use crate::record::hist::{decode, encode};

/// A stream receiver's timing of messages `measured..end` (those before
/// are warm-up): first to last arrival, the one-way latency of the stamped
/// ones, and [`Batches`] over the intervals between them. The clock is
/// read only for a stamped message, the first and the last, and where a
/// batch closes. One body for every stream receiver (channels and the
/// copy floor), so they are timed alike.
pub struct StreamTimes {
    measured: u64,
    end: u64,
    intervals: u64,
    first: u64,
    last: u64,
    batches: Batches,
}

impl StreamTimes {
    /// Timing of messages `measured..end`.
    pub fn new(measured: u64, end: u64) -> StreamTimes {
        let intervals = end.saturating_sub(measured).saturating_sub(1);
        StreamTimes {
            measured,
            end,
            intervals,
            first: 0,
            last: 0,
            batches: Batches::new(intervals, 0),
        }
    }

    /// Message `seq` arrived, sent at `ts` (0 when unstamped).
    #[inline]
    pub fn received(&mut self, seq: u64, ts: u64) {
        if seq < self.measured {
            return;
        }
        let now = if ts != 0 || seq == self.measured || seq + 1 == self.end {
            now_ns()
        } else {
            0
        };
        if seq == self.measured {
            // Batches open at the first measured message.
            self.first = now;
            self.batches = Batches::new(self.intervals, now);
        }
        if ts != 0 {
            self.batches.sample(now.saturating_sub(ts));
        }
        if seq != self.measured {
            self.batches.tick(|| if now != 0 { now } else { now_ns() });
        }
        if seq + 1 == self.end {
            self.last = now;
        }
    }

    /// The receiver's report (all but its CPU time): the intervals between
    /// the first and the last measured message, and what they took.
    pub fn report(self) -> super::control::PeerReport {
        let (batches, h) = self.batches.finish(self.last);
        let took = self.last.saturating_sub(self.first);
        super::control::PeerReport {
            messages: self.intervals,
            elapsed_ns: took,
            latency: summary(&h),
            measured_ns: took,
            batches,
            histogram: encode(&h),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_batches_count_every_receiver_in_time_order() {
        // Two receivers of 10 messages each, marking every message: one
        // every 10 ns from 0, the other every 10 ns from 5; 20 messages in
        // 100 ns together, in 20 batches of one message.
        let a: Vec<u64> = (1..=10).map(|i| i * 10).collect();
        let b: Vec<u64> = (0..10).map(|i| i * 10 + 15).collect();
        let batches = merged_batches(5, &[(1, &a), (1, &b)]);
        assert_eq!(batches.len(), 20);
        // Each batch: one message in 5 ns.
        assert!(
            batches.iter().all(|&(p50, r)| p50 == 0 && r == 2e8),
            "{batches:?}"
        );
        // One receiver got everything: its marks alone set the pace.
        let slow: Vec<u64> = (1..=40).map(|i| i * 100).collect();
        let batches = merged_batches(0, &[(5, &slow), (5, &[])]);
        assert_eq!(batches.len(), 20);
        assert!(
            batches.iter().all(|&(_, r)| (r - 5e7).abs() < 1.0),
            "{batches:?}"
        );
        assert!(merged_batches(0, &[]).is_empty());
    }

    #[test]
    fn batches_cover_every_message_and_the_histogram_every_sample() {
        let mut b = Batches::new(100, 0);
        for i in 1..=100u64 {
            b.sample(i);
            b.tick(|| i * 10);
        }
        let (batches, h) = b.finish(1000);
        assert_eq!(batches.len(), 20);
        assert_eq!(h.len(), 100);
        // 5 messages per 50 ns: 100 M/s each.
        assert!(
            batches.iter().all(|&(_, r)| (r - 1e8).abs() < 1.0),
            "{batches:?}"
        );
        assert_eq!(batches[0].0, 3);
        let text = encode(&h).unwrap();
        let back = decode(&text).unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(decode("not a histogram").is_err());
    }
}
