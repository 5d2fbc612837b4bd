//! `shm-queue`: two bounded MPMC queues in shared memory (the counterpart of
//! `multiprocessing.Queue`), one per direction.
//!
//! Slots hold up to 1 MiB (or [`LinkOpts::max_message`] if smaller); a
//! larger message is cut into items tagged `MORE` but the last, which keeps
//! its order only while one process puts into and one gets from that
//! direction (as in a 1×1 link). Where several processes share a queue,
//! messages must fit in a slot: [`ShmQueue::SLOT_LIMIT`]. Closing a side closes its sending queue: the peer drains it, then
//! reads the end of the stream.

use std::time::Duration;

use super::shm_ring::{MORE, MidMessage};
use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    addr_rest,
};
use crate::shm::{Queue, QueueError, unique_name};

/// The largest slot a link's queue uses.
const MAX_SLOT: usize = 1 << 20;

impl ShmQueue {
    /// The largest message several processes can share a queue for (it is
    /// never cut into items, which other consumers would take).
    pub const SLOT_LIMIT: usize = MAX_SLOT;
}

fn truncated() -> TransportError {
    TransportError::PeerGone("the stream ended in the middle of a message (truncated)".into())
}

fn queue_err(e: QueueError) -> TransportError {
    match e {
        QueueError::Closed => TransportError::Closed,
        QueueError::Timeout => TransportError::Timeout,
        QueueError::PeerGone(p) => {
            TransportError::PeerGone(format!("process {} died while using the queue", p.pid))
        }
        QueueError::Corrupt(why) => {
            TransportError::Malformed(format!("queue memory is corrupt: {why}"))
        }
        QueueError::TooLarge { len, max } => TransportError::TooLarge { len, max },
        e => TransportError::Setup(e.to_string()),
    }
}

/// The `shm-queue` strategy.
pub struct ShmQueue;

/// The two queues, owned by the coordinator (unlinked on drop).
pub struct ShmQueueSetup {
    _queues: [Queue; 2],
}

/// One side: puts into one queue, gets from the other.
pub struct ShmQueueConn {
    tx: Queue,
    rx: Queue,
    max: usize,
    timeout: Option<Duration>,
    /// Close our sending queue when dropped (a 1×1 link); not when this
    /// side only leaves a queue others still send into.
    close_on_drop: bool,
    mid: MidMessage,
}

impl LinkSetup for ShmQueueSetup {
    fn end_stream(&mut self) -> Result<(), TransportError> {
        self._queues[0].close();
        Ok(())
    }
}

/// The queue names (A→B, B→A) in an address.
fn queue_names(addr: &str) -> Result<(&str, &str), TransportError> {
    addr_rest(addr, ShmQueue::NAME)?
        .split_once(',')
        .ok_or_else(|| TransportError::Setup(format!("bad shm-queue address `{addr}`")))
}

impl Inject for ShmQueue {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (ab, ba) = queue_names(&ep.addr)?;
        let inbound = if victim == Side::A { ba } else { ab };
        let q = Queue::open(inbound).map_err(queue_err)?;
        q.inject_garbage(what == Malformation::OversizedLength);
        // Keep the stand-in's registration alive until the test drops it,
        // as a producer that stalls mid-message would.
        Ok(Box::new(SendQueue(q)))
    }
}

/// The stand-in's queue handle; when it goes, its direction closes, as a
/// sender that stops in the middle of a message.
struct SendQueue(Queue);

impl Drop for SendQueue {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Transport for ShmQueue {
    const NAME: &'static str = "shm-queue";
    type Setup = ShmQueueSetup;
    type Conn = ShmQueueConn;

