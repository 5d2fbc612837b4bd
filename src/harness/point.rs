//! A one-to-one point: the link set up, both peers run through
//! supervision, their reports turned into a [`PointRecord`], with the
//! floor measured beside it.

use crate::record::{Ci95, PointRecord, Throughput};
use crate::shm::floor::Floor;
use crate::shm::{WaitKind, unique_name};
use crate::transport::{LinkOpts, LinkSetup, Side, Transport, TransportKind};

use super::child::floors as child_floors;
use super::control::{PeerArgs, PeerReport};
use super::error::{HarnessError, settle};
use super::floors;
use super::multi::run_multi;
use super::spec::{Pattern, PointSpec, RunOpts, Strategy};
use super::supervise::{blame_helper, run_pair};
use super::validate::Codec;

/// Messages (or calls) per second and payload bytes per second, when
/// `measured` says there is something to divide.
pub(super) fn throughput_of(
    measured: bool,
    per_s: impl FnOnce() -> f64,
    size: usize,
) -> Option<Throughput> {
    measured.then(|| {
        let per_s = per_s();
        Throughput {
            msgs_per_s: per_s,
            bytes_per_s: per_s * size as f64,
        }
    })
}

/// A point's record before it is measured, and the CPUs its peers may use.
pub(super) fn new_record(spec: &PointSpec, opts: &RunOpts) -> (PointRecord, Vec<usize>) {
    let cpus = crate::record::allowed_cpus();
    // Peer processes (a manager's reqrep point's only peers are its
    // clients; its server is the manager's own process, counted among the
    // helpers; shm-queue's server is a peer).
    let peers = if spec.pattern.calls() && spec.strategy.helpers() > 0 {
        spec.producers
    } else {
        spec.producers + spec.consumers
    };
    let busy = peers + spec.strategy.helpers();
    let oversubscribed = busy > cpus.len();
    let pinned = opts.pin && peers <= cpus.len();
    let mut rec = PointRecord::unmeasured(
        spec.strategy.name(),
        spec.pattern.name(),
        spec.size,
        (spec.producers, spec.consumers),
        &spec.wait_name(),
    );
    rec.pinned = pinned;
    rec.oversubscribed = oversubscribed;
    if let Some((far, side)) = opts.far_for(spec.strategy, spec.pattern) {
        rec.hosts = Some(far.what.clone());
        rec.far_side = Some(side.name().to_owned());
    }
    rec.harness_ns_per_msg = Codec::new(spec.size).ok().map(|c| c.calibrate());
    if pinned {
        rec.cpus = cpus[..peers].to_vec();
        rec.cpu_relation = crate::record::cpu_relation(&rec.cpus);
    }
    (rec, cpus)
}

/// Fills a one-to-one point's figures from its peers' reports (A, B).
pub(super) fn fill_pair(rec: &mut PointRecord, spec: &PointSpec, a: &PeerReport, b: &PeerReport) {
    rec.pass();
    let measured = measured_side(spec, a, b);
    rec.messages = measured.messages;
    rec.elapsed_ns = measured.elapsed_ns;
    rec.latency_ns = measured.latency;
    rec.batched_mean_ns = a.batched_mean_ns;
    rec.throughput = throughput_of(
        measured.elapsed_ns > 0 && measured.messages > 0,
        || measured.messages as f64 * 1e9 / measured.elapsed_ns as f64,
        spec.size,
    );
    // Both peers' CPU over the messages each side handled.
    let total_msgs = if spec.pattern.round_trips() {
        (a.messages * 2).max(1)
    } else {
        measured.messages.max(1)
    };
    rec.cpu_ns_per_msg = Some((a.cpu_ns + b.cpu_ns) as f64 / total_msgs as f64);
    rec.measured_ns = Some(measured.measured_ns);
    rec.batches = measured.batches.clone();
    rec.ci95 = Ci95::of_point(rec);
    rec.histogram = measured.histogram.clone();
}

