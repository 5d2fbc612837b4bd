//! Channels several processes share over ZeroMQ (fan-in, fan-out,
//! mpmc): brokerless `PUSH` and `PULL`, each receiver binding a `PULL`
//! that every sender's `PUSH` connects to.

use std::time::{Duration, Instant};

use super::{DROP_WAIT, HELLO, Peers, events, handshake, open, poll_until, wait_by, zerr};
use crate::transport::unix_stream::ACCEPT_TIMEOUT;
use crate::transport::{LinkOpts, TransportError, check_len};

/// A sender of a shared channel. ZeroMQ's `PUSH` deals messages
/// round-robin over its connections, passing over one at its high-water
/// mark; this sender does the same over one `PUSH` per receiver, so that
/// when it leaves it can end the stream down every connection, behind its
/// last message (ZeroMQ keeps order per connection, not across them).
/// It then waits until every receiver has let go (each does once every
/// sender's end arrived): leaving earlier could lose the end over
/// `ipc://` (see [`super::ZmqConn`]'s close).
pub struct Producer {
    outs: Vec<(zmq::Socket, zmq::Socket)>,
    ctx: zmq::Context,
    next: usize,
    max: usize,
    pub(super) timeout: Option<Duration>,
    done: bool,
}

/// The second part of a sender's end of stream.
const END: &[u8] = b"end";

impl Producer {
    pub(super) fn join(
        urls: &[String],
        token: Option<&str>,
        opts: &LinkOpts,
    ) -> Result<Producer, TransportError> {
        let ctx = zmq::Context::new();
        let mut outs = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let (sock, mon, _) = open(&ctx, zmq::PUSH, i, url, None, token, opts.max_message)?;
            outs.push((sock, mon));
        }
        for (i, (sock, mon)) in outs.iter().enumerate() {
            handshake(mon, &format!("receiver {i}"))?;
            // The receiver knows this sender's connection by it.
            sock.send_multipart([&b""[..], HELLO], 0)
                .map_err(|e| zerr("sending a sender's hello", e))?;
        }
        Ok(Producer {
            outs,
            ctx,
            next: 0,
            max: opts.max_message,
            timeout: None,
            done: false,
        })
    }

    fn gone(&self) -> TransportError {
        TransportError::PeerGone("ZeroMQ reports a receiver's connection dropped (it died)".into())
    }

    pub(super) fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        check_len(msg.len(), self.max)?;
        if self.done {
            return Err(TransportError::Broken(
                "this sender left the channel".into(),
            ));
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let n = self.outs.len();
        loop {
            for k in 0..n {
                let i = (self.next + k) % n;
                match self.outs[i].0.send(msg, zmq::DONTWAIT) {
                    Ok(()) => {
                        self.next = (i + 1) % n;
                        return Ok(());
                    }
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(zerr("zmq_send", e)),
                }
            }
            // Every connection is at its high-water mark.
            if self.outs.iter().any(|(_, mon)| events(mon).1 > 0) {
                return Err(self.gone());
            }
            let mut items: Vec<zmq::PollItem> = self
                .outs
                .iter()
                .flat_map(|(s, m)| [s.as_poll_item(zmq::POLLOUT), m.as_poll_item(zmq::POLLIN)])
                .collect();
            poll_until(&mut items, deadline)?;
        }
    }

    /// Ends the stream down every connection, then waits (up to the
    /// linger) until every receiver has let go.
    pub(super) fn finish(&mut self, wait: Duration) -> Result<(), TransportError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let deadline = Instant::now() + wait;
        let mut result = Ok(());
        for (sock, _) in &self.outs {
            sock.set_sndtimeo(wait.as_millis() as i32).ok();
            if let Err(e) = sock.send_multipart([&b""[..], END], 0) {
                result = Err(zerr("sending the end of the stream", e));
            }
        }
        let mut left: Vec<bool> = vec![true; self.outs.len()];
        while result.is_ok() && left.iter().any(|&l| l) {
            for (i, (_, mon)) in self.outs.iter().enumerate() {
                if events(mon).1 > 0 {
                    left[i] = false;
                }
            }
            let mut items: Vec<zmq::PollItem> = self
                .outs
                .iter()
                .zip(&left)
                .filter(|(_, l)| **l)
                .map(|((_, m), _)| m.as_poll_item(zmq::POLLIN))
                .collect();
            if items.is_empty() {
                break;
            }
            if let Err(e) = poll_until(&mut items, Some(deadline)) {
                result = Err(match e {
                    TransportError::Timeout => TransportError::Broken(format!(
                        "{} receiver(s) did not take the end of the stream within {:?}",
                        left.iter().filter(|&&l| l).count(),
                        wait
                    )),
                    e => e,
                });
            }
        }
        for (sock, _) in &self.outs {
            let _ = sock.set_linger(0);
        }
        self.outs.clear();
        let _ = self.ctx.destroy();
        result
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.finish(DROP_WAIT);
    }
}