    fn setup(opts: &LinkOpts) -> Result<(ShmQueueSetup, Endpoint), TransportError> {
        let slot = opts.max_message.clamp(8, MAX_SLOT);
        let depth = (opts.capacity / slot).clamp(2, 1 << 16).next_power_of_two();
        let names = [
            unique_name(&format!("{}-ab", opts.label)),
            unique_name(&format!("{}-ba", opts.label)),
        ];
        let ab = Queue::create(&names[0], depth, slot, opts.wait).map_err(queue_err)?;
        let ba = Queue::create(&names[1], depth, slot, opts.wait).map_err(queue_err)?;
        Ok((
            ShmQueueSetup { _queues: [ab, ba] },
            Endpoint::new(
                format!("{}:{},{}", Self::NAME, names[0], names[1]),
                Vec::new(),
            ),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<ShmQueueConn, TransportError> {
        let (ab, ba) = queue_names(&ep.addr)?;
        let (out, inp) = match side {
            Side::A => (ab, ba),
            Side::B => (ba, ab),
        };
        Ok(ShmQueueConn {
            tx: Queue::open(out).map_err(queue_err)?,
            rx: Queue::open(inp).map_err(queue_err)?,
            max: opts.max_message,
            timeout: None,
            close_on_drop: true,
            mid: MidMessage::default(),
        })
    }
}

impl Conn for ShmQueueConn {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        let (tx, t) = (&self.tx, self.timeout);
        self.mid.send(msg, tx.slot_size(), |c, tag| {
            tx.put_tagged(c, tag, t).map_err(queue_err)
        })
    }

    /// A timeout in the middle of a message keeps what was read of it,
    /// and the next receive goes on with it.
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        let tag = if self.mid.resume(buf) {
            MORE
        } else {
            let (_, tag) = self.rx.get_tagged(buf, self.timeout).map_err(queue_err)?;
            if tag & MORE == 0 {
                return Ok(buf.len());
            }
            tag
        };
        self.recv_more(buf, tag)
    }

    /// A message of one item is handed to `f` in its slot, no copy out
    /// (this trusts the putters not to rewrite a slot they published: see
    /// `shm::Queue::get_with`; [`Conn::recv`] copies once); a fragmented
    /// one is put together in `buf` first.
    #[inline]
    fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        if !self.mid.resume(buf) {
            let mut f = Some(f);
            let whole = self
                .rx
                .get_with(self.timeout, |item, tag| {
                    if tag & MORE == 0 {
                        Some((f.take().expect("called once"))(item))
                    } else {
                        buf.clear();
                        buf.extend_from_slice(item);
                        None
                    }
                })
                .map_err(queue_err)?;
            return match whole {
                Some(r) => Ok(r),
                None => {
                    let n = self.recv_more(buf, MORE)?;
                    Ok((f.take().expect("not called"))(&buf[..n]))
                }
            };
        }
        let n = self.recv_more(buf, MORE)?;
        Ok(f(&buf[..n]))
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(self) -> Result<(), TransportError> {
        Ok(())
    }

    fn leave(mut self) -> Result<(), TransportError> {
        self.close_on_drop = false;
        Ok(())
    }
}

impl ShmQueueConn {
    /// Appends the items after the first of a message (`tag`: the last
    /// one's) to `buf`, until the last; the message's length.
    fn recv_more(&mut self, buf: &mut Vec<u8>, mut tag: u32) -> Result<usize, TransportError> {
        let mut part = Vec::new();
        while tag & MORE != 0 {
            tag = match self.rx.get_tagged(&mut part, self.timeout) {
                Ok((_, tag)) => tag,
                Err(QueueError::Closed) => return Err(truncated()),
                Err(QueueError::Timeout) => {
                    self.mid.keep(buf);
                    return Err(TransportError::Timeout);
                }
                Err(e) => return Err(queue_err(e)),
            };
            buf.extend_from_slice(&part);
            if buf.len() > self.max {
                return Err(TransportError::Malformed(format!(
                    "message grows past the limit of {} bytes",
                    self.max
                )));
            }
        }
        Ok(buf.len())
    }
}

impl Drop for ShmQueueConn {
    fn drop(&mut self) {
        // Our direction ends: the peer drains what is queued, then reads Closed.
        if self.close_on_drop {
            self.tx.close();
        }
    }
}
