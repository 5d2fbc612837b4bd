//! The shared-memory core: structures that live in memory mapped by several
//! processes, with no knowledge of benchmarks.
//!
//! - [`region`]: a named mapping in `/dev/shm` with a versioned header.
//! - [`futex`] and [`wait`]: sleeping and waking across processes, and the
//!   waiting strategies (`spin`, `spin-yield`, `spin-park`, `park`).
//! - [`ring`]: the SPSC ring of variable-length frames (the fast path).
//! - [`queue`]: the bounded MPMC queue (`multiprocessing.Queue`), and
//!   [`joinable`] on it (`JoinableQueue`: `task_done` and `join`).
//! - [`pipe`]: the duplex pipe of whole messages (`multiprocessing.Pipe`).
//! - [`semaphore`]: the counting semaphore, `Lock` and `Event`.
//! - [`condition`]: `RLock`, and `Condition` with its lock.
//! - [`barrier`]: `Barrier` for a fixed number of parties.
//! - [`value`]: typed shared values and arrays with an optional lock
//!   (`multiprocessing.Value` and `Array`).
//! - [`floor`]: the floors' own protocols (a word bounced, a futex
//!   ping-pong, the copy floors of a stream and of a round trip).
//!
//! Each structure can live on the heap (threads, unit tests, loom models) or
//! in a region (processes); the code is the same.

pub mod barrier;
pub mod condition;
pub mod floor;
pub mod futex;
pub mod joinable;
pub mod liveness;
pub(crate) mod mem;
pub mod pipe;
pub mod queue;
#[cfg(not(loom))]
pub mod region;
pub mod ring;
pub mod semaphore;
pub(crate) mod sync;
#[cfg(not(loom))]
pub mod value;
pub mod wait;

pub use barrier::{Barrier, BarrierError};
pub use condition::{Condition, RLock};
pub use joinable::JoinableQueue;
pub use liveness::PeerId;
pub use pipe::{Pipe, PipeEnd, PipeError};
pub use queue::{Queue, QueueError};
#[cfg(not(loom))]
pub use region::{Region, RegionError, unique_name};
pub use ring::{Consumer, Producer, Ring, RingError};
pub use semaphore::{Event, Lock, SemError, Semaphore};
#[cfg(not(loom))]
pub use value::{Array, Value, ValueError};
pub use wait::{Wait, WaitKind};
