//! The Python baseline (`scripts/pybench.py`) at a tiny size: every
//! transport and pattern it has, its output valid against the results
//! schema, every message checked — and a corrupted message caught.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use ipcbench::harness::plan::Profile;
use ipcbench::harness::python::{self, Selection};

fn py() -> python::Python {
    python::find().unwrap_or_else(|e| {
        panic!("these tests run Python's multiprocessing and need python3 ≥ 3.9 on the PATH: {e}")
    })
}

fn leftovers() -> Vec<String> {
    common::shm_files("ipcbench-py-")
}

/// A skipped point is an open-loop load that its strategy's measured
/// capacity rules out, and says so.
fn assert_skipped_for_capacity(p: &ipcbench::record::PointRecord) {
    assert!(
        ipcbench::record::open_loop(&p.pattern)
            && p.error.as_deref().unwrap_or("").contains("capacity"),
        "{} {} skipped: {:?}",
        p.transport,
        p.pattern,
        p.error
    );
}

#[test]
fn every_python_transport_runs_and_validates() {
    let py = py();
    let sel = Selection {
        count: Some(300),
        ..Selection::default()
    };
    let before = leftovers();
    let planned = python::plan(&py, Profile::Quick, &sel).unwrap();
    let mut said = Vec::new();
    let out = python::run(
        &py,
        Profile::Quick,
        &sel,
        &[],
        Duration::from_secs(300),
        |s| {
            if let python::Said::Measured { index, of, .. } = s {
                said.push((index, of));
            }
        },
    )
    .unwrap();
    // The plan asked for beforehand is what was measured, in order, and
    // each point was reported as it was measured (what the progress bar
    // of a run counts).
    let n = planned.len();
    let measured_keys: Vec<_> = out
        .points
        .iter()
        .map(|p| (p.transport.as_str(), p.pattern.as_str(), p.msg_size))
        .collect();
    let planned_keys: Vec<_> = planned
        .iter()
        .map(|p| (p.transport.as_str(), p.pattern.as_str(), p.size))
        .collect();
    assert_eq!(planned_keys, measured_keys);
    assert_eq!(said, (0..n).map(|i| (i, n)).collect::<Vec<_>>());
    assert_eq!(out.config["source"], "python");
    assert!(
        out.config["python"]
            .as_str()
            .is_some_and(|v| v.starts_with('3'))
    );
    // An absolute offered load past what this run measured the strategy
    // could carry is skipped, saying so (on a busy machine the quick
    // profile's 10k msgs/s can be): an honest outcome, not a failure.
    let (skipped, measured): (Vec<_>, Vec<_>) = out.points.iter().partition(|p| p.is_skipped());
    for p in &skipped {
        assert_skipped_for_capacity(p);
    }
    let failed: Vec<String> = measured
        .iter()
        .filter(|p| !p.validated)
        .map(|p| format!("{} {}: {:?}", p.transport, p.pattern, p.error))
        .collect();
    assert!(failed.is_empty(), "failed points: {failed:#?}");
    for (t, _) in python::TRANSPORTS {
        assert!(
            out.points.iter().any(|p| p.transport == t),
            "{t} was not measured"
        );
    }
    for pattern in python::PATTERNS {
        assert!(out.points.iter().any(|p| p.pattern == pattern), "{pattern}");
    }
    for p in &measured {
        let what = format!(
            "{} {} {}x{}",
            p.transport, p.pattern, p.producers, p.consumers
        );
        assert!(p.throughput.is_some_and(|t| t.msgs_per_s > 0.0), "{what}");
        assert!(p.cpu_ns_per_msg.is_some(), "{what}");
        match p.pattern.as_str() {
            // 300 round trips or calls per client (two calls per set-get).
            "pingpong" => assert_eq!(p.messages, 300, "{what}"),
            "reqrep" | "reqrep-list" | "reqrep-namespace" | "reqrep-value" => {
                assert_eq!(p.messages, 600 * p.producers as u64, "{what}")
            }
            // Stream: intervals between 300 messages.
            "stream" => assert_eq!(p.messages, 299, "{what}"),
            // Every message of every producer (100 warm-up, 300 measured),
            // exactly once.
            "mpmc" => assert_eq!(p.messages, 400 * p.producers as u64, "{what}"),
            // Timed cycles of every process (the counter, warm-up included,
            // was checked exact by the script).
            "lock-increment" => assert_eq!(p.messages, 300 * p.producers as u64, "{what}"),
            "rlock-increment" => assert_eq!(p.messages, 300 * p.producers as u64, "{what}"),
            // Turns taken by the side that starts them; items handed over;
            // generations passed (every process passes each).
            "event-pingpong" | "condition-handoff" | "barrier-cycle" => {
                assert_eq!(p.messages, 300, "{what}")
            }
            // Items of 300 rounds of 64, each processed before its join
            // returned (checked by the script).
            "joinable" => assert_eq!(p.messages, 300 * 64, "{what}"),
            // Starts are slow: a count gives at most 20.
            "startup" => assert_eq!(p.messages, 20, "{what}"),
            // Every task once, whatever the worker count.
            "pool" | "pool-cpu" => assert_eq!(p.messages, 300, "{what}"),
            // Open loop: 300 measured messages at each load, each timed
            // from its intended and its actual send time.
            "rate" | "reqrep-rate" => {
                // Calls: 300 per client (150 set-and-get pairs).
                assert_eq!(p.messages, 300 * p.producers as u64, "{what}");
                let r = &p.rate;
                assert!(r.load.is_some() && r.achieved_per_s.is_some(), "{what}");
                assert!(r.latency_uncorrected_ns.is_some(), "{what}");
                assert!(r.peer_cpu_ns_per_msg.is_some(), "{what}");
                if p.pattern == "reqrep-rate" {
                    assert_eq!(p.transport, "py-manager-dict");
                }
                if r.load.as_deref() != Some("max") {
                    assert!(
                        r.offered_per_s.is_some() && r.sender_lateness_ns.is_some(),
                        "{what}"
                    );
                }
            }
            other => panic!("unexpected pattern {other}"),
        }
        // Stream has no latency below 32 B; Pool.map hands every result
        // back at once, so it has no per-task latency.
        if p.pattern != "stream" && !p.transport.starts_with("py-pool-map") {
            assert!(p.latency_ns.is_some(), "{what}");
        }
    }
    let left: Vec<String> = leftovers()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    // Its private directory is gone too.
    let mine: Vec<_> = python::leftover_dirs()
        .into_iter()
        .filter(|(_, pid)| *pid == std::process::id())
        .collect();
    assert!(mine.is_empty(), "left in the temporary directory: {mine:?}");
}

