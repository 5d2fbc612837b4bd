//! `shm-pipe`: the shared-memory duplex pipe (the counterpart of
//! `multiprocessing.Pipe`), one region holding both directions.

use std::time::Duration;

use super::shm_ring::ring_err;
use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    addr_rest,
};
use crate::shm::{Pipe, PipeEnd, PipeError, unique_name};

fn pipe_err(e: PipeError) -> TransportError {
    match e {
        PipeError::Closed => TransportError::Closed,
        PipeError::Timeout => TransportError::Timeout,
        PipeError::MessageTooLarge { max } => {
            TransportError::Malformed(format!("incoming message exceeds the limit of {max} bytes"))
        }
        PipeError::Truncated => TransportError::PeerGone(e.to_string()),
        PipeError::SendBroken { .. } => TransportError::Broken(e.to_string()),
        PipeError::Ring(e) => ring_err(e),
    }
}

/// The `shm-pipe` strategy.
pub struct ShmPipe;

/// The pipe's region, owned by the coordinator (unlinked on drop).
pub struct ShmPipeSetup {
    _pipe: Pipe,
}

/// One end of the pipe.
pub struct ShmPipeConn {
    end: PipeEnd,
    max: usize,
    timeout: Option<Duration>,
}

impl LinkSetup for ShmPipeSetup {}

impl Inject for ShmPipe {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let pipe = Pipe::open(addr_rest(&ep.addr, Self::NAME)?).map_err(pipe_err)?;
        let producer = pipe
            .inject_garbage(
                if victim == Side::A { 0 } else { 1 },
                what == Malformation::OversizedLength,
            )
            .map_err(|e| pipe_err(e.into()))?;
        // The stand-in holds the other end's output until the test drops it.
        Ok(Box::new(producer))
    }
}

impl Transport for ShmPipe {
    const NAME: &'static str = "shm-pipe";
    type Setup = ShmPipeSetup;
    type Conn = ShmPipeConn;

    fn setup(opts: &LinkOpts) -> Result<(ShmPipeSetup, Endpoint), TransportError> {
        let name = unique_name(&opts.label);
        let cap = opts.capacity.next_power_of_two().max(4096);
        let pipe = Pipe::create(&name, cap, opts.wait).map_err(pipe_err)?;
        Ok((
            ShmPipeSetup { _pipe: pipe },
            Endpoint::new(format!("{}:{name}", Self::NAME), Vec::new()),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<ShmPipeConn, TransportError> {
        let name = addr_rest(&ep.addr, Self::NAME)?;
        let pipe = Pipe::open(name).map_err(pipe_err)?;
        let mut end = pipe
            .end(match side {
                Side::A => 0,
                Side::B => 1,
            })
            .map_err(pipe_err)?;
        end.set_max_message(opts.max_message);
        Ok(ShmPipeConn {
            end,
            max: opts.max_message,
            timeout: None,
        })
    }
}

impl Conn for ShmPipeConn {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        self.end.send(msg, self.timeout).map_err(pipe_err)
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.end.recv(buf, self.timeout).map_err(pipe_err)
    }

    /// A message of one frame is handed to `f` where it lies in the ring
    /// (see `shm::PipeEnd::recv_with`).
    #[inline]
    fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        self.end.recv_with(buf, self.timeout, f).map_err(pipe_err)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(self) -> Result<(), TransportError> {
        Ok(())
    }
}
