//! The result records every reader relies on: one [`RunRecord`] per run,
//! one [`PointRecord`] per measured point, with its [`Status`] and its key
//! figure. The schema is DESIGN.md's, and `docs/results-schema.md`
//! documents it field by field. Fields may be added; none may change
//! meaning without bumping [`SCHEMA_VERSION`].
//!
//! This module sits below both the harness (which fills records) and the
//! report (which reads them): neither of those knows the other.

use serde::{Deserialize, Serialize};

pub mod hist;
pub mod io;
pub mod machine;

pub use machine::{allowed_cpus, cpu_relation, pin_to, rfc3339_now, set_cpus};

/// The version of this schema. Version 2 added a point's `status`;
/// version 3 its `measured_ns`, `batches`, `ci95` and `histogram`, and the
/// machine's topology. Older files still load (a version-1 status is
/// derived from `validated` and the `skipped:` prefix its `error` had);
/// newer ones are refused by [`io::read_results`].
pub const SCHEMA_VERSION: u32 = 3;

/// How long the answering side of a `pingpong-late` point works on each
/// message before it answers: inside its round trips, taken off them when
/// the report says what waiting cost.
pub const LATE_REPLY_NS: u64 = 200_000;

/// The CPU time each task of a `pool-cpu` point costs its worker.
pub const POOL_WORK_NS: u64 = 50_000;

/// How a point ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured, every message checked and found intact.
    Ok,
    /// Not measured: `error` says why. A failed point is never a number.
    #[default]
    Failed,
    /// Deliberately not run; `error` gives the reason.
    Skipped,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// A unique id for the run.
    pub run_id: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Where it ran.
    pub machine: Machine,
    /// The options it was given.
    pub config: serde_json::Value,
    /// The points, in the order they were measured.
    pub points: Vec<PointRecord>,
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// From /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `uname -s` and the distribution's PRETTY_NAME.
    pub os: String,
    /// The compiler that built this binary.
    pub rustc: String,
    /// The commit this binary was built from (`-dirty` if it had changes).
    pub git_commit: String,
    /// How its CPUs relate and what may shift timings (absent in files
    /// before schema 3, and where `/sys` cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// The machine's CPUs as the field records them: which share a core, a
/// cache, a NUMA node, and the settings that move timings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Topology {
    /// Each CPU this process may run on.
    pub cpus: Vec<CpuPlace>,
    /// The caches of the first CPU, and which CPUs share each.
    pub caches: Vec<CacheInfo>,
    /// The frequency governor (`cpufreq`), when there is one.
    pub governor: Option<String>,
    /// Whether boost (turbo) is on, when the kernel says.
    pub boost: Option<bool>,
    /// Transparent huge pages: the mode in brackets (`madvise`, …).
    pub transparent_hugepages: Option<String>,
    /// The kernel's command line (init's arguments after `--` left out).
    pub kernel_cmdline: Option<String>,
    /// `hypervisor` when the CPU says it runs under one (with the vendor
    /// where the firmware names it), else `none`.
    pub virtualization: String,
}

/// Where one CPU sits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CpuPlace {
    /// Its number.
    pub cpu: usize,
    /// Its core (`topology/core_id`) and package.
    pub core: Option<u32>,
    /// Its physical package (socket).
    pub package: Option<u32>,
    /// The CPUs sharing its core (SMT siblings, itself included).
    pub siblings: Vec<usize>,
    /// Its NUMA node.
    pub node: Option<u32>,
}

/// One cache level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CacheInfo {
    /// 1, 2, 3.
    pub level: u32,
    /// `Data`, `Instruction`, `Unified`.
    pub kind: String,
    /// `48K`, `2048K`.
    pub size: String,
    /// The CPUs that share it.
    pub shared_by: Vec<usize>,
}

/// Latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Latency {
    /// Mean of the samples.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p9999: Option<u64>,
    /// Largest sample.
    pub max: u64,
}

/// Throughput, receiver side.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Throughput {
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
}

