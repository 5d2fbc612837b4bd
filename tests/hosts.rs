//! Two hosts on one machine: a network namespace joined by a veth pair.
//! The network strategies' points run with their far side inside it and
//! validate; nothing is left behind, also after a coordinator killed
//! outright and `ipcbench clean`. Skipped, with the reason, where the
//! namespace cannot be made (not root, no iproute2).
#![cfg(not(loom))]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{HANG, bin};
use ipcbench::harness::hosts::{Netns, leftovers};
use ipcbench::harness::{Pattern, PointSpec, RunOpts, Strategy, run_point};
use ipcbench::shm::Wait;
use ipcbench::transport::TransportKind;

/// Both tests make namespaces and look at the list of them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A namespace, or the reason there is none (the test is then skipped).
fn netns() -> Option<Netns> {
    match Netns::create(None) {
        Ok(ns) => Some(ns),
        Err(e) => {
            eprintln!("skipped: no second host here: {e}");
            None
        }
    }
}

/// Whether a network link of this name exists (`ip -o link` prints a
/// veth end as `N: NAME@PEER: …`).
fn has_link(name: &str) -> bool {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|n| n.trim_end_matches(':').split('@').next())
            == Some(name)
    })
}

#[test]
fn network_strategies_measure_across_a_namespace_and_leave_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = netns() else { return };
    let name = ns.name().to_owned();
    let veth = format!("ipcb{}", std::process::id());
    assert!(has_link(&veth), "the link {veth} exists");
    let opts = RunOpts {
        exe: bin().into(),
        warmup: 20,
        pingpong_iters: 200,
        stream_messages: (500, 2_000),
        budget: Duration::ZERO,
        far: Some(ns.far()),
        ..RunOpts::default()
    };
    // manager-tcp's server binds the namespace's own address, which exists
    // only inside it: its points validate only if the server runs there.
    let kinds = [
        TransportKind::Tcp,
        TransportKind::ManagerTcp,
        #[cfg(feature = "zeromq")]
        TransportKind::ZmqTcp,
    ];
    for kind in kinds {
        for pattern in [Pattern::Pingpong, Pattern::Stream] {
            let spec = PointSpec::one_to_one(Strategy::Transport(kind), pattern, 64, Wait::PARK);
            let r = run_point(&spec, &opts);
            let what = format!("{kind} {}", pattern.name());
            assert!(r.validated, "{what}: {:?}", r.error);
            assert_eq!(r.hosts.as_deref(), Some("netns"), "{what}");
        }
    }
    // A manager's server goes at every pattern: all its clients stay here.
    for (pattern, procs) in [(Pattern::Mpmc, (2, 2)), (Pattern::Reqrep, (2, 1))] {
        let spec = PointSpec {
            producers: procs.0,
            consumers: procs.1,
            ..PointSpec::one_to_one(
                Strategy::Transport(TransportKind::ManagerTcp),
                pattern,
                64,
                Wait::PARK,
            )
        };
        let r = run_point(&spec, &opts);
        let what = format!("manager-tcp {}", pattern.name());
        assert!(r.validated, "{what}: {:?}", r.error);
        assert_eq!(r.hosts.as_deref(), Some("netns"), "{what}");
        assert_eq!(r.far_side.as_deref(), Some("server"), "{what}");
    }
    // ZeroMQ's shared channels and calls: the senders and the clients go,
    // connecting to receivers and a server that bind here.
    #[cfg(feature = "zeromq")]
    for (pattern, procs) in [(Pattern::Mpmc, (2, 2)), (Pattern::Reqrep, (2, 1))] {
        let spec = PointSpec {
            producers: procs.0,
            consumers: procs.1,
            ..PointSpec::one_to_one(
                Strategy::Transport(TransportKind::ZmqTcp),
                pattern,
                64,
                Wait::PARK,
            )
        };
        let r = run_point(&spec, &opts);
        let what = format!("zmq-tcp {}", pattern.name());
        assert!(r.validated, "{what}: {:?}", r.error);
        assert_eq!(r.hosts.as_deref(), Some("netns"), "{what}");
        assert_eq!(r.far_side.as_deref(), Some("side A"), "{what}");
    }
    // Task farms: the workers go (a manager's server with them), the
    // master stays; every task is checked as over loopback.
    {
        use ipcbench::harness::pool::{PoolSpec, run_point};
        let farms = [
            (TransportKind::Tcp, "workers"),
            (TransportKind::ManagerTcp, "server and workers"),
            #[cfg(feature = "zeromq")]
            (TransportKind::ZmqTcp, "workers"),
        ];
        for (kind, far_side) in farms {
            let spec = PoolSpec {
                kind,
                cpu_work: false,
                workers: 2,
                wait: Wait::PARK,
            };
            let r = run_point(&spec, &opts);
            let what = format!("{kind} pool");
            assert!(r.validated, "{what}: {:?}", r.error);
            assert_eq!(r.messages, opts.pingpong_iters.max(100), "{what}");
            assert_eq!(r.hosts.as_deref(), Some("netns"), "{what}");
            assert_eq!(r.far_side.as_deref(), Some(far_side), "{what}");
        }
    }
    // A strategy that does not cross a network stays on this host.
    let spec = PointSpec::one_to_one(
        Strategy::Transport(TransportKind::UnixStream),
        Pattern::Pingpong,
        64,
        Wait::PARK,
    );
    let r = run_point(&spec, &opts);
    assert!(r.validated, "{:?}", r.error);
    assert_eq!(r.hosts, None);
    drop(ns);
    assert!(
        !leftovers().iter().any(|(n, _)| *n == name),
        "namespace {name} is left"
    );
    assert!(!has_link(&veth), "link {veth} is left");
}

