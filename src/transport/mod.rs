//! Every IPC strategy behind one trait.
//!
//! A strategy is a [`Transport`]: a coordinator calls [`Transport::setup`],
//! which makes the kernel objects, regions or server process a link needs
//! and returns an [`Endpoint`] (an address string plus any file descriptors
//! the peers must inherit); each of the two peers — in this process or in a
//! child started with the endpoint — calls [`Transport::connect`] with its
//! [`Side`] and gets a [`Conn`], a duplex connection of whole messages.
//!
//! # The contract every transport meets
//!
//! - A message is a whole byte frame of 0 B to at least 16 MiB (up to
//!   [`LinkOpts::max_message`]); what is sent is received once, intact, in
//!   order. Transports whose natural unit is smaller fragment and rejoin.
//! - The receiving side tells an orderly close ([`TransportError::Closed`],
//!   after every message sent before it was received) from a crashed peer
//!   ([`TransportError::PeerGone`]); neither hangs. A byte-stream transport
//!   therefore sends an explicit close frame: a plain end-of-file without one
//!   means the peer died.
//! - A malformed frame (a length beyond the limit, a truncated frame) gives
//!   [`TransportError::Malformed`] or [`TransportError::PeerGone`], never a
//!   panic, and never makes the receiver allocate more than it has received
//!   plus one bounded chunk.
//! - With a timeout set ([`Conn::set_timeout`]) no call blocks longer; with
//!   none, a call blocks until it completes, the peer closes or the peer dies.
//! - Hot loops are generic over the transport (dispatched once through the
//!   registry, never a `dyn` call per message).
//! - [`Transport::Setup`] owns every resource the link made; dropping it
//!   removes them (regions, socket files and their directory, server
//!   processes), so nothing is left in `/dev/shm` or on disk.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::shm::Wait;

#[macro_use]
pub mod registry;
pub mod fd;
#[cfg(feature = "iceoryx2")]
pub mod iceoryx2;
pub mod manager;

pub mod os_pipe;
pub mod raw_sync;

pub mod shm_pipe;
pub mod shm_queue;
pub mod shm_ring;
pub mod stream;
pub mod tcp;
pub mod unix_seqpacket;
pub mod unix_stream;
#[cfg(feature = "zeromq")]
pub mod zmq;

pub use registry::{Caps, Shared, TransportKind, Waits};

/// Which end of a link a peer holds. Side A is the one that accepts, where
/// that matters (sockets); otherwise the two are symmetric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The accepting (or first) side.
    A,
    /// The connecting (or second) side.
    B,
}

impl Side {
    /// `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        match s {
            "a" | "A" => Ok(Side::A),
            "b" | "B" => Ok(Side::B),
            _ => Err(format!("side `{s}` is neither `a` nor `b`")),
        }
    }
}

/// How peers reach a link.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The transport-specific address (a region name, a socket path, a port,
    /// file descriptor numbers…). Passed to child peers on their command line.
    pub addr: String,
    /// File descriptors child peers must inherit (the harness clears
    /// close-on-exec on exactly these in the child).
    pub inherit: Vec<RawFd>,
    /// Whether this process is a child started with this endpoint: then the
    /// inherited descriptors of the other side are closed on connect.
    pub in_child: bool,
    /// Environment variables child peers need (secrets, which must not go
    /// on a command line other users can read).
    pub env: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint made by `setup` in this process.
    pub fn new(addr: String, inherit: Vec<RawFd>) -> Endpoint {
        Endpoint {
            addr,
            inherit,
            in_child: false,
            env: Vec::new(),
        }
    }

    /// An endpoint a child peer received on its command line.
    pub fn for_child(addr: &str) -> Endpoint {
        Endpoint {
            addr: addr.to_owned(),
            inherit: Vec::new(),
            in_child: true,
            env: Vec::new(),
        }
    }
}