/// An open-loop (`rate`) point's own figures; absent (each field) on
/// every other point. Its `latency_ns` is from each message's intended
/// send time (corrected for coordinated omission), its `throughput` what
/// the receiver achieved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RateFigures {
    /// The load as asked for: `max` (unpaced: the capacity), `80%` (of
    /// the capacity), `10k` (messages per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
    /// Messages per second offered (absent when unpaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    /// Messages per second the receiver took in, first to last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_per_s: Option<f64>,
    /// The capacity of the same strategy, size and wait measured unpaced
    /// earlier in the run (what the percentages are of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_s: Option<f64>,
    /// Latency from each message's actual send time (what a closed loop
    /// would have reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_ns: Option<Latency>,
    /// How late the sender sent, against each message's intended time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_lateness_ns: Option<Latency>,
    /// How the sender waited for each intended time (`spin`, `yield`,
    /// `sleep, then spin the spin budget`, `sleep, then spin the timer's
    /// oversleep`, or the Python queues' `sleep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<String>,
    /// CPU time per message of the sender (its pacing left out) and of the
    /// receiver; of a `reqrep-rate` point, the clients and the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_cpu_ns_per_msg: Option<[f64; 2]>,
    /// The corrected median of the point's last quarter of batches over
    /// that of its first quarter: a channel past its knee queues ever more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_growth: Option<f64>,
}

/// 95% confidence intervals of a point's figures, `[low, high]`, from its
/// batches (consecutive runs of equal count): of the median latency, the
/// order-statistic interval of the median over the batches' medians
/// (widened to take in the point's own median when every batch lies on one
/// side of it); of the messages per second, the Student-t interval of the
/// mean time per message over the batches (whose mean is the point's own
/// time per message), inverted. See `docs/results-schema.md`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Ci95 {
    /// The median latency's (absent when the batches recorded no latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<[f64; 2]>,
    /// The throughput's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<[f64; 2]>,
}

/// Criterion's estimate of one benchmark's time per iteration (a round
/// trip, or a message; a scaling benchmark's messages in all), from the
/// samples of every round it timed, with its confidence interval: the
/// `time: [lower estimate upper]` criterion prints. See
/// `docs/results-schema.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CriterionEstimate {
    /// The benchmark's id (`latency/shm-ring/spin/64`).
    pub id: String,
    /// Which statistic: `slope` (criterion's linear sampling) or `mean`.
    pub statistic: String,
    /// Its point estimate, ns per iteration.
    pub ns: f64,
    /// The interval's bounds, ns.
    pub interval_ns: [f64; 2],
    /// The interval's confidence level (0.95 unless asked otherwise).
    pub confidence: f64,
    /// The median of the samples' times per iteration, ns.
    pub median_ns: f64,
}

impl Ci95 {
    /// The intervals of `batches` ((median ns, 0 when none; messages per
    /// second) each), each taking in the point's own figure: the median's
    /// `p50`, the rate's `per_s` (a figure is never outside its interval;
    /// with `--repeat` the figure is one repeat's, the batches every
    /// repeat's); `None` when there are too few batches for either.
    pub fn of_batches(
        batches: &[(u64, f64)],
        p50: Option<u64>,
        per_s: Option<f64>,
    ) -> Option<Ci95> {
        let medians: Vec<f64> = batches.iter().map(|b| b.0 as f64).collect();
        let p50_ns = if medians.iter().all(|&x| x > 0.0) {
            median_interval(&medians).map(|[lo, hi]| match p50 {
                Some(m) => [lo.min(m as f64), hi.max(m as f64)],
                None => [lo, hi],
            })
        } else {
            None
        };
        let per_msg: Vec<f64> = batches
            .iter()
            .filter(|b| b.1 > 0.0 && b.1.is_finite())
            .map(|b| 1.0 / b.1)
            .collect();
        let ci = Ci95 {
            p50_ns,
            msgs_per_s: mean_interval(&per_msg).map(|[lo, hi]| {
                let [lo, hi] = [1.0 / hi, 1.0 / lo];
                match per_s.filter(|r| r.is_finite()) {
                    Some(r) => [lo.min(r), hi.max(r)],
                    None => [lo, hi],
                }
            }),
        };
        (ci.p50_ns.is_some() || ci.msgs_per_s.is_some()).then_some(ci)
    }