/// A receiver of a shared channel: a `PULL` socket (fair-queued over the
/// senders' connections) bound on its own listener. The stream ends once
/// every sender's end has arrived; a connection that drops before that
/// is a sender gone.
pub struct Consumer {
    sock: Option<zmq::Socket>,
    mon: Option<zmq::Socket>,
    zap: Option<std::thread::JoinHandle<()>>,
    ctx: zmq::Context,
    msg: zmq::Message,
    producers: usize,
    ends: usize,
    gone: bool,
    max: usize,
    pub(super) timeout: Option<Duration>,
    /// Which connections are the senders'.
    peers: Peers,
    /// What senders sent while the others' hellos were awaited.
    early: std::collections::VecDeque<zmq::Message>,
}

/// What [`Consumer::take`] received.
enum Got {
    Data,
    Hello,
    End,
}

impl Consumer {
    pub(super) fn join(
        url: &str,
        listener: std::os::fd::OwnedFd,
        token: Option<String>,
        producers: usize,
        opts: &LinkOpts,
    ) -> Result<Consumer, TransportError> {
        let ctx = zmq::Context::new();
        let (sock, mon, zap) = open(
            &ctx,
            zmq::PULL,
            0,
            url,
            Some(listener),
            token.as_deref(),
            opts.max_message,
        )?;
        let mut c = Consumer {
            sock: Some(sock),
            mon: Some(mon),
            zap,
            ctx,
            msg: zmq::Message::new(),
            producers,
            ends: 0,
            gone: false,
            max: opts.max_message,
            timeout: None,
            peers: Peers::default(),
            early: std::collections::VecDeque::new(),
        };
        let mon = c.mon.as_ref().expect("just made");
        c.peers.handshakes(mon, producers, "the senders")?;
        c.hear_hellos()?;
        Ok(c)
    }

    /// Reads every sender's hello, by the accept deadline, keeping what
    /// a sender that said it already sent meanwhile.
    fn hear_hellos(&mut self) -> Result<(), TransportError> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        while self.peers.known < self.producers {
            match self.take()? {
                Some(Got::Data) => self
                    .early
                    .push_back(std::mem::replace(&mut self.msg, zmq::Message::new())),
                Some(_) => {}
                None => {
                    let (known, n) = (self.peers.known, self.producers);
                    wait_by(&[self.sock(), self.mon()], deadline, || {
                        format!("{known} of {n} senders said hello")
                    })?;
                    let mon = self.mon.as_ref().expect("the monitor lives until drop");
                    self.peers.feed(mon);
                }
            }
        }
        self.peers.settled = true;
        Ok(())
    }

    fn sock(&self) -> &zmq::Socket {
        self.sock.as_ref().expect("the socket lives until drop")
    }

    fn mon(&self) -> &zmq::Socket {
        self.mon.as_ref().expect("the monitor lives until drop")
    }

    /// Receives the next message, if one is there, into `self.msg`.
    fn take(&mut self) -> Result<Option<Got>, TransportError> {
        let sock = self.sock.as_ref().expect("the socket lives until drop");
        match sock.recv(&mut self.msg, zmq::DONTWAIT) {
            Ok(()) if !self.msg.get_more() => {
                if self.msg.len() > self.max {
                    return Err(TransportError::Malformed(format!(
                        "a message of {} bytes, beyond the channel's limit of {}",
                        self.msg.len(),
                        self.max
                    )));
                }
                Ok(Some(Got::Data))
            }
            Ok(()) => {
                let first_empty = self.msg.is_empty();
                sock.recv(&mut self.msg, 0)
                    .map_err(|e| zerr("zmq_recv", e))?;
                if !first_empty || self.msg.get_more() {
                    Err(TransportError::Malformed(
                        "a message of several parts that is not a sender's hello or end".into(),
                    ))
                } else if &self.msg[..] == END {
                    self.ends += 1;
                    Ok(Some(Got::End))
                } else if &self.msg[..] == HELLO && self.peers.known < self.producers {
                    let mon = self.mon.as_ref().expect("the monitor lives until drop");
                    self.peers.know(mon, &mut self.msg)?;
                    Ok(Some(Got::Hello))
                } else {
                    Err(TransportError::Malformed(format!(
                        "a message of two parts, {:?}, where a sender's hello (once) or end is",
                        String::from_utf8_lossy(&self.msg)
                    )))
                }
            }
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => Ok(None),
            Err(e) => Err(zerr("zmq_recv", e)),
        }
    }

    pub(super) fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TransportError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = self.early.pop_front() {
                return Ok(f(&m));
            }
            if self.ends == self.producers {
                return Err(TransportError::Closed);
            }
            match self.take()? {
                Some(Got::Data) => return Ok(f(&self.msg)),
                Some(_) => continue,
                None => {}
            }
            if self.gone {
                return Err(TransportError::PeerGone(format!(
                    "ZeroMQ reports a sender's connection dropped before its end \
                     ({} of {} senders ended)",
                    self.ends, self.producers
                )));
            }
            let mon = self.mon.as_ref().expect("the monitor lives until drop");
            if self.peers.gone(mon) > 0 {
                // One more try reads what arrived before the drop.
                self.gone = true;
                continue;
            }
            let mut items = [
                self.sock().as_poll_item(zmq::POLLIN),
                mon.as_poll_item(zmq::POLLIN),
            ];
            poll_until(&mut items, deadline)?;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = s.set_linger(0);
        }
        self.mon = None;
        let _ = self.ctx.destroy();
        if let Some(t) = self.zap.take() {
            let _ = t.join();
        }
    }
}
