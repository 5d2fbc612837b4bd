//! A one-to-one point: the link set up, both peers run through
//! supervision, their reports turned into a [`PointRecord`], with the
//! floor measured beside it.

use crate::record::{PointRecord, Throughput};
use crate::shm::floor::Floor;
use crate::shm::{Wait, WaitKind, unique_name};
use crate::transport::{LinkOpts, LinkSetup, Side, Transport, TransportKind};

use super::child::floors;
use super::control::{PeerArgs, PeerReport};
use super::error::{HarnessError, settle};
use super::multi::run_multi;
use super::spec::{Pattern, PointSpec, RunOpts, Strategy};
use super::supervise::run_pair;
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
    let peers = if spec.pattern == Pattern::Reqrep && spec.strategy.helpers() > 0 {
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
        spec.wait_name(),
    );
    rec.pinned = pinned;
    rec.oversubscribed = oversubscribed;
    rec.harness_ns_per_msg = Codec::new(spec.size).ok().map(|c| c.calibrate());
    if pinned {
        rec.cpus = cpus[..peers].to_vec();
    }
    (rec, cpus)
}

/// Fills a one-to-one point's figures from its peers' reports (A, B).
pub(super) fn fill_pair(rec: &mut PointRecord, spec: &PointSpec, a: &PeerReport, b: &PeerReport) {
    rec.pass();
    let measured = if spec.pattern.round_trips() { a } else { b };
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
}

/// The buffer a point's link gets for `depth` messages of `size` bytes:
/// at least 64 KiB and at most 4 MiB, the copy floor's budget. Deeper
/// buffers spill out of the caches: over a 16 MiB ring a 1 MiB round trip
/// took 1.8× as long as over a 4 MiB one, on the VM this was measured on.
fn link_capacity(size: usize, depth: usize) -> usize {
    size.saturating_mul(depth).clamp(64 << 10, 4 << 20)
}

/// The options a point's (or a session's) link over `kind` is set up
/// with: its wait and message size, and room for 16 messages between two
/// processes, 256 in a channel many share.
pub(super) fn link_opts(spec: &PointSpec, opts: &RunOpts, kind: TransportKind) -> LinkOpts {
    let depth = if spec.pattern.is_multi() { 256 } else { 16 };
    LinkOpts {
        wait: spec.wait,
        capacity: link_capacity(spec.size, depth),
        max_message: spec.size,
        exe: opts.exe.clone(),
        label: format!("bench-{}", kind.name()),
    }
}

/// Measures one point. A failure is recorded in the result, never as a number.
pub fn run_point(spec: &PointSpec, opts: &RunOpts) -> PointRecord {
    let (mut rec, cpus) = new_record(spec, opts);
    let pinned = !rec.cpus.is_empty();
    let busy = if spec.pattern == Pattern::Reqrep && spec.strategy.helpers() > 0 {
        rec.producers + spec.strategy.helpers()
    } else {
        rec.producers + rec.consumers + spec.strategy.helpers()
    };
    let (warmup, iters) = opts.counts(spec);
    if rec.oversubscribed && spec.strategy.has_wait() && spec.wait.kind == WaitKind::Spin {
        rec.skip(format!(
            "pure spin with {busy} busy processes on {} CPUs measures the scheduler, not the channel; \
             see the spin-yield, spin-park and park points",
            cpus.len()
        ));
        return rec;
    }
    let make_args = |addr: &str, side: Side| {
        let cpu = pinned.then(|| cpus[if side == Side::A { 0 } else { 1 }]);
        PeerArgs::for_point(spec, addr, side, 0, (warmup, iters), cpu)
    };
    if spec.pattern.is_multi() {
        return run_multi(spec, opts, rec, &cpus, warmup, iters);
    }
    let before = adjacent_floor(spec, opts, &rec.cpus);
    let result = match spec.strategy {
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
                run_floor(spec, opts, make_args)
            }
        }
        Strategy::FloorCopy => {
            if spec.pattern == Pattern::Pingpong && spec.wait.kind == WaitKind::Spin {
                run_floor(spec, opts, make_args)
            } else {
                Err(HarnessError::Setup(
                    "the copy floor of a round trip is measured with pingpong, spinning".to_owned(),
                ))
            }
        }
        Strategy::Transport(kind) => {
            let link = link_opts(spec, opts, kind);
            with_transport!(kind, T => match T::setup(&link) {
                Err(e) => Err(HarnessError::Setup(format!("setting up the link: {e}"))),
                Ok((mut setup, ep)) => run_pair(
                    opts,
                    [make_args(&ep.addr, Side::A), make_args(&ep.addr, Side::B)],
                    &ep.inherit,
                    &ep.env,
                    &mut || setup.children_started(),
                ),
            })
        }
    };
    match result {
        Err(e) => settle(&mut rec, &e),
        Ok((a, b)) => fill_pair(&mut rec, spec, &a, &b),
    }
    if let Some(before) = before
        && rec.status == crate::record::Status::Ok
        && let Some(after) = adjacent_floor(spec, opts, &rec.cpus)
    {
        rec.adjacent_floors = vec![before, after];
    }
    rec
}

/// Both peers of a floor point (`spec.strategy` is a floor).
fn run_floor(
    spec: &PointSpec,
    opts: &RunOpts,
    make_args: impl Fn(&str, Side) -> PeerArgs,
) -> Result<(PeerReport, PeerReport), HarnessError> {
    let name = unique_name("floor");
    let kind = floors::kind_for(
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

/// The key figure of the floor that matches a one-to-one pingpong or
/// stream point (the spin floor's median round trip; the copy floor's
/// messages per second at the point's size), measured briefly on the
/// point's CPUs. `None` for other points, unpinned ones, or when the
/// floor could not be measured (the point stands without it).
fn adjacent_floor(spec: &PointSpec, opts: &RunOpts, cpus: &[usize]) -> Option<f64> {
    // The copy floor of a round trip has the spin floor beside it too, so
    // that a strategy's multiple of it can be read off the two ratios to
    // the spin floor taken at their own moments.
    if spec.strategy == Strategy::Floor {
        return None;
    }
    if cpus.len() != 2 || opts.fixed_count.is_some() {
        return None;
    }
    let floor = match spec.pattern {
        Pattern::Pingpong => {
            PointSpec::one_to_one(Strategy::Floor, Pattern::Pingpong, 8, Wait::SPIN)
        }
        Pattern::Stream => {
            PointSpec::one_to_one(Strategy::Floor, Pattern::Stream, spec.size, Wait::SPIN)
        }
        _ => return None,
    };
    // An eighth of a point's count: long enough for a median, short
    // enough to sit right beside the point.
    let (_, iters) = opts.counts(&floor);
    let cap = if spec.pattern == Pattern::Pingpong {
        5_000
    } else {
        100_000
    };
    let iters = (iters / 8).clamp(200, cap);
    let warmup = (iters / 4).max(1);
    let make_args = |addr: &str, side: Side| {
        let cpu = cpus[if side == Side::A { 0 } else { 1 }];
        PeerArgs::for_point(&floor, addr, side, 0, (warmup, iters), Some(cpu))
    };
    let (a, b) = run_floor(&floor, opts, make_args).ok()?;
    let mut rec =
        PointRecord::unmeasured("floor", floor.pattern.name(), floor.size, (1, 1), "spin");
    fill_pair(&mut rec, &floor, &a, &b);
    rec.key_figure()
}