    /// The intervals of `rec`'s batches, taking in its own median and rate.
    pub fn of_point(rec: &PointRecord) -> Option<Ci95> {
        Ci95::of_batches(
            &rec.batches,
            rec.latency_ns.map(|l| l.p50),
            rec.throughput.map(|t| t.msgs_per_s),
        )
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (the
/// Cornish-Fisher expansion about the normal's 1.96, three terms: within 0.2% from 5
/// degrees of freedom on: 2.568 for 2.571 at 5).
pub fn t975(df: usize) -> f64 {
    let z: f64 = 1.959_964;
    let d = df.max(1) as f64;
    z + (z.powi(3) + z) / (4.0 * d)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * d.powi(3))
}

/// The Student-t 95% interval of the mean of `values`; `None` below 6.
pub fn mean_interval(values: &[f64]) -> Option<[f64; 2]> {
    let n = values.len();
    if n < 6 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    // A time per message is positive: the interval stays above zero.
    Some([(mean - half).max(mean * 1e-3), mean + half])
}

/// The ranks (0-based, inclusive) of the order statistics that bound a
/// 95% interval of the median of `n` values: the largest `j` with
/// P(Binomial(n, ½) ≤ j) ≤ 2.5%, and `n − 1 − j`. `None` below 6 values
/// (no pair of ranks covers 95%).
pub fn median_ranks(n: usize) -> Option<(usize, usize)> {
    if n < 6 {
        return None;
    }
    // P(X <= k) for X ~ Binomial(n, 1/2), accumulated term by term; the
    // interval [x(j), x(n-1-j)] (0-based) misses the median with
    // probability 2 P(X <= j).
    let mut term = 0.5f64.powi(n as i32);
    let mut cdf = term;
    let mut j = 0usize;
    for k in 1..n {
        term *= (n - k + 1) as f64 / k as f64;
        if cdf + term > 0.025 {
            break;
        }
        cdf += term;
        j = k;
    }
    Some((j, n - 1 - j))
}

/// The 95% interval of the median of `values` from their order
/// statistics ([`median_ranks`]); `None` below 6 values.
pub fn median_interval(values: &[f64]) -> Option<[f64; 2]> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = median_ranks(v.len())?;
    v.sort_by(f64::total_cmp);
    Some([v[lo], v[hi]])
}

/// `far_side` of a point whose side B ran on the far host, connecting to
/// side A on the near one.
pub const FAR_SIDE_B: &str = "side B";
/// `far_side` of a point whose side A (its senders or clients) ran on the
/// far host, connecting to receivers or a server on the near one.
pub const FAR_SIDE_A: &str = "side A";
/// `far_side` of a point whose server ran on the far host, both sides its
/// clients from the near one (a manager's, as a `BaseManager`'s clients
/// reach a server on another machine).
pub const FAR_SERVER: &str = "server";
/// `far_side` of a task farm whose workers ran on the far host,
/// connecting to the master on the near one.
pub const FAR_WORKERS: &str = "workers";
/// `far_side` of a task farm whose workers and manager's server ran on the
/// far host, the master reaching the server from the near one.
pub const FAR_SERVER_AND_WORKERS: &str = "server and workers";

/// One measured point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "wire::PointWire")]
pub struct PointRecord {
    /// The strategy (`shm-ring`, …, or `floor`).
    pub transport: String,
    /// `pingpong` or `stream`.
    pub pattern: String,
    /// Bytes per message.
    pub msg_size: usize,
    /// Sending processes.
    pub producers: usize,
    /// Receiving processes.
    pub consumers: usize,
    /// The waiting strategy (`spin`, …, or `kernel`).
    pub wait: String,
    /// Whether peers were pinned to distinct cores.
    pub pinned: bool,
    /// Whether more processes were busy than there are cores.
    pub oversubscribed: bool,
    /// Messages measured (round trips for pingpong).
    pub messages: u64,
    /// Time the measured messages took.
    pub elapsed_ns: u64,
    /// Whether every message moved was checked and found intact.
    pub validated: bool,
    /// How the point ended: `ok` (then `validated`), `failed` or `skipped`.
    pub status: Status,
    /// What went wrong, for a failed point (then the figures are absent),
    /// or why a skipped point was not run.
    pub error: Option<String>,
    /// RTT for pingpong, one-way for stream; absent if not measured.
    pub latency_ns: Option<Latency>,
    /// Round trips (pingpong) or messages (stream) per second.
    pub throughput: Option<Throughput>,
    /// CPU time of all peers per message (user + system).
    pub cpu_ns_per_msg: Option<f64>,
    /// Pingpong: the mean RTT of a batch timed as a whole (no clock read
    /// per round trip).
    #[serde(default)]
    pub batched_mean_ns: Option<f64>,
    /// The harness's own cost per message (stamping and checking), measured
    /// by calibration; it is inside the figures above.
    #[serde(default)]
    pub harness_ns_per_msg: Option<f64>,
    /// Peer CPUs, when pinned.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// How the first two peer CPUs relate: `same core` (SMT siblings),
    /// `same L3`, `other`, or absent when unpinned or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_relation: Option<String>,
    /// When the point was measured several times (`--repeat`): the key
    /// figure of each repeat, in order (median round trip in ns, or
    /// messages per second); the figures above are the median repeat's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<f64>,
    /// One-to-one pingpong and stream between pinned peers: the key figure
    /// of the matching floor (the spin floor's median round trip, or the
    /// copy floor's messages per second at this size) measured on the same
    /// CPUs just before and just after this point. On machines whose
    /// cross-core latency shifts while they run (virtual CPUs moved between
    /// physical cores), only these make a trustworthy ratio.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjacent_floors: Vec<f64>,
    /// With `--repeat`, the floors beside each repeat (as
    /// `adjacent_floors`), in the order of `repeats`: each repeat is read
    /// against its own floors ([`vs_adjacent_floor`]), since the machine
    /// may have changed speed between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeat_floors: Vec<Vec<f64>>,
    /// How many times the point was measured, with its floors beside it,
    /// because the floors disagreed (more than [`STEADY_FLOORS`] apart)
    /// or the point read below [`BELOW_FLOOR`] times them: the machine's
    /// speed moved under it. The record is the first try whose floors
    /// stand beside it, else the last. Absent when once was enough; with
    /// `--repeat`, the kept repeat's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries: Option<u32>,
    /// How long the timed part of the point took (all repeats): what the
    /// time budget of its profile bounds from below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_ns: Option<u64>,
    /// The measured messages in consecutive batches of equal count, each
    /// `[median latency ns (0 when the batch recorded none), messages per
    /// second]`; with `--repeat`, every repeat's batches in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<(u64, f64)>,
    /// 95% intervals of the median and the throughput, from `batches`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<Ci95>,
    /// Every latency sample of the point (all repeats merged) as an
    /// HdrHistogram in its V2 deflate encoding, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// `cargo bench` only: criterion's own estimate for the benchmark that
    /// measured this point, as criterion printed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criterion: Option<CriterionEstimate>,
    /// Between two hosts: what they were (`netns`, `netns, 100 us each
    /// way`, `ssh HOST`); absent over loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
    /// Between two hosts: what ran on the far host — [`FAR_SIDE_B`],
    /// [`FAR_SIDE_A`] or [`FAR_SERVER`]; absent over loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_side: Option<String>,
    /// Open-loop points' figures ([`RateFigures`]), as fields of the point.
    #[serde(flatten)]
    pub rate: RateFigures,
}

impl PointRecord {
    /// A point about to be measured: what it is, nothing measured yet.
    pub fn unmeasured(
        transport: &str,
        pattern: &str,
        msg_size: usize,
        (producers, consumers): (usize, usize),
        wait: &str,
    ) -> PointRecord {
        PointRecord {
            transport: transport.to_owned(),
            pattern: pattern.to_owned(),
            msg_size,
            producers,
            consumers,
            wait: wait.to_owned(),
            pinned: false,
            oversubscribed: false,
            messages: 0,
            elapsed_ns: 0,
            validated: false,
            status: Status::Failed,
            error: None,
            latency_ns: None,
            throughput: None,
            cpu_ns_per_msg: None,
            batched_mean_ns: None,
            harness_ns_per_msg: None,
            cpus: Vec::new(),
            cpu_relation: None,
            repeats: Vec::new(),
            adjacent_floors: Vec::new(),
            repeat_floors: Vec::new(),
            tries: None,
            measured_ns: None,
            batches: Vec::new(),
            ci95: None,
            histogram: None,
            criterion: None,
            hosts: None,
            far_side: None,
            rate: RateFigures::default(),
        }
    }

