//! The result records every reader relies on: one [`RunRecord`] per run,
//! one [`PointRecord`] per measured point. The schema is DESIGN.md's, and
//! `docs/results-schema.md` documents it field by field. Fields may be
//! added; none may change meaning without bumping [`SCHEMA_VERSION`].

use serde::{Deserialize, Serialize};

/// The version of this schema.
pub const SCHEMA_VERSION: u32 = 1;

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

/// One measured point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// What went wrong, for a failed point (then the figures are absent).
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
            error: None,
            latency_ns: None,
            throughput: None,
            cpu_ns_per_msg: None,
            batched_mean_ns: None,
            harness_ns_per_msg: None,
            cpus: Vec::new(),
            repeats: Vec::new(),
            adjacent_floors: Vec::new(),
        }
    }
}

fn first_line(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once([':', '=']))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (s(&u.sysname), s(&u.release))
}

impl Machine {
    /// This machine, and the build of this binary.
    pub fn current() -> Machine {
        let (sys, release) = uname();
        let distro = first_line("/etc/os-release", "PRETTY_NAME").unwrap_or_default();
        Machine {
            cpu_model: first_line("/proc/cpuinfo", "model name")
                .unwrap_or_else(|| "unknown".into()),
            cores: allowed_cpus().len(),
            kernel: release,
            os: format!("{sys} {distro}").trim().to_owned(),
            rustc: env!("IPCBENCH_RUSTC").to_owned(),
            git_commit: env!("IPCBENCH_GIT_COMMIT").to_owned(),
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling process (its calling thread, in a process with
/// several) to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    set_cpus(&[cpu])
}

/// Lets the calling thread run on `cpus` only.
pub fn set_cpus(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::other(format!("cpu {cpu} is out of range")));
        }
        // SAFETY: CPU_SET writes into the set; `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// User + system CPU time of this process, in nanoseconds.
pub fn cpu_time_ns() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Now as RFC 3339 in UTC (`2026-11-22T03:04:05Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_and_time_are_filled_in() {
        let m = Machine::current();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty() && m.rustc.starts_with("rustc"));
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
