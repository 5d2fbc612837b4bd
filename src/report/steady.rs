//! Under a steady load: a run's open-loop (`rate`) points, one line per
//! strategy (transport, wait, size), and where each line's knee is.
//!
//! A line sustains an offered rate when the receiver took in at least
//! [`KEPT_UP`] of it and the corrected p99 stayed under its threshold:
//! [`KNEE_MULTIPLE`] times its unloaded median (the corrected p50 at the
//! lowest rate measured). Where the machine's own pauses already put the
//! unloaded p99 above that, the threshold is [`JITTER_MULTIPLE`] times the
//! unloaded p99 instead, and the report says so. The knee is the highest
//! offered rate sustained.

use super::analysis::{human_ns, human_size};
use super::page::{Block, per_s};
use crate::record::{PointRecord, RunRecord, Status};

/// The share of the offered rate a receiver must take in to keep up.
pub const KEPT_UP: f64 = 0.95;
/// The knee's threshold: this many times the unloaded median.
pub const KNEE_MULTIPLE: f64 = 10.0;
/// The threshold where the unloaded p99 is already past the one above:
/// this many times the unloaded p99.
pub const JITTER_MULTIPLE: f64 = 2.0;
/// How much the corrected median may grow from a point's first batch to
/// its last before the point is called past its knee (its channel queues
/// ever more).
pub const GROWTH_PAST_KNEE: f64 = 2.0;

/// One strategy's open-loop points.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// `rate` (a channel) or `reqrep-rate` (clients calling a server).
    pub pattern: String,
    /// Clients of `reqrep-rate` (1 for `rate`).
    pub clients: usize,
    /// The transport (`tcp (2 hosts)` between two hosts).
    pub transport: String,
    /// Measured between two hosts.
    pub hosts: bool,
    /// Its wait (`kernel` for kernel transports).
    pub wait: String,
    /// Bytes per message.
    pub size: usize,
    /// The unpaced point (the capacity), if it passed.
    pub unpaced: Option<&'a PointRecord>,
    /// The paced points that passed, by offered rate.
    pub paced: Vec<&'a PointRecord>,
}

/// A point's offered rate (none when unpaced).
pub fn offered(p: &PointRecord) -> Option<f64> {
    p.rate.offered_per_s
}

/// Whether an open-loop point fell behind what it was offered: its
/// receiver took in less than [`KEPT_UP`] of it, or its corrected median
/// grew more than [`GROWTH_PAST_KNEE`] times over the point. Its median
/// then says how long the run lasted, not what the channel costs.
pub fn past_knee(p: &PointRecord) -> bool {
    let Some(offered) = offered(p) else {
        return false;
    };
    let behind = p.rate.achieved_per_s.is_some_and(|a| a < KEPT_UP * offered);
    behind || p.rate.latency_growth.is_some_and(|g| g > GROWTH_PAST_KNEE)
}

impl Line<'_> {
    /// The name tables and legends give it.
    pub fn label(&self) -> String {
        let l = super::analysis::label(&self.transport, &self.wait);
        if self.pattern == "rate" {
            l
        } else {
            let s = if self.clients == 1 { "" } else { "s" };
            format!("{l}, calls from {} client{s}", self.clients)
        }
    }

    /// Whether it is a channel's line (`rate`), not calls to a server.
    pub fn is_channel(&self) -> bool {
        self.pattern == "rate"
    }

    /// The capacity measured unpaced (messages per second).
    pub fn capacity(&self) -> Option<f64> {
        self.unpaced.and_then(|p| p.rate.achieved_per_s)
    }

    /// The point at the lowest rate offered: the line's unloaded latency.
    pub fn unloaded(&self) -> Option<&PointRecord> {
        self.paced.first().copied()
    }

    /// The corrected p99 a sustained rate stays under, and whether it is
    /// the jitter fallback (twice the unloaded p99) rather than ten times
    /// the unloaded median.
    pub fn threshold_ns(&self) -> Option<(f64, bool)> {
        let l = self.unloaded()?.latency_ns?;
        let by_median = KNEE_MULTIPLE * l.p50 as f64;
        let by_tail = JITTER_MULTIPLE * l.p99 as f64;
        Some(if l.p99 as f64 > by_median {
            (by_tail, true)
        } else {
            (by_median, false)
        })
    }

    /// Whether the line sustains point `p`'s offered rate.
    pub fn sustains(&self, p: &PointRecord) -> bool {
        let (Some(off), Some((limit, _)), Some(l)) =
            (offered(p), self.threshold_ns(), p.latency_ns)
        else {
            return false;
        };
        p.rate.achieved_per_s.is_some_and(|a| a >= KEPT_UP * off)
            && !past_knee(p)
            && (l.p99 as f64) < limit
    }

    /// The highest offered rate the line sustains.
    pub fn knee(&self) -> Option<f64> {
        self.paced
            .iter()
            .filter(|p| self.sustains(p))
            .filter_map(|p| offered(p))
            .reduce(f64::max)
    }

    /// The lowest offered rate the line does not sustain.
    pub fn first_miss(&self) -> Option<f64> {
        self.paced
            .iter()
            .filter(|p| !self.sustains(p))
            .filter_map(|p| offered(p))
            .reduce(f64::min)
    }

    /// The point offered exactly `per_s` (an absolute rate of the ladder).
    pub fn at(&self, per_s: f64) -> Option<&PointRecord> {
        self.paced
            .iter()
            .copied()
            .find(|p| offered(p).is_some_and(|o| (o - per_s).abs() < 0.5))
    }
}