    /// The point failed: `why`, and no figures.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.status = Status::Failed;
        self.validated = false;
        self.error = Some(why.into());
    }

    /// The point is deliberately not run, for `reason`.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.status = Status::Skipped;
        self.validated = false;
        self.error = Some(reason.into());
    }

    /// Every message the point moved was checked and found intact.
    pub fn pass(&mut self) {
        self.status = Status::Ok;
        self.validated = true;
        self.error = None;
    }

    /// Whether the point was skipped on purpose.
    pub fn is_skipped(&self) -> bool {
        self.status == Status::Skipped
    }

    /// The figure a point is judged by ([`key_figure`]).
    pub fn key_figure(&self) -> Option<f64> {
        key_figure(self)
    }
}

/// Whether `pattern` is open loop: its points carry an offered load
/// ([`RateFigures`]).
pub fn open_loop(pattern: &str) -> bool {
    matches!(pattern, "rate" | "reqrep-rate")
}

/// Whether `pattern` is closed-loop calls on a server's object: its key
/// figure is calls per second.
pub fn calls(pattern: &str) -> bool {
    matches!(
        pattern,
        "reqrep" | "reqrep-list" | "reqrep-namespace" | "reqrep-value"
    )
}

/// Whether a smaller figure is better for `pattern` (latency) or a larger
/// one (throughput).
pub fn lower_is_better(pattern: &str) -> bool {
    matches!(
        pattern,
        "pingpong"
            | "pingpong-late"
            | "event-pingpong"
            | "condition-handoff"
            | "barrier-cycle"
            | "startup"
    )
}

