//! Helpers for tests that start `ipcbench peer …` processes.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipcbench::harness::PeerReport;
use ipcbench::harness::control::parse_report;

/// The binary under test.
/// How long a test waits for something that takes milliseconds before it
/// calls it a hang. A hang detector, never a speed target: a machine
/// that is busy or slow stays far inside it, and speeds are the suite's
/// measurements to report, not the tests' to assert.
#[allow(dead_code)]
pub const HANG: std::time::Duration = std::time::Duration::from_secs(30);

/// How many kills a kill test makes: `IPCBENCH_KILLS`, or 50. A value
/// that is not a positive count is refused rather than read as "none": a
/// kill test that kills nothing would pass on nothing.
#[allow(dead_code)]
pub fn kills() -> u64 {
    match std::env::var("IPCBENCH_KILLS") {
        Err(_) => 50,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                panic!("IPCBENCH_KILLS={v:?}: give a positive number of kills, or unset it for 50")
            }
        },
    }
}

/// The files in /dev/shm whose names start with `prefix`.
pub fn shm_files(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process `pid` is running (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ipcbench")
}

/// Starts `ipcbench peer <args>` with its output captured.
pub fn spawn_peer(args: &[String]) -> Child {
    Command::new(bin())
        .arg("peer")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the ipcbench binary")
}

/// Turns `&str`s and numbers into arguments.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($a.to_string()),*] };
}

/// What a finished peer left.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The peer's report (its last line on stdout); panics with the
    /// peer's output if it failed.
    pub fn report(&self) -> PeerReport {
        assert!(self.success, "peer failed: {}{}", self.stdout, self.stderr);
        parse_report(self.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}; stderr: {}", self.stderr))
    }
}

/// Waits for `child` until `deadline`; kills and reaps it if it is late
/// and panics, so a test never hangs.
pub fn finish(mut child: Child, deadline: Instant, what: &str) -> Finished {
    loop {
        match child.try_wait().expect("waiting for a peer") {
            Some(status) => {
                let mut stdout = String::new();
                let mut stderr = String::new();
                child
                    .stdout
                    .take()
                    .map(|mut s| s.read_to_string(&mut stdout));
                child
                    .stderr
                    .take()
                    .map(|mut s| s.read_to_string(&mut stderr));
                return Finished {
                    success: status.success(),
                    stdout,
                    stderr,
                };
            }
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: peer missed its deadline and was killed");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Waits for every child, killing all of them if any is late.
pub fn finish_all(children: Vec<Child>, deadline: Instant, what: &str) -> Vec<Finished> {
    let mut out = Vec::new();
    let mut rest = children.into_iter();
    while let Some(c) = rest.next() {
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(c, deadline, what)));
        match r {
            Ok(f) => out.push(f),
            Err(e) => {
                for mut c in rest {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                std::panic::resume_unwind(e);
            }
        }
    }
    out
}

/// Asserts that none of `names` is left in /dev/shm.
pub fn assert_gone(names: &[&str]) {
    for n in names {
        let p = std::path::Path::new("/dev/shm").join(n);
        assert!(!p.exists(), "{} was left behind", p.display());
    }
}
