//! How much a run measures: sizes, waits, process counts and counts per
//! point of the quick, default and full profiles.

use crate::harness::rate::Load;
use crate::harness::spec::{Pattern, RunOpts};
use crate::shm::Wait;

/// How much a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A smoke test: one size, short points (under 90 s on 2 cores).
    Quick,
    /// The defaults.
    Default,
    /// Longer points, for stable tails.
    Full,
}

impl Profile {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Default => "default",
            Profile::Full => "full",
        }
    }

    /// Message sizes measured unless `--sizes` says otherwise.
    pub fn sizes(self) -> Vec<usize> {
        match self {
            Profile::Quick => vec![64],
            Profile::Default | Profile::Full => vec![8, 64, 1 << 10, 4 << 10, 64 << 10, 1 << 20],
        }
    }

    /// Waiting strategies measured for shared-memory transports.
    pub fn waits(self) -> Vec<Wait> {
        match self {
            Profile::Quick => vec![Wait::SPIN, Wait::PARK],
            Profile::Default | Profile::Full => Wait::ALL.to_vec(),
        }
    }

    /// The offered loads of an open-loop ladder (after the unpaced point
    /// that measures the capacity they are fractions of).
    pub fn loads(self) -> Vec<Load> {
        use Load::{OfCapacity as Of, PerSec};
        match self {
            Profile::Quick => vec![Of(50), Of(100), PerSec(1e4)],
            Profile::Default | Profile::Full => vec![
                Of(10),
                Of(50),
                Of(80),
                Of(90),
                Of(95),
                Of(100),
                Of(110),
                PerSec(1e3),
                PerSec(1e4),
                PerSec(1e5),
                PerSec(1e6),
            ],
        }
    }

    /// Clients of an open-loop reqrep point unless `--procs` says
    /// otherwise: two, so that the server answers more than one caller
    /// (with the server, three busy processes: on two CPUs, oversubscribed
    /// and marked so).
    pub fn rate_clients(self) -> usize {
        match self {
            Profile::Quick => 1,
            Profile::Default | Profile::Full => 2,
        }
    }

    /// Sizes open-loop points run at unless `--sizes` says otherwise.
    pub fn rate_sizes(self) -> Vec<usize> {
        vec![64]
    }

    /// Sizes multi-party patterns run at unless `--sizes` says otherwise
    /// (each of their points starts up to 17 processes).
    pub fn multi_sizes(self) -> Vec<usize> {
        match self {
            Profile::Quick => vec![64],
            Profile::Default => vec![64, 4 << 10],
            Profile::Full => vec![64, 4 << 10, 64 << 10],
        }
    }

    /// Process counts (producers, consumers) of a multi-party pattern.
    pub fn counts(self, p: Pattern) -> Vec<(usize, usize)> {
        let ns: &[usize] = match self {
            Profile::Quick => &[2],
            Profile::Default | Profile::Full => &[2, 4, 8],
        };
        match p {
            Pattern::FanIn => ns.iter().map(|&n| (n, 1)).collect(),
            Pattern::FanOut => ns.iter().map(|&n| (1, n)).collect(),
            Pattern::Mpmc => std::iter::once(1)
                .chain(ns.iter().copied())
                .map(|n| (n, n))
                .collect(),
            p if p.calls() => std::iter::once(1)
                .chain(ns.iter().copied())
                .map(|n| (n, 1))
                .collect(),
            _ => vec![(1, 1)],
        }
    }

    /// How long each point measures for at least.
    pub fn budget(self) -> std::time::Duration {
        self.opts(std::path::PathBuf::new()).budget
    }

    /// Counts, time budgets and deadlines.
    pub fn opts(self, exe: std::path::PathBuf) -> RunOpts {
        use std::time::Duration;
        let base = RunOpts {
            exe,
            ..RunOpts::default()
        };
        match self {
            Profile::Quick => RunOpts {
                warmup: 200,
                pingpong_iters: 2_000,
                stream_bytes: 8 << 20,
                stream_messages: (1_000, 50_000),
                deadline: Duration::from_secs(30),
                budget: Duration::from_millis(100),
                ..base
            },
            Profile::Default => RunOpts {
                warmup: 1_000,
                pingpong_iters: 10_000,
                stream_bytes: 64 << 20,
                stream_messages: (1_000, 300_000),
                deadline: Duration::from_secs(60),
                budget: Duration::from_millis(500),
                ..base
            },
            Profile::Full => RunOpts {
                warmup: 5_000,
                pingpong_iters: 100_000,
                stream_bytes: 512 << 20,
                stream_messages: (5_000, 2_000_000),
                deadline: Duration::from_secs(180),
                budget: Duration::from_secs(2),
                ..base
            },
        }
    }
}
