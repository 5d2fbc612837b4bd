//! The peer side: what an `ipcbench peer bench …` child does. One
//! dispatch from its arguments to a pattern's body ([`bodies`]) or a
//! floor's ([`floors`]), after pinning and before the start barrier.

pub mod bodies;
pub mod floors;
pub mod paced;
pub mod roles;

use crate::shm::floor::Floor;
use crate::shm::region::{Kind, Region};
use crate::transport::manager::{Proxy, ProxyTask, with_proxy};
use crate::transport::stream::StreamIo;
use crate::transport::{Conn, LinkOpts, Shared, Side, Transport, TransportKind};

use super::control::{self, Control, PeerArgs, PeerReport};
use super::shm_dict;
use super::spec::{Pattern, Strategy};
use super::validate::Codec;

/// Runs one side of a point in this (child) process, after pinning it.
pub fn run_peer(a: &PeerArgs) -> Result<PeerReport, String> {
    if let Some(cpu) = a.cpu {
        crate::record::pin_to(cpu).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
    }
    let codec = Codec::new(a.size)?;
    let initiator = a.side == Side::A;
    if a.rounds {
        return run_rounds(a, &codec);
    }
    match a.strategy {
        Strategy::Floor | Strategy::FloorCopy => {
            let floor = Floor::open(&a.addr).map_err(|e| e.to_string())?;
            let think = a.pattern.echo_work_ns();
            barrier_then(|| floors::run(&floor, initiator, 0, (a.warmup, a.iters), think))
        }
        Strategy::Transport(kind) if a.pattern.calls() && kind.caps().shared == Shared::Memory => {
            match a.side {
                Side::A => {
                    let client = shm_dict::Client::connect(&a.addr, a.id as usize)?;
                    barrier_then(|| client_calls(client, &codec, a, kind))
                }
                Side::B => shm_dict::serve(&a.addr),
            }
        }
        #[cfg(feature = "zeromq")]
        Strategy::Transport(kind) if a.pattern.calls() && kind.caps().shared == Shared::Sockets => {
            use crate::transport::zmq;
            let ep = crate::transport::Endpoint::for_child(&a.addr);
            // A request carries the value, a header and the key.
            let opts = crate::transport::LinkOpts {
                max_message: a.max_message + shm_dict::REQUEST_OVERHEAD,
                ..a.link_opts()
            };
            let e = |e: crate::transport::TransportError| e.to_string();
            match a.side {
                Side::A => {
                    let caller = zmq::caller(kind, &ep, &opts).map_err(e)?;
                    let client = shm_dict::Client::over(caller, a.id as usize);
                    barrier_then(|| client_calls(client, &codec, a, kind))
                }
                Side::B => shm_dict::serve_from(zmq::call_server(kind, &ep, &opts).map_err(e)?),
            }
        }
        Strategy::Transport(kind) => {
            let opts = a.link_opts();
            with_transport!(kind, T => {
                let conn = connect_side::<T>(a, &opts)?;
                barrier_then(|| match (a.pattern, initiator) {
                    (p, true) if p.round_trips() => {
                        let mut conn = conn;
                        let r = bodies::pingpong_exchanges(&mut conn, &codec, 0, a.warmup, a.iters)?;
                        conn.close().map_err(|e| e.to_string())?;
                        Ok(r)
                    }
                    (p, false) if p.round_trips() => {
                        // Warm-up, then two phases of `iters` exchanges.
                        let mut conn = conn;
                        let all = 0..a.warmup + 2 * a.iters;
                        let r = bodies::echo_seqs(&mut conn, &codec, all, p.echo_work_ns())?;
                        bodies::expect_end(&mut conn)?;
                        Ok(r)
                    }
                    (Pattern::Rate, true) => {
                        let pace = crate::harness::rate::Pace::of(a.wait, kind);
                        paced::rate_send(conn, &codec, (a.warmup, a.iters), period_ns(a.rate), pace)
                    }
                    (Pattern::Rate, false) => {
                        paced::rate_recv(conn, &codec, (a.warmup, a.iters), period_ns(a.rate), a.stall)
                    }
                    (Pattern::Stream, true) => bodies::stream_send(conn, &codec, a.warmup, a.iters),
                    (Pattern::Stream, false) => bodies::stream_recv(conn, &codec, a.warmup, a.iters),
                    (p, _) if p.calls() => {
                        drop(conn);
                        reqrep_client(kind, &a.addr, &opts, &codec, a)
                    }
                    (_, true) => bodies::multi_send(conn, &codec, a.id, a.warmup, a.iters),
                    (_, false) => match &a.progress {
                        None => bodies::multi_recv(conn, &codec, a.producers, a.mark_step()),
                        Some(name) => {
                            let region = Region::open(name, Kind::Raw).map_err(|e| e.to_string())?;
                            let (count, last_ns) = progress_slot(&region, a.id as usize)?;
                            bodies::multi_recv_progress(conn, &codec, a.producers, a.mark_step(), Some(bodies::Progress { count, last_ns }))
                        }
                    },
                })
            })
        }
    }
}

/// Joins the link at `a.addr` as `a.side`.
fn connect_side<T: Transport>(a: &PeerArgs, opts: &LinkOpts) -> Result<T::Conn, String> {
    T::connect(
        &crate::transport::Endpoint::for_child(&a.addr),
        a.side,
        opts,
    )
    .map_err(|e| format!("connecting: {e}"))
}