/// The report of the peer whose figures a one-to-one point keeps (the
/// initiator of round trips, a stream's receiver).
fn measured_side<'r>(spec: &PointSpec, a: &'r PeerReport, b: &'r PeerReport) -> &'r PeerReport {
    if spec.pattern.round_trips() { a } else { b }
}

/// Runs a one-to-one point with `attempt(warmup, iters)` until its timed
/// part reaches the profile's budget ([`RunOpts::grown_count`]): the
/// first attempt, with the profile's counts, tells how long a message
/// takes; a later one measures enough of them. At most six attempts (a
/// machine that slows down between two can leave one short).
pub(super) fn within_budget(
    spec: &PointSpec,
    opts: &RunOpts,
    (warmup, first): (u64, u64),
    mut attempt: impl FnMut(u64, u64) -> Result<(PeerReport, PeerReport), HarnessError>,
) -> Result<(PeerReport, PeerReport), HarnessError> {
    grow_to_budget(
        spec,
        opts,
        first,
        |n| attempt(warmup, n),
        |r| {
            r.as_ref()
                .ok()
                .map(|(a, b)| measured_side(spec, a, b).measured_ns)
        },
    )
}

/// Measures with `first` messages, then again with as many as
/// [`RunOpts::grown_count`] asks for, up to six attempts in all; `timed`
/// gives an attempt's timed part, `None` when it failed (which ends it).
pub(super) fn grow_to_budget<T>(
    spec: &PointSpec,
    opts: &RunOpts,
    first: u64,
    mut attempt: impl FnMut(u64) -> T,
    timed: impl Fn(&T) -> Option<u64>,
) -> T {
    let mut iters = first;
    let mut out = attempt(iters);
    for _ in 0..5 {
        let Some(t) = timed(&out) else { break };
        match opts.grown_count(spec, iters, t) {
            Some(n) => iters = n,
            None => break,
        }
        out = attempt(iters);
    }
    out
}

/// The options a point's (or a session's) link over `kind` is set up
/// with: its wait and message size, and room for 16 messages between two
/// processes, 256 in a channel many share.
pub(super) fn link_opts(spec: &PointSpec, opts: &RunOpts, kind: TransportKind) -> LinkOpts {
    let depth = if spec.pattern.is_multi() { 256 } else { 16 };
    LinkOpts {
        wait: spec.wait,
        capacity: crate::shm::floor::room_for(spec.size, depth),
        max_message: spec.size,
        exe: opts.exe.clone(),
        label: format!("bench-{}", kind.name()),
        helper_env: helper_env(opts),
        parties: spec
            .pattern
            .is_multi()
            .then_some((spec.producers, spec.consumers)),
        party: 0,
        listen: opts.near_listen(spec.strategy, spec.pattern),
        server_host: opts.far_server(spec.strategy, spec.pattern),
    }
}

/// The environment of a link's helpers: the fault asked of the one named
/// `manager server`, if any.
pub(super) fn helper_env(opts: &RunOpts) -> Vec<(String, String)> {
    crate::harness::fault::Fault::env_for(opts.fault.as_ref(), "manager server")
        .into_iter()
        .collect()
}

/// Measures one point. A failure is recorded in the result, never as a number.
pub fn run_point(spec: &PointSpec, opts: &RunOpts) -> PointRecord {
    let (mut rec, cpus) = new_record(spec, opts);
    let pinned = !rec.cpus.is_empty();
    let busy = if spec.pattern.calls() && spec.strategy.helpers() > 0 {
        rec.producers + spec.strategy.helpers()
    } else {
        rec.producers + rec.consumers + spec.strategy.helpers()
    };
    let (warmup, iters) = opts.first_count(spec);
    if rec.oversubscribed && spec.strategy.has_wait() && spec.wait.kind == WaitKind::Spin {
        rec.skip(format!(
            "pure spin with {busy} busy processes on {} CPUs measures the scheduler, not the channel; \
             see the spin-yield, spin-park and park points",
            cpus.len()
        ));
        return rec;
    }
    if spec.pattern.is_multi() {
        return run_multi(spec, opts, rec, &cpus);
    }
    let template = rec;
    floors::tried(|| {
        let mut rec = template.clone();
        let before = floors::beside(spec, opts, &rec.cpus);
        match measure_pair(spec, opts, &cpus, pinned, (warmup, iters)) {
            Err(e) => settle(&mut rec, &e),
            Ok((a, b)) => fill_pair(&mut rec, spec, &a, &b),
        }
        if let Some(before) = before
            && rec.status == crate::record::Status::Ok
            && let Some(after) = floors::beside(spec, opts, &rec.cpus)
        {
            rec.adjacent_floors = vec![before, after];
        }
        rec
    })
}

