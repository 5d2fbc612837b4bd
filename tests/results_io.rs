//! Results are never lost: a results file is replaced atomically, a write
//! that fails (no room, a path that cannot be a directory) says so clearly
//! and keeps the last complete file, and Ctrl-C keeps what was measured.
#![cfg(not(loom))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{HANG, bin};

fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipcbench-io-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn points_in(path: &Path) -> usize {
    ipcbench::record::io::read_results(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .points
        .len()
}

fn run_args(out: &Path) -> Vec<String> {
    [
        "run",
        "--quick",
        "--no-python",
        "--no-report",
        "--transports",
        "shm-ring,shm-pipe,os-pipe,unix-stream",
        "--patterns",
        "pingpong,stream",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(out.display().to_string()))
    .collect()
}

#[test]
fn a_path_that_cannot_be_written_is_a_clear_error_and_nothing_is_lost() {
    let d = scratch("notdir");
    // A file where a directory should be: no write can succeed, even as root.
    let blocker = d.join("results");
    std::fs::write(&blocker, "not a directory").unwrap();
    let run = ipcbench::record::io::read_results(Path::new("tests/data/run-a.json")).unwrap();
    let e = ipcbench::record::io::write_results(&blocker.join("run.json"), &run).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cannot write") && msg.contains("--output"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "not a directory"
    );

    // Over an existing file: replaced whole, or not at all.
    let out = d.join("run.json");
    ipcbench::record::io::write_results(&out, &run).unwrap();
    let before = std::fs::read_to_string(&out).unwrap();
    let mut bigger = run.clone();
    bigger.points.extend(run.points.iter().cloned());
    ipcbench::record::io::write_results(&out, &bigger).unwrap();
    assert_eq!(points_in(&out), 2 * run.points.len());
    assert_ne!(std::fs::read_to_string(&out).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_full_disk_mid_run_keeps_the_last_complete_results() {
    let d = scratch("full");
    let out = d.join("run.json");
    // Files of at most 8 KiB (ulimit -f counts 512-byte blocks), the
    // signal that would kill the writer ignored: writes past the limit fail
    // with EFBIG, as on a full disk.
    let script = "trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\"";
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .args(run_args(&out))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the run did not notice its full disk");
    assert!(
        err.contains("cannot write") && err.contains("previous complete file"),
        "{err}"
    );
    // The last complete file is there, whole, with the points before the failure.
    let kept = points_in(&out);
    assert!(kept >= 1, "nothing kept");
    // The file is rewritten after every point: the one kept holds every
    // point before the one whose write failed, the last shown.
    let shown = err
        .lines()
        .take_while(|l| !l.starts_with("error: cannot write"))
        .filter(|l| l.starts_with('['))
        .count();
    assert_eq!(
        kept,
        shown - 1,
        "the file kept is not the last complete one: {kept} points where {} were written",
        shown - 1
    );
    // The CSV beside it is at the same point: one row per point kept.
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert_eq!(
        csv.lines().count() - 1,
        kept,
        "the CSV is not in step with the JSON"
    );
    eprintln!(
        "full disk: {kept} points kept; said: {}",
        err.lines().last().unwrap_or("")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A run stopped by `sig` once two points are on disk: it keeps them,
/// exits with 128 + `sig`, and leaves nothing in /dev/shm. With `group`,
/// the signal goes to the run's whole process group, as a terminal's
/// Ctrl-C does: the peers get it too, and the point in progress must still
/// finish and be kept (every point shown is in the file, none failed).
fn a_signal_stops_a_run_and_keeps_what_was_measured(sig: i32, label: &str, group: bool) {
    use std::os::unix::process::CommandExt;
    let d = scratch(label);
    let out = d.join("run.json");
    let mut cmd = Command::new(bin());
    cmd.args(run_args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if group {
        cmd.process_group(0);
    }
    let child = cmd.spawn().unwrap();
    // Once two points are on disk, send the signal.
    let t = Instant::now();
    loop {
        if out.exists()
            && ipcbench::record::io::read_results(&out).is_ok_and(|r| r.points.len() >= 2)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no point written");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id();
    if group {
        // Until the peers of a point (not of the floor measured beside it)
        // are running, so that the signal reaches them mid-point.
        let measuring = || {
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            kids.split_whitespace().any(|k| {
                let cmd = std::fs::read(format!("/proc/{k}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("\0bench\0") && !cmd.contains("floor")
            })
        };
        while !measuring() {
            assert!(t.elapsed() < HANG, "no point's peers seen running");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // SAFETY: a signal to our own child, or to the group it leads.
    unsafe { libc::kill(if group { -(pid as i32) } else { pid as i32 }, sig) };
    let stopped = Instant::now();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + sig), "{label}: {err}");
    assert!(err.contains("interrupted"), "{err}");
    // A hang detector: the signal ends the run after its current point.
    assert!(stopped.elapsed() < HANG, "{label}: the run went on");
    let kept = points_in(&out);
    assert!(kept >= 2, "{kept} points kept");
    if group {
        assert!(!err.contains("FAILED"), "{label}: a point failed: {err}");
        let shown = err.lines().filter(|l| l.starts_with('[')).count();
        assert_eq!(
            kept, shown,
            "{label}: the point in progress was not kept: {err}"
        );
    }
    let shm = common::shm_files(&format!("ipcbench-{pid}-"));
    assert!(shm.is_empty(), "{shm:?}");
    eprintln!(
        "{label}: {kept} points kept, stopped in {:?}",
        stopped.elapsed()
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ctrl_c_stops_a_run_and_keeps_what_was_measured() {
    a_signal_stops_a_run_and_keeps_what_was_measured(libc::SIGINT, "sigint", false);
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_peers_and_the_point_in_progress_still_finishes() {
    a_signal_stops_a_run_and_keeps_what_was_measured(libc::SIGINT, "sigint-group", true);
}

#[test]
fn sigterm_stops_a_run_and_keeps_what_was_measured() {
    a_signal_stops_a_run_and_keeps_what_was_measured(libc::SIGTERM, "sigterm", false);
}

#[test]
fn a_second_signal_stops_at_once_and_leaves_no_peer_or_file() {
    let d = scratch("second-signal");
    let out = d.join("run.json");
    // The unpaced point, then one offered a message a second: that one
    // takes 10 s (10 messages) unless stopped.
    let child = Command::new(bin())
        .args([
            "run",
            "--no-python",
            "--no-report",
            "--transports",
            "shm-ring",
            "--wait",
            "park",
            "--patterns",
            "rate",
            "--rates",
            "1",
            "--output",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    // Once the unpaced point is on disk and the slow one's peers run.
    let peers = loop {
        let kept = out.exists()
            && ipcbench::record::io::read_results(&out).is_ok_and(|r| r.points.len() == 1);
        let peers = ipcbench::harness::stop::descendants(pid);
        if kept && peers.len() >= 2 {
            break peers;
        }
        assert!(t.elapsed() < HANG, "the slow point never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        // SAFETY: signals to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = Instant::now();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{err}");
    assert!(err.contains("stopping at once"), "{err}");
    // Well before the point's 10 s were up.
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?} after the second signal",
        stopped.elapsed()
    );
    // Its peers were killed and reaped: none is left, not even a zombie.
    for p in &peers {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "peer {p} is still there"
        );
    }
    let shm = common::shm_files(&format!("ipcbench-{pid}-"));
    assert!(shm.is_empty(), "{shm:?}");
    // The point finished before is kept, whole.
    assert_eq!(points_in(&out), 1);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A run of the Python baseline alone (py-pipe and py-queue, pingpong and
/// stream at 64 B) writing `out`, in a process group of its own when
/// `group`; its standard error comes line by line through the receiver,
/// which ends when the run's standard error does.
fn python_run(out: &Path, group: bool) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    if ipcbench::harness::python::find().is_err() {
        panic!("this test runs Python's multiprocessing and needs python3 ≥ 3.9 on the PATH");
    }
    let mut cmd = Command::new(bin());
    cmd.args([
        "run",
        "--no-report",
        "--transports",
        "py-pipe,py-queue",
        "--patterns",
        "pingpong,stream",
        "--sizes",
        "64",
        "--output",
    ])
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits until the run `pid` has reported its first point and its Python
/// script runs the workers of a next one (failing after `limit`); the
/// lines said meanwhile go to `said`. Returns the script's pid.
fn wait_for_script_with_workers(
    pid: u32,
    rx: &std::sync::mpsc::Receiver<String>,
    said: &mut Vec<String>,
    limit: Duration,
) -> u32 {
    let t = Instant::now();
    let mut first_done = false;
    loop {
        while let Ok(l) = rx.try_recv() {
            first_done |= l
                .strip_prefix('[')
                .is_some_and(|r| r.trim_start().starts_with("1/"));
            said.push(l);
        }
        let script = ipcbench::harness::stop::descendants(pid)
            .into_iter()
            .find(|&p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).contains("pybench.py")
                    && !ipcbench::harness::stop::descendants(p).is_empty()
            });
        if let (true, Some(s)) = (first_done, script) {
            return s;
        }
        assert!(
            t.elapsed() < limit,
            "the Python baseline never ran a second point (hang detector): {said:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A Ctrl-C at a terminal during the Python baseline: the script and its
/// workers get it too, and the point in progress still finishes; the
/// script is then asked to stop, every point it finished is kept, and
/// nothing of it is left (its files in /dev/shm, its private directory).
#[test]
fn ctrl_c_at_a_terminal_during_the_python_baseline_lets_its_point_finish() {
    let d = scratch("sigint-python");
    let out = d.join("run.json");
    let (mut child, rx) = python_run(&out, true);
    let pid = child.id();
    let mut said = Vec::new();
    wait_for_script_with_workers(pid, &rx, &mut said, Duration::from_secs(120));
    // SAFETY: a signal to the process group our child leads.
    unsafe { libc::kill(-(pid as i32), libc::SIGINT) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the run went on after a Ctrl-C (hang detector)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The reader ends with the run's standard error.
    said.extend(rx.iter());
    let text = said.join("\n");
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{text}");
    assert!(text.contains("stopped after point"), "{text}");
    assert!(
        !text.contains("Traceback") && !text.contains("FAILED"),
        "{text}"
    );
    let shown = said.iter().filter(|l| l.starts_with('[')).count();
    let run = ipcbench::record::io::read_results(&out).unwrap();
    assert!(shown >= 2, "{text}");
    assert_eq!(
        run.points.len(),
        shown,
        "the point in progress was not kept: {text}"
    );
    assert!(run.points.iter().all(|p| p.validated), "{text}");
    assert!(common::shm_files("ipcbench-py-").is_empty());
    assert!(
        ipcbench::harness::python::leftover_dirs()
            .iter()
            .all(|(_, p)| *p != pid)
    );
    eprintln!(
        "python: {shown} points kept, stopped in {:?}",
        stopped.elapsed()
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// What `run --dry-run --quick FILTERS --output OUT` prints; it must succeed.
fn dry_run(out: &Path, filters: &[&str]) -> String {
    let o = Command::new(bin())
        .args(["run", "--dry-run", "--quick"])
        .args(filters)
        .arg("--output")
        .arg(out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// `run --dry-run` prints the points the filters select, in order, the
/// Python baseline's as its script plans them, each with its estimated
/// time and the estimate in all, and measures and writes nothing.
#[test]
fn a_dry_run_prints_the_plan_and_starts_nothing() {
    let d = scratch("dry-run");
    let out = d.join("run.json");
    let text = dry_run(
        &out,
        &[
            "--transports",
            "shm-rlock,shm-condition,shm-barrier,py-barrier",
        ],
    );
    let points: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    let want = [
        ("shm-rlock", "rlock-increment", "1x1"),
        ("shm-rlock", "rlock-increment", "2x1"),
        ("shm-condition", "condition-handoff", "2x1"),
        ("shm-barrier", "barrier-cycle", "2x1"),
        ("py-barrier", "barrier-cycle", "2x1"),
    ];
    assert_eq!(points.len(), want.len(), "{text}");
    for (line, (t, p, n)) in points.iter().zip(want) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[2..5], [t, p, n], "{line}");
        let est = words.last().unwrap();
        assert!(
            est.starts_with('~') && est.ends_with('s'),
            "no estimate: {line}"
        );
    }
    assert!(
        text.contains("5 points in the quick profile (1 of them Python's), about ")
            && text.contains("nothing was measured"),
        "{text}"
    );
    assert!(!out.exists(), "a dry run wrote {}", out.display());
    std::fs::remove_dir_all(&d).unwrap();
}

/// A dry run with `--hosts netns` lists each twin between hosts after its
/// loopback point, the Python baseline's too, and makes no namespace.
#[test]
fn a_dry_run_between_hosts_lists_the_twins_and_makes_no_namespace() {
    let d = scratch("dry-run-hosts");
    let text = dry_run(
        &d.join("run.json"),
        &[
            "--transports",
            "manager-tcp,py-basemanager-tcp",
            "--patterns",
            "pingpong",
            "--hosts",
            "netns",
        ],
    );
    let points: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    let names: Vec<String> = points
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w[3] == "(2" {
                format!("{} (2 hosts)", w[2])
            } else {
                w[2].to_owned()
            }
        })
        .collect();
    assert_eq!(
        names,
        [
            "manager-tcp",
            "manager-tcp (2 hosts)",
            "py-basemanager-tcp",
            "py-basemanager-tcp (2 hosts)"
        ],
        "{text}"
    );
    let ns = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(ns) = ns {
        let list = String::from_utf8_lossy(&ns.stdout);
        assert!(
            !list.contains("ipcbench-"),
            "a dry run made a namespace: {list}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `run --cpus` restricts the run to the CPUs named: a run on CPU 0 alone
/// records one CPU, its two-process point oversubscribed and its
/// configuration naming the CPU; a CPU this process may not use is
/// refused before anything starts, saying which it may use.
#[test]
fn cpus_restrict_the_run_and_a_cpu_out_of_reach_is_refused() {
    let d = scratch("cpus");
    let out = d.join("run.json");
    let o = Command::new(bin())
        .args([
            "run",
            "--quick",
            "--no-python",
            "--no-report",
            "--cpus",
            "0",
            "--transports",
            "os-pipe",
            "--patterns",
            "pingpong",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = ipcbench::record::io::read_results(&out).unwrap();
    assert_eq!(run.machine.cores, 1);
    assert_eq!(run.config["cpus"], serde_json::json!([0]));
    assert!(!run.points.is_empty());
    assert!(run.points.iter().all(|p| p.oversubscribed && p.validated));
    let o = Command::new(bin())
        .args(["run", "--dry-run", "--cpus", "0,4000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cpus: CPU 4000 is not one this process may run on (it may run on 0"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A coordinator killed outright (SIGKILL: no handler runs) during the
/// Python baseline: the script ends itself and every worker within
/// seconds (its parent gone, or its pipe to it broken) instead of
/// measuring on for nobody (`tests/python.rs` shows the first alone);
/// its private directory, which only the coordinator could remove, is
/// then found and removed by `ipcbench clean`.
#[test]
fn the_python_baseline_ends_with_a_coordinator_killed_outright() {
    let d = scratch("kill-python");
    let out = d.join("run.json");
    let (mut child, rx) = python_run(&out, false);
    let pid = child.id();
    let script = wait_for_script_with_workers(pid, &rx, &mut Vec::new(), HANG);
    let mut python = ipcbench::harness::stop::descendants(script);
    python.insert(script);
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = Instant::now();
    while python.iter().any(|&p| common::alive(p)) {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the script or its workers outlived the coordinator by 10 s: {:?}",
            python
                .iter()
                .filter(|&&p| common::alive(p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = |p| {
        ipcbench::harness::python::leftover_dirs()
            .iter()
            .any(|(_, q)| *q == p)
    };
    assert!(
        left(pid),
        "the killed coordinator's private directory is left for clean"
    );
    let o = Command::new(bin()).arg("clean").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!left(pid), "clean did not remove the private directory");
    assert!(common::shm_files("ipcbench-py-").is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}