/// A session's peer: one-to-one pingpong or stream (or the floor), one
/// round per `round N`, sequence numbers going on across rounds; each
/// round a report line. `end` (or the coordinator's going) closes.
fn run_rounds(a: &PeerArgs, codec: &Codec) -> Result<PeerReport, String> {
    let multi = a.pattern.is_multi();
    if a.pattern.calls() || (multi && a.side != Side::A) {
        return Err(format!(
            "sessions run pingpong, stream, and the producers of fan-in, fan-out and mpmc, not {} {}",
            a.pattern.name(),
            a.side.name()
        ));
    }
    let initiator = a.side == Side::A;
    // Sequence numbers (pingpong: exchanges) used so far.
    let mut next = 0u64;
    let mut rounds = |mut round: Box<dyn FnMut(u64, u64) -> Result<PeerReport, String> + '_>| {
        control::barrier()?;
        loop {
            match control::read_control()? {
                Control::End => return Ok(PeerReport::default()),
                Control::Round(n) => {
                    let r = round(next, n).unwrap_or_else(|e| PeerReport {
                        error: Some(e),
                        ..PeerReport::default()
                    });
                    let failed = r.error.clone();
                    control::say(&r)?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    // Pingpong rounds time two phases of n exchanges.
                    next += if a.pattern == Pattern::Pingpong {
                        2 * n
                    } else {
                        n
                    };
                }
            }
        }
    };
    match a.strategy {
        Strategy::FloorCopy => Err("the copy floor of a round trip is measured in points".into()),
        Strategy::Floor => {
            if a.pattern != Pattern::Pingpong {
                return Err("the floor is measured with pingpong".into());
            }
            let floor = Floor::open(&a.addr).map_err(|e| e.to_string())?;
            rounds(Box::new(|first, n| {
                floors::run(&floor, initiator, first, (0, n), 0)
            }))
        }
        Strategy::Transport(kind) => {
            with_transport!(kind, T => {
                let mut conn = connect_side::<T>(a, &a.link_opts())?;
                let r = {
                    let conn = &mut conn;
                    rounds(Box::new(move |first, n| match (a.pattern, initiator) {
                        (Pattern::Pingpong, true) => bodies::pingpong_exchanges(conn, codec, first, 0, n),
                        (Pattern::Pingpong, false) => bodies::echo_seqs(conn, codec, first..first + 2 * n, 0),
                        (_, true) if multi => bodies::multi_send_seqs(conn, codec, a.id, first..first + n),
                        (_, true) => bodies::send_seqs(conn, codec, first..first + n),
                        (_, false) => bodies::recv_seqs(conn, codec, first..first + n, first),
                    }))
                };
                // A producer leaves the shared stream to the others.
                let _ = if multi { conn.leave() } else { conn.close() };
                r
            })
        }
    }
}

/// A consumer's progress slot in a session's progress region: the count
/// and the last time, each on a cache line of its own.
pub(crate) fn progress_slot(
    region: &Region,
    slot: usize,
) -> Result<(&crate::shm::sync::AtomicU64, &crate::shm::sync::AtomicU64), String> {
    if region.body_len() < (slot + 1) * 128 {
        return Err(format!("progress region has no slot {slot}"));
    }
    // SAFETY: two u64 words at 128 * slot and 128 * slot + 64 inside the
    // body (checked), 8-aligned, zeroed at creation, alive with `region`;
    // only ever accessed atomically.
    unsafe {
        let base = region.body_ptr().add(slot * 128);
        Ok((
            &*(base as *const crate::shm::sync::AtomicU64),
            &*(base.add(64) as *const crate::shm::sync::AtomicU64),
        ))
    }
}

/// A reqrep client's calls, through a proxy of the server's dictionary
/// (or of its list, Namespace or `Value`, as the pattern says).
fn reqrep_client(
    kind: TransportKind,
    addr: &str,
    opts: &LinkOpts,
    codec: &Codec,
    a: &PeerArgs,
) -> Result<PeerReport, String> {
    struct Calls<'a> {
        codec: &'a Codec,
        a: &'a PeerArgs,
        kind: TransportKind,
    }
    impl ProxyTask for Calls<'_> {
        type Out = Result<PeerReport, String>;
        fn run<S: StreamIo>(self, proxy: Proxy<S>) -> Self::Out {
            let (codec, a, kind) = (self.codec, self.a, self.kind);
            match a.pattern {
                Pattern::ReqrepList => client_calls(bodies::ListCalls::new(proxy), codec, a, kind),
                Pattern::ReqrepNamespace => {
                    client_calls(bodies::NamespaceCalls(proxy), codec, a, kind)
                }
                Pattern::ReqrepValue => client_calls(bodies::ValueCalls(proxy), codec, a, kind),
                _ => client_calls(proxy, codec, a, kind),
            }
        }
    }
    let ep = crate::transport::Endpoint::for_child(addr);
    with_proxy(kind, &ep, opts, Calls { codec, a, kind }).map_err(|e| format!("connecting: {e}"))?
}

/// A reqrep client's calls: closed loop, or in open loop at its share of
/// the offered rate (`reqrep-rate`).
fn client_calls(
    proxy: impl bodies::ObjectCalls,
    codec: &Codec,
    a: &PeerArgs,
    kind: TransportKind,
) -> Result<PeerReport, String> {
    let counts = (a.warmup, a.iters);
    if a.pattern == Pattern::ReqrepRate {
        let pace = crate::harness::rate::Pace::of(a.wait, kind);
        paced::calls_paced(
            proxy,
            codec,
            a.id,
            counts,
            a.mark_step(),
            period_ns(a.rate),
            pace,
        )
    } else {
        bodies::reqrep_client(proxy, codec, a.id, counts, a.mark_step())
    }
}

/// The time between two messages at `rate` per second (0: unpaced).
fn period_ns(rate: f64) -> f64 {
    if rate > 0.0 { 1e9 / rate } else { 0.0 }
}

fn barrier_then(f: impl FnOnce() -> Result<PeerReport, String>) -> Result<PeerReport, String> {
    control::barrier()?;
    f()
}
