//! `tcp`: a loopback TCP connection with `TCP_NODELAY`, carrying
//! length-prefixed messages.
//!
//! The coordinator binds the listener on 127.0.0.1 (a free port); side A
//! inherits it and accepts, side B connects. Address: `tcp:FD:IP:PORT`.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use super::stream::StreamConn;
use super::unix_stream::{ListenerSetup, fd_and_rest, listener_fd, wait_accept};
use super::{Endpoint, Inject, LinkOpts, Malformation, Side, Transport, TransportError};

/// The `tcp` strategy.
pub struct Tcp;

impl Inject for Tcp {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (_, sockaddr) = fd_and_rest(&ep.addr, Self::NAME)?;
        super::stream::inject_stream(victim, what, || TcpStream::connect(sockaddr))
    }
}

impl Transport for Tcp {
    const NAME: &'static str = "tcp";
    type Setup = ListenerSetup;
    type Conn = StreamConn<TcpStream>;

    fn setup(_opts: &LinkOpts) -> Result<(ListenerSetup, Endpoint), TransportError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TransportError::io("binding 127.0.0.1", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| TransportError::io("reading the bound port", e))?;
        let fd: std::os::fd::OwnedFd = listener.into();
        let addr = format!("{}:{}:{local}", Self::NAME, fd.as_raw_fd());
        let inherit = vec![fd.as_raw_fd()];
        Ok((ListenerSetup::new(fd, None), Endpoint::new(addr, inherit)))
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
