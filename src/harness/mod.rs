//! The measuring instrument: runs one point (a strategy, a pattern, a
//! message size, a waiting strategy) between real peer processes and turns
//! what they measured into a [`PointRecord`].
//!
//! For each point the coordinator sets the link up, starts both peers as
//! `ipcbench peer bench …` children — pinned to distinct CPUs when there
//! are enough — waits until both say `ready` (so no start-up is timed),
//! tells them `go`, and reads one report from each over their standard
//! output (the control channel, not the one under test). A peer that misses
//! the point's deadline is killed and reaped, and the point is recorded as
//! failed with the reason; so is a point whose messages failed validation.
//!
//! Patterns here: `pingpong` (round-trip latency, HdrHistogram percentiles
//! and a batched mean), `stream` (one-way throughput, and one-way latency
//! from send times inside the messages), and over the strategies where many
//! processes share one channel `fan-in` (N→1), `fan-out` (1→N) and `mpmc`
//! (N×M): aggregate throughput and latency, with each producer's order
//! checked by every consumer and exactly-once checked across all of them by
//! the coordinator; and `reqrep`, N clients calling a server's dictionary
//! (a manager's, or [`shm_dict`]'s over shm queues). The floors — `floor`
//! with `spin` (one cache line bounced between two processes) and with
//! `park` (a futex ping-pong) — run in the same way, so every figure can be
//! read as a multiple of what the hardware and the kernel allow.
//!
//! | file | its one job |
//! |---|---|
//! | [`spec`] | the vocabulary: pattern, strategy, point, run options |
//! | [`plan`] | profiles and filters to the measurements of every family |
//! | [`run`] | the scheduler: repeats, medians, writing after each point, the Python phase |
//! | [`point`] | a one-to-one point and the floor beside it |
//! | [`multi`] | fan-in, fan-out, mpmc, reqrep and the exactly-once check |
//! | [`session`] | a point in rounds, for criterion |
//! | [`supervise`] | spawning, deadlines, reaping, blame |
//! | [`fault`] | a peer killed on purpose at a chosen phase, for the fault tests |
//! | [`hosts`] | two hosts: a network namespace, the far side's command prefix |
//! | [`control`] | the coordinator↔peer protocol, both halves |
//! | [`child`] | the peer side: one dispatch, one body per pattern, the floors' peers |
//! | [`measure`] | clocks, CPU time, histograms |
//! | [`validate`] | the one message checker |
//! | [`rate`] | open loop: offered loads, pacing, latency from the intended send time |
//! | [`stop`] | a second signal: every process started killed and reaped, their files removed |
//! | [`sync`], [`pool`], [`startup`], [`python`], [`shm_dict`] | the other families |

pub mod child;
pub mod control;
pub mod error;
pub mod fault;
pub mod floors;
pub mod hosts;
pub mod measure;
pub mod multi;
pub mod plan;
pub mod point;
pub mod pool;
pub mod python;
pub mod rate;
pub mod run;
pub mod session;
pub mod shm_dict;
pub mod spec;
pub mod startup;
pub mod stop;
pub mod supervise;
pub mod sync;
pub mod validate;

pub use crate::record::{Latency, Machine, PointRecord, RunRecord, Throughput};
pub use control::{PeerArgs, PeerReport};
pub use point::run_point;
pub use session::Session;
pub use spec::{MULTI_PROBE, Measurement, Pattern, PointSpec, RunOpts, Strategy};
