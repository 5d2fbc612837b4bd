//! `unix-stream`: an AF_UNIX stream socket carrying length-prefixed
//! messages — what `multiprocessing.Pipe()` uses underneath.
//!
//! The coordinator binds the listener in a private directory (mode 0700,
//! socket 0600) and side A inherits it and accepts; side B connects to the
//! path. Address: `unix-stream:FD:PATH`.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use super::fd::{PrivateDir, adopt, chmod_owner_only, close_inherited, dup, poll_ready};
use super::stream::StreamConn;
use super::{
    Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError, addr_rest,
};

/// How long side A waits for side B to connect.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `unix-stream` strategy.
pub struct UnixStreamTransport;

/// A listening socket (and the private directory of its socket file, if
/// any), until every side has connected.
pub struct ListenerSetup {
    listener: Option<std::os::fd::OwnedFd>,
    _dir: Option<PrivateDir>,
}

impl ListenerSetup {
    /// Holds `listener` (and `dir`) for the link's peers.
    pub(crate) fn new(listener: std::os::fd::OwnedFd, dir: Option<PrivateDir>) -> ListenerSetup {
        ListenerSetup {
            listener: Some(listener),
            _dir: dir,
        }
    }
}

impl LinkSetup for ListenerSetup {
    fn children_started(&mut self) {
        self.listener = None;
    }
}

impl Inject for UnixStreamTransport {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (_, path) = fd_and_rest(&ep.addr, Self::NAME)?;
        super::stream::inject_stream(victim, what, || UnixStream::connect(path))
    }
}

/// Parses `PREFIX:FD:REST`.
pub(crate) fn fd_and_rest<'a>(
    addr: &'a str,
    prefix: &str,
) -> Result<(RawFd, &'a str), TransportError> {
    let rest = addr_rest(addr, prefix)?;
    let (fd, rest) = rest
        .split_once(':')
        .ok_or_else(|| TransportError::Setup(format!("bad {prefix} address `{addr}`")))?;
    let fd = fd
        .parse()
        .map_err(|_| TransportError::Setup(format!("bad descriptor in `{addr}`")))?;
    Ok((fd, rest))
}

/// Side A's listener: adopted in a child, duplicated in the coordinator.
pub(crate) fn listener_fd(
    ep: &Endpoint,
    fd: RawFd,
    side: Side,
) -> Result<Option<std::os::fd::OwnedFd>, TransportError> {
    match (side, ep.in_child) {
        (Side::A, true) => Ok(Some(adopt(fd)?)),
        (Side::A, false) => {
            // SAFETY: the setup owns `fd` and outlives this call; we keep a copy.
            Ok(Some(dup(&unsafe {
                std::os::fd::BorrowedFd::borrow_raw(fd)
            })?))
        }
        (Side::B, true) => {
            close_inherited(fd);
            Ok(None)
        }
        (Side::B, false) => Ok(None),
    }
}

/// Waits for the listener to become readable, then accepts.
pub(crate) fn wait_accept(fd: RawFd) -> Result<(), TransportError> {
    if !poll_ready(fd, libc::POLLIN, Some(ACCEPT_TIMEOUT))
        .map_err(|e| TransportError::io("poll", e))?
    {
        return Err(TransportError::Setup(format!(
            "side B did not connect within {} s",
            ACCEPT_TIMEOUT.as_secs()
        )));
    }
    Ok(())
}

impl Transport for UnixStreamTransport {
    const NAME: &'static str = "unix-stream";
    type Setup = ListenerSetup;
    type Conn = StreamConn<UnixStream>;

    fn setup(opts: &LinkOpts) -> Result<(ListenerSetup, Endpoint), TransportError> {
        let dir = PrivateDir::new(&opts.label)?;
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path)
            .map_err(|e| TransportError::io(format!("binding {}", path.display()), e))?;
        chmod_owner_only(&path)?;
        let fd: std::os::fd::OwnedFd = listener.into();
        let addr = format!("{}:{}:{}", Self::NAME, fd.as_raw_fd(), path.display());
        let inherit = vec![fd.as_raw_fd()];
        Ok((
            ListenerSetup::new(fd, Some(dir)),
            Endpoint::new(addr, inherit),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError> {
        let (fd, path) = fd_and_rest(&ep.addr, Self::NAME)?;
        let stream = match listener_fd(ep, fd, side)? {
            Some(l) => {
                wait_accept(l.as_raw_fd())?;
                let listener = UnixListener::from(l);
                listener
                    .accept()
                    .map_err(|e| TransportError::io("accepting", e))?
                    .0
            }
            None => UnixStream::connect(PathBuf::from(path))
                .map_err(|e| TransportError::io(format!("connecting to {path}"), e))?,
        };
        Ok(StreamConn::new(stream, opts.max_message))
    }
}