/// Parameters of one link.
#[derive(Debug, Clone)]
pub struct LinkOpts {
    /// How shared-memory transports wait.
    pub wait: Wait,
    /// Bytes of buffering per direction where the transport has a choice
    /// (ring and pipe capacity; queue depth × slot size).
    pub capacity: usize,
    /// The largest message the link must carry.
    pub max_message: usize,
    /// The `ipcbench` binary, for transports that start helper processes
    /// (the manager's server).
    pub exe: PathBuf,
    /// A prefix for every name the link makes (regions, socket directories).
    pub label: String,
    /// Added to the environment of the helper processes the link starts
    /// (the fault tests ask a manager's server to die this way).
    pub helper_env: Vec<(String, String)>,
    /// For a channel several processes share: how many send (side A) and
    /// receive (side B), where the transport must know at set-up (ZeroMQ's
    /// sockets, one listener per receiver).
    pub parties: Option<(usize, usize)>,
    /// Which of its side's processes this one is (0-based).
    pub party: usize,
    /// Where a network strategy's near side listens when its far side is
    /// on another host (`None`: loopback).
    pub listen: Option<std::net::IpAddr>,
    /// Where a strategy's server runs when it is on another host (the
    /// manager's, between two hosts): both sides are its clients from here.
    /// `None`: on this host, over loopback.
    pub server_host: Option<RemoteHost>,
}

/// A command that runs `exe` through `prefix` (`ip netns exec NAME`,
/// `ssh HOST`), or directly when `prefix` is empty.
pub fn command_through(prefix: &[String], exe: &std::path::Path) -> std::process::Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    }
}

/// Another host, as the link reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    /// The command prefix that starts a process there (`ip netns exec
    /// NAME`, `ssh HOST`); the `ipcbench` binary is at the same path.
    pub prefix: Vec<String>,
    /// Its address, where a server started there listens.
    pub addr: std::net::IpAddr,
}

impl Default for LinkOpts {
    fn default() -> Self {
        LinkOpts {
            wait: Wait::SPIN_PARK,
            capacity: 1 << 20,
            max_message: 64 << 20,
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ipcbench")),
            label: "link".to_owned(),
            helper_env: Vec::new(),
            parties: None,
            party: 0,
            listen: None,
            server_host: None,
        }
    }
}

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer closed in order, and every message it sent was received.
    #[error("the peer closed the connection (end of stream)")]
    Closed,
    /// The peer died or vanished without closing.
    #[error("the peer is gone: {0}")]
    PeerGone(String),
    /// The timeout passed.
    #[error("timed out")]
    Timeout,
    /// A frame that no correct peer sends.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message larger than the link carries.
    #[error("message of {len} bytes exceeds the link's limit of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The authentication handshake failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A send timed out part-way through a message cut into frames: the
    /// peer would read the next message as the rest of that one, so this
    /// side sends no more (this, and every later send, says so).
    #[error("the link can send no more: {0}")]
    Broken(String),
    /// The link could not be set up or joined.
    #[error("{0}")]
    Setup(String),
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> TransportError {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One end of a duplex link of whole messages.
pub trait Conn: Send {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError>;
    /// Receives one whole message into `buf` (replacing its contents) and
    /// returns its length; `Closed` once the peer closed and all was read.
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError>;

    /// Receives the next message and hands it to `f` where it lies when
    /// the transport can (the shared-memory ring: no copy out), else after
    /// a [`Conn::recv`] into `buf`. Errors as `recv`.
    #[inline]
    fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError>
    where
        Self: Sized,
    {
        let n = self.recv(buf)?;
        Ok(f(&buf[..n]))
    }
    /// A pingpong's echo: receives the next message, hands it to `check`
    /// where it lies when the transport can, and, if `check` passes it,
    /// sends it back as received. The shared-memory ring copies it from
    /// the inbound ring straight into the outbound one (the work the
    /// round trip's copy floor does); elsewhere [`Conn::recv`] into `buf`,
    /// `check`, [`Conn::send`]. Errors as `recv` and `send`; a message
    /// `check` refuses is not sent, and its error is returned inside.
    #[inline]
    fn echo_with<R, E>(
        &mut self,
        buf: &mut Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<R, E>,
    ) -> Result<Result<R, E>, TransportError>
    where
        Self: Sized,
    {
        let n = self.recv(buf)?;
        let r = check(&buf[..n]);
        if r.is_ok() {
            self.send(&buf[..n])?;
        }
        Ok(r)
    }

    /// Bounds every later blocking call (`None`: no bound).
    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError>;
    /// Closes in order: the peer receives what was sent, then `Closed`.
    /// Dropping a connection does the same, ignoring errors.
    fn close(self) -> Result<(), TransportError>
    where
        Self: Sized;

    /// Leaves without ending the stream for others: on transports where
    /// several processes send into one channel (a queue), one sender
    /// finishing is not the end of the stream (see
    /// [`LinkSetup::end_stream`]). Elsewhere it is [`Conn::close`].
    fn leave(self) -> Result<(), TransportError>
    where
        Self: Sized,
    {
        self.close()
    }
}

/// What a coordinator holds for a link.
///
/// Order of use: `setup`, start the child peers (passing
/// [`Endpoint::inherit`]), connect the sides that live in this process, then
/// [`LinkSetup::children_started`]; drop the setup when the run is over.
pub trait LinkSetup: Send {
    /// Every child and in-process side has connected or holds what it
    /// needs: let go of descriptors only children needed, so that a child's
    /// death is seen as end-of-file.
    fn children_started(&mut self) {}

    /// Ends the A→B direction for every receiver (they drain it, then read
    /// `Closed`), once every sender has left. Only transports where many
    /// processes share one channel support it.
    fn end_stream(&mut self) -> Result<(), TransportError> {
        Err(TransportError::Setup(
            "this transport links two processes; it has no shared stream to end".into(),
        ))
    }

    /// A helper process of the link (a manager's server) that has ended,
    /// and how; `None` while every helper runs, or where there is none.
    fn helper_ended(&mut self) -> Option<HelperEnd> {
        None
    }
}

/// How a link's helper process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperEnd {
    /// What it is (`manager server`).
    pub name: &'static str,
    /// Its process id.
    pub pid: u32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its exit status, if it exited.
    pub code: Option<i32>,
}

