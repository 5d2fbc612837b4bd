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

/// An empty histogram of nanoseconds.
pub fn histogram() -> Histogram<u64> {
    // 1 ns to one hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

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
