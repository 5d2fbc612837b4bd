//! `shm-ring`: two SPSC frame rings in shared memory, one per direction.
//!
//! A message that fits in one frame (half the ring less 8 bytes) is one
//! frame; a larger one is cut into frames tagged `MORE` but the last. Waiting
//! follows [`LinkOpts::wait`]. A peer that dies is reported by the ring's
//! liveness check; dropping a connection closes both its rings' ends.

use std::time::Duration;

use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    addr_rest,
};
use crate::shm::{Consumer, Producer, Ring, RingError, unique_name};

/// Tag of a frame followed by more of the same message.
pub(crate) const MORE: u32 = 1;

/// Maps ring errors onto the transport contract.
pub(crate) fn ring_err(e: RingError) -> TransportError {
    match e {
        RingError::Closed => TransportError::Closed,
        RingError::Timeout => TransportError::Timeout,
        RingError::PeerGone(p) => {
            TransportError::PeerGone(format!("process {} died without closing", p.pid))
        }
        RingError::Corrupt(why) => {
            TransportError::Malformed(format!("ring memory is corrupt: {why}"))
        }
        RingError::TooLarge { len, max } => TransportError::TooLarge { len, max },
        e => TransportError::Setup(e.to_string()),
    }
}

/// The `shm-ring` strategy.
pub struct ShmRing;

/// The two rings, owned by the coordinator (unlinked on drop).
pub struct ShmRingSetup {
    _rings: [Ring; 2],
}

/// One side's ends: it sends on one ring and receives on the other.
pub struct ShmRingConn {
    tx: Producer,
    rx: Consumer,
    max: usize,
    timeout: Option<Duration>,
    mid: MidMessage,
}

impl LinkSetup for ShmRingSetup {}

/// The ring names (A→B, B→A) in an address.
fn ring_names(addr: &str) -> Result<(&str, &str), TransportError> {
    addr_rest(addr, ShmRing::NAME)?
        .split_once(',')
        .ok_or_else(|| TransportError::Setup(format!("bad shm-ring address `{addr}`")))
}

impl Inject for ShmRing {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (ab, ba) = ring_names(&ep.addr)?;
        let inbound = if victim == Side::A { ba } else { ab };
        let producer = Ring::open(inbound)
            .map_err(ring_err)?
            .inject_garbage(what == Malformation::OversizedLength)
            .map_err(ring_err)?;
        // The stand-in holds the producer's end until the test drops it.
        Ok(Box::new(producer))
    }
}

impl Transport for ShmRing {
    const NAME: &'static str = "shm-ring";
    type Setup = ShmRingSetup;
    type Conn = ShmRingConn;

    fn setup(opts: &LinkOpts) -> Result<(ShmRingSetup, Endpoint), TransportError> {
        let names = [
            unique_name(&format!("{}-ab", opts.label)),
            unique_name(&format!("{}-ba", opts.label)),
        ];
        let cap = opts.capacity.next_power_of_two().max(4096);
        let ab = Ring::create(&names[0], cap, opts.wait).map_err(ring_err)?;
        let ba = Ring::create(&names[1], cap, opts.wait).map_err(ring_err)?;
        Ok((
            ShmRingSetup { _rings: [ab, ba] },
            Endpoint::new(
                format!("{}:{},{}", Self::NAME, names[0], names[1]),
                Vec::new(),
            ),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<ShmRingConn, TransportError> {
        let (ab, ba) = ring_names(&ep.addr)?;
        let (out, inp) = match side {
            Side::A => (ab, ba),
            Side::B => (ba, ab),
        };
        let tx = Ring::open(out)
            .and_then(|r| r.producer())
            .map_err(ring_err)?;
        let rx = Ring::open(inp)
            .and_then(|r| r.consumer())
            .map_err(ring_err)?;
        Ok(ShmRingConn {
            tx,
            rx,
            max: opts.max_message,
            timeout: None,
            mid: MidMessage::default(),
        })
    }
}

/// Sends `msg` as frames of at most `frame` bytes over `send(chunk, tag)`.
#[inline]
pub(crate) fn send_fragmented(
    msg: &[u8],
    frame: usize,
    mut send: impl FnMut(&[u8], u32) -> Result<(), TransportError>,
) -> Result<(), TransportError> {
    if msg.len() <= frame {
        return send(msg, 0);
    }
    let mut chunks = msg.chunks(frame).peekable();
    while let Some(c) = chunks.next() {
        send(c, if chunks.peek().is_some() { MORE } else { 0 })?;
    }
    Ok(())
}

/// What a link that cuts messages into frames keeps between calls that
/// timed out in the middle of a message: the frames a receive had read
/// (the next receive goes on with them, so a message is received whole
/// or not at all), and a send that had sent part of one (after which the
/// link sends no more: the peer would read the next message as the rest
/// of that one).
#[derive(Debug, Default)]
pub(crate) struct MidMessage {
    partial: Option<Vec<u8>>,
    broken: Option<(usize, usize)>,
}

impl MidMessage {
    /// [`send_fragmented`], unless an earlier send broke off part-way;
    /// a timeout after the first frame breaks the link for sending.
    #[inline]
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        frame: usize,
        mut send: impl FnMut(&[u8], u32) -> Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        if let Some(b) = self.broken {
            return Err(Self::broken(b));
        }
        let mut sent = 0;
        let r = send_fragmented(msg, frame, |c, tag| {
            send(c, tag)?;
            sent += c.len();
            Ok(())
        });
        match r {
            Err(TransportError::Timeout) if sent > 0 => {
                let b = (sent, msg.len());
                self.broken = Some(b);
                Err(Self::broken(b))
            }
            r => r,
        }
    }

    fn broken((sent, len): (usize, usize)) -> TransportError {
        TransportError::Broken(format!(
            "a send timed out after {sent} of the {len} bytes of a message went out"
        ))
    }

    /// Puts the frames an earlier receive kept into `buf` (replacing it);
    /// whether there were any (then the message is under way).
    #[inline]
    pub(crate) fn resume(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.partial.take() {
            Some(p) => {
                *buf = p;
                true
            }
            None => false,
        }
    }

    /// Keeps the frames of a message whose receive timed out part-way.
    pub(crate) fn keep(&mut self, buf: &mut Vec<u8>) {
        self.partial = Some(std::mem::take(buf));
    }
}

impl Conn for ShmRingConn {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        let (tx, t) = (&mut self.tx, self.timeout);
        self.mid.send(msg, tx.max_payload(), |c, tag| {
            tx.send_tagged(c, tag, t).map_err(ring_err)
        })
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        buf.clear();
        let under_way = self.mid.resume(buf);
        self.recv_rest(buf, !under_way)
    }

    /// A message of one frame is handed to `f` in the ring, no copy out
    /// (this trusts the peer not to rewrite a frame it published: see
    /// `shm::Consumer::read`; [`Conn::recv`] copies once and is the path
    /// for a peer that is not trusted); a fragmented one is put together
    /// in `buf` first.
    #[inline]
    fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        if self.mid.resume(buf) {
            let n = self.recv_rest(buf, false)?;
            return Ok(f(&buf[..n]));
        }
        let g = self.rx.read(self.timeout).map_err(ring_err)?;
        if g.tag() & MORE == 0 {
            if g.len() > self.max {
                return Err(past_limit(g.len(), self.max));
            }
            return Ok(f(&g));
        }
        buf.clear();
        buf.extend_from_slice(&g);
        drop(g);
        let n = self.recv_rest(buf, false)?;
        Ok(f(&buf[..n]))
    }

