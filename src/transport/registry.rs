//! The list of strategies: one row each, with what the strategy can do
//! ([`Caps`]). A new strategy is a file in `transport/` and a row here; it
//! then appears in `ipcbench list`, in every peer role, in the conformance
//! suite, and in every pattern its row allows. The harness reads what a
//! strategy can do here and nowhere else.

use std::fmt;
use std::str::FromStr;

/// Declares [`TransportKind`] and the [`with_transport!`] dispatcher from
/// one table.
macro_rules! registry {
    (($d:tt) $( $(#[$meta:meta])* $variant:ident => $module:ident :: $ty:ident, $name:literal, $desc:literal, $caps:expr; )*) => {
        /// Every strategy ipcbench measures through the transport trait.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TransportKind {
            $(
                #[doc = $desc]
                $(#[$meta])*
                $variant,
            )*
        }

        impl TransportKind {
            /// Every strategy, in the order `ipcbench list` prints them.
            pub const ALL: &'static [TransportKind] = &[$($(#[$meta])* TransportKind::$variant),*];

            /// The name the CLI and the results use.
            pub fn name(self) -> &'static str {
                match self {
                    $($(#[$meta])* TransportKind::$variant => $name,)*
                }
            }

            /// One line on what it is.
            pub fn description(self) -> &'static str {
                match self {
                    $($(#[$meta])* TransportKind::$variant => $desc,)*
                }
            }

            /// What it can do.
            pub fn caps(self) -> Caps {
                match self {
                    $($(#[$meta])* TransportKind::$variant => $caps,)*
                }
            }
        }

        /// Runs `$body` with `$T` bound to the transport type of `$kind`:
        /// dispatch happens once, and `$body` is compiled for each type.
        #[macro_export]
        macro_rules! with_transport {
            ($d kind:expr, $d T:ident => $d body:expr) => {
                match $d kind {
                    $($(#[$meta])* $d crate::transport::TransportKind::$variant => {
                        type $d T = $d crate::transport::$module::$ty;
                        $d body
                    })*
                }
            };
        }
    };
}

registry! {
    ($)
    ShmRing => shm_ring::ShmRing, "shm-ring",
        "two SPSC frame rings in shared memory (ipcbench's fast path); spin, yield or futex waits",
        Caps::CORE_LINK;
    ShmPipe => shm_pipe::ShmPipe, "shm-pipe",
        "duplex pipe in shared memory, messages of any size (counterpart of multiprocessing.Pipe)",
        Caps::CORE_LINK;
    ShmQueue => shm_queue::ShmQueue, "shm-queue",
        "bounded MPMC queues in shared memory (counterpart of multiprocessing.Queue)",
        Caps {
            shared: Shared::Memory,
            shared_limit: Some(super::shm_queue::ShmQueue::SLOT_LIMIT),
            task_farm: true,
            ..Caps::CORE_LINK
        };
    OsPipe => os_pipe::OsPipe, "os-pipe",
        "two anonymous pipes (pipe2), length-prefixed (under Pipe(duplex=False) and Queue)",
        Caps { task_farm: true, ..Caps::KERNEL_LINK };
    UnixStream => unix_stream::UnixStreamTransport, "unix-stream",
        "AF_UNIX stream socket, length-prefixed (under multiprocessing.Pipe())",
        Caps { task_farm: true, ..Caps::KERNEL_LINK };
    UnixSeqpacket => unix_seqpacket::UnixSeqpacket, "unix-seqpacket",
        "AF_UNIX SOCK_SEQPACKET socket, message boundaries kept by the kernel",
        Caps::KERNEL_LINK;
    Tcp => tcp::Tcp, "tcp",
        "TCP over loopback with TCP_NODELAY, length-prefixed",
        Caps { task_farm: true, network: true, ..Caps::KERNEL_LINK };
    RawSync => raw_sync::RawSync, "raw-sync",
        "a shared slot handed over with the raw_sync crate's process-shared pthread Mutex and Events",
        Caps::KERNEL_LINK;
    ManagerUnix => manager::ManagerUnix, "manager-unix",
        "Manager-style proxy server over a Unix socket: a server process owns queues, a dict, lists, a Namespace and Values; every call a request/reply, HMAC authkey",
        Caps::SERVER;
    ManagerTcp => manager::ManagerTcp, "manager-tcp",
        "the same proxy server over TCP loopback (BaseManager served over the network)",
        Caps { network: true, ..Caps::SERVER };
    #[cfg(feature = "iceoryx2")]
    Iceoryx2 => iceoryx2::Iceoryx2, "iceoryx2",
        "Eclipse iceoryx2 zero-copy publish-subscribe, payload written and read in its shared memory",
        Caps { waits: Waits::Polls, ..Caps::KERNEL_LINK };
    #[cfg(feature = "zeromq")]
    ZmqIpc => zmq::ZmqIpc, "zmq-ipc",
        "ZeroMQ over a Unix socket (ipc://), libzmq 4.3: PAIR for a link, PUSH/PULL where several share, REQ/ROUTER for calls, DEALER/ROUTER for a task farm",
        Caps { shared: Shared::Sockets, task_farm: true, ..Caps::KERNEL_LINK };
    #[cfg(feature = "zeromq")]
    ZmqTcp => zmq::ZmqTcp, "zmq-tcp",
        "ZeroMQ over TCP (tcp://), PLAIN authentication with the link's token; PAIR, PUSH/PULL, REQ/ROUTER, DEALER/ROUTER",
        Caps { shared: Shared::Sockets, task_farm: true, network: true, ..Caps::KERNEL_LINK };
}

/// How a strategy waits for what it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    /// Its waiting is the suite's to choose: `spin`, `spin-yield`,
    /// `spin-park` or `park` (the shared-memory core).
    Chosen,
    /// It polls: pure `spin`, or `spin-yield` in place of any wait that
    /// would sleep (it has no futex to sleep on).
    Polls,
    /// It blocks in the kernel (`kernel` in results).
    Kernel,
}

/// Where the channels and objects that many processes share live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// Nothing is shared: each link joins two processes.
    Nothing,
    /// Queues in shared memory that every process maps: one channel for
    /// fan-in, fan-out and mpmc; a dictionary served over request and
    /// reply queues for reqrep; a task and a result queue for a farm.
    Memory,
    /// A server process owns the queues and a dictionary; every process
    /// reaches them through a proxy, each call a request and a reply.
    Server,
    /// Each process opens sockets to the others (ZeroMQ's `PUSH` and
    /// `PULL`): fan-in, fan-out and mpmc, with no broker between; a
    /// dictionary served by a peer to its clients' calls (a `ROUTER` and
    /// `REQ`s) for reqrep; a task farm whose master hands each task to
    /// the worker it chooses (a `ROUTER` and `DEALER`s).
    Sockets,
}

/// What a strategy can do: read by the plan, the points and the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// How it waits.
    pub waits: Waits,
    /// What it lets many processes share (fan-in, fan-out, mpmc, reqrep).
    pub shared: Shared,
    /// The largest message a channel shared by several processes carries,
    /// where that is less than a link's.
    pub shared_limit: Option<usize>,
    /// Measured with a late answer (`pingpong-late`): the strategies whose
    /// own waiting that pattern is about.
    pub late_answer: bool,
    /// Runs a task farm (`pool`, `pool-cpu`): a master and W workers.
    pub task_farm: bool,
    /// Processes busy during a point besides the peers (a server).
    pub helpers: usize,
    /// Crosses a network: its far side can run on another host
    /// (`run --hosts`, `--peer-cmd`): side B, connecting to where the near
    /// side listens, or, for a strategy with a server (`helpers`), the
    /// server, which both sides reach from the near host.
    pub network: bool,
}

impl Caps {
    /// A link between two processes that block in the kernel.
    const KERNEL_LINK: Caps = Caps {
        waits: Waits::Kernel,
        shared: Shared::Nothing,
        shared_limit: None,
        late_answer: false,
        task_farm: false,
        helpers: 0,
        network: false,
    };
    /// A channel of the shared-memory core between two processes.
    const CORE_LINK: Caps = Caps {
        waits: Waits::Chosen,
        late_answer: true,
        ..Caps::KERNEL_LINK
    };
    /// A manager: a server process behind proxies.
    const SERVER: Caps = Caps {
        shared: Shared::Server,
        task_farm: true,
        helpers: 1,
        ..Caps::KERNEL_LINK
    };

    /// Whether several processes can send into (and receive from) one
    /// channel, as fan-in, fan-out and mpmc need; reqrep too.
    pub fn multi_party(self) -> bool {
        self.shared != Shared::Nothing
    }

    /// Whether clients can call a dictionary several of them share
    /// (reqrep): over shared memory, a server or sockets.
    pub fn serves_calls(self) -> bool {
        matches!(
            self.shared,
            Shared::Memory | Shared::Server | Shared::Sockets
        )
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TransportKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = TransportKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown transport `{s}`; known: {}", names.join(", "))
            })
    }
}
