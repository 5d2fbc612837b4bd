//! Faults: a peer killed with SIGKILL at a random moment, many times over
//! each family of strategies (shared memory, kernel sockets and pipes,
//! raw-sync, manager, iceoryx2); a peer killed on purpose at each phase of
//! its life on every path a point takes (one-to-one, multi-party at
//! several counts, reqrep, --repeat, sessions, task farms, primitives);
//! and the coordinator itself killed. The point must fail with the killed
//! peer named, its pid and its signal, well within its deadline; nothing
//! may hang, no process may be left running or unreaped, nothing may be
//! left in /dev/shm.
//!
//! `IPCBENCH_KILLS` sets the random kills per family (50 by default;
//! raw-sync at most 10).
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{HANG, bin, kills, shm_files};
use ipcbench::harness::error::HarnessError;
use ipcbench::harness::{Pattern, PointSpec, RunOpts, Session, Strategy};
use ipcbench::shm::Wait;
use ipcbench::transport::TransportKind;

/// The deadline of every point here: a fault must be reported well before.
const DEADLINE: Duration = Duration::from_secs(10);

fn opts() -> RunOpts {
    RunOpts {
        exe: bin().into(),
        warmup: 20,
        pingpong_iters: 300,
        stream_bytes: 1 << 20,
        stream_messages: (500, 5_000),
        deadline: DEADLINE,
        pin: true,
        fixed_count: None,
        // Counts, not time: these tests check what is measured, not how long.
        budget: Duration::ZERO,
        fault: None,
        far: None,
    }
}

/// Taken by the tests that look for what this process left in /dev/shm:
/// run side by side, one would find the other's files.
static LEFTOVERS_CHECKED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

struct Family {
    name: &'static str,
    specs: Vec<(PointSpec, u64)>,
    /// At most this many kills, whatever `IPCBENCH_KILLS` says.
    most: u64,
}

fn pingpong(kind: TransportKind, wait: Wait) -> PointSpec {
    PointSpec::one_to_one(Strategy::Transport(kind), Pattern::Pingpong, 64, wait)
}

fn mpmc_2x2() -> PointSpec {
    PointSpec {
        strategy: Strategy::Transport(TransportKind::ShmQueue),
        pattern: Pattern::Mpmc,
        size: 64,
        wait: Wait::SPIN_PARK,
        producers: 2,
        consumers: 2,
    }
}

fn families() -> Vec<Family> {
    // The optional strategies' families are pushed below.
    #[cfg_attr(not(any(feature = "zeromq", feature = "iceoryx2")), allow(unused_mut))]
    let mut f = vec![
        Family {
            name: "shm",
            specs: vec![
                (pingpong(TransportKind::ShmRing, Wait::SPIN_PARK), 2_000),
                (pingpong(TransportKind::ShmPipe, Wait::PARK), 500),
                (mpmc_2x2(), 4_000),
            ],
            most: u64::MAX,
        },
        Family {
            name: "kernel",
            specs: vec![
                (pingpong(TransportKind::OsPipe, Wait::PARK), 200),
                (pingpong(TransportKind::UnixStream, Wait::PARK), 200),
                (pingpong(TransportKind::Tcp, Wait::PARK), 200),
                (pingpong(TransportKind::UnixSeqpacket, Wait::PARK), 200),
            ],
            most: u64::MAX,
        },
        // Each kill costs a raw-sync session about 2 s (its waits run in
        // 1 s slices), where the others cost milliseconds.
        Family {
            name: "raw-sync",
            specs: vec![(pingpong(TransportKind::RawSync, Wait::PARK), 200)],
            most: 10,
        },
        Family {
            name: "manager",
            specs: vec![
                (pingpong(TransportKind::ManagerUnix, Wait::PARK), 100),
                (pingpong(TransportKind::ManagerTcp, Wait::PARK), 100),
            ],
            most: u64::MAX,
        },
    ];
    #[cfg(feature = "zeromq")]
    f.push(Family {
        name: "zeromq",
        specs: vec![
            (pingpong(TransportKind::ZmqIpc, Wait::PARK), 200),
            (pingpong(TransportKind::ZmqTcp, Wait::PARK), 200),
        ],
        most: u64::MAX,
    });
    #[cfg(feature = "iceoryx2")]
    f.push(Family {
        name: "iceoryx2",
        specs: vec![(pingpong(TransportKind::Iceoryx2, Wait::SPIN_YIELD), 500)],
        most: u64::MAX,
    });
    f
}