#[test]
fn clean_removes_the_directory_a_crashed_run_left() {
    // A pid that is certainly gone: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let dir = std::env::temp_dir().join(format!("ipcbench-{dead}-pybench-crashed"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pybench.py"), "").unwrap();
    assert!(
        python::leftover_dirs()
            .iter()
            .any(|(d, p)| *d == dir && *p == dead)
    );
    let out = std::process::Command::new(common::bin())
        .arg("clean")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.exists(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_corrupted_python_message_fails_its_point() {
    let py = py();
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("pybench-test"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("pybench.py");
    std::fs::write(&script, python::SCRIPT).unwrap();
    let out = dir.join("out.json");
    let status = std::process::Command::new(&py.exe)
        .arg(&script)
        .args([
            "--transports",
            "py-pipe,py-queue,py-shared-memory,py-manager-dict,py-manager-list,py-manager-namespace,py-manager-value",
            "--sizes",
            "8,64",
            "--count",
            "200",
            "--corrupt-at",
            "150",
            "--deadline",
            "30",
            "--no-pin",
            "--output",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "a failed point must fail the script");
    let run = ipcbench::record::io::read_results(&out).unwrap();
    assert!(!run.points.is_empty());
    // The open-loop loads that are shares of a capacity are not run when
    // the unpaced point that measures it failed.
    for p in run.points.iter().filter(|p| p.is_skipped()) {
        assert_skipped_for_capacity(p);
    }
    for p in run.points.iter().filter(|p| !p.is_skipped()) {
        assert!(
            !p.validated,
            "{} {} {} B passed with a corrupted message",
            p.transport, p.pattern, p.msg_size
        );
        let e = p.error.as_deref().unwrap();
        assert!(
            e.contains("message 150:"),
            "{} {}: {e}",
            p.transport,
            p.pattern
        );
        assert!(p.throughput.is_none() && p.latency_ns.is_none());
    }
    // Without the lock, two processes lose increments: that point fails.
    // The first increments of processes 0 and 1 are interleaved so that
    // one is lost for certain (`lose_one` in the script), whatever the load.
    let status = std::process::Command::new(&py.exe)
        .arg(&script)
        .args([
            "--profile",
            "quick",
            "--transports",
            "py-lock,py-value,py-array",
            "--count",
            "1000",
            "--no-lock",
            "--output",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    let run = ipcbench::record::io::read_results(&out).unwrap();
    for t in ["py-lock", "py-value", "py-array"] {
        let two = run
            .points
            .iter()
            .find(|p| p.producers == 2 && p.transport == t)
            .unwrap();
        assert!(
            !two.validated,
            "{t}: two processes without a lock kept every increment"
        );
        assert!(
            two.error
                .as_deref()
                .unwrap()
                .contains("increments were lost"),
            "{t}: {:?}",
            two.error
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The script ends itself and every worker once its parent is gone: a
/// shell starts it in the background (its output to files, so no pipe can
/// break) on the full profile's two-second points, and exits a second and
/// a half later, mid-point. The script, which would otherwise measure on
/// for half a minute, and its workers must be gone within five seconds,
/// having kept fewer points than planned and said why.
#[test]
fn the_script_ends_with_its_parent() {
    let py = py();
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("orphan"));
    std::fs::create_dir_all(&dir).unwrap();
    let (script, out, err, pidf) = (
        dir.join("pybench.py"),
        dir.join("out.json"),
        dir.join("err.txt"),
        dir.join("pid"),
    );
    std::fs::write(&script, python::SCRIPT).unwrap();
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' '{}' --profile full --transports py-pipe --patterns pingpong,stream \
             --no-pin --output '{}' 2>'{}' & echo $! >'{}'; sleep 1.5",
            py.exe.display(),
            script.display(),
            out.display(),
            err.display(),
            pidf.display()
        ))
        .spawn()
        .unwrap();
    // The script and its workers, gathered while the shell still waits.
    let mut procs = std::collections::BTreeSet::new();
    while sh.try_wait().unwrap().is_none() {
        if let Some(pid) = std::fs::read_to_string(&pidf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            procs.insert(pid);
            procs.extend(ipcbench::harness::stop::descendants(pid));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        procs.len() >= 2,
        "the script never started a worker: {procs:?}"
    );
    let t = std::time::Instant::now();
    while procs.iter().any(|&p| common::alive(p)) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "outlived their parent by 5 s: {:?}",
            procs
                .iter()
                .filter(|&&p| common::alive(p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(
        said.contains("the parent process is gone; stopping"),
        "{said}"
    );
    let kept = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map_or(0, |v| v["points"].as_array().map_or(0, |a| a.len()));
    assert!(kept < 12, "{kept} points: it measured on");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--procs` narrows Python's points as it narrows the suite's own: a
/// farm of 2 workers is 1x2, mpmc's 2 by 2 is 2x2, and nothing else of
/// those is planned.
#[test]
fn procs_narrow_the_python_plan() {
    let py = py();
    let sel = Selection {
        transports: vec!["py-basemanager-pool".into(), "py-queue".into()],
        patterns: vec!["pool".into(), "mpmc".into()],
        procs: vec![(1, 2), (2, 2)],
        ..Selection::default()
    };
    let planned = python::plan(&py, Profile::Default, &sel).unwrap();
    let got: Vec<_> = planned
        .iter()
        .map(|p| (p.transport.as_str(), p.pattern.as_str(), p.procs))
        .collect();
    assert!(
        got.contains(&("py-basemanager-pool", "pool", (1, 2))),
        "{got:?}"
    );
    assert!(got.contains(&("py-queue", "mpmc", (2, 2))), "{got:?}");
    assert!(
        got.iter().all(|(_, _, p)| [(1, 2), (2, 2)].contains(p)),
        "{got:?}"
    );
    // Without it, the profile's counts.
    let all = python::plan(
        &py,
        Profile::Default,
        &Selection {
            procs: Vec::new(),
            ..sel
        },
    )
    .unwrap();
    assert!(all.len() > planned.len(), "{all:?}");
}

/// A `--procs` that leaves Python nothing, where nothing else is
/// selected, is an error that says so, before anything starts.
#[test]
fn procs_that_leave_nothing_are_an_error() {
    py();
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(common::bin())
        .args([
            "run",
            "--transports",
            "py-queue",
            "--patterns",
            "mpmc",
            "--procs",
            "3x3",
            "--no-report",
            "--output",
        ])
        .arg(out.path().join("r.json"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("select nothing") && said.contains("--procs"),
        "{said}"
    );
    assert!(!out.path().join("r.json").exists());
}