/// Both peers of a one-to-one point (a floor or a transport), measured for
/// the budget ([`within_budget`]).
fn measure_pair(
    spec: &PointSpec,
    opts: &RunOpts,
    cpus: &[usize],
    pinned: bool,
    (warmup, iters): (u64, u64),
) -> Result<(PeerReport, PeerReport), HarnessError> {
    let make_args = |addr: &str, side: Side, counts: (u64, u64)| {
        let cpu = pinned.then(|| cpus[if side == Side::A { 0 } else { 1 }]);
        PeerArgs::for_point(spec, addr, side, 0, counts, cpu)
    };
    match spec.strategy {
        Strategy::Floor => {
            let measurable = match spec.pattern {
                Pattern::Pingpong => true,
                Pattern::Stream => spec.wait.kind == WaitKind::Spin,
                Pattern::PingpongLate => spec.wait.kind == WaitKind::Park,
                _ => false,
            };
            if !measurable {
                Err(HarnessError::Setup(
                    "the floor is measured with pingpong, with stream when it spins, and with \
                     pingpong-late when it parks"
                        .to_owned(),
                ))
            } else {
                within_budget(spec, opts, (warmup, iters), |w, n| {
                    run_floor(spec, opts, |addr, side| make_args(addr, side, (w, n)))
                })
            }
        }
        Strategy::FloorCopy => {
            if spec.pattern == Pattern::Pingpong && spec.wait.kind == WaitKind::Spin {
                within_budget(spec, opts, (warmup, iters), |w, n| {
                    run_floor(spec, opts, |addr, side| make_args(addr, side, (w, n)))
                })
            } else {
                Err(HarnessError::Setup(
                    "the copy floor of a round trip is measured with pingpong, spinning".to_owned(),
                ))
            }
        }
        Strategy::Transport(kind) => {
            let link = link_opts(spec, opts, kind);
            within_budget(spec, opts, (warmup, iters), |w, n| {
                with_transport!(kind, T => match T::setup(&link) {
                    Err(e) => Err(HarnessError::Setup(format!("setting up the link: {e}"))),
                    Ok((mut setup, ep)) => run_pair(
                        opts,
                        [
                            make_args(&ep.addr, Side::A, (w, n)),
                            make_args(&ep.addr, Side::B, (w, n)),
                        ],
                        &ep.inherit,
                        &ep.env,
                        &mut || setup.children_started(),
                    )
                    .map_err(|e| blame_helper(&mut setup, e)),
                })
            })
        }
    }
}

/// Both peers of a floor point (`spec.strategy` is a floor).
pub(super) fn run_floor(
    spec: &PointSpec,
    opts: &RunOpts,
    make_args: impl Fn(&str, Side) -> PeerArgs,
) -> Result<(PeerReport, PeerReport), HarnessError> {
    let name = unique_name("floor");
    let kind = child_floors::kind_for(
        spec.strategy == Strategy::FloorCopy,
        spec.pattern,
        spec.wait.kind == WaitKind::Park,
    );
    let floor =
        Floor::create(&name, kind, spec.size).map_err(|e| HarnessError::Setup(e.to_string()))?;
    let r = run_pair(
        opts,
        [make_args(&name, Side::A), make_args(&name, Side::B)],
        &[],
        &[],
        &mut || {},
    );
    drop(floor);
    r
}