/// A small generator for the moments and the victims.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = ipcbench::harness::validate::mix64(self.0);
        self.0
    }
}

#[test]
fn a_peer_killed_at_a_random_moment_fails_its_point_with_its_name() {
    let _alone = LEFTOVERS_CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let o = opts();
    for family in families() {
        let per = kills().min(family.most);
        let t = Instant::now();
        let mut slowest = Duration::ZERO;
        for i in 0..per {
            let (spec, n) = family.specs[i as usize % family.specs.len()];
            let what = format!(
                "{} kill {i} ({} {})",
                family.name,
                spec.strategy.name(),
                spec.pattern.name()
            );
            let mut s = Session::start(&spec, &o).unwrap_or_else(|e| panic!("{what}: start: {e}"));
            let pids = s.peer_pids();
            let names = s.peer_names();
            let v = (rng.next() % pids.len() as u64) as usize;
            let victim = pids[v];
            let delay = Duration::from_micros(rng.next() % 20_000);
            let killer = std::thread::spawn(move || {
                std::thread::sleep(delay);
                // SAFETY: a signal to our own child.
                unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                Instant::now()
            });
            let started = Instant::now();
            let err = loop {
                match s.round(n) {
                    Ok(_) => assert!(
                        started.elapsed() < DEADLINE,
                        "{what}: rounds go on after the kill"
                    ),
                    Err(e) => break e,
                }
            };
            let killed_at = killer.join().unwrap();
            let took = killed_at.elapsed();
            slowest = slowest.max(took);
            drop(s);
            assert!(
                matches!(&err, HarnessError::PeerGone { role, pid, signal: Some(libc::SIGKILL), .. }
                    if *pid == victim && *role == names[v]),
                "{what}: the error does not name the killed peer {} (pid {victim}): {err:?}",
                names[v]
            );
            let err = err.to_string();
            assert!(
                err.contains(&format!("peer {} (pid {victim})", names[v]))
                    && err.contains("SIGKILL"),
                "{what}: {err}"
            );
            assert!(
                took < DEADLINE / 2,
                "{what}: reported {took:?} after the kill"
            );
            for p in &pids {
                assert!(
                    !alive(*p),
                    "{what}: peer pid {p} still there (running or unreaped)"
                );
            }
        }
        eprintln!(
            "{}: {per} kills in {:?}, slowest report {slowest:?} after its kill",
            family.name,
            t.elapsed()
        );
    }
    let mine = format!("ipcbench-{}-", std::process::id());
    assert!(shm_files(&mine).is_empty(), "{:?}", shm_files(&mine));
    assert!(
        shm_files("ipcbench_iox2_").is_empty(),
        "{:?}",
        shm_files("ipcbench_iox2_")
    );
}

