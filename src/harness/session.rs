//! A point measured in rounds by peers started once, as criterion's
//! `iter_custom` wants.

use std::time::{Duration, Instant};

use crate::record::PointRecord;
use crate::shm::floor::Floor;
use crate::shm::region::{Kind, Region};
use crate::shm::{WaitKind, unique_name};
use crate::transport::{LinkSetup, Side, Transport};

use super::child::floors;
use super::child::progress_slot;
use super::control::{PeerArgs, PeerReport};
use super::error::HarnessError;
use super::multi::exactly_once;
use super::point::{fill_pair, link_opts, new_record, throughput_of};
use super::spec::{PointSpec, RunOpts, Strategy};
use super::supervise::{Running, blame, blame_helper, line_up, reports, spawn, supervised};

/// A point measured in rounds by peers started once, as criterion's
/// `iter_custom` wants: [`Session::start`] starts and lines up the peers
/// and runs a warm-up round; each [`Session::round`] measures `n` more
/// exchanges or messages, checked as always; [`Session::finish`] (or
/// dropping it) ends the peers. One-to-one pingpong and stream, the floors,
/// and fan-in, fan-out and mpmc (whose consumers publish their progress in
/// shared memory, so the coordinator sees a round end; every message is
/// checked exactly once when the session finishes).
pub struct Session {
    spec: PointSpec,
    opts: RunOpts,
    rec: PointRecord,
    /// One-to-one: A and B. Multi-party: the producers.
    peers: Vec<Running>,
    /// Multi-party: the consumers.
    consumers: Vec<Running>,
    /// Multi-party: where the consumers publish what they received.
    progress: Option<Region>,
    /// Multi-party: messages each producer has sent.
    sent: u64,
    link: SessionLink,
    finished: bool,
}

/// What a session's peers use, kept until they are done.
enum SessionLink {
    Floor(#[allow(dead_code)] Floor),
    Transport(Box<dyn LinkSetup>),
}

impl Session {
    /// Starts the peers of `spec` and runs `opts.warmup` exchanges or
    /// messages untimed.
    pub fn start(spec: &PointSpec, opts: &RunOpts) -> Result<Session, HarnessError> {
        if spec.pattern.calls() {
            return Err(HarnessError::Setup(
                "reqrep is not measured in sessions".into(),
            ));
        }
        let multi = spec.pattern.is_multi();
        if multi && !spec.strategy.multi_party() {
            return Err(HarnessError::Setup(format!(
                "{} links two processes; fan-in, fan-out and mpmc run over {}",
                spec.strategy.name(),
                super::multi::sharing_strategies()
            )));
        }
        let (rec, cpus) = new_record(spec, opts);
        let pinned = !rec.cpus.is_empty();
        let (np, nc) = (spec.producers, spec.consumers);
        let progress = if multi {
            let r = Region::create(&unique_name("progress"), Kind::Raw, 128 * nc, [0; 6])
                .map_err(|e| HarnessError::Setup(e.to_string()))?;
            r.publish();
            Some(r)
        } else {
            None
        };
        let progress_name = progress.as_ref().map(|r| r.name().to_owned());
        // Producers (or A) take rounds; multi-party consumers publish progress.
        let args = |addr: &str, side: Side, i: usize| {
            let cpu = pinned.then(|| cpus[if side == Side::A { i } else { np + i }]);
            let mut a = PeerArgs::for_point(spec, addr, side, i, (0, 0), cpu);
            if multi && side == Side::B {
                a.progress = progress_name.clone();
            } else {
                a.rounds = true;
            }
            a
        };
        let deadline = Instant::now() + opts.deadline;
        // Consumers (or B) first: they are told `go` first.
        let start =
            |addr: &str, inherit: &[i32], env: &[(String, String)], between: &mut dyn FnMut()| {
                let side = |side: Side, n: usize| {
                    (0..n).map(move |i| {
                        let name = format!("{}{i}", side.name().to_uppercase());
                        spawn(opts, &args(addr, side, i), inherit, env, &name)
                    })
                };
                let mut all = side(Side::B, nc)
                    .chain(side(Side::A, np))
                    .collect::<Result<Vec<_>, _>>()?;
                supervised(&mut all, |all| line_up(all, deadline, between))?;
                let mut as_ = all.split_off(nc);
                let mut bs = all;
                if !multi {
                    // Reports come back in this order: A, then B.
                    as_.append(&mut bs);
                }
                Ok::<_, HarnessError>((as_, bs))
            };
        let ((peers, consumers), link) = match spec.strategy {
            Strategy::FloorCopy => {
                return Err(HarnessError::Setup(
                    "the copy floor of a round trip is measured in points".into(),
                ));
            }
            Strategy::Floor => {
                let name = unique_name("floor");
                let kind = floors::kind_for(false, spec.pattern, spec.wait.kind == WaitKind::Park);
                let floor = Floor::create(&name, kind, spec.size)
                    .map_err(|e| HarnessError::Setup(e.to_string()))?;
                (
                    start(&name, &[], &[], &mut || {})?,
                    SessionLink::Floor(floor),
                )
            }
            Strategy::Transport(kind) => {
                let link = link_opts(spec, opts, kind);
                with_transport!(kind, T => {
                    let (mut setup, ep) = T::setup(&link).map_err(|e| HarnessError::Setup(format!("setting up the link: {e}")))?;
                    let peers = start(&ep.addr, &ep.inherit, &ep.env, &mut || setup.children_started())?;
                    (peers, SessionLink::Transport(Box::new(setup)))
                })
            }
        };
        let mut s = Session {
            spec: *spec,
            opts: opts.clone(),
            rec,
            peers,
            consumers,
            progress,
            sent: 0,
            link,
            finished: false,
        };
        s.round(opts.warmup.max(1))?;
        Ok(s)
    }

