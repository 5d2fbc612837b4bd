//! The machine a run measures: its CPUs and what it is, and the clock a
//! run's start is written in.

use super::{CacheInfo, CpuPlace, Machine, Topology};

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
            topology: Some(Topology::current()),
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `0-3,8,10-11` as CPU numbers.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

fn node_of(cpu: usize) -> Option<u32> {
    let dir = std::fs::read_dir("/sys/devices/system/node").ok()?;
    dir.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let n: u32 = name.strip_prefix("node")?.parse().ok()?;
        let list = read(&format!("/sys/devices/system/node/{name}/cpulist"))?;
        parse_cpu_list(&list).contains(&cpu).then_some(n)
    })
}

fn caches_of(cpu: usize) -> Vec<CacheInfo> {
    let base = format!("/sys/devices/system/cpu/cpu{cpu}/cache");
    let mut out: Vec<CacheInfo> = (0..16)
        .map_while(|i| {
            let d = format!("{base}/index{i}");
            let level = read(&format!("{d}/level"))?.parse().ok()?;
            Some(CacheInfo {
                level,
                kind: read(&format!("{d}/type")).unwrap_or_default(),
                size: read(&format!("{d}/size")).unwrap_or_default(),
                shared_by: parse_cpu_list(
                    &read(&format!("{d}/shared_cpu_list")).unwrap_or_default(),
                ),
            })
        })
        .collect();
    out.sort_by_key(|c| c.level);
    out
}

impl Topology {
    /// This machine's, from `/sys` and `/proc`.
    pub fn current() -> Topology {
        let cpus = allowed_cpus()
            .into_iter()
            .map(|cpu| {
                let t = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
                CpuPlace {
                    cpu,
                    core: read(&format!("{t}/core_id")).and_then(|v| v.parse().ok()),
                    package: read(&format!("{t}/physical_package_id")).and_then(|v| v.parse().ok()),
                    siblings: parse_cpu_list(
                        &read(&format!("{t}/thread_siblings_list")).unwrap_or_default(),
                    ),
                    node: node_of(cpu),
                }
            })
            .collect::<Vec<_>>();
        let first = cpus.first().map_or(0, |c| c.cpu);
        let boost = read("/sys/devices/system/cpu/cpufreq/boost")
            .map(|v| v == "1")
            .or_else(|| read("/sys/devices/system/cpu/intel_pstate/no_turbo").map(|v| v == "0"));
        let hypervisor = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with("flags") && l.contains(" hypervisor"))
        });
        let vendor = read("/sys/class/dmi/id/sys_vendor");
        Topology {
            caches: caches_of(first),
            governor: read(&format!(
                "/sys/devices/system/cpu/cpu{first}/cpufreq/scaling_governor"
            )),
            boost,
            transparent_hugepages: read("/sys/kernel/mm/transparent_hugepage/enabled").and_then(
                |v| {
                    let (_, rest) = v.split_once('[')?;
                    Some(rest.split_once(']')?.0.to_owned())
                },
            ),
            kernel_cmdline: read("/proc/cmdline")
                .map(|c| c.split(" -- ").next().unwrap_or_default().to_owned()),
            virtualization: match (hypervisor, vendor) {
                (true, Some(v)) => format!("hypervisor ({v})"),
                (true, None) => "hypervisor".into(),
                (false, _) => "none".into(),
            },
            cpus,
        }
    }

    /// How CPUs `a` and `b` relate: `same core` (SMT siblings), `same L3`
    /// (or whatever the last cache level both share), or `other`; `None`
    /// when this topology does not know them.
    pub fn relation(&self, a: usize, b: usize) -> Option<String> {
        let pa = self.cpus.iter().find(|c| c.cpu == a)?;
        self.cpus.iter().find(|c| c.cpu == b)?;
        if a == b || pa.siblings.contains(&b) && pa.siblings.len() > 1 {
            return Some("same core".into());
        }
        // Caches are read from the first CPU; the relation holds for the
        // pair when both are among a level's sharers.
        let shared = self
            .caches
            .iter()
            .filter(|c| c.shared_by.contains(&a) && c.shared_by.contains(&b))
            .map(|c| c.level)
            .max();
        Some(match shared {
            Some(l) => format!("same L{l}"),
            None => "other".into(),
        })
    }
}

/// How the CPUs `cpus[0]` and `cpus[1]` of a point relate on this machine
/// ([`Topology::relation`]); `None` for fewer than two.
pub fn cpu_relation(cpus: &[usize]) -> Option<String> {
    let [a, b, ..] = cpus[..] else { return None };
    static TOPOLOGY: std::sync::OnceLock<Topology> = std::sync::OnceLock::new();
    TOPOLOGY.get_or_init(Topology::current).relation(a, b)
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