/// The figure a point is judged by: pingpong's median round trip (and
/// every latency pattern's median), every other pattern's messages (or
/// calls) per second. `None` for a point that did not pass.
pub fn key_figure(p: &PointRecord) -> Option<f64> {
    if p.status != Status::Ok {
        return None;
    }
    if lower_is_better(&p.pattern) {
        p.latency_ns.map(|l| l.p50 as f64)
    } else {
        p.throughput.map(|t| t.msgs_per_s)
    }
}

/// How far apart the floors measured just before and just after a point
/// may be for them to stand beside it.
pub const STEADY_FLOORS: f64 = 1.25;

/// A one-to-one pingpong or stream point's key figure over the floor
/// measured on its CPUs just before and after it (pingpong: × the
/// round trip's copy floor; stream: the fraction of the stream's copy
/// floor), when those two agree within [`STEADY_FLOORS`]. With repeats
/// that kept their floors ([`PointRecord::repeat_floors`]), the median of
/// each repeat's figure over its own floors, over the repeats whose floors
/// agree: the key figure above is read from every repeat's samples
/// pooled, which no single pair of floors stood beside. `None` when no
/// floors agree: the machine's cross-core latency moved while the point
/// ran, or no floor was measured beside it.
pub fn vs_adjacent_floor(p: &PointRecord) -> Option<f64> {
    if p.status != Status::Ok {
        return None;
    }
    if !p.repeat_floors.is_empty() && p.repeat_floors.len() == p.repeats.len() {
        let mut r: Vec<f64> = p
            .repeats
            .iter()
            .zip(&p.repeat_floors)
            .filter_map(|(&f, fl)| Some(f / steady_floor(fl)?))
            .collect();
        if r.is_empty() {
            return None;
        }
        r.sort_by(f64::total_cmp);
        let n = r.len();
        return Some(if n % 2 == 1 {
            r[n / 2]
        } else {
            (r[n / 2 - 1] + r[n / 2]) / 2.0
        });
    }
    Some(key_figure(p)? / steady_floor(&p.adjacent_floors)?)
}

