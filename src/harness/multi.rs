//! Many processes on one channel: fan-in, fan-out and mpmc (producers on
//! side A, consumers on side B, exactly-once checked across consumers by
//! the coordinator), and reqrep (clients calling a server's dictionary).

use std::time::Instant;

use crate::record::PointRecord;
use crate::transport::{LinkSetup, Shared, Side, Transport, TransportKind};

use super::child::bodies;
use super::control::{PeerArgs, PeerReport};
use super::error::{HarnessError, settle};
use super::point::{grow_to_budget, link_opts, throughput_of};
use super::shm_dict;
use super::spec::{PointSpec, RunOpts, Strategy};
use super::supervise::{blame_helper, line_up, reports, spawn, supervised};
use super::validate::Codec;
use super::validate::mix64;

/// The strategies whose channels several processes share, as a list for
/// an error message.
pub(super) fn sharing_strategies() -> String {
    let names: Vec<&str> = TransportKind::ALL
        .iter()
        .filter(|k| k.caps().multi_party())
        .map(|k| k.name())
        .collect();
    names.join(", ")
}

/// Runs a fan-in, fan-out, mpmc or reqrep point for the run's time
/// budget: first with a few messages ([`RunOpts::first_count`]), then
/// again with as many as the budget holds (up to six attempts, as a
/// one-to-one point). Its measured time is its elapsed time: first to
/// last message received (or call answered).
pub(super) fn run_multi(
    spec: &PointSpec,
    opts: &RunOpts,
    rec: PointRecord,
    cpus: &[usize],
) -> PointRecord {
    let ok = |r: &PointRecord| r.status == crate::record::Status::Ok;
    let (warmup, first) = opts.first_count(spec);
    let mut out = grow_to_budget(
        spec,
        opts,
        first,
        |n| {
            // Grown attempts warm up as the profile says, within a tenth.
            let w = if n == first {
                warmup
            } else {
                opts.counts(spec).0.min(n / 10).max(1)
            };
            multi_once(spec, opts, rec.clone(), cpus, (w, n), 0.0)
        },
        |r| ok(r).then_some(r.elapsed_ns),
    );
    if ok(&out) {
        out.measured_ns = Some(out.elapsed_ns);
    }
    out
}

/// Clients calling a server's dictionary in open loop (`reqrep-rate`):
/// `per_s` calls per second offered in all, each client its share; each
/// client makes `warmup + iters` set-and-get pairs.
pub(super) fn calls_at(
    spec: &PointSpec,
    opts: &RunOpts,
    rec: PointRecord,
    cpus: &[usize],
    counts: (u64, u64),
    per_s: f64,
) -> PointRecord {
    let mut out = multi_once(spec, opts, rec, cpus, counts, per_s);
    if out.status == crate::record::Status::Ok {
        out.measured_ns = Some(out.elapsed_ns);
    }
    out
}

