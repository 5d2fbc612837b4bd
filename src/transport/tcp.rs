//! `tcp`: a loopback TCP connection with `TCP_NODELAY`, carrying
//! length-prefixed messages.
//!
//! The coordinator binds the listener on 127.0.0.1 (a free port); side A
//! inherits it and accepts, side B connects. Address: `tcp:FD:IP:PORT`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::stream::{StreamConn, StreamIo, socket_timeouts};
use super::unix_stream::{fd_and_rest, listener_fd, wait_accept};
use super::{Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError};

/// The `tcp` strategy.
pub struct Tcp;

/// The listener.
pub struct TcpSetup {
    listener: Option<std::os::fd::OwnedFd>,
}

impl LinkSetup for TcpSetup {
    fn children_started(&mut self) {
        self.listener = None;
    }
}

impl Inject for Tcp {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        if victim != Side::A {
            return Err(TransportError::Setup(
                "a stand-in can only connect, so it stands in for side B".into(),
            ));
        }
        let (_, sockaddr) = fd_and_rest(&ep.addr, Self::NAME)?;
        let mut s = TcpStream::connect(sockaddr)
            .map_err(|e| TransportError::io("connecting the stand-in", e))?;
        s.write_all(&super::stream::malformed_bytes(what))
            .map_err(|e| TransportError::io("injecting", e))?;
        Ok(Box::new(s))
    }
}

impl StreamIo for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored(bufs)
    }
    fn read_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn write_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn set_kernel_timeout(&mut self, t: Option<Duration>) -> io::Result<bool> {
        socket_timeouts(
            |t| self.set_read_timeout(t),
            |t| self.set_write_timeout(t),
            t,
        )
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Transport for Tcp {
    const NAME: &'static str = "tcp";
    type Setup = TcpSetup;
    type Conn = StreamConn<TcpStream>;

    fn setup(_opts: &LinkOpts) -> Result<(TcpSetup, Endpoint), TransportError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TransportError::io("binding 127.0.0.1", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| TransportError::io("reading the bound port", e))?;
        let fd: std::os::fd::OwnedFd = listener.into();
        let addr = format!("{}:{}:{local}", Self::NAME, fd.as_raw_fd());
        let inherit = vec![fd.as_raw_fd()];
        Ok((
            TcpSetup { listener: Some(fd) },
            Endpoint::new(addr, inherit),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError> {
        let (fd, sockaddr) = fd_and_rest(&ep.addr, Self::NAME)?;
        let stream = match listener_fd(ep, fd, side)? {
            Some(l) => {
                wait_accept(l.as_raw_fd())?;
                TcpListener::from(l)
                    .accept()
                    .map_err(|e| TransportError::io("accepting", e))?
                    .0
            }
            None => TcpStream::connect(sockaddr)
                .map_err(|e| TransportError::io(format!("connecting to {sockaddr}"), e))?,
        };
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        Ok(StreamConn::new(stream, opts.max_message))
    }
}
