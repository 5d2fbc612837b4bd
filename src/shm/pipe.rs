//! A duplex pipe of whole messages of any size, like `multiprocessing.Pipe`:
//! two SPSC rings in one region, one per direction.
//!
//! End 0 writes ring A and reads ring B; end 1 the reverse. A message larger
//! than a ring's frame limit is cut into frames; every frame but the last
//! carries the `MORE` tag, and the receiver joins them. A message is
//! received whole or not at all: the receiver refuses (with
//! [`PipeError::MessageTooLarge`]) a message that grows past its limit,
//! skipping the rest of it, so a hostile sender cannot make it allocate
//! without bound.
//!
//! Dropping an end closes it: the other end's `recv` drains what was sent,
//! then returns [`PipeError::Closed`] (end of stream).

use std::time::{Duration, Instant};

#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(not(loom))]
use super::mem::Backing;
#[cfg(not(loom))]
use super::region::{Kind, Region};
use super::ring::{Consumer, Producer, RingCfg, RingError, RingRef};
use super::wait::Wait;

/// Tag of a frame that is followed by more of the same message.
const MORE: u32 = 1;
/// The default limit on a received message.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// Why a pipe operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The other end closed and everything it sent was received.
    #[error("the other end of the pipe closed (end of stream)")]
    Closed,
    /// The timeout passed.
    #[error("timed out waiting on the pipe")]
    Timeout,
    /// The incoming message is larger than this end accepts.
    #[error(
        "incoming message exceeds this end's limit of {max} bytes; it was skipped (raise it with set_max_message)"
    )]
    MessageTooLarge {
        /// The limit.
        max: usize,
    },
    /// The other end closed in the middle of a message.
    #[error("the other end closed in the middle of a message (truncated)")]
    Truncated,
    /// A send timed out after part of a message went out: the other end
    /// would read the rest of any later message as the rest of that one,
    /// so this end sends no more.
    #[error(
        "a send timed out after {sent} of {len} bytes of a message went out; this end of the pipe sends no more (the other end would read the next message as the rest of that one)"
    )]
    SendBroken {
        /// Bytes of the message that went out.
        sent: usize,
        /// The message's length.
        len: usize,
    },
    /// A ring failed (peer died, memory corrupt, region errors).
    #[error(transparent)]
    Ring(RingError),
}

impl From<RingError> for PipeError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::Closed => PipeError::Closed,
            RingError::Timeout => PipeError::Timeout,
            e => PipeError::Ring(e),
        }
    }
}

/// The pipe as created or opened; take its two ends from it.
pub struct Pipe {
    a: RingRef,
    b: RingRef,
}

impl Pipe {
    /// A pipe on the heap, for threads of one process: returns both ends.
    pub fn on_heap(capacity: usize, wait: Wait) -> Result<(PipeEnd, PipeEnd), PipeError> {
        let cfg = RingCfg::new(capacity, wait)?;
        let p = Pipe {
            a: RingRef::heap(cfg),
            b: RingRef::heap(cfg),
        };
        Ok((p.end(0)?, p.end(1)?))
    }

    /// Creates a pipe whose rings hold `capacity` bytes each, in a new
    /// region `name` (unlinked when the last handle made from it is dropped).
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: usize, wait: Wait) -> Result<Pipe, PipeError> {
        let cfg = RingCfg::new(capacity, wait)?;
        let fp = cfg.footprint();
        let region =
            Region::create(name, Kind::Pipe, 2 * fp, cfg.to_params()).map_err(RingError::from)?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the body holds exactly two footprints, new and unpublished.
        let (a, b) = unsafe {
            (
                RingRef::place(backing.clone(), 0, cfg, true),
                RingRef::place(backing.clone(), fp, cfg, true),
            )
        };
        if let Some(r) = backing.region() {
            r.publish();
        }
        Ok(Pipe { a, b })
    }

    /// Opens the pipe in region `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Pipe, PipeError> {
        let region = Region::open(name, Kind::Pipe).map_err(RingError::from)?;
        let cfg = RingCfg::from_region(&region, 2)?;
        let fp = cfg.footprint();
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: published, and holds two rings of this configuration (checked).
        let (a, b) = unsafe {
            (
                RingRef::place(backing.clone(), 0, cfg, false),
                RingRef::place(backing, fp, cfg, false),
            )
        };
        Ok(Pipe { a, b })
    }

    /// Test support: publishes a garbage frame toward end `which` as the
    /// other end's producer (see [`crate::shm::Ring::inject_garbage`]).
    #[doc(hidden)]
    pub fn inject_garbage(&self, which: u8, oversized: bool) -> Result<Producer, RingError> {
        match which {
            0 => self.b.inject_garbage(oversized),
            _ => self.a.inject_garbage(oversized),
        }
    }

    /// Attaches as end 0 or end 1 (each may be held by one live handle).
    pub fn end(&self, which: u8) -> Result<PipeEnd, PipeError> {
        let (out, inp) = match which {
            0 => (&self.a, &self.b),
            _ => (&self.b, &self.a),
        };
        let tx = out.producer()?;
        let rx = inp.consumer()?;
        Ok(PipeEnd {
            tx,
            rx,
            max_message: DEFAULT_MAX_MESSAGE,
            partial: None,
            broken: None,
        })
    }
}

