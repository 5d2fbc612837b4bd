//! What the reference examples print of a run of round trips.

use ipcbench::harness::control::PeerReport;

/// One line: the round trip's median and 99th percentile, and the batch's
/// mean halved (one way, as the engines' own benchmarks report).
pub fn print_round_trips(what: &str, r: &PeerReport) {
    let us = |ns: u64| ns as f64 / 1e3;
    let (p50, p99) = r.latency.as_ref().map_or((0, 0), |l| (l.p50, l.p99));
    println!(
        "{what}: round trip p50 {:.3} µs p99 {:.3} µs; one way (the batch's mean, halved) {:.3} µs",
        us(p50),
        us(p99),
        r.batched_mean_ns.unwrap_or(0.0) / 2e3
    );
}