    /// Tells every round-taking peer `round n` and collects their reports.
    fn tell_round(&mut self, n: u64, deadline: Instant) -> Result<Vec<PeerReport>, HarnessError> {
        for i in 0..self.peers.len() {
            if let Err(e) = self.peers[i].tell(&format!("round {n}")) {
                return Err(blame(self.peers.iter_mut().chain(&mut self.consumers), e));
            }
        }
        reports(&mut self.peers, &mut self.consumers, deadline)
            .map_err(|e| blame(self.peers.iter_mut().chain(&mut self.consumers), e))
    }

    /// Measures `n` round trips (pingpong: `n` timed one by one into the
    /// histogram, then `n` timed as one batch), `n` messages (stream), or
    /// about `n` messages in all, split among the producers (multi-party:
    /// from the first producer's start to the last message any consumer
    /// received).
    pub fn round(&mut self, n: u64) -> Result<PointRecord, HarnessError> {
        self.round_of(n).map_err(|e| match &mut self.link {
            SessionLink::Transport(setup) => blame_helper(setup.as_mut(), e),
            SessionLink::Floor(_) => e,
        })
    }

    fn round_of(&mut self, n: u64) -> Result<PointRecord, HarnessError> {
        let n = n.max(2);
        let deadline = Instant::now() + self.opts.deadline;
        if self.progress.is_none() {
            let reports = self.tell_round(n, deadline)?;
            let mut rec = self.rec.clone();
            fill_pair(&mut rec, &self.spec, &reports[0], &reports[1]);
            return Ok(rec);
        }
        let np = self.spec.producers as u64;
        let per = (n / np).max(1);
        let reports = self.tell_round(per, deadline)?;
        self.sent += per;
        let want = np * self.sent;
        let region = self.progress.as_ref().expect("multi-party");
        let slots = (0..self.spec.consumers)
            .map(|j| progress_slot(region, j))
            .collect::<Result<Vec<_>, _>>()
            .map_err(HarnessError::Setup)?;
        // Acquire: pairs with each consumer's Release store of its count.
        let received = || -> u64 {
            slots
                .iter()
                .map(|(c, _)| c.load(crate::shm::sync::Ordering::Acquire))
                .sum()
        };
        // Consumers' liveness is looked at every few milliseconds, not on
        // every poll: each look is a system call per consumer, taken from
        // the CPUs the consumers are being measured on.
        let mut next_look = Instant::now();
        loop {
            let got = received();
            if got == want {
                // The others may have taken a dead consumer's share: a
                // round with a consumer gone does not pass.
                if let Some(i) = self.consumers.iter_mut().position(Running::exited) {
                    let e = HarnessError::Invalid(format!(
                        "{} exited during the round",
                        self.consumers[i].name()
                    ));
                    return Err(blame(self.peers.iter_mut().chain(&mut self.consumers), e));
                }
                break;
            }
            if got > want {
                return Err(HarnessError::Invalid(format!(
                    "consumers received {got} messages where {want} were sent (duplicated)"
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Invalid(format!(
                    "consumers received {got} of {want} messages by the deadline (lost or stuck)"
                )));
            }
            // A consumer that exited will not catch up.
            let now = Instant::now();
            let exited = if now >= next_look {
                next_look = now + crate::shm::wait::LIVENESS_CHECK_EVERY;
                self.consumers.iter_mut().position(Running::exited)
            } else {
                None
            };
            if let Some(i) = exited {
                let e = HarnessError::Invalid(format!(
                    "{} exited with {got} of {want} messages received",
                    self.consumers[i].name()
                ));
                return Err(blame(self.peers.iter_mut().chain(&mut self.consumers), e));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let first = reports.iter().map(|r| r.first_ns).min().unwrap_or(0);
        let last = slots
            .iter()
            .map(|(_, l)| l.load(crate::shm::sync::Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let mut rec = self.rec.clone();
        rec.pass();
        rec.messages = np * per;
        rec.elapsed_ns = last.saturating_sub(first);
        rec.throughput = throughput_of(
            rec.elapsed_ns > 0,
            || rec.messages as f64 * 1e9 / rec.elapsed_ns as f64,
            self.spec.size,
        );
        let cpu: u64 = reports.iter().map(|r| r.cpu_ns).sum();
        // Producers' CPU only: the consumers report theirs at the end.
        rec.cpu_ns_per_msg = Some(cpu as f64 / rec.messages as f64);
        Ok(rec)
    }

    /// Ends the session: the peers close and exit. Multi-party: the stream
    /// ends, and every message sent must have been received exactly once
    /// across the consumers (their counts and digests of sequence numbers).
    pub fn finish(mut self) -> Result<(), HarnessError> {
        self.finished = true;
        self.end()
    }

    fn end(&mut self) -> Result<(), HarnessError> {
        for p in &mut self.peers {
            let _ = p.tell("end");
            p.hang_up();
        }
        let t0 = Instant::now();
        for p in &mut self.peers {
            while t0.elapsed() < Duration::from_secs(2) {
                if p.exited() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.progress.is_none() {
            return Ok(());
        }
        if let SessionLink::Transport(setup) = &mut self.link {
            setup
                .end_stream()
                .map_err(|e| HarnessError::Setup(format!("ending the stream: {e}")))?;
        }
        let deadline = Instant::now() + self.opts.deadline;
        let got = self
            .consumers
            .iter_mut()
            .map(|p| p.report(deadline))
            .collect::<Result<Vec<_>, _>>()?;
        let np = self.spec.producers as u64;
        exactly_once(self.spec.size, np, self.sent, &got).map(drop)
    }

    /// The peers' process ids (one-to-one: A, B; multi-party: producers,
    /// then consumers).
    pub fn peer_pids(&self) -> Vec<u32> {
        self.peers
            .iter()
            .chain(&self.consumers)
            .map(Running::pid)
            .collect()
    }

    /// The peers' names in errors (`A`, `B`, `producer 0`, …), in the
    /// order of [`Session::peer_pids`].
    pub fn peer_names(&self) -> Vec<String> {
        self.peers
            .iter()
            .chain(&self.consumers)
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The time `n` exchanges or messages took in `rec` (a round of `n`):
    /// pingpong's batch phase; otherwise first to last, per message (or
    /// interval), times `n`.
    pub fn duration(rec: &PointRecord, n: u64) -> Duration {
        let ns = match rec.pattern.as_str() {
            "pingpong" => rec.batched_mean_ns.unwrap_or(0.0) * n as f64,
            _ => rec.elapsed_ns as f64 * n as f64 / rec.messages.max(1) as f64,
        };
        Duration::from_nanos(ns as u64)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the peers are reaped (or killed) either way.
            let _ = self.end();
        }
    }
}
