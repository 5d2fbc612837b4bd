//! The list of strategies: one line each. A new strategy is a file in
//! `transport/` and a line here; it then appears in `ipcbench list`, in
//! every peer role, and in the conformance suite.

use std::fmt;
use std::str::FromStr;

/// Declares [`TransportKind`] and the [`with_transport!`] dispatcher from
/// one table.
macro_rules! registry {
    (($d:tt) $( $(#[$meta:meta])* $variant:ident => $module:ident :: $ty:ident, $name:literal, $desc:literal; )*) => {
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
        "two SPSC frame rings in shared memory (ipcbench's fast path); spin, yield or futex waits";
    ShmPipe => shm_pipe::ShmPipe, "shm-pipe",
        "duplex pipe in shared memory, messages of any size (counterpart of multiprocessing.Pipe)";
    ShmQueue => shm_queue::ShmQueue, "shm-queue",
        "bounded MPMC queues in shared memory (counterpart of multiprocessing.Queue)";
    OsPipe => os_pipe::OsPipe, "os-pipe",
        "two anonymous pipes (pipe2), length-prefixed (under Pipe(duplex=False) and Queue)";
    UnixStream => unix_stream::UnixStreamTransport, "unix-stream",
        "AF_UNIX stream socket, length-prefixed (under multiprocessing.Pipe())";
    UnixSeqpacket => unix_seqpacket::UnixSeqpacket, "unix-seqpacket",
        "AF_UNIX SOCK_SEQPACKET socket, message boundaries kept by the kernel";
    Tcp => tcp::Tcp, "tcp",
        "TCP over loopback with TCP_NODELAY, length-prefixed";
    RawSync => raw_sync::RawSync, "raw-sync",
        "a shared slot handed over with the raw_sync crate's process-shared pthread Mutex and Events";
    ManagerUnix => manager::ManagerUnix, "manager-unix",
        "Manager-style proxy server over a Unix socket: a server process owns the queues, every call a request/reply, HMAC authkey";
    ManagerTcp => manager::ManagerTcp, "manager-tcp",
        "the same proxy server over TCP loopback (BaseManager served over the network)";
    #[cfg(feature = "iceoryx2")]
    Iceoryx2 => iceoryx2::Iceoryx2, "iceoryx2",
        "Eclipse iceoryx2 zero-copy publish-subscribe, payload written and read in its shared memory";
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