/// One attempt at a multi-party point: producers on side A and consumers
/// on side B of one shared channel (clients and a server for reqrep); the
/// coordinator ends the stream once every producer has left, then checks
/// exactly-once across consumers. Clients call at `per_s` calls per
/// second in all when it is not 0 (`reqrep-rate`).
fn multi_once(
    spec: &PointSpec,
    opts: &RunOpts,
    mut rec: PointRecord,
    cpus: &[usize],
    (warmup, iters): (u64, u64),
    per_s: f64,
) -> PointRecord {
    let Strategy::Transport(kind) = spec.strategy else {
        rec.fail("the floor is measured with pingpong");
        return rec;
    };
    let reqrep = spec.pattern.calls();
    let caps = kind.caps();
    if !caps.multi_party() {
        rec.fail(format!(
            "{} links two processes; fan-in, fan-out, mpmc and reqrep run over {}",
            kind.name(),
            sharing_strategies()
        ));
        return rec;
    }
    if spec.pattern.manager_object() && caps.shared != Shared::Server {
        let managers: Vec<&str> = TransportKind::ALL
            .iter()
            .filter(|k| k.caps().shared == Shared::Server)
            .map(|k| k.name())
            .collect();
        rec.fail(format!(
            "{} calls a manager's objects, which {} does not serve; it runs over {}",
            spec.pattern.name(),
            kind.name(),
            managers.join(", ")
        ));
        return rec;
    }
    if reqrep && !caps.serves_calls() {
        rec.fail(format!(
            "{} has no dictionary for clients to call; reqrep runs over {}",
            kind.name(),
            TransportKind::ALL
                .iter()
                .filter(|k| k.caps().serves_calls())
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return rec;
    }
    if reqrep && matches!(caps.shared, Shared::Memory | Shared::Sockets) {
        return run_served_reqrep(spec, opts, rec, cpus, (warmup, iters), per_s);
    }
    if let Some(limit) = caps.shared_limit
        && spec.size > limit
    {
        rec.fail(format!(
            "{} shared by several processes carries messages of at most {limit} bytes",
            kind.name()
        ));
        return rec;
    }
    let link = link_opts(spec, opts, kind);
    let (np, nc) = (spec.producers, if reqrep { 0 } else { spec.consumers });
    let pinned = !rec.cpus.is_empty();
    let args = |addr: &str, side: Side, i: usize| {
        let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
        let mut a = PeerArgs::for_point(spec, addr, side, i, (warmup, iters), cpu);
        a.rate = per_s / np.max(1) as f64;
        a
    };
    let outcome: Result<(Vec<PeerReport>, Vec<PeerReport>), HarnessError> = with_transport!(kind, T => {
        match T::setup(&link) {
            Err(e) => Err(HarnessError::Setup(format!("setting up the link: {e}"))),
            Ok((mut setup, ep)) => (|| {
                let deadline = Instant::now() + opts.deadline;
                // Consumers first: they are told `go` first.
                let mut peers = (0..nc)
                    .map(|i| spawn(opts, &args(&ep.addr, Side::B, i), &ep.inherit, &ep.env, &format!("consumer {i}")))
                    .chain((0..np).map(|i| spawn(opts, &args(&ep.addr, Side::A, i), &ep.inherit, &ep.env, &format!("{} {i}", if reqrep { "client" } else { "producer" }))))
                    .collect::<Result<Vec<_>, _>>()?;
                supervised(&mut peers, |peers| {
                    line_up(peers, deadline, || setup.children_started())?;
                    let (consumers, producers) = peers.split_at_mut(nc);
                    let sent = reports(producers, consumers, deadline)?;
                    if reqrep {
                        return Ok((sent, Vec::new()));
                    }
                    setup
                        .end_stream()
                        .map_err(|e| HarnessError::Setup(format!("ending the stream: {e}")))?;
                    let got = reports(consumers, &mut [], deadline)?;
                    Ok((sent, got))
                })
            })()
            .map_err(|e| blame_helper(&mut setup, e)),
        }
    });
    match outcome {
        Err(e) => settle(&mut rec, &e),
        // Every call was checked by its client.
        Ok((clients, _)) if reqrep => fill_reqrep(&mut rec, spec, &clients, 0),
        Ok((sent, got)) => {
            let per = warmup + iters;
            let received = match exactly_once(spec.size, np as u64, per, &got) {
                Ok(n) => n,
                Err(e) => {
                    settle(&mut rec, &e);
                    return rec;
                }
            };
            rec.pass();
            let first = got
                .iter()
                .filter(|r| r.messages > 0)
                .map(|r| r.first_ns)
                .min()
                .unwrap_or(0);
            let last = got.iter().map(|r| r.last_ns).max().unwrap_or(0);
            rec.messages = received;
            rec.elapsed_ns = last.saturating_sub(first);
            rec.throughput = throughput_of(
                rec.elapsed_ns > 0,
                || received.saturating_sub(1) as f64 * 1e9 / rec.elapsed_ns as f64,
                spec.size,
            );
            let hists: Vec<&[(u64, u64)]> = got.iter().map(|r| r.latency_hist.as_slice()).collect();
            rec.latency_ns = super::measure::merged_latency(&hists);
            batches_of(&mut rec, first, &got);
            let cpu: u64 = sent.iter().chain(&got).map(|r| r.cpu_ns).sum();
            rec.cpu_ns_per_msg = Some(cpu as f64 / received.max(1) as f64);
        }
    }
    rec
}

/// A point many share, in batches over all its receivers (or clients)
/// together, from their marks ([`super::measure::merged_batches`]), and
/// the interval of its throughput they give (its median has none: the
/// receivers' latencies are not split by batch). `first` is when the
/// first message arrived (or the first measured call began).
fn batches_of(rec: &mut PointRecord, first: u64, reports: &[PeerReport]) {
    let marks: Vec<(u64, &[u64])> = reports
        .iter()
        .map(|r| (r.mark_step, r.marks.as_slice()))
        .collect();
    rec.batches = super::measure::merged_batches(first, &marks);
    // The batches carry no latency (median 0): the rate's interval only.
    rec.ci95 = crate::record::Ci95::of_point(rec);
}

/// The exactly-once check of a multi-party stream: `producers` each sent
/// `per` messages (numbered by [`bodies::tagged_seq`]); the consumers'
/// `reports` must count every one once, and their digests of sequence
/// numbers must add up to the digest of what was sent. Returns the
/// messages received.
pub(super) fn exactly_once(
    size: usize,
    producers: u64,
    per: u64,
    reports: &[PeerReport],
) -> Result<u64, HarnessError> {
    let codec = Codec::new(size).map_err(HarnessError::Setup)?;
    let expected: u64 = (0..producers)
        .flat_map(|id| (0..per).map(move |i| (id, i)))
        .map(|(id, i)| bodies::tagged_seq(&codec, id, i))
        .fold(0u64, |acc, s| acc.wrapping_add(mix64(s)));
    let received: u64 = reports.iter().map(|r| r.messages).sum();
    let digest = reports
        .iter()
        .fold(0u64, |acc, r| acc.wrapping_add(r.digest));
    if received != producers * per {
        return Err(HarnessError::Invalid(format!(
            "consumers received {received} messages where {} were sent (lost or duplicated)",
            producers * per
        )));
    }
    if digest != expected {
        return Err(HarnessError::Invalid(
            "every message count is right but not every message arrived exactly once".into(),
        ));
    }
    Ok(received)
}

/// A reqrep point's figures from its clients' reports (each call checked
/// by its client) and the server's CPU time, if it is a peer.
fn fill_reqrep(rec: &mut PointRecord, spec: &PointSpec, clients: &[PeerReport], server_cpu: u64) {
    rec.pass();
    let calls: u64 = clients.iter().map(|r| r.messages).sum();
    let first = clients.iter().map(|r| r.first_ns).min().unwrap_or(0);
    let last = clients.iter().map(|r| r.last_ns).max().unwrap_or(0);
    rec.messages = calls;
    rec.elapsed_ns = last.saturating_sub(first);
    rec.throughput = throughput_of(
        rec.elapsed_ns > 0,
        || calls as f64 * 1e9 / rec.elapsed_ns as f64,
        spec.size,
    );
    let hists: Vec<&[(u64, u64)]> = clients.iter().map(|r| r.latency_hist.as_slice()).collect();
    rec.latency_ns = super::measure::merged_latency(&hists);
    batches_of(rec, first, clients);
    let client_cpu: u64 = clients.iter().map(|r| r.cpu_ns).sum();
    let per = calls.max(1) as f64;
    rec.cpu_ns_per_msg = Some((client_cpu + server_cpu) as f64 / per);
    if spec.pattern.open_loop() {
        // Open loop: every call timed from its intended time too.
        let merged = |f: fn(&PeerReport) -> &[(u64, u64)]| {
            let parts: Vec<&[(u64, u64)]> = clients.iter().map(f).collect();
            super::measure::merged_latency(&parts)
        };
        let r = &mut rec.rate;
        r.achieved_per_s = rec.throughput.map(|t| t.msgs_per_s);
        r.latency_uncorrected_ns = merged(|c| &c.uncorrected_hist);
        r.sender_lateness_ns = merged(|c| &c.lateness_hist);
        // The clients' CPU and the server's, when it is a peer (a
        // manager's server is its own process, not measured).
        r.peer_cpu_ns_per_msg = Some([client_cpu as f64 / per, server_cpu as f64 / per]);
    }
}

/// The service of a reqrep point whose server is a peer: its address,
/// what the server inherits, and how the coordinator ends it.
enum Service {
    /// Queues in shared memory ([`shm_dict::Setup`]).
    Shm(shm_dict::Setup),
    /// A ZeroMQ channel: the server's `ROUTER` on its listener.
    #[cfg(feature = "zeromq")]
    Zmq(
        TransportKind,
        crate::transport::zmq::ZmqSetup,
        crate::transport::Endpoint,
    ),
}

impl Service {
    // Without ZeroMQ, only the shared-memory service is left, which needs
    // no link options.
    #[cfg_attr(not(feature = "zeromq"), allow(unused_variables))]
    fn create(spec: &PointSpec, opts: &RunOpts, kind: TransportKind) -> Result<Service, String> {
        match kind.caps().shared {
            #[cfg(feature = "zeromq")]
            Shared::Sockets => {
                let link = crate::transport::LinkOpts {
                    max_message: spec.size + shm_dict::REQUEST_OVERHEAD,
                    parties: Some((spec.producers, 1)),
                    ..link_opts(spec, opts, kind)
                };
                let (setup, ep) = crate::transport::zmq::calls_setup(kind, &link)
                    .map_err(|e| format!("setting up the channel: {e}"))?;
                Ok(Service::Zmq(kind, setup, ep))
            }
            _ => shm_dict::Setup::create(spec.producers, spec.size, spec.wait).map(Service::Shm),
        }
    }

    fn addr(&self) -> &str {
        match self {
            Service::Shm(s) => &s.addr,
            #[cfg(feature = "zeromq")]
            Service::Zmq(_, _, ep) => &ep.addr,
        }
    }

    /// What the peers inherit and find in their environment.
    fn handed(&self) -> (&[i32], &[(String, String)]) {
        match self {
            Service::Shm(_) => (&[], &[]),
            #[cfg(feature = "zeromq")]
            Service::Zmq(_, _, ep) => (&ep.inherit, &ep.env),
        }
    }

    fn children_started(&mut self) {
        #[cfg(feature = "zeromq")]
        if let Service::Zmq(_, setup, _) = self {
            use crate::transport::LinkSetup;
            setup.children_started();
        }
    }

    /// Ends the server: it answers what it was asked, then stops.
    fn end(&self) -> Result<(), HarnessError> {
        match self {
            Service::Shm(s) => {
                s.close();
                Ok(())
            }
            #[cfg(feature = "zeromq")]
            Service::Zmq(kind, _, ep) => {
                crate::transport::zmq::end_calls(*kind, ep, std::time::Duration::from_secs(10))
                    .map_err(|e| HarnessError::Setup(format!("ending the server: {e}")))
            }
        }
    }
}

/// reqrep whose server is a peer: it owns a dictionary that N client peers
/// call, through shared-memory queues ([`shm_dict`]) or ZeroMQ sockets.
/// Beyond each client's checks, the server must have served exactly the
/// calls the clients made.
fn run_served_reqrep(
    spec: &PointSpec,
    opts: &RunOpts,
    mut rec: PointRecord,
    cpus: &[usize],
    (warmup, iters): (u64, u64),
    per_s: f64,
) -> PointRecord {
    let np = spec.producers;
    let Strategy::Transport(kind) = spec.strategy else {
        rec.fail("reqrep is measured over a strategy");
        return rec;
    };
    let mut service = match Service::create(spec, opts, kind) {
        Ok(s) => s,
        Err(e) => {
            settle(&mut rec, &HarnessError::Setup(e));
            return rec;
        }
    };
    let pinned = !rec.cpus.is_empty();
    let addr = service.addr().to_owned();
    let (inherit, env) = {
        let (i, e) = service.handed();
        (i.to_vec(), e.to_vec())
    };
    let args = |side: Side, i: usize| {
        let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
        let mut a = PeerArgs::for_point(spec, &addr, side, i, (warmup, iters), cpu);
        if side == Side::A {
            a.rate = per_s / np.max(1) as f64;
        }
        a
    };
    let outcome = (|| {
        let deadline = Instant::now() + opts.deadline;
        // The server first: it is told `go` first.
        let mut peers = std::iter::once(spawn(opts, &args(Side::B, 0), &inherit, &env, "server"))
            .chain((0..np).map(|i| {
                spawn(
                    opts,
                    &args(Side::A, i),
                    &inherit,
                    &env,
                    &format!("client {i}"),
                )
            }))
            .collect::<Result<Vec<_>, _>>()?;
        supervised(&mut peers, |peers| {
            line_up(peers, deadline, || service.children_started())?;
            let (server, clients) = peers.split_at_mut(1);
            let reports = reports(clients, server, deadline)?;
            service.end()?;
            let served = server[0].report(deadline)?;
            Ok::<_, HarnessError>((reports, served))
        })
    })();
    match outcome {
        Err(e) => settle(&mut rec, &e),
        Ok((clients, served)) => {
            let made = np as u64 * 2 * (warmup + iters);
            if served.messages != made {
                rec.fail(format!(
                    "the server answered {} calls where the clients made {made}",
                    served.messages
                ));
                return rec;
            }
            fill_reqrep(&mut rec, spec, &clients, served.cpu_ns);
        }
    }
    rec
}