/// Bad input a test feeds a receiver, as a hostile or broken peer would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// A length (or packet) beyond what the link carries.
    OversizedLength,
    /// A frame that announces more bytes than ever arrive.
    Truncated,
}

/// Test support: writes a malformed frame toward `victim` on the link at
/// `ep`, standing in for the other side. Call it before `victim` connects;
/// drop what it returns to make the stand-in vanish.
pub trait Inject: Transport {
    /// Writes the frame; returns whatever keeps the stand-in alive.
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError>;
}

/// Checks that a stand-in, which can only connect, stands in for side B.
pub(crate) fn stand_in_for_b(victim: Side) -> Result<(), TransportError> {
    if victim == Side::A {
        Ok(())
    } else {
        Err(TransportError::Setup(
            "a stand-in can only connect, so it stands in for side B".into(),
        ))
    }
}

/// An IPC strategy.
pub trait Transport: 'static {
    /// The name the CLI and the results use (`shm-ring`, `tcp`, …).
    const NAME: &'static str;
    /// Everything the link made; dropping it removes all of it.
    type Setup: LinkSetup;
    /// One end of the link.
    type Conn: Conn;
    /// Makes a link.
    fn setup(opts: &LinkOpts) -> Result<(Self::Setup, Endpoint), TransportError>;
    /// Joins a link as `side`.
    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError>;
}

/// `TooLarge` if a message of `len` bytes exceeds the link's `max`.
#[inline]
pub(crate) fn check_len(len: usize, max: usize) -> Result<(), TransportError> {
    if len > max {
        Err(TransportError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Splits `addr` as `<prefix>:<rest>`, checking the prefix.
pub(crate) fn addr_rest<'a>(addr: &'a str, prefix: &str) -> Result<&'a str, TransportError> {
    addr.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| {
            TransportError::Setup(format!("address `{addr}` is not a `{prefix}` address"))
        })
}
