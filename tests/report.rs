//! Reports and comparisons of the fixed results files in `tests/data/`:
//! what they conclude, and snapshots of every file they write. After an
//! intended change, `UPDATE_SNAPSHOTS=1 cargo test --test report` rewrites
//! the snapshots in `tests/snapshots/`; review the diff before committing.
#![cfg(not(loom))]

mod common;

use std::path::{Path, PathBuf};

use ipcbench::harness::RunRecord;
use ipcbench::report::{self, analysis, compare};

fn data(name: &str) -> RunRecord {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    ipcbench::record::io::read_results(&p).unwrap()
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Compares `got` with the snapshot `name`, or rewrites it on request.
fn check_snapshot(name: &str, got: &str) {
    let path = snapshot_dir().join(name);
    // Only `1` rewrites: any other value set (`0`, empty) is a mistake,
    // not a quiet pass.
    if let Some(v) = std::env::var_os("UPDATE_SNAPSHOTS") {
        assert!(
            v == "1",
            "UPDATE_SNAPSHOTS={v:?}: set it to 1 to rewrite the snapshots, or unset it to check them"
        );
        std::fs::create_dir_all(snapshot_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {} missing ({e}); run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if want != got {
        let new = path.with_extension(format!(
            "{}.new",
            path.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        std::fs::write(&new, got).unwrap();
        let line = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .map_or(want.lines().count().min(got.lines().count()) + 1, |i| i + 1);
        panic!(
            "{name} differs from its snapshot from line {line}; the new output is in {} \
             (UPDATE_SNAPSHOTS=1 accepts it)",
            new.display()
        );
    }
}

#[test]
fn the_verdict_names_the_fastest_strategy_and_its_lead() {
    let run = data("run-a.json");
    let v = analysis::verdicts(&run);
    let ping64 = v
        .iter()
        .find(|v| v.pattern == "pingpong" && v.size == 64)
        .unwrap();
    // shm-queue spin 251 ns beats shm-ring spin 320 ns in this file.
    assert_eq!(ping64.best.transport, "shm-queue");
    assert_eq!(ping64.best.wait, "spin");
    assert_eq!(ping64.runner_up.as_ref().unwrap().transport, "shm-ring");
    let lead = ping64.lead().unwrap();
    assert!((lead - 320.0 / 251.0).abs() < 1e-9, "{lead}");
    // Oversubscribed mpmc points do not beat the 1×1 point that fits.
    let mpmc = v.iter().find(|v| v.pattern == "mpmc").unwrap();
    assert!(!mpmc.best.oversubscribed);
    // The failed tcp stream point never wins anything.
    assert!(
        v.iter()
            .all(|v| v.best.validated && v.best.transport != "tcp")
    );
    // Floors are yardsticks, not contenders.
    assert!(v.iter().all(|v| v.best.transport != "floor"));
}

#[test]
fn ratios_are_against_the_floors_and_os_pipe() {
    let run = data("run-a.json");
    let r = analysis::ratios(&run, "pingpong", 64);
    let ring = r.iter().find(|r| r.point.transport == "shm-ring").unwrap();
    // 320 ns over the spin floor's 120 ns; os-pipe's 58.27 µs over 320 ns.
    assert!((ring.vs_spin_floor.unwrap() - 320.0 / 120.0).abs() < 1e-9);
    assert!(
        ring.vs_park_floor.is_none(),
        "spinning is not judged by the park floor"
    );
    let pipe_speedup = ring.speedup_vs_os_pipe.unwrap();
    assert!(
        pipe_speedup > 150.0 && pipe_speedup < 200.0,
        "{pipe_speedup}"
    );
    let os = r.iter().find(|r| r.point.transport == "os-pipe").unwrap();
    assert_eq!(os.speedup_vs_os_pipe, Some(1.0));
    assert!(os.vs_park_floor.is_some());
    // Best first.
    let p50s: Vec<u64> = r.iter().map(|r| r.point.latency_ns.unwrap().p50).collect();
    assert!(p50s.windows(2).all(|w| w[0] <= w[1]), "{p50s:?}");
}

#[test]
fn round_trips_are_against_the_copy_floor_of_a_round_trip_which_never_wins() {
    let mut run = data("run-a.json");
    let mut copy = run
        .points
        .iter()
        .find(|p| p.transport == "shm-ring" && p.pattern == "pingpong" && p.msg_size == 64)
        .unwrap()
        .clone();
    copy.transport = "floor-copy".into();
    copy.wait = "spin".into();
    copy.adjacent_floors.clear();
    let l = copy.latency_ns.as_mut().unwrap();
    // Faster than every strategy of the run: it still must not win.
    (l.p50, l.p99) = (200, 210);
    run.points.push(copy);
    let r = analysis::ratios(&run, "pingpong", 64);
    let ring = r.iter().find(|r| r.point.transport == "shm-ring").unwrap();
    assert!((ring.vs_copy_floor.unwrap() - 320.0 / 200.0).abs() < 1e-9);
    let floor = r
        .iter()
        .find(|r| r.point.transport == "floor-copy")
        .unwrap();
    assert_eq!(floor.vs_copy_floor, Some(1.0));
    assert!((floor.vs_spin_floor.unwrap() - 200.0 / 120.0).abs() < 1e-9);
    // Streams have their own copy floor.
    assert!(
        analysis::ratios(&run, "stream", 64)
            .iter()
            .all(|r| r.vs_copy_floor.is_none())
    );
    // The copy floor measured beside the ring, when steady, is its
    // yardstick: 320 ns beside 150 and 170 ns is 2×, whatever the run's
    // floor-copy point read at another moment.
    let at = |run: &RunRecord, t: &str| {
        run.points
            .iter()
            .position(|p| {
                p.transport == t && p.pattern == "pingpong" && p.msg_size == 64 && p.wait == "spin"
            })
            .unwrap()
    };
    let (fc, ring) = (at(&run, "floor-copy"), at(&run, "shm-ring"));
    run.points[fc].adjacent_floors = vec![100.0, 100.0];
    run.points[ring].adjacent_floors = vec![150.0, 170.0];
    let r = analysis::ratios(&run, "pingpong", 64);
    let v = r.iter().find(|r| r.point.transport == "shm-ring").unwrap();
    assert!(
        (v.vs_copy_floor.unwrap() - 2.0).abs() < 1e-9,
        "{:?}",
        v.vs_copy_floor
    );
    let v = analysis::verdicts(&run);
    assert!(v.iter().all(|v| !analysis::is_floor(&v.best.transport)));
    assert!(v.iter().all(|v| {
        v.runner_up
            .as_ref()
            .is_none_or(|r| !analysis::is_floor(&r.transport))
    }));
}

#[test]
fn a_floor_measured_beside_a_point_is_its_yardstick_when_steady() {
    let mut run = data("run-a.json");
    let ring = |run: &RunRecord| {
        analysis::ratios(run, "pingpong", 64)
            .into_iter()
            .find(|r| r.point.transport == "shm-ring")
            .unwrap()
    };
    let at = run
        .points
        .iter()
        .position(|p| {
            p.transport == "shm-ring"
                && p.pattern == "pingpong"
                && p.msg_size == 64
                && p.wait == "spin"
        })
        .unwrap();
    // 320 ns beside copy floors of 150 and 170 ns: 2× the same-work
    // floor; the spin floor's multiple is the run's floor point's.
    run.points[at].adjacent_floors = vec![150.0, 170.0];
    let r = ring(&run);
    assert!(
        (r.vs_copy_floor.unwrap() - 2.0).abs() < 1e-9,
        "{:?}",
        r.vs_copy_floor
    );
    assert!((r.vs_spin_floor.unwrap() - 320.0 / 120.0).abs() < 1e-9);
    assert!(r.floor_beside);
    // Floors 100 and 200 ns apart: the machine moved; the run has no
    // floor-copy point to fall back on, so there is no copy-floor figure.
    run.points[at].adjacent_floors = vec![100.0, 200.0];
    let r = ring(&run);
    assert_eq!(r.vs_copy_floor, None);
    assert!(!r.floor_beside);
    assert_eq!(analysis::vs_adjacent_floor(&run.points[at]), None);
}

#[test]
fn a_late_answer_is_judged_by_its_wait_against_the_late_park_floor() {
    let mut run = data("run-a.json");
    let base = run
        .points
        .iter()
        .find(|p| p.pattern == "pingpong" && p.validated)
        .unwrap()
        .clone();
    let late = |transport: &str, wait: &str, p50: u64| {
        let mut p = base.clone();
        p.transport = transport.into();
        p.pattern = "pingpong-late".into();
        p.msg_size = 64;
        p.wait = wait.into();
        let mut l = p.latency_ns.unwrap();
        l.p50 = p50;
        p.latency_ns = Some(l);
        p
    };
    run.points.push(late("shm-ring", "park", 260_000));
    run.points.push(late("floor", "park", 250_000));
    run.points.push(late("shm-ring", "spin-park", 230_000));
    let rows = analysis::late_answers(&run);
    let got: Vec<(String, String, f64, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r.point.transport.clone(),
                r.point.wait.clone(),
                r.wait_cost_ns,
                r.vs_park_floor,
            )
        })
        .collect();
    // The echo's 200 µs of work taken off; the floor first, then cheapest wait first.
    assert_eq!(
        got,
        [
            ("floor".into(), "park".into(), 50_000.0, Some(1.0)),
            ("shm-ring".into(), "spin-park".into(), 30_000.0, Some(0.6)),
            ("shm-ring".into(), "park".into(), 60_000.0, Some(1.2)),
        ]
    );
    // Its own section of the report, and no say in the verdicts.
    let md = report::page::markdown(&report::page::blocks(&run));
    assert!(md.contains("## When the answer is late (64 B)"), "{md}");
    assert!(
        analysis::verdicts(&run)
            .iter()
            .all(|v| v.pattern != "pingpong-late")
    );
}

#[test]
fn warnings_name_failed_skipped_and_oversubscribed_points() {
    let w = analysis::warnings(&data("run-a.json"));
    let text: Vec<String> = w.iter().map(|w| w.what.clone()).collect();
    assert!(
        text.iter().any(|t| t.starts_with("1 point(s) failed")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("3 point(s) were skipped")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("more busy processes")),
        "{text:?}"
    );
    let failed = w.iter().find(|w| w.what.contains("failed")).unwrap();
    assert!(
        failed.points[0].contains("message 4711"),
        "{:?}",
        failed.points
    );
}

#[test]
fn report_files_match_their_snapshots() {
    let run = data("run-a.json");
    let files = report::report_files(&run).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "REPORT.md",
            "index.html",
            "latency.svg",
            "throughput.svg",
            "scaling.svg",
            "spectrum.svg",
            "floor.svg",
            "steady.svg",
            "steady-cpu.svg"
        ]
    );
    for (name, contents) in &files {
        check_snapshot(name, contents);
    }
    // The page stands alone: every plot inline, nothing fetched.
    let html = &files[1].1;
    assert_eq!(html.matches("<svg").count(), 7);
    for (name, _) in &files[2..] {
        assert!(html.contains(&format!("data-plot=\"{name}\"")), "{name}");
    }
    let external = html
        .match_indices("src=\"")
        .chain(html.match_indices("href=\"http"))
        .count();
    assert_eq!(external, 0, "the page must not load anything");
    // Its contents lead to its second-level headings, each once.
    let contents = &html[html.find("<nav id=\"contents\">").unwrap()..];
    let contents = &contents[..contents.find("</nav>").unwrap()];
    let links: Vec<&str> = contents
        .split("href=\"#")
        .skip(1)
        .map(|l| &l[..l.find('"').unwrap()])
        .collect();
    assert_eq!(links.len(), html.matches("<h2 ").count());
    for id in &links {
        assert_eq!(html.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
    }
    // Tables sort and filter by a script of the page's own.
    assert_eq!(html.matches("<script>").count(), 1);
    // Each line plot names its axes and every line in its legend.
    let latency = &files[2].1;
    assert!(latency.contains("message size") && latency.contains("round trip"));
    for t in [
        "shm-ring (spin)",
        "shm-queue (spin)",
        "os-pipe",
        "unix-stream",
        "manager-unix",
    ] {
        assert!(
            latency.contains(&format!("\n{t}\n</text>")),
            "latency legend lacks {t}"
        );
    }
    assert!(files[4].1.contains("oversubscribed (&gt; 2 CPUs)"));
}

#[test]
fn under_a_steady_load_each_strategy_has_its_knee_and_a_point_behind_says_so() {
    use ipcbench::report::steady;
    let run = data("run-a.json");
    let lines = steady::lines(&run);
    let names: Vec<String> = lines.iter().map(|l| l.label()).collect();
    assert_eq!(names, ["shm-ring (spin)", "os-pipe"]);
    for l in &lines {
        assert!(l.capacity().is_some(), "{}", l.label());
        assert_eq!(l.paced.len(), 11, "{}: the whole ladder", l.label());
        // Offered in order, and 1 k/s (the lowest) is the unloaded point.
        assert_eq!(steady::offered(l.unloaded().unwrap()), Some(1e3));
        let knee = l.knee().expect("a knee");
        assert!(l.sustains(l.at(knee).unwrap()));
        // 1.1× its capacity is more than it took in.
        let over = l
            .paced
            .iter()
            .find(|p| p.rate.load.as_deref() == Some("110%"))
            .unwrap();
        assert!(steady::past_knee(over), "{}", l.label());
        assert!(!l.sustains(over));
    }
    let blocks = report::page::blocks(&run);
    let md = report::page::markdown(&blocks);
    let section = md
        .split("## Under a steady load (64 B)")
        .nth(1)
        .expect("the section")
        .split("\n## ")
        .next()
        .unwrap();
    for want in [
        "| shm-ring (spin) |",
        "| os-pipe |",
        "knee",
        "CPU/msg at 1 k/s",
        "steady.svg",
    ] {
        assert!(
            section.contains(want),
            "the section lacks {want}:\n{section}"
        );
    }
    // Past its knee, the point's row says so instead of a median.
    assert!(md.contains("past its knee: took in"));
    // The CPU plot draws one core's worth for reference, and every wait of
    // the ring.
    let cpu = report::plots::steady_cpu(&run).unwrap();
    assert!(cpu.contains("one core busy") && cpu.contains("shm-ring (spin)"));
    let hockey = report::plots::steady(&run).unwrap();
    assert!(hockey.contains("offered messages per second") && hockey.contains("os-pipe"));
}

#[test]
fn compare_flags_regressions_improvements_and_new_failures() {
    let (a, b) = (data("run-a.json"), data("run-b.json"));
    let c = compare::compare(&a, &b, compare::DEFAULT_THRESHOLD);
    let flagged = |change| {
        c.rows
            .iter()
            .filter(|r| r.change == change)
            .map(|r| r.point.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        flagged(compare::Change::Regressed),
        [
            "shm-ring pingpong 64 B spin",
            "shm-queue stream 64 B spin",
            // Three times the corrected p99 at 10 k msgs/s offered.
            "os-pipe rate 10k 64 B kernel"
        ]
    );
    assert_eq!(
        flagged(compare::Change::Improved),
        ["os-pipe stream 64 B kernel"]
    );
    assert_eq!(c.only_a, ["unix-stream pingpong 8 B kernel"]);
    assert!(c.only_b.is_empty());
    // A run compared with itself changes nothing.
    let same = compare::compare(&a, &a, compare::DEFAULT_THRESHOLD);
    assert_eq!(same.regressions() + same.improvements(), 0);
    check_snapshot(
        "compare.txt",
        &compare::render(&c, "run-a.json", "run-b.json"),
    );
}

#[test]
fn compare_reads_a_slower_machine_off_the_floors_beside_the_points() {
    let a = data("run-a.json");
    let mut b = a.clone();
    let at = a
        .points
        .iter()
        .position(|p| p.transport == "shm-queue" && p.pattern == "pingpong" && p.validated)
        .unwrap();
    // B's machine was 60% slower: the point and the floors beside it alike.
    let mut l = b.points[at].latency_ns.unwrap();
    l.p50 = l.p50 * 8 / 5;
    b.points[at].latency_ns = Some(l);
    let name = ipcbench::report::analysis::point_name(&a.points[at]);
    let row = |c: &compare::Comparison| c.rows.iter().find(|r| r.point == name).unwrap().clone();
    // Without floors beside them, that is a regression...
    let c = compare::compare(&a, &b, compare::DEFAULT_THRESHOLD);
    assert_eq!(row(&c).change, compare::Change::Regressed);
    assert!(!row(&c).against_floors);
    // ...with them, the same ratio to the floor: no change.
    let mut a2 = a.clone();
    a2.points[at].adjacent_floors = vec![120.0, 125.0];
    b.points[at].adjacent_floors = vec![192.0, 200.0];
    let c = compare::compare(&a2, &b, compare::DEFAULT_THRESHOLD);
    let r = row(&c);
    assert_eq!(r.change, compare::Change::Same, "{r:?}");
    assert!(r.against_floors);
    assert!((r.speedup.unwrap() - 1.0).abs() < 0.01, "{r:?}");
    assert!(compare::render(&c, "a", "b").contains("~1.00×"));
}

#[test]
fn the_cli_writes_reports_and_gates_on_regressions() {
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("report-cli"));
    let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-a.json");
    let b = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-b.json");
    let out = std::process::Command::new(common::bin())
        .args([
            "report",
            a.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["REPORT.md", "index.html", "latency.svg", "floor.svg"] {
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    let cmp = |x: &Path, y: &Path| {
        std::process::Command::new(common::bin())
            .args(["compare", x.to_str().unwrap(), y.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let same = cmp(&a, &a);
    assert_eq!(same.status.code(), Some(0));
    let worse = cmp(&a, &b);
    assert_eq!(
        worse.status.code(),
        Some(1),
        "a regression must fail the command, with diff's status"
    );
    assert!(String::from_utf8_lossy(&worse.stdout).contains("REGRESSION"));
    // A file that is not a results file is a clear error, not a panic.
    let bad = cmp(&a, &dir.join("REPORT.md"));
    assert_eq!(bad.status.code(), Some(2), "trouble is 2, as diff's");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an ipcbench results file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lead_inside_the_intervals_is_a_tie_and_the_row_says_so() {
    let mut run = data("run-a.json");
    let at = |run: &RunRecord, t: &str| {
        run.points
            .iter()
            .position(|p| {
                p.transport == t && p.pattern == "pingpong" && p.msg_size == 64 && p.wait == "spin"
            })
            .unwrap()
    };
    let (queue, ring) = (at(&run, "shm-queue"), at(&run, "shm-ring"));
    let with = |lo: f64, hi: f64| {
        Some(ipcbench::record::Ci95 {
            p50_ns: Some([lo, hi]),
            msgs_per_s: None,
        })
    };
    let row = |run: &RunRecord| {
        analysis::verdicts(run)
            .into_iter()
            .find(|v| v.pattern == "pingpong" && v.size == 64)
            .unwrap()
    };
    // 251 ns [240, 330] against 320 ns [300, 340]: they overlap.
    run.points[queue].ci95 = with(240.0, 330.0);
    run.points[ring].ci95 = with(300.0, 340.0);
    let v = row(&run);
    assert!(v.is_tie() && v.has_intervals);
    assert_eq!(v.tied[0].transport, "shm-ring");
    let md = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    assert!(
        md.contains("| tie: **shm-queue (spin)**, shm-ring (spin) |"),
        "{md}"
    );
    // Apart: a lead, supported by the intervals.
    run.points[queue].ci95 = with(240.0, 260.0);
    let v = row(&run);
    assert!(!v.is_tie() && v.has_intervals);
    // The best that does not spin is named beside a spinning winner.
    let calm = v.without_spinning.unwrap();
    assert!(
        matches!(calm.wait.as_str(), "park" | "kernel"),
        "{}",
        calm.wait
    );
    // Apart in nanoseconds, but the ring ran while the machine was slower
    // (its floors beside it read 250 ns where the queue's read 200):
    // over their floors, 1.20–1.30× and 1.18–1.36×, a tie.
    run.points[queue].adjacent_floors = vec![200.0, 200.0];
    run.points[ring].adjacent_floors = vec![250.0, 255.0];
    assert!(row(&run).is_tie());
    // The same floors beside both: the lead stands.
    run.points[ring].adjacent_floors = vec![200.0, 200.0];
    assert!(!row(&run).is_tie());
    // Ahead by a quarter in nanoseconds, but its floors read a fifth of the
    // ring's (the machine ran faster under it): behind over the floors,
    // so no lead (the sample once showed a 3.5x lead so made).
    run.points[queue].adjacent_floors = vec![40.0, 40.0];
    assert!(row(&run).is_tie());
    run.points[queue].adjacent_floors = vec![200.0, 200.0];
    // Without intervals, a lead under 25% is no lead (251 vs 300 ns:
    // 1.20×); one over it is shown, marked as having none.
    run.points[queue].ci95 = None;
    run.points[ring].latency_ns.as_mut().unwrap().p50 = 300;
    let v = row(&run);
    assert!(v.is_tie() && !v.has_intervals, "{:?}", v.lead());
    let md = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    assert!(md.contains("| tie (no interval, within 25%) |"), "{md}");
    run.points[ring].latency_ns.as_mut().unwrap().p50 = 320;
    let v = row(&run);
    assert!(!v.is_tie() && !v.has_intervals, "{:?}", v.lead());
}

#[test]
fn exit_statuses_tell_a_finding_from_trouble() {
    let status = |args: &[&str]| {
        let o = std::process::Command::new(common::bin())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Trouble is 2, whoever parses the mistake: clap (a bad size) or the
    // plan (an unknown name), and a file that is not there.
    let (code, err) = status(&["run", "--transports", "shm-rnig", "--no-python"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("did you mean `shm-ring`"), "{err}");
    let (code, err) = status(&["run", "--sizes", "7x", "--no-python"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = status(&["run", "--rates", "fast", "--no-python"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad rate"), "{err}");
    let (code, err) = status(&["compare", "/nonexistent/a.json", "/nonexistent/b.json"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = status(&["no-such-command"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `ipcbench compare` with `args`: its exit status, standard output and
/// standard error.
fn compare_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(common::bin())
        .arg("compare")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `compare` from the command line: a wider `--threshold` calls more
/// changes noise, but a point that fails only in B is a regression at any
/// threshold; a run with only improvements exits 0 and says so; a
/// threshold that is not a fraction is trouble (2).
#[test]
fn compare_honours_its_threshold_and_passes_a_run_that_only_improved() {
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("compare-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let a_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-a.json");
    let b_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-b.json");
    let cmp = compare_cli;
    let (a, b) = (a_path.to_str().unwrap(), b_path.to_str().unwrap());
    // At 25%: three regressions, one improvement (and the new failure
    // among the regressions).
    let (code, out, _) = cmp(&[a, b]);
    assert_eq!(code, Some(1));
    assert!(out.contains("3 regressed, 1 improved"), "{out}");
    // At 10,000%: every change of a figure is noise; the point that fails
    // only in B still regresses.
    let (code, out, _) = cmp(&["--threshold", "100", a, b]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("1 regressed, 0 improved"), "{out}");
    assert!(out.contains("fails in B"), "{out}");
    // B is A with one point twice as fast: only an improvement.
    let mut better = data("run-a.json");
    let at = better
        .points
        .iter()
        .position(|p| p.pattern == "pingpong" && p.validated && p.latency_ns.is_some())
        .unwrap();
    let mut l = better.points[at].latency_ns.unwrap();
    l.p50 /= 2;
    better.points[at].latency_ns = Some(l);
    let better_path = dir.join("better.json");
    ipcbench::record::io::write_results(&better_path, &better).unwrap();
    let (code, out, err) = cmp(&[a, better_path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "only an improvement must pass: {out}{err}");
    assert!(out.contains("0 regressed, 1 improved"), "{out}");
    // Not a fraction: trouble, said plainly.
    for bad in ["-1", "NaN", "inf"] {
        let (code, _, err) = cmp(&[&format!("--threshold={bad}"), a, b]);
        assert_eq!(code, Some(2), "--threshold={bad}: {err}");
        assert!(
            err.contains("--threshold must be a fraction"),
            "{bad}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `compare --format`: text and Markdown list the points that changed
/// (`--all`: every point), JSON every point with its verdict; the exit
/// status is the same in each (1: something regressed); an unknown format
/// is trouble (2).
#[test]
fn compare_writes_text_markdown_and_json_with_one_exit_status() {
    let a_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-a.json");
    let b_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-b.json");
    let (a, b) = (a_path.to_str().unwrap(), b_path.to_str().unwrap());
    let cmp = compare_cli;
    let unchanged = "floor pingpong 8 B spin";
    let (code, text, _) = cmp(&[a, b]);
    assert_eq!(code, Some(1));
    assert!(text.contains("shm-ring pingpong 64 B spin"), "{text}");
    assert!(
        !text.contains(unchanged),
        "unchanged points are not listed: {text}"
    );
    assert!(
        text.contains("78 within the noise (not listed; --all lists them)"),
        "{text}"
    );
    let (code, all, _) = cmp(&["--all", a, b]);
    assert_eq!(code, Some(1));
    assert!(all.contains(unchanged), "{all}");
    let (code, md, _) = cmp(&["--format", "markdown", a, b]);
    assert_eq!(code, Some(1));
    assert!(
        md.contains("| point | figure | A | B | speedup | change |"),
        "{md}"
    );
    assert!(
        md.contains("| shm-ring pingpong 64 B spin | p50 round trip | 320 ns | 640 ns | 0.50× | **regression** |"),
        "{md}"
    );
    let (code, json, err) = cmp(&["--format", "json", a, b]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, v["compared"].as_u64().unwrap());
    assert_eq!(rows.len(), 82);
    assert_eq!(v["regressed"], 3);
    assert_eq!(v["improved"], 1);
    let verdict = |point: &str| {
        rows.iter()
            .find(|r| r["point"] == point)
            .map(|r| r["change"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        verdict("shm-ring pingpong 64 B spin").as_deref(),
        Some("regressed")
    );
    assert_eq!(
        verdict("os-pipe stream 64 B kernel").as_deref(),
        Some("improved")
    );
    assert_eq!(verdict(unchanged).as_deref(), Some("same"));
    assert_eq!(v["only_a"][0], "unix-stream pingpong 8 B kernel");
    let (code, _, _) = cmp(&["--format", "json", a, a]);
    assert_eq!(code, Some(0));
    let (code, _, err) = cmp(&["--format", "yaml", a, b]);
    assert_eq!(code, Some(2), "{err}");
}

/// `compare --report DIR` draws what changed: a bar for each point that
/// changed (red for the regressions, green for the improvement), the plot
/// inline in `index.html` and linked from `COMPARE.md`; the exit status
/// is still the comparison's. The terminal's answer is coloured only where
/// colour is asked for (never into a pipe, unless `CLICOLOR_FORCE`).
#[test]
fn compare_report_draws_the_points_that_changed_and_colour_is_for_terminals() {
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("compare-report"));
    let a_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-a.json");
    let b_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-b.json");
    let (a, b) = (a_path.to_str().unwrap(), b_path.to_str().unwrap());
    let (code, text, err) = compare_cli(&["--report", dir.to_str().unwrap(), a, b]);
    assert_eq!(code, Some(1), "{text}{err}");
    assert!(err.contains("report: "), "{err}");
    let svg = std::fs::read_to_string(dir.join("compare.svg")).unwrap();
    let ra = ipcbench::record::io::read_results(&a_path).unwrap();
    let rb = ipcbench::record::io::read_results(&b_path).unwrap();
    let c = ipcbench::report::compare::compare(&ra, &rb, 0.25);
    use ipcbench::report::compare::Change;
    let drawn: Vec<_> = c
        .rows
        .iter()
        .filter(|r| r.change != Change::Same && r.speedup.is_some())
        .collect();
    assert!(drawn.len() >= 2, "the data has changes to draw");
    for r in &drawn {
        assert!(svg.contains(&r.point), "{} not drawn", r.point);
    }
    let unchanged = c.rows.iter().find(|r| r.change == Change::Same).unwrap();
    assert!(!svg.contains(&format!(">{}<", unchanged.point)));
    // Red bars for regressions, a green one for the improvement.
    assert!(
        svg.contains("#D62728") || svg.contains("#d62728"),
        "no red bar"
    );
    assert!(
        svg.contains("#2CA02C") || svg.contains("#2ca02c"),
        "no green bar"
    );
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("<svg"), "the plot is inline");
    let md = std::fs::read_to_string(dir.join("COMPARE.md")).unwrap();
    assert!(md.contains("](compare.svg)"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Into a pipe: no escape codes; forced: the verdicts in colour.
    assert!(!text.contains('\x1b'), "{text}");
    let o = std::process::Command::new(common::bin())
        .args(["compare", a, b])
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    let forced = String::from_utf8_lossy(&o.stdout);
    assert!(
        forced.contains("\x1b[") && forced.contains("REGRESSION"),
        "{forced}"
    );
}

/// Points measured between two hosts stay out of the verdict, get a
/// section beside their loopback twins, and answer "different machines"
/// in the guide (a tie where their intervals overlap).
#[test]
fn points_between_two_hosts_are_set_apart_and_beside_their_loopback_twins() {
    let mut run = data("run-a.json");
    let twin = |run: &RunRecord, t: &str| {
        let mut p = run
            .points
            .iter()
            .find(|p| p.transport == t && p.pattern == "pingpong" && p.msg_size == 64)
            .unwrap()
            .clone();
        p.hosts = Some("netns".into());
        p.far_side = Some("side B".into());
        p
    };
    let before = analysis::verdicts(&run);
    let (a, b) = (twin(&run, "shm-ring"), twin(&run, "os-pipe"));
    run.points.extend([a, b]);
    // The verdict does not change: between hosts is another contest.
    let after = analysis::verdicts(&run);
    assert_eq!(
        before.iter().map(|v| &v.best.transport).collect::<Vec<_>>(),
        after.iter().map(|v| &v.best.transport).collect::<Vec<_>>()
    );
    assert!(after.iter().all(|v| v.best.hosts.is_none()));
    let md = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    assert!(md.contains("## Between two hosts"), "{md}");
    assert!(md.contains("| shm-ring | pingpong 64 B | side B |"), "{md}");
    // Side by side, a column each, loopback and between hosts a row each.
    assert!(md.contains("| point | shm-ring | os-pipe |"), "{md}");
    let row = |what: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| pingpong 64 B, {what} |")))
            .unwrap_or_else(|| panic!("no side-by-side row {what}: {md}"))
            .to_owned()
    };
    // The twins are copies: both rows read the same figures.
    assert_eq!(
        row("loopback").split_once(" |").unwrap().1,
        row("between hosts").split_once(" |").unwrap().1
    );
    assert!(!row("loopback").contains("| - |"), "{}", row("loopback"));
    assert!(
        md.contains("| 1.00× |"),
        "a twin of itself reads 1.00×: {md}"
    );
    assert!(
        md.contains("If your processes will live on different machines"),
        "{md}"
    );
    assert!(
        md.contains("round trips of 64 B between two hosts (netns)"),
        "{md}"
    );
}

/// A task farm's twins between hosts (and Python's) stay out of the
/// scaling table and the Python comparison, which compare on one host:
/// each strategy keeps one row, each worker count once.
#[test]
fn farm_twins_between_hosts_stay_out_of_scaling_and_python_speedups() {
    let mut run = data("run-a.json");
    // Farms of the suite's manager and of Python's BaseManager, 1 and 2
    // workers, made from a measured stream point.
    let base = run
        .points
        .iter()
        .find(|p| p.pattern == "stream" && p.throughput.is_some())
        .unwrap()
        .clone();
    for (t, w, rate) in [
        ("manager-tcp", 1, 5_000.0),
        ("manager-tcp", 2, 9_000.0),
        ("py-basemanager-pool", 1, 2_000.0),
        ("py-basemanager-pool", 2, 2_500.0),
    ] {
        let mut p = base.clone();
        (p.transport, p.pattern, p.wait) = (t.into(), "pool".into(), "kernel".into());
        (p.msg_size, p.producers, p.consumers) = (64, 1, w);
        p.throughput.as_mut().unwrap().msgs_per_s = rate;
        run.points.push(p);
    }
    let before = (
        format!("{:?}", analysis::pool_scaling(&run)),
        format!("{:?}", analysis::python_speedups(&run)),
    );
    let twins: Vec<_> = run
        .points
        .iter()
        .filter(|p| p.pattern == "pool" || p.transport.starts_with("py-"))
        .cloned()
        .map(|mut p| {
            // Twice as fast between hosts: were it mixed in, it would win.
            if let Some(t) = p.throughput.as_mut() {
                t.msgs_per_s *= 2.0;
            }
            p.hosts = Some("netns".into());
            p.far_side = Some("workers".into());
            p
        })
        .collect();
    run.points.extend(twins);
    let after = (
        format!("{:?}", analysis::pool_scaling(&run)),
        format!("{:?}", analysis::python_speedups(&run)),
    );
    assert_eq!(before, after);
    let md = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    assert!(
        md.contains("| workers |"),
        "the farms' twins are in their section: {md}"
    );
}

/// Open-loop points between two hosts are lines of their own, beside
/// their loopback twins in "Between two hosts", and stay out of the
/// verdict's answers at each rate.
#[test]
fn open_loop_points_between_two_hosts_are_lines_of_their_own() {
    let mut run = data("run-a.json");
    let before = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    let twins: Vec<_> = run
        .points
        .iter()
        .filter(|p| p.pattern == "rate")
        .cloned()
        .map(|mut p| {
            p.hosts = Some("netns".into());
            p.far_side = Some("side B".into());
            p
        })
        .collect();
    assert!(!twins.is_empty());
    let (name, n) = (twins[0].transport.clone(), twins.len());
    run.points.extend(twins);
    let lines = ipcbench::report::steady::lines(&run);
    let far: Vec<_> = lines.iter().filter(|l| l.hosts).collect();
    assert!(!far.is_empty());
    assert!(far.iter().all(|l| l.transport.ends_with(" (2 hosts)")));
    assert_eq!(far.iter().map(|l| l.paced.len() + 1).sum::<usize>(), n);
    let label = far[0].label();
    assert!(
        label.contains(&name) && label.contains("(2 hosts)"),
        "{label}"
    );
    let md = ipcbench::report::page::markdown(&ipcbench::report::page::blocks(&run));
    assert!(md.contains(&format!("| {label} |")), "{md}");
    // The verdict's answers at each rate read as they did.
    let at_rates = |md: &str| -> Vec<String> {
        md.lines()
            .filter(|l| l.trim_start().starts_with("- at "))
            .map(str::to_owned)
            .collect()
    };
    assert!(!at_rates(&before).is_empty(), "{before}");
    assert_eq!(at_rates(&before), at_rates(&md));
    // Each beside its loopback twin, with its load.
    assert!(md.contains("| side B |"), "{md}");
}