/// One end of a pipe: sends to and receives from the other end.
pub struct PipeEnd {
    tx: Producer,
    rx: Consumer,
    max_message: usize,
    /// A message whose receive timed out part-way: its frames read so far
    /// (and whether it already grew past the limit), taken up again by
    /// the next `recv`.
    partial: Option<(Vec<u8>, bool)>,
    /// A send that timed out part-way through a message: (sent, len).
    broken: Option<(usize, usize)>,
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

impl PipeEnd {
    /// Limits the size of a message this end accepts.
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    /// Sends one message of any size, waiting for room up to `timeout` in
    /// all. A timeout before the first frame went out sends nothing (try
    /// again); one after it leaves this end unable to send
    /// ([`PipeError::SendBroken`], now and on every later send).
    pub fn send(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<(), PipeError> {
        if let Some((sent, len)) = self.broken {
            return Err(PipeError::SendBroken { sent, len });
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let max = self.tx.max_payload();
        if msg.is_empty() {
            return Ok(self.tx.send_tagged(&[], 0, timeout)?);
        }
        let mut sent = 0;
        let mut chunks = msg.chunks(max).peekable();
        while let Some(c) = chunks.next() {
            let tag = if chunks.peek().is_some() { MORE } else { 0 };
            match self.tx.send_tagged(c, tag, remaining(deadline)) {
                Ok(()) => sent += c.len(),
                Err(RingError::Timeout) if sent > 0 => {
                    let len = msg.len();
                    self.broken = Some((sent, len));
                    return Err(PipeError::SendBroken { sent, len });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Receives one whole message into `buf` (replacing its contents),
    /// waiting up to `timeout` in all; returns its length. A timeout in
    /// the middle of a message keeps what was read of it, and the next
    /// `recv` goes on with it: a message is received whole or not at all.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<usize, PipeError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        buf.clear();
        let (too_large, first) = match self.partial.take() {
            Some((part, too_large)) => {
                *buf = part;
                (too_large, false)
            }
            None => (false, true),
        };
        self.recv_rest(buf, deadline, too_large, first)
    }

    /// Receives one whole message, waiting up to `timeout` in all, and
    /// hands it to `f`: a message of one frame where it lies in the ring
    /// (no copy out; this trusts the other end not to rewrite a frame it
    /// sent, see `Consumer::read`; [`PipeEnd::recv`] copies once), one of
    /// several frames put together in `buf` first. Otherwise as `recv`.
    #[cfg(not(loom))]
    #[inline]
    pub fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PipeError> {
        if self.partial.is_some() {
            let n = self.recv(buf, timeout)?;
            return Ok(f(&buf[..n]));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let g = self.rx.read(timeout)?;
        let too_large = g.len() > self.max_message;
        if g.tag() & MORE == 0 && !too_large {
            return Ok(f(&g));
        }
        buf.clear();
        if !too_large {
            buf.extend_from_slice(&g);
        }
        let more = g.tag() & MORE != 0;
        drop(g);
        if !more {
            return Err(PipeError::MessageTooLarge {
                max: self.max_message,
            });
        }
        let n = self.recv_rest(buf, deadline, too_large, false)?;
        Ok(f(&buf[..n]))
    }

    /// Receives a message's frames into `buf` until its last (`first`:
    /// none of it read yet; `too_large`: it already grew past the limit).
    fn recv_rest(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        mut too_large: bool,
        mut first: bool,
    ) -> Result<usize, PipeError> {
        loop {
            let start = buf.len();
            let (len, tag) = match self.rx.recv_append(buf, remaining(deadline)) {
                Ok(r) => r,
                Err(RingError::Closed) if !first => return Err(PipeError::Truncated),
                Err(RingError::Timeout) if !first => {
                    self.partial = Some((std::mem::take(buf), too_large));
                    return Err(PipeError::Timeout);
                }
                Err(e) => return Err(e.into()),
            };
            first = false;
            if too_large || start + len > self.max_message {
                // Skip the rest of this message; keep memory bounded.
                too_large = true;
                buf.clear();
            }
            if tag & MORE == 0 {
                break;
            }
        }
        if too_large {
            return Err(PipeError::MessageTooLarge {
                max: self.max_message,
            });
        }
        Ok(buf.len())
    }

    /// Waits up to `timeout` for something to receive; `true` if a `recv`
    /// would not block (a message, or the end of the stream, is there).
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, PipeError> {
        Ok(self.rx.poll(timeout)?)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn messages_of_any_size_both_ways() {
        let (mut a, mut b) = Pipe::on_heap(1024, Wait::SPIN_PARK).unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for _ in 0..3 {
                b.recv(&mut buf, None).unwrap();
                b.send(&buf, None).unwrap();
            }
            assert!(matches!(b.recv(&mut buf, None), Err(PipeError::Closed)));
        });
        let mut buf = Vec::new();
        for msg in [&big[..], &[], b"small"] {
            a.send(msg, None).unwrap();
            a.recv(&mut buf, None).unwrap();
            assert_eq!(buf, msg);
        }
        drop(a);
        t.join().unwrap();
    }

    /// `recv_with` hands over what `recv` would: a one-frame message in
    /// place, a fragmented one put together, and refuses an oversized one
    /// (one frame or several) whole, going on with the next.
    #[test]
    fn recv_with_sees_what_recv_sees_and_skips_oversized_whole() {
        // Frames of at most 120 bytes (half the ring less the header).
        let (mut a, mut b) = Pipe::on_heap(256, Wait::SPIN).unwrap();
        b.set_max_message(300);
        let t = std::thread::spawn(move || {
            a.send(b"small", None).unwrap();
            a.send(&[3; 250], None).unwrap();
            a.send(&[7; 1000], None).unwrap();
            a.send(b"after", None).unwrap();
        });
        let mut buf = Vec::new();
        assert_eq!(
            b.recv_with(&mut buf, None, |m| m.to_vec()).unwrap(),
            b"small"
        );
        assert_eq!(
            b.recv_with(&mut buf, None, |m| m.to_vec()).unwrap(),
            vec![3; 250]
        );
        assert!(matches!(
            b.recv_with(&mut buf, None, |m| m.len()),
            Err(PipeError::MessageTooLarge { max: 300 })
        ));
        assert_eq!(
            b.recv_with(&mut buf, None, |m| m.to_vec()).unwrap(),
            b"after"
        );
        t.join().unwrap();
        assert!(matches!(
            b.recv_with(&mut buf, None, |m| m.len()),
            Err(PipeError::Closed)
        ));
        // One frame past the limit.
        let (mut a, mut b) = Pipe::on_heap(256, Wait::SPIN).unwrap();
        b.set_max_message(10);
        a.send(&[1; 50], None).unwrap();
        a.send(b"ok", None).unwrap();
        assert!(matches!(
            b.recv_with(&mut buf, None, |m| m.len()),
            Err(PipeError::MessageTooLarge { max: 10 })
        ));
        assert_eq!(b.recv_with(&mut buf, None, |m| m.to_vec()).unwrap(), b"ok");
    }

    #[test]
    fn oversized_message_is_skipped_whole() {
        let (mut a, mut b) = Pipe::on_heap(256, Wait::SPIN).unwrap();
        b.set_max_message(300);
        let t = std::thread::spawn(move || {
            a.send(&[7; 1000], None).unwrap();
            a.send(b"next", None).unwrap();
        });
        let mut buf = Vec::new();
        assert!(matches!(
            b.recv(&mut buf, None),
            Err(PipeError::MessageTooLarge { max: 300 })
        ));
        b.recv(&mut buf, None).unwrap();
        assert_eq!(buf, b"next");
        t.join().unwrap();
        assert!(
            b.poll(Some(Duration::ZERO)).unwrap(),
            "end of stream polls ready"
        );
    }

    #[test]
    fn a_receive_that_times_out_mid_message_goes_on_with_it_next_time() {
        let (mut a, mut b) = Pipe::on_heap(1024, Wait::SPIN).unwrap();
        let t = Some(Duration::from_millis(5));
        // The first frame of a message, and no more for now.
        a.tx.send_tagged(b"first half, ", MORE, None).unwrap();
        let mut buf = Vec::new();
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Timeout)));
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Timeout)));
        a.tx.send_tagged(b"second half", 0, None).unwrap();
        a.send(b"next", None).unwrap();
        assert_eq!(b.recv(&mut buf, t).unwrap(), 23);
        assert_eq!(buf, b"first half, second half");
        b.recv(&mut buf, t).unwrap();
        assert_eq!(buf, b"next");
        // Cut off for good: truncated, not glued to what follows.
        a.tx.send_tagged(b"cut", MORE, None).unwrap();
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Timeout)));
        drop(a);
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Truncated)));
    }

    #[test]
    fn a_send_that_times_out_mid_message_breaks_sending_and_says_so() {
        let (mut a, mut b) = Pipe::on_heap(256, Wait::SPIN).unwrap();
        let t = Some(Duration::from_millis(5));
        // Nobody reads: the room fills part-way through.
        let err = a.send(&[7; 1000], t).unwrap_err();
        let PipeError::SendBroken { sent, len: 1000 } = err else {
            panic!("{err:?}")
        };
        assert!(sent > 0 && sent < 1000, "{sent}");
        assert!(matches!(
            a.send(b"next", t),
            Err(PipeError::SendBroken { len: 1000, .. })
        ));
        // A timeout before anything went out leaves the end whole.
        let (mut c, _d) = Pipe::on_heap(256, Wait::SPIN).unwrap();
        while c.send(&[1; 16], t).is_ok() {}
        assert!(matches!(c.send(&[1; 16], t), Err(PipeError::Timeout)));
        // What went out is read as a cut-off message, never glued to "next".
        let mut buf = Vec::new();
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Timeout)));
        drop(a);
        assert!(matches!(b.recv(&mut buf, t), Err(PipeError::Truncated)));
    }
}