    /// A message of one frame is checked in the inbound ring and copied
    /// from there into the outbound one: one copy, as the round trip's
    /// copy floor makes; a fragmented one goes through `buf`.
    #[inline]
    fn echo_with<R, E>(
        &mut self,
        buf: &mut Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<R, E>,
    ) -> Result<Result<R, E>, TransportError> {
        if !self.mid.resume(buf) {
            let g = self.rx.read(self.timeout).map_err(ring_err)?;
            if g.tag() & MORE == 0 {
                if g.len() > self.max {
                    return Err(past_limit(g.len(), self.max));
                }
                let r = check(&g);
                if r.is_ok() {
                    let (tx, t) = (&mut self.tx, self.timeout);
                    self.mid.send(&g, tx.max_payload(), |c, tag| {
                        tx.send_tagged(c, tag, t).map_err(ring_err)
                    })?;
                }
                return Ok(r);
            }
            buf.clear();
            buf.extend_from_slice(&g);
            drop(g);
        }
        let n = self.recv_rest(buf, false)?;
        let r = check(&buf[..n]);
        if r.is_ok() {
            self.send(&buf[..n])?;
        }
        Ok(r)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(self) -> Result<(), TransportError> {
        // Dropping the producer marks the stream closed for the peer.
        Ok(())
    }
}

/// A one-frame message longer than the link's limit.
fn past_limit(len: usize, max: usize) -> TransportError {
    TransportError::Malformed(format!("a message of {len} bytes past the limit of {max}"))
}

impl ShmRingConn {
    /// Appends frames to `buf` until the last of a message (`first`: none
    /// of this message read yet); the message's length.
    #[inline]
    fn recv_rest(&mut self, buf: &mut Vec<u8>, mut first: bool) -> Result<usize, TransportError> {
        if !first && buf.len() > self.max {
            return Err(TransportError::Malformed(format!(
                "message grows past the limit of {} bytes",
                self.max
            )));
        }
        loop {
            let (_, tag) = match self.rx.recv_append(buf, self.timeout) {
                Ok(r) => r,
                Err(RingError::Closed) if !first => {
                    return Err(TransportError::PeerGone(
                        "the stream ended in the middle of a message (truncated)".into(),
                    ));
                }
                Err(RingError::Timeout) if !first => {
                    self.mid.keep(buf);
                    return Err(TransportError::Timeout);
                }
                Err(e) => return Err(ring_err(e)),
            };
            first = false;
            if buf.len() > self.max {
                return Err(TransportError::Malformed(format!(
                    "message grows past the limit of {} bytes",
                    self.max
                )));
            }
            if tag & MORE == 0 {
                return Ok(buf.len());
            }
        }
    }
}