/// The open-loop points of `run`, one line per transport, wait and size
/// (those between two hosts apart, named `tcp (2 hosts)`), in the order
/// they were measured.
pub fn lines(run: &RunRecord) -> Vec<Line<'_>> {
    let mut out: Vec<Line> = Vec::new();
    for p in run
        .points
        .iter()
        .filter(|p| crate::record::open_loop(&p.pattern))
    {
        // Between two hosts, a line of its own.
        let transport = match p.hosts {
            Some(_) => format!("{} (2 hosts)", p.transport),
            None => p.transport.clone(),
        };
        let i = match out.iter().position(|l| {
            l.pattern == p.pattern
                && l.clients == p.producers
                && l.transport == transport
                && l.wait == p.wait
                && l.size == p.msg_size
        }) {
            Some(i) => i,
            None => {
                out.push(Line {
                    pattern: p.pattern.clone(),
                    clients: p.producers,
                    transport,
                    hosts: p.hosts.is_some(),
                    wait: p.wait.clone(),
                    size: p.msg_size,
                    unpaced: None,
                    paced: Vec::new(),
                });
                out.len() - 1
            }
        };
        if p.status != Status::Ok {
            continue;
        }
        match offered(p) {
            None => out[i].unpaced = Some(p),
            Some(_) => out[i].paced.push(p),
        }
    }
    for l in &mut out {
        l.paced.sort_by(|a, b| {
            offered(a)
                .unwrap_or(0.0)
                .total_cmp(&offered(b).unwrap_or(0.0))
        });
    }
    out.retain(|l| l.unpaced.is_some() || !l.paced.is_empty());
    out
}

/// Both peers' CPU per message at an open-loop point, and each one's.
fn cpu_cell(p: Option<&PointRecord>) -> String {
    let Some(p) = p else { return "-".into() };
    match (p.cpu_ns_per_msg, p.rate.peer_cpu_ns_per_msg) {
        (Some(all), Some([send, recv])) => format!(
            "{} ({} + {})",
            human_ns(all),
            human_ns(send),
            human_ns(recv)
        ),
        (Some(all), None) => human_ns(all),
        _ => "-".into(),
    }
}

