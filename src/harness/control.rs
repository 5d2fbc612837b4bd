//! The coordinator↔peer protocol, both halves in one file: the peer's
//! argv ([`PeerArgs`], written by the coordinator with
//! [`PeerArgs::to_args`], parsed back by the peer's command line), the
//! start barrier (`ready`, then `go`), a session's `round N` and `end`,
//! and the peer's report ([`PeerReport`], one JSON line).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::fault::{self, Phase};
use super::spec::{Pattern, PointSpec, Strategy};
use crate::record::Latency;
use crate::shm::Wait;
use crate::transport::{LinkOpts, Side};

/// What one peer measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerReport {
    /// Messages (or round trips) measured.
    pub messages: u64,
    /// Time they took.
    pub elapsed_ns: u64,
    /// RTT (pingpong initiator) or one-way latency (stream receiver).
    pub latency: Option<Latency>,
    /// Pingpong: mean RTT of a batch timed as a whole.
    pub batched_mean_ns: Option<f64>,
    /// This peer's CPU time over the measured phase.
    pub cpu_ns: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Multi-party receivers: the sum of a hash of every sequence number
    /// received, so the coordinator can check that each message arrived
    /// exactly once across all receivers.
    #[serde(default)]
    pub digest: u64,
    /// Multi-party receivers: `CLOCK_MONOTONIC` times of the first and last
    /// message received (one clock for every process).
    #[serde(default)]
    pub first_ns: u64,
    /// See `first_ns`.
    #[serde(default)]
    pub last_ns: u64,
    /// Multi-party receivers: the one-way latency histogram as
    /// (value, count) pairs, merged by the coordinator.
    #[serde(default)]
    pub latency_hist: Vec<(u64, u64)>,
    /// Payload bytes moved (the test roles' frames of varying length).
    #[serde(default)]
    pub bytes: u64,
    /// One-to-one: how long the timed part took in all (a pingpong's two
    /// timed phases; a stream receiver's first to last message).
    #[serde(default)]
    pub measured_ns: u64,
    /// One-to-one: the measured messages in batches ([`Batches`]), each
    /// as (median latency ns, 0 if none recorded; messages per second).
    ///
    /// [`Batches`]: super::measure::Batches
    #[serde(default)]
    pub batches: Vec<(u64, f64)>,
    /// Multi-party receivers and reqrep clients: the `CLOCK_MONOTONIC`
    /// time at which each further `mark_step` messages (or calls) had
    /// arrived ([`super::measure::merged_batches`]).
    #[serde(default)]
    pub marks: Vec<u64>,
    /// See `marks`.
    #[serde(default)]
    pub mark_step: u64,
    /// One-to-one: the whole latency histogram ([`super::measure::encode`]).
    #[serde(default)]
    pub histogram: Option<String>,
    /// Open loop (a receiver, a reqrep client): the latency from each
    /// message's actual send time (or call's actual start), as (value,
    /// count) pairs; its `latency` and `latency_hist` run from the
    /// intended time.
    #[serde(default)]
    pub uncorrected_hist: Vec<(u64, u64)>,
    /// Open loop (a sender, a reqrep client): how late each message or
    /// call went out by its own doing, as (value, count) pairs.
    #[serde(default)]
    pub lateness_hist: Vec<(u64, u64)>,
}

/// A peer's last word: its report, or its failure as a report carrying
/// only the error, as one JSON line on the control channel (a failure is
/// also said on stderr, for whoever reads it there). Returns whether the
/// peer succeeded.
pub fn final_report(result: Result<PeerReport, String>) -> Result<bool, String> {
    let report = result.unwrap_or_else(|e| PeerReport {
        error: Some(e),
        ..PeerReport::default()
    });
    say(&report)?;
    if let Some(e) = &report.error {
        eprintln!("error: {e}");
    }
    Ok(report.error.is_none())
}

/// Reads a peer's last report line (what [`final_report`] wrote).
pub fn parse_report(line: &str) -> Result<PeerReport, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("not a peer report ({e}): {line}"))
}

/// Waits at the start barrier: says `ready`, then waits for `go`.
pub fn barrier() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    drop(out);
    fault::reached(Phase::Ready);
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("control channel: {e}"))?;
    match line.trim() {
        "go" => {
            fault::reached(Phase::Go);
            Ok(())
        }
        other => Err(format!("control channel said {other:?} instead of go")),
    }
}