/// The mean of a pair of floors measured before and after a point, when
/// they agree within [`STEADY_FLOORS`].
fn steady_floor(floors: &[f64]) -> Option<f64> {
    let [a, b] = floors[..] else {
        return None;
    };
    (a > 0.0 && b > 0.0 && a.max(b) / a.min(b) <= STEADY_FLOORS).then(|| (a + b) / 2.0)
}

/// The lowest and highest floor that stood beside a point, over every
/// repeat whose floors agree ([`vs_adjacent_floor`]): the machine may have
/// been at any of them while the point ran.
pub fn floor_range(p: &PointRecord) -> Option<[f64; 2]> {
    let pairs: Vec<&Vec<f64>> =
        if !p.repeat_floors.is_empty() && p.repeat_floors.len() == p.repeats.len() {
            p.repeat_floors.iter().collect()
        } else {
            vec![&p.adjacent_floors]
        };
    pairs
        .into_iter()
        .filter(|fl| steady_floor(fl).is_some())
        .flatten()
        .fold(None, |r: Option<[f64; 2]>, &f| {
            Some(r.map_or([f, f], |[lo, hi]| [lo.min(f), hi.max(f)]))
        })
}

/// A point whose cost reads below this multiple of the same-work floor
/// measured beside it is wrong (the floor or the point): the floor does
/// the least work any strategy must.
pub const BELOW_FLOOR: f64 = 0.9;

/// What a one-to-one point costs in multiples of the same-work floor
/// beside it (pingpong: its median round trip over the floor's; stream:
/// the floor's messages per second over its own), when the floors agree
/// ([`vs_adjacent_floor`]). 1 is the floor; below [`BELOW_FLOOR`], a bug.
pub fn floor_multiple(p: &PointRecord) -> Option<f64> {
    let r = vs_adjacent_floor(p)?;
    if lower_is_better(&p.pattern) {
        Some(r)
    } else {
        (r > 0.0).then(|| 1.0 / r)
    }
}

/// A point as files hold it: `status` is absent in files of schema 1 and
/// in the Python baseline's records of that time, and is then derived.
mod wire {
    use super::*;

    /// How schema 1 marked a skipped point's `error`.
    const SKIPPED_PREFIX: &str = "skipped:";

    #[derive(Deserialize)]
    pub struct PointWire {
        transport: String,
        pattern: String,
        msg_size: usize,
        producers: usize,
        consumers: usize,
        wait: String,
        pinned: bool,
        oversubscribed: bool,
        messages: u64,
        elapsed_ns: u64,
        validated: bool,
        #[serde(default)]
        status: Option<Status>,
        error: Option<String>,
        latency_ns: Option<Latency>,
        throughput: Option<Throughput>,
        cpu_ns_per_msg: Option<f64>,
        #[serde(default)]
        batched_mean_ns: Option<f64>,
        #[serde(default)]
        harness_ns_per_msg: Option<f64>,
        #[serde(default)]
        cpus: Vec<usize>,
        #[serde(default)]
        cpu_relation: Option<String>,
        #[serde(default)]
        repeats: Vec<f64>,
        #[serde(default)]
        adjacent_floors: Vec<f64>,
        #[serde(default)]
        repeat_floors: Vec<Vec<f64>>,
        #[serde(default)]
        tries: Option<u32>,
        #[serde(default)]
        measured_ns: Option<u64>,
        #[serde(default)]
        batches: Vec<(u64, f64)>,
        #[serde(default)]
        ci95: Option<Ci95>,
        #[serde(default)]
        histogram: Option<String>,
        /// The Python baseline's latency samples as (value, count) pairs,
        /// turned into `histogram` here.
        #[serde(default)]
        latency_pairs: Vec<(u64, u64)>,
        #[serde(default)]
        criterion: Option<CriterionEstimate>,
        #[serde(default)]
        hosts: Option<String>,
        #[serde(default)]
        far_side: Option<String>,
        #[serde(flatten)]
        rate: RateFigures,
    }

