//! ipcbench: which IPC strategy should I use, and how far is it from what
//! the hardware allows?
//!
//! The library holds, each layer knowing only those above it in this list:
//! the shared-memory core ([`shm`]); every IPC strategy behind one trait
//! ([`transport`]); the result records every reader relies on
//! ([`record`]); the measuring instrument ([`harness`]), with every role the
//! `ipcbench` binary plays in child processes (`harness::child`); and the
//! report, a pure function of records ([`report`]).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// Under loom only the model-checked parts are used.
#![cfg_attr(loom, allow(dead_code, unused_imports, unused_variables))]

pub mod shm;
#[cfg(not(loom))]
#[macro_use]
pub mod transport;
#[cfg(not(loom))]
pub mod harness;
#[cfg(not(loom))]
pub mod record;
#[cfg(not(loom))]
pub mod report;