#[test]
fn a_killed_run_leaves_its_namespace_to_clean_and_clean_removes_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Whether namespaces can be made here at all.
    let Some(probe) = netns() else { return };
    drop(probe);
    let out = tempfile::tempdir().unwrap();
    let mut run = Command::new(bin())
        .args([
            "run",
            "--transports",
            "tcp",
            "--patterns",
            "pingpong",
            "--hosts",
            "netns",
            "--no-python",
            "--no-report",
            "--output",
        ])
        .arg(out.path().join("r.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let name = format!("ipcbench-{}", run.id());
    let until = Instant::now() + HANG;
    while !leftovers().iter().any(|(n, _)| *n == name) {
        assert!(Instant::now() < until, "the run made no namespace {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Measuring: killed outright, it cannot remove what it made.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        has_link(&format!("ipcb{}", run.id())),
        "the run made its link"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        leftovers().iter().any(|(n, _)| *n == name),
        "a SIGKILLed run leaves its namespace"
    );
    let clean = Command::new(bin()).arg("clean").output().unwrap();
    let said = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{said}");
    assert!(
        said.contains(&format!("removed network namespace {name}")),
        "{said}"
    );
    assert!(!leftovers().iter().any(|(n, _)| *n == name), "{said}");
    let veth = format!("ipcb{}", run.id());
    assert!(!has_link(&veth), "link {veth} of {name} is left");
}

/// The Python baseline's `BaseManager` between hosts: its points are
/// measured again, right after their loopback twins,
/// with the server started on the far host (through `ipcbench peer
/// py-basemanager-serve`), and the server ends with its point.
#[test]
fn python_basemanager_serves_from_the_far_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = netns() else { return };
    let py = match ipcbench::harness::python::find() {
        Ok(py) => py,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    use ipcbench::harness::python::{self, FarServer, Selection};
    let sel = Selection {
        transports: vec!["py-basemanager-tcp".into(), "py-basemanager-pool".into()],
        patterns: vec![
            "pingpong".into(),
            "mpmc".into(),
            "reqrep".into(),
            "pool".into(),
        ],
        sizes: vec![64],
        count: Some(300),
        far: Some(FarServer {
            far: ns.far(),
            ipcbench: bin().into(),
        }),
        ..Selection::default()
    };
    let profile = ipcbench::harness::plan::Profile::Quick;
    let planned = python::plan(&py, profile, &sel).unwrap();
    // Every point, each right after its loopback twin: the farm's too.
    assert!(planned.len() >= 8, "{planned:?}");
    assert!(
        planned
            .iter()
            .any(|p| p.pattern == "pool" && p.hosts.is_some()),
        "{planned:?}"
    );
    for pair in planned.chunks(2) {
        assert_eq!(pair[0].hosts, None, "{planned:?}");
        assert_eq!(pair[1].hosts.as_deref(), Some("netns"), "{planned:?}");
        assert_eq!(
            (&pair[0].pattern, pair[0].size, pair[0].procs),
            (&pair[1].pattern, pair[1].size, pair[1].procs)
        );
    }
    let out = python::run(&py, profile, &sel, &[], HANG, |_| {}).unwrap();
    assert_eq!(out.points.len(), planned.len());
    for p in &out.points {
        let what = format!("{} {:?}", p.pattern, p.hosts);
        assert!(p.validated, "{what}: {:?}", p.error);
        match &p.hosts {
            // The server binds the namespace's own address, which exists
            // only inside it.
            Some(h) => {
                assert_eq!(h, "netns");
                assert_eq!(p.far_side.as_deref(), Some("server"), "{what}");
            }
            None => assert_eq!(p.far_side, None),
        }
    }
    let left = Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left in the namespace: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