/// The report's section "Under a steady load": each strategy's capacity,
/// unloaded latency, knee and CPU cost at a rate, the two plots, and what
/// † means; nothing when the run has no open-loop points.
pub fn section(run: &RunRecord) -> Vec<Block> {
    let lines = lines(run);
    let mut b = Vec::new();
    if lines.is_empty() {
        return b;
    }
    let mut sizes: Vec<usize> = lines.iter().map(|l| l.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let sizes: Vec<String> = sizes.into_iter().map(human_size).collect();
    b.push(Block::Heading(
        2,
        format!("Under a steady load ({})", sizes.join(", ")),
    ));
    b.push(Block::Para(format!(
        "Open loop (`rate`): the sender sends each message at its intended time, whatever the \
         receiver does, at fractions of the strategy's own capacity (measured unpaced just before) \
         and at rates shared by all. Latency runs from the intended send time, so a stall counts \
         for every message that fell due during it (corrected for coordinated omission); the \
         uncorrected latency, from the actual send time, is drawn faintly in the plot. A \
         strategy sustains a rate when it took in at least {:.0}% of it and its corrected p99 \
         stayed under {KNEE_MULTIPLE}× its unloaded median (p50 at the lowest rate measured); \
         the knee is the highest rate sustained. CPU is both peers' per message, the sender's \
         and the receiver's in brackets; the sender's leaves out its pacing (spinning or \
         yielding until a message's time) but not its sleeping and waking, which a producer \
         whose work arrives at that rate pays too. Rows of calls (`reqrep-rate`) are clients \
         calling a server's dictionary at the offered rate in all, a call waiting for its \
         answer as a proxy's does; their CPU is the clients' and the server's (0 for a \
         manager's server, its own process, not measured).",
        KEPT_UP * 100.0
    )));
    let mut jitter = false;
    let rows = lines
        .iter()
        .map(|l| {
            let unloaded = l.unloaded();
            let lat = unloaded.and_then(|p| p.latency_ns);
            let threshold = l.threshold_ns();
            jitter |= threshold.is_some_and(|t| t.1);
            let rate_cell =
                |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{}/s", per_s(r)));
            vec![
                l.label(),
                rate_cell(l.capacity()),
                match (unloaded, lat) {
                    (Some(p), Some(lat)) => format!(
                        "{} / {} at {}/s",
                        human_ns(lat.p50 as f64),
                        human_ns(lat.p99 as f64),
                        per_s(offered(p).unwrap_or(0.0))
                    ),
                    _ => "-".into(),
                },
                match (l.knee(), threshold) {
                    (Some(k), Some((_, true))) => format!("{}/s †", per_s(k)),
                    (Some(k), _) => format!("{}/s", per_s(k)),
                    (None, Some((_, true))) => "none †".into(),
                    (None, _) if l.paced.is_empty() => "-".into(),
                    (None, _) => "none".into(),
                },
                rate_cell(l.first_miss()),
                cpu_cell(l.at(1e3)),
                cpu_cell(l.at(1e5)),
                unloaded
                    .and_then(|p| p.rate.sender_lateness_ns)
                    .map_or("-".into(), |s| human_ns(s.p99 as f64)),
            ]
        })
        .collect();
    b.push(Block::Table(
        [
            "strategy",
            "capacity",
            "unloaded p50 / p99",
            "knee",
            "first rate missed",
            "CPU/msg at 1 k/s (send + receive)",
            "CPU/msg at 100 k/s (send + receive)",
            "sender late, p99",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    ));
    for (file, title) in super::plots::STEADY_PLOTS {
        b.push(Block::Plot(file.into(), title.into()));
    }
    if jitter {
        b.push(Block::Para(format!(
            "† Even unloaded, this strategy's p99 was more than {KNEE_MULTIPLE}× its median: the \
             machine's own pauses (a virtual CPU descheduled, an interrupt), not the channel. Its \
             knee is read against {JITTER_MULTIPLE}× the unloaded p99 instead."
        )));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Latency, RateFigures};

    fn point(offered: Option<f64>, achieved: f64, p50: u64, p99: u64) -> PointRecord {
        let mut p = PointRecord::unmeasured("os-pipe", "rate", 64, (1, 1), "kernel");
        p.pass();
        p.latency_ns = Some(Latency {
            p50,
            p99,
            max: p99,
            ..Latency::default()
        });
        p.rate = RateFigures {
            offered_per_s: offered,
            achieved_per_s: Some(achieved),
            latency_growth: Some(1.0),
            ..RateFigures::default()
        };
        p
    }

    fn run(points: Vec<PointRecord>) -> RunRecord {
        RunRecord {
            schema_version: 1,
            run_id: "t".into(),
            started_at: String::new(),
            machine: crate::record::Machine::current(),
            config: serde_json::Value::Null,
            points,
        }
    }

    #[test]
    fn the_knee_is_the_highest_rate_kept_up_with_under_ten_times_the_unloaded_median() {
        let r = run(vec![
            point(None, 1e6, 1_000, 5_000),
            point(Some(1e3), 1e3, 2_000, 10_000),
            point(Some(1e5), 1e5, 2_000, 15_000),
            // Kept up, but its p99 is past 10 × 2 µs.
            point(Some(5e5), 4.99e5, 3_000, 25_000),
            // Fell behind.
            point(Some(1.1e6), 0.9e6, 900_000, 2_000_000),
        ]);
        let lines = lines(&r);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.capacity(), Some(1e6));
        assert_eq!(l.threshold_ns(), Some((20_000.0, false)));
        assert_eq!(l.knee(), Some(1e5));
        assert_eq!(l.first_miss(), Some(5e5));
        assert!(past_knee(l.paced[3]) && !past_knee(l.paced[2]));
    }

    #[test]
    fn where_the_machine_pauses_the_threshold_is_twice_the_unloaded_tail() {
        // Unloaded p99 is 100 × its median: the machine's pauses.
        let r = run(vec![
            point(Some(1e3), 1e3, 300, 30_000),
            point(Some(1e4), 1e4, 300, 50_000),
            point(Some(1e5), 1e5, 300, 70_000),
        ]);
        let l = &lines(&r)[0];
        assert_eq!(l.threshold_ns(), Some((60_000.0, true)));
        assert_eq!(l.knee(), Some(1e4));
        assert_eq!(l.first_miss(), Some(1e5));
    }

    #[test]
    fn a_point_whose_latency_keeps_growing_is_past_its_knee() {
        let mut p = point(Some(1e5), 1e5, 2_000, 10_000);
        assert!(!past_knee(&p));
        p.rate.latency_growth = Some(5.0);
        assert!(past_knee(&p));
        // An unpaced point has no knee to be past.
        assert!(!past_knee(&point(None, 1e6, 1, 1)));
    }
}