/// The coordinator killed in the middle of a run: its peers notice (the
/// parent-death signal) and are gone within a second; `ipcbench clean`
/// removes what the coordinator left in /dev/shm.
#[test]
fn peers_of_a_killed_coordinator_exit_and_clean_removes_what_is_left() {
    let out = std::env::temp_dir().join(format!("ipcbench-faults-{}.json", std::process::id()));
    let mut run = std::process::Command::new(bin())
        .args([
            "run",
            "--quick",
            "--no-python",
            "--no-report",
            "--transports",
            "shm-ring,shm-queue",
            "--patterns",
            "stream,mpmc",
            "--output",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let coordinator = run.id();
    // Wait until it has peers (children), then kill it.
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let t = Instant::now();
    let peers = loop {
        let c = children(coordinator);
        if !c.is_empty() {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run started no peer"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    std::thread::sleep(Duration::from_millis(5));
    run.kill().unwrap();
    run.wait().unwrap();
    let killed = Instant::now();
    for p in &peers {
        while alive(*p) {
            // Reaped by init once they exit; a zombie would still answer
            // signal 0, so poll the state.
            let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            if state.contains(") Z ") {
                break;
            }
            // A hang detector: they go within microseconds (printed below).
            assert!(
                killed.elapsed() < HANG,
                "peer {p} still running {HANG:?} after its coordinator was killed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    eprintln!(
        "{} peers gone {:?} after the coordinator",
        peers.len(),
        killed.elapsed()
    );
    let left = shm_files(&format!("ipcbench-{coordinator}-"));
    // Killed in the middle of a shared-memory point, the coordinator left
    // its regions: without them the rest of this test would pass on nothing.
    assert!(
        !left.is_empty(),
        "the coordinator, killed during a point, left nothing in /dev/shm for clean to remove"
    );
    let clean = std::process::Command::new(bin())
        .arg("clean")
        .output()
        .unwrap();
    assert!(clean.status.success(), "{clean:?}");
    let after = shm_files(&format!("ipcbench-{coordinator}-"));
    eprintln!(
        "the killed coordinator left {} file(s) in /dev/shm; clean removed them",
        left.len()
    );
    assert!(after.is_empty(), "clean left {after:?} (before: {left:?})");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(out.with_extension("csv"));
}

/// A producer killed in the middle of a long mpmc round: the consumers see
/// it die and stop, which leaves the other producer waiting for room that
/// never comes. The round must end at once with the killed producer named,
/// not at its deadline.
#[test]
fn a_producer_killed_mid_round_is_reported_though_its_partner_waits() {
    let mut s = Session::start(&mpmc_2x2(), &opts()).expect("session");
    let (pids, names) = (s.peer_pids(), s.peer_names());
    let victim = pids[1];
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        Instant::now()
    });
    // Far more messages than 30 ms carry: the kill lands inside the round.
    let err = s
        .round(200_000_000)
        .expect_err("a round with a producer killed");
    let took = killer.join().unwrap().elapsed();
    drop(s);
    eprintln!("reported {took:?} after the kill: {err}");
    assert!(
        matches!(&err, HarnessError::PeerGone { pid, signal: Some(libc::SIGKILL), .. } if *pid == victim),
        "the error does not name the killed {}: {err:?}",
        names[1]
    );
    let err = err.to_string();
    assert!(
        err.contains(&format!("peer {} (pid {victim})", names[1])) && err.contains("SIGKILL"),
        "{err}"
    );
    assert!(
        took < DEADLINE / 2,
        "reported {took:?} after the kill: {err}"
    );
    for p in &pids {
        assert!(!alive(*p), "peer pid {p} still there");
    }
}

/// Runs a point with the options given; its error, or `None` if it passed.
type RunWith = Box<dyn Fn(&RunOpts) -> Option<String>>;

/// One way of running a point, and the names of its peers.
struct Path {
    what: String,
    peers: Vec<String>,
    run: RunWith,
}

fn point_path(spec: PointSpec, count: u64, repeat: usize) -> Path {
    let mut peers = Vec::new();
    if spec.pattern.calls() {
        // A manager's server is a helper of the link, not a peer.
        if spec.strategy.helpers() == 0 {
            peers.push("server".to_owned());
        }
        peers.extend((0..spec.producers).map(|i| format!("client {i}")));
    } else if spec.pattern.is_multi() {
        peers.extend((0..spec.producers).map(|i| format!("producer {i}")));
        peers.extend((0..spec.consumers).map(|i| format!("consumer {i}")));
    } else {
        peers.extend(["A".to_owned(), "B".to_owned()]);
    }
    Path {
        what: format!(
            "{} {} {}x{}{}",
            spec.strategy.name(),
            spec.pattern.name(),
            spec.producers,
            spec.consumers,
            if repeat > 1 { " --repeat" } else { "" }
        ),
        peers,
        run: Box::new(move |o| {
            let o = RunOpts {
                fixed_count: Some(count),
                ..o.clone()
            };
            let rec = ipcbench::harness::run::median_of(repeat, || {
                ipcbench::harness::run_point(&spec, &o)
            });
            rec.error
        }),
    }
}

fn session_path(spec: PointSpec, count: u64) -> Path {
    let mut peers: Vec<String> = (0..spec.producers).map(|i| format!("A{i}")).collect();
    peers.extend((0..spec.consumers).map(|i| format!("B{i}")));
    Path {
        what: format!("session {} {}", spec.strategy.name(), spec.pattern.name()),
        peers,
        run: Box::new(move |o| {
            let run = || -> Result<(), HarnessError> {
                let mut s = Session::start(&spec, o)?;
                s.round(count)?;
                s.round(count)?;
                // The end is part of the path: consumers report only there.
                s.finish()
            };
            run().err().map(|e| e.to_string())
        }),
    }
}

fn farm_path(kind: TransportKind, wait: Wait, count: u64) -> Path {
    use ipcbench::harness::pool::{PoolSpec, run_point};
    let spec = PoolSpec {
        kind,
        cpu_work: false,
        workers: 2,
        wait,
    };
    Path {
        what: format!("task farm {}", kind.name()),
        peers: vec!["worker 0".into(), "worker 1".into()],
        run: Box::new(move |o| {
            let o = RunOpts {
                fixed_count: Some(count),
                ..o.clone()
            };
            run_point(&spec, &o).error
        }),
    }
}

fn sync_path(prim: ipcbench::harness::sync::Prim, count: u64) -> Path {
    use ipcbench::harness::sync::{SyncSpec, run_point};
    let spec = SyncSpec {
        prim,
        procs: 2,
        wait: Wait::SPIN_PARK,
        permits: 1,
    };
    Path {
        what: format!("sync {}", prim.name()),
        peers: vec!["process 0".into(), "process 1".into()],
        run: Box::new(move |o| {
            let o = RunOpts {
                fixed_count: Some(count),
                ..o.clone()
            };
            run_point(&spec, &o).error
        }),
    }
}

fn multi(
    kind: TransportKind,
    pattern: Pattern,
    (producers, consumers): (usize, usize),
) -> PointSpec {
    PointSpec {
        strategy: Strategy::Transport(kind),
        pattern,
        size: 64,
        wait: Wait::SPIN_PARK,
        producers,
        consumers,
    }
}

/// Whether `e` says of the one process `victim`, in one statement, its
/// pid and that SIGKILL ended it: `<victim> (pid <N>) was ended by signal
/// 9 (SIGKILL)` (a peer's name comes after `peer `).
fn names_killed(e: &str, victim: &str) -> bool {
    let head = format!("{victim} (pid ");
    e.match_indices(&head).any(|(i, _)| {
        let rest = &e[i + head.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(") was ended by signal 9 (SIGKILL)")
    })
}

/// Every path a point can take through the coordinator, with a peer killed
/// on purpose at every phase of its life (before `ready`, between `ready`
/// and `go`, at `go`, while measuring, before its report): the point fails
/// with that peer named, its pid and SIGKILL, before the deadline would
/// have ended it; nothing is left running.
#[test]
fn a_peer_killed_at_every_phase_is_named_on_every_path() {
    use TransportKind::*;
    use ipcbench::harness::fault::{Fault, Phase};
    use ipcbench::harness::sync::Prim;
    let _alone = LEFTOVERS_CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let one =
        |kind, pattern, wait| PointSpec::one_to_one(Strategy::Transport(kind), pattern, 64, wait);
    #[allow(unused_mut)]
    let mut paths = vec![
        point_path(one(ShmRing, Pattern::Pingpong, Wait::SPIN_PARK), 50_000, 1),
        point_path(one(OsPipe, Pattern::Stream, Wait::PARK), 100_000, 1),
        point_path(one(UnixStream, Pattern::Pingpong, Wait::PARK), 5_000, 3),
        point_path(one(ShmRing, Pattern::Rate, Wait::SPIN_PARK), 100_000, 1),
        point_path(multi(ShmQueue, Pattern::FanIn, (2, 1)), 100_000, 1),
        point_path(multi(ShmQueue, Pattern::FanOut, (1, 2)), 100_000, 1),
        point_path(multi(ShmQueue, Pattern::Mpmc, (1, 1)), 100_000, 1),
        point_path(multi(ShmQueue, Pattern::Mpmc, (2, 2)), 100_000, 1),
        point_path(multi(ShmQueue, Pattern::Mpmc, (4, 4)), 100_000, 1),
        point_path(multi(ManagerUnix, Pattern::Mpmc, (2, 2)), 10_000, 1),
        // Calls are round trips, three processes on two CPUs: a count a
        // loaded machine finishes well within the deadline when the victim
        // dies only at its report.
        point_path(multi(ManagerUnix, Pattern::Reqrep, (2, 1)), 3_000, 1),
        point_path(multi(ShmQueue, Pattern::Reqrep, (2, 1)), 5_000, 1),
        session_path(one(ShmRing, Pattern::Pingpong, Wait::SPIN_PARK), 20_000),
        session_path(multi(ShmQueue, Pattern::Mpmc, (2, 2)), 50_000),
        farm_path(ShmQueue, Wait::SPIN_PARK, 50_000),
        farm_path(ManagerUnix, Wait::PARK, 10_000),
        farm_path(UnixStream, Wait::PARK, 20_000),
        sync_path(Prim::Lock, 100_000),
        sync_path(Prim::Event, 50_000),
        sync_path(Prim::Joinable, 20_000),
    ];
    // ZeroMQ's PUSH/PULL channels: a sender or a receiver dying must not
    // leave the others waiting for an end that never comes; nor a client
    // or the server of its calls (REQ/ROUTER), nor a worker of its farm
    // (DEALER/ROUTER).
    #[cfg(feature = "zeromq")]
    paths.extend([
        point_path(multi(ZmqIpc, Pattern::Mpmc, (2, 2)), 100_000, 1),
        point_path(multi(ZmqTcp, Pattern::FanIn, (2, 1)), 100_000, 1),
        point_path(multi(ZmqIpc, Pattern::Reqrep, (2, 1)), 3_000, 1),
        session_path(multi(ZmqIpc, Pattern::Mpmc, (2, 2)), 50_000),
        farm_path(ZmqTcp, Wait::PARK, 20_000),
    ]);
    let base = opts();
    let mut failures = Vec::new();
    let t = Instant::now();
    let mut runs = 0;
    let mut die = |path: &Path, victim: &str, at: Phase| {
        let o = RunOpts {
            fault: Some(Fault {
                peer: victim.to_owned(),
                at,
            }),
            ..base.clone()
        };
        let started = Instant::now();
        let err = (path.run)(&o);
        let took = started.elapsed();
        runs += 1;
        let what = format!("{} with {victim} killed at {at}", path.what);
        match err {
            None => failures.push(format!("{what}: passed")),
            Some(e) if !names_killed(&e, victim) => failures.push(format!("{what}: {e}")),
            // Ended by the deadline, not by the death: the death went unseen.
            Some(e) if took >= DEADLINE || e.contains("deadline") => failures.push(format!(
                "{what}: reported only at the deadline ({took:?}): {e}"
            )),
            Some(_) => {}
        }
    };
    for (k, path) in paths.iter().enumerate() {
        for (j, at) in Phase::all(Duration::from_millis(1)).into_iter().enumerate() {
            die(path, &path.peers[(k + j) % path.peers.len()], at);
        }
    }
    // A manager's server, a helper of the link rather than a peer, dies as
    // it starts, as it starts serving, or 100 ms into the point.
    let server_paths = vec![
        point_path(one(ManagerUnix, Pattern::Pingpong, Wait::PARK), 200_000, 1),
        point_path(multi(ManagerTcp, Pattern::Mpmc, (2, 2)), 1_000_000, 1),
        point_path(multi(ManagerUnix, Pattern::Reqrep, (2, 1)), 200_000, 1),
        session_path(one(ManagerUnix, Pattern::Stream, Wait::PARK), 1_000_000),
        farm_path(ManagerUnix, Wait::PARK, 200_000),
    ];
    for path in &server_paths {
        for at in [
            Phase::Start,
            Phase::Go,
            Phase::After(Duration::from_millis(100)),
        ] {
            die(path, "manager server", at);
        }
    }
    eprintln!("{runs} deaths on purpose in {:?}", t.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mine = format!("ipcbench-{}-", std::process::id());
    assert!(shm_files(&mine).is_empty(), "{:?}", shm_files(&mine));
}