/// The arguments of `ipcbench peer bench`: the coordinator writes them
/// with [`PeerArgs::to_args`], the peer's command line parses them back.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// What to measure.
    pub strategy: Strategy,
    /// The link's address (a region name for the floor).
    pub addr: String,
    /// Which side.
    pub side: Side,
    /// Which pattern.
    pub pattern: Pattern,
    /// Bytes per message.
    pub size: usize,
    /// Warm-up count.
    pub warmup: u64,
    /// Measured count.
    pub iters: u64,
    /// The waiting strategy (shared memory and the floor).
    #[arg(long, default_value = "spin-park")]
    pub wait: Wait,
    /// The CPU to pin to.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// The link's message limit.
    #[arg(long, default_value_t = LinkOpts::default().max_message)]
    pub max_message: usize,
    /// Multi-party: this producer's id.
    #[arg(long, default_value_t = 0)]
    pub id: u64,
    /// Multi-party: how many producers there are.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// A session: after `go`, measure one round per `round N` line on the
    /// control channel (a report line each) until `end`.
    #[arg(long)]
    pub rounds: bool,
    /// A session's consumer: publish progress in this region, slot `id`.
    #[arg(long)]
    pub progress: Option<String>,
    /// Open loop: messages per second the sender offers (0: unpaced).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Open loop, tests: the receiver sleeps `NS` after every `EVERY`
    /// messages (`EVERY:NS`).
    #[arg(long)]
    pub stall: Option<super::child::paced::Stall>,
}

impl PeerArgs {
    /// Every how many messages (or measured calls, for a reqrep client)
    /// this receiver of a point many share notes the time: the marks of
    /// all its peers together number about [`super::measure::MARKS`].
    pub fn mark_step(&self) -> u64 {
        let producers = self.producers.max(1) as u64;
        super::measure::mark_step(if self.pattern.calls() {
            2 * self.iters * producers
        } else {
            (self.warmup + self.iters) * producers
        })
    }

    /// Side `side`'s arguments for `spec` (producer or consumer `id` of a
    /// multi-party point), pinned to `cpu` if given.
    pub fn for_point(
        spec: &PointSpec,
        addr: &str,
        side: Side,
        id: usize,
        (warmup, iters): (u64, u64),
        cpu: Option<usize>,
    ) -> PeerArgs {
        PeerArgs {
            strategy: spec.strategy,
            addr: addr.to_owned(),
            side,
            pattern: spec.pattern,
            size: spec.size,
            warmup,
            iters,
            wait: spec.wait,
            cpu,
            max_message: spec.size,
            id: id as u64,
            producers: spec.producers,
            rounds: false,
            progress: None,
            rate: 0.0,
            stall: None,
        }
    }

    /// The link options a peer connects with.
    pub fn link_opts(&self) -> LinkOpts {
        LinkOpts {
            max_message: self.max_message,
            wait: self.wait,
            party: self.id as usize,
            ..LinkOpts::default()
        }
    }

    /// The command line after `ipcbench peer`.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "bench".to_owned(),
            self.strategy.name().to_owned(),
            self.addr.clone(),
            self.side.name().to_owned(),
            self.pattern.name().to_owned(),
            self.size.to_string(),
            self.warmup.to_string(),
            self.iters.to_string(),
            format!("--wait={}", self.wait.name()),
            format!("--max-message={}", self.max_message),
            format!("--id={}", self.id),
            format!("--producers={}", self.producers),
        ];
        if let Some(c) = self.cpu {
            v.push(format!("--cpu={c}"));
        }
        if self.rounds {
            v.push("--rounds".into());
        }
        if let Some(p) = &self.progress {
            v.push(format!("--progress={p}"));
        }
        if self.rate > 0.0 {
            v.push(format!("--rate={}", self.rate));
        }
        if let Some(s) = &self.stall {
            v.push(format!("--stall={s}"));
        }
        v
    }
}

/// What the coordinator says to a peer in a session.
pub enum Control {
    /// Measure one more round of this many exchanges or messages.
    Round(u64),
    /// The session is over (also said by the channel's end).
    End,
}

/// A session's peer reads what the coordinator says next.
pub fn read_control() -> Result<Control, String> {
    use std::io::BufRead;
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("control channel: {e}"))?;
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        _ if n == 0 => Ok(Control::End),
        ["end"] => Ok(Control::End),
        ["round", n] => n
            .parse()
            .map(Control::Round)
            .map_err(|_| format!("control channel: bad round count {n:?}")),
        _ => Err(format!("control channel said {:?}", line.trim())),
    }
}

/// Prints one report line (a session's round) and flushes it.
pub fn say(r: &PeerReport) -> Result<(), String> {
    use std::io::Write;
    fault::reached(Phase::Report);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::to_string(r).map_err(|e| e.to_string())?
    )
    .and_then(|()| out.flush())
    .map_err(|e| format!("control channel: {e}"))
}
