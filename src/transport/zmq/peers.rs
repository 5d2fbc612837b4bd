//! Telling a listening socket's peers from strangers (`zmq-tcp`'s port
//! is open to every local process).

use std::time::Instant;

use super::{next_event, wait_by};
use crate::transport::TransportError;
use crate::transport::unix_stream::ACCEPT_TIMEOUT;

/// A listening socket's connections, its peers' told from strangers'.
/// A `zmq-tcp` port is open to every local process, and a stranger's
/// connection, which fails its handshake, drops with the same
/// `DISCONNECTED` event as a peer that died: read as a peer gone, any
/// local process could end a run by connecting. So a peer is known by a
/// first message read from its connection (side B's hello, a sender's,
/// a worker's `ready N`), which names the connection's descriptor
/// (libzmq's `__fd` property, what `ZMQ_SRCFD` reads), as the monitor's
/// `ACCEPTED` and `DISCONNECTED` do. A descriptor is reused once closed,
/// so each is counted with how many times it was accepted: a stranger's
/// drop on a number a peer's connection took later is not the peer's.
#[derive(Default)]
pub(super) struct Peers {
    /// How many times each descriptor was accepted.
    pub(super) accepted: std::collections::HashMap<u32, u32>,
    /// The peers' open connections: descriptor, and its accept count.
    pub(super) open: std::collections::HashMap<u32, u32>,
    /// Connections that dropped before any message of theirs was read.
    pub(super) dropped: std::collections::HashSet<(u32, u32)>,
    /// Handshakes that succeeded (a stranger's never does).
    pub(super) up: usize,
    /// Peers known by a message.
    pub(super) known: usize,
    /// Peers' connections that dropped.
    pub(super) gone: usize,
    /// Every peer expected at setup is known: from here on, the drop of
    /// a connection no message came from is a stranger's, unless more
    /// handshakes succeeded than peers are known (one that never spoke).
    pub(super) settled: bool,
}

impl Peers {
    /// Reads the monitor's pending events.
    pub(super) fn feed(&mut self, mon: &zmq::Socket) {
        while let Some((id, fd)) = next_event(mon) {
            if id == zmq_sys::ZMQ_EVENT_ACCEPTED as u16 {
                *self.accepted.entry(fd).or_default() += 1;
            } else if id == zmq_sys::ZMQ_EVENT_HANDSHAKE_SUCCEEDED as u16 {
                self.up += 1;
            } else if id == zmq_sys::ZMQ_EVENT_DISCONNECTED as u16 {
                let nth = self.accepted.get(&fd).copied().unwrap_or(0);
                if self.open.get(&fd) == Some(&nth) {
                    self.open.remove(&fd);
                    self.gone += 1;
                } else if self.settled && self.up > self.known {
                    self.gone += 1;
                } else {
                    self.dropped.insert((fd, nth));
                }
            }
        }
    }

    /// How many peers' connections dropped, with the monitor read.
    pub(super) fn gone(&mut self, mon: &zmq::Socket) -> usize {
        self.feed(mon);
        self.gone
    }

    /// Waits until `n` handshakes succeeded, by the accept deadline.
    pub(super) fn handshakes(
        &mut self,
        mon: &zmq::Socket,
        n: usize,
        whom: &str,
    ) -> Result<(), TransportError> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        self.feed(mon);
        while self.up < n {
            let up = self.up;
            wait_by(&[mon], deadline, || {
                format!("no ZeroMQ handshake with {whom} ({up} of {n})")
            })?;
            self.feed(mon);
        }
        Ok(())
    }

    /// Knows the connection `msg` (just received) came from as a peer's.
    pub(super) fn know(
        &mut self,
        mon: &zmq::Socket,
        msg: &mut zmq::Message,
    ) -> Result<(), TransportError> {
        let fd = msg
            .gets("__fd")
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| {
                TransportError::Setup(
                    "libzmq did not say which connection a peer's message came from".into(),
                )
            })?;
        // Its ACCEPTED went out before the message could arrive.
        self.feed(mon);
        let nth = self.accepted.get(&fd).copied().unwrap_or(0);
        self.known += 1;
        if self.dropped.remove(&(fd, nth)) {
            self.gone += 1;
        } else {
            self.open.insert(fd, nth);
        }
        Ok(())
    }
}