    impl From<PointWire> for PointRecord {
        fn from(w: PointWire) -> PointRecord {
            let (status, error) = match (w.status, w.error) {
                (Some(s), e) => (s, e),
                (None, Some(e)) if e.starts_with(SKIPPED_PREFIX) => (
                    Status::Skipped,
                    Some(e[SKIPPED_PREFIX.len()..].trim_start().to_owned()),
                ),
                (None, e) if w.validated && e.is_none() => (Status::Ok, e),
                (None, e) => (Status::Failed, e),
            };
            PointRecord {
                transport: w.transport,
                pattern: w.pattern,
                msg_size: w.msg_size,
                producers: w.producers,
                consumers: w.consumers,
                wait: w.wait,
                pinned: w.pinned,
                oversubscribed: w.oversubscribed,
                messages: w.messages,
                elapsed_ns: w.elapsed_ns,
                validated: w.validated,
                status,
                error,
                latency_ns: w.latency_ns,
                throughput: w.throughput,
                cpu_ns_per_msg: w.cpu_ns_per_msg,
                batched_mean_ns: w.batched_mean_ns,
                harness_ns_per_msg: w.harness_ns_per_msg,
                cpus: w.cpus,
                cpu_relation: w.cpu_relation,
                repeats: w.repeats,
                adjacent_floors: w.adjacent_floors,
                repeat_floors: w.repeat_floors,
                tries: w.tries,
                measured_ns: w.measured_ns,
                ci95: w.ci95.or_else(|| {
                    Ci95::of_batches(
                        &w.batches,
                        w.latency_ns.map(|l| l.p50),
                        w.throughput.map(|t| t.msgs_per_s),
                    )
                }),
                batches: w.batches,
                histogram: w.histogram.or_else(|| hist::encode_pairs(&w.latency_pairs)),
                criterion: w.criterion,
                hosts: w.hosts,
                far_side: w.far_side,
                rate: w.rate,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_points_figures_are_fields_of_the_point_and_read_back() {
        let mut p = PointRecord::unmeasured("os-pipe", "rate", 64, (1, 1), "kernel");
        p.rate = RateFigures {
            load: Some("80%".into()),
            offered_per_s: Some(8e5),
            achieved_per_s: Some(7.9e5),
            capacity_per_s: Some(1e6),
            latency_uncorrected_ns: Some(Latency::default()),
            sender_lateness_ns: Some(Latency::default()),
            pace: Some("sleep".into()),
            peer_cpu_ns_per_msg: Some([100.0, 200.0]),
            latency_growth: Some(1.5),
        };
        let text = serde_json::to_string(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["offered_per_s"], 8e5);
        assert_eq!(v["load"], "80%");
        assert_eq!(v["peer_cpu_ns_per_msg"][1], 200.0);
        let back: PointRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        // Other points carry none of them.
        let plain = PointRecord::unmeasured("os-pipe", "stream", 64, (1, 1), "kernel");
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("offered_per_s") && !text.contains("\"load\""));
    }

    #[test]
    fn schema_1_points_get_their_status() {
        let base = r#""transport":"t","pattern":"stream","msg_size":8,"producers":1,"consumers":1,
            "wait":"spin","pinned":false,"oversubscribed":false,"messages":0,"elapsed_ns":0,
            "latency_ns":null,"throughput":null,"cpu_ns_per_msg":null"#;
        let p = |rest: &str| -> PointRecord {
            serde_json::from_str(&format!("{{{base},{rest}}}")).unwrap()
        };
        let skipped = p(r#""validated":false,"error":"skipped: pure spin""#);
        assert_eq!(skipped.status, Status::Skipped);
        assert_eq!(skipped.error.as_deref(), Some("pure spin"));
        let failed = p(r#""validated":false,"error":"peer B: lost""#);
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_deref(), Some("peer B: lost"));
        assert_eq!(p(r#""validated":true,"error":null"#).status, Status::Ok);
        // Schema 2 says it: a status given is kept as it is.
        let v2 = p(r#""validated":false,"status":"skipped","error":"skipped: x""#);
        assert_eq!(v2.status, Status::Skipped);
        assert_eq!(v2.error.as_deref(), Some("skipped: x"));
        // And it is written out.
        let mut ok = p(r#""validated":false,"error":"e""#);
        ok.pass();
        let text = serde_json::to_string(&ok).unwrap();
        assert!(text.contains(r#""status":"ok""#), "{text}");
        assert_eq!(serde_json::from_str::<PointRecord>(&text).unwrap(), ok);
    }

    #[test]
    fn median_ranks_match_the_binomial_tables() {
        // Coverage of [x(j), x(n-1-j)] is 1 - 2 P(X <= j).
        assert_eq!(median_ranks(5), None);
        assert_eq!(median_ranks(6), Some((0, 5)));
        assert_eq!(median_ranks(20), Some((5, 14)));
        assert_eq!(median_ranks(100), Some((39, 60)));
        let iv = median_interval(&(1..=20).map(f64::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(iv, [6.0, 15.0]);
        let batches: Vec<(u64, f64)> = (1..=20).map(|i| (i, 1e6 / i as f64)).collect();
        let ci = Ci95::of_batches(&batches, Some(10), None).unwrap();
        assert_eq!(ci.p50_ns, Some([6.0, 15.0]));
        // Times per message 1..20 µs: mean 10.5, sd 5.92, t(19) 2.093.
        let [lo, hi] = ci.msgs_per_s.unwrap();
        assert!(
            (1e6 / hi - 7.73).abs() < 0.01 && (1e6 / lo - 13.27).abs() < 0.01,
            "{lo} {hi}"
        );
        // A point's own median outside its batches' interval widens it.
        let ci = Ci95::of_batches(&batches, Some(30), None).unwrap();
        assert_eq!(ci.p50_ns, Some([6.0, 30.0]));
        // No latency in some batch: only the throughput's interval.
        let ci = Ci95::of_batches(&[(0, 1.0); 8], None, None).unwrap();
        assert_eq!((ci.p50_ns, ci.msgs_per_s), (None, Some([1.0, 1.0])));
        assert!((t975(19) - 2.093).abs() < 0.001 && (t975(5) - 2.571).abs() < 0.005);
    }

    #[test]
    fn machine_and_time_are_filled_in() {
        let m = Machine::current();
        assert!(m.cores >= 1);
        let t = m.topology.expect("a topology");
        assert_eq!(t.cpus.len(), m.cores);
        let cpu = t.cpus[0].cpu;
        assert_eq!(t.relation(cpu, cpu).as_deref(), Some("same core"));
        assert_eq!(machine::parse_cpu_list("0-2,5,7-8"), vec![0, 1, 2, 5, 7, 8]);
        // Two CPUs sharing only a last-level cache, on a made-up machine.
        let two = Topology {
            cpus: (0..2)
                .map(|cpu| CpuPlace {
                    cpu,
                    siblings: vec![cpu],
                    ..CpuPlace::default()
                })
                .collect(),
            caches: vec![
                CacheInfo {
                    level: 2,
                    shared_by: vec![0],
                    ..CacheInfo::default()
                },
                CacheInfo {
                    level: 3,
                    shared_by: vec![0, 1],
                    ..CacheInfo::default()
                },
            ],
            ..Topology::default()
        };
        assert_eq!(two.relation(0, 1).as_deref(), Some("same L3"));
        assert_eq!(two.relation(0, 9), None);
        assert!(!m.kernel.is_empty() && m.rustc.starts_with("rustc"));
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
