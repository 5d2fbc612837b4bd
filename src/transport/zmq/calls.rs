//! Calls over ZeroMQ (reqrep): as ZeroMQ's users build a request/reply
//! service, each client a `REQ` socket and the server one `ROUTER`, which
//! takes requests from every client fair-queued and routes each reply to
//! the client that asked (by the identity frame it prepends). What the
//! calls mean (a dictionary's set and get) is the caller's business: here
//! a request and a reply are opaque bytes.
//!
//! The server binds the channel's one listener (`parties` = clients, 1),
//! like a shared channel's receiver; clients connect, without reconnecting.
//! The coordinator ends the server with a call of its own carrying an
//! empty request (no client's request is empty), answered [`ENDED`].
//! A client whose server's connection drops reports the peer gone; the
//! server does not watch its clients (the coordinator does).

use std::time::{Duration, Instant};

use super::{Family, Peers, Watched, events, poll_until, zerr};
use crate::transport::{Endpoint, LinkOpts, TransportError, TransportKind, check_len};

/// The server's answer to the coordinator's end.
const ENDED: &[u8] = b"ended";

/// The server: a `ROUTER` on the channel's listener.
pub struct CallServer {
    w: Watched,
    msg: zmq::Message,
    max: usize,
    /// Connections made and dropped, by the monitor (read at the end:
    /// a point's few events wait in its queue, far below its limit). The
    /// server does not judge its clients, so it does not tell them from
    /// strangers: a stranger's drop can only end the wait for them early.
    conns: Peers,
    /// The identity of the client whose request was read last, which
    /// [`CallServer::answer`] answers (a `REQ` waits for its answer).
    who: Vec<u8>,
}

/// A client: a `REQ` connected to the server.
pub struct Caller {
    w: Watched,
    msg: zmq::Message,
    max: usize,
    timeout: Option<Duration>,
}

impl CallServer {
    fn join<F: Family>(ep: &Endpoint, opts: &LinkOpts) -> Result<CallServer, TransportError> {
        let (w, clients) = Watched::bound::<F>(ep, zmq::ROUTER, opts)?;
        let mut conns = Peers::default();
        conns.handshakes(w.mon(), clients, "the clients")?;
        Ok(CallServer {
            w,
            msg: zmq::Message::new(),
            max: opts.max_message,
            conns,
            who: Vec::new(),
        })
    }

    /// The next request, into `buf` (its client's identity kept for
    /// [`CallServer::answer`]); false once the coordinator's end arrived
    /// (answered).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, TransportError> {
        let sock = self.w.sock();
        // [identity][empty delimiter][request], as a REQ sends through a ROUTER.
        sock.recv(&mut self.msg, 0)
            .map_err(|e| zerr("zmq_recv", e))?;
        self.who.clear();
        self.who.extend_from_slice(&self.msg);
        let mut parts = 1;
        let mut body = None;
        while sock.get_rcvmore().map_err(|e| zerr("ZMQ_RCVMORE", e))? {
            sock.recv(&mut self.msg, 0)
                .map_err(|e| zerr("zmq_recv", e))?;
            parts += 1;
            if parts == 3 {
                body = Some(self.msg.len());
                if self.msg.len() > self.max {
                    return Err(TransportError::Malformed(format!(
                        "a request of {} bytes, beyond the channel's limit of {}",
                        self.msg.len(),
                        self.max
                    )));
                }
                buf.clear();
                buf.extend_from_slice(&self.msg);
            }
        }
        match body {
            Some(0) if parts == 3 => {
                self.answer(ENDED)?;
                // The end's answer goes out before the socket closes (up to
                // the linger).
                self.w.linger = super::LINGER_MS;
                self.until_all_left(Duration::from_millis(super::LINGER_MS as u64));
                Ok(false)
            }
            Some(_) if parts == 3 => Ok(true),
            _ => Err(TransportError::Malformed(format!(
                "a request of {parts} parts, where a REQ sends 3 (identity, delimiter, body)"
            ))),
        }
    }

    /// Waits (up to `wait`) until every connection is gone, the
    /// coordinator's last: over `ipc://` libzmq stops reading a connection
    /// whose peer hung up, so leaving first could lose the end's answer.
    fn until_all_left(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            self.conns.feed(self.w.mon());
            if self.conns.dropped.len() >= self.conns.up {
                return;
            }
            let mut items = [self.w.mon().as_poll_item(zmq::POLLIN)];
            if poll_until(&mut items, Some(deadline)).is_err() {
                return;
            }
        }
    }

    /// Sends `reply` to the client whose request was read last.
    pub fn answer(&mut self, reply: &[u8]) -> Result<(), TransportError> {
        self.w
            .sock()
            .send_multipart([&self.who[..], &b""[..], reply], 0)
            .map_err(|e| zerr("zmq_send", e))
    }
}

impl Caller {
    fn join<F: Family>(ep: &Endpoint, opts: &LinkOpts) -> Result<Caller, TransportError> {
        Ok(Caller {
            w: Watched::connected::<F>(ep, zmq::REQ, opts, "the server")?,
            msg: zmq::Message::new(),
            max: opts.max_message,
            timeout: None,
        })
    }

    /// Bounds each call (`None`: unbounded).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Sends `req` and waits for its reply, into `reply`.
    pub fn call(&mut self, req: &[u8], reply: &mut Vec<u8>) -> Result<(), TransportError> {
        check_len(req.len(), self.max)?;
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let (sock, mon) = (self.w.sock(), self.w.mon());
        // A REQ's send does not wait for the connection (one, made).
        sock.send(req, 0).map_err(|e| zerr("zmq_send", e))?;
        let mut gone = false;
        loop {
            match sock.recv(&mut self.msg, zmq::DONTWAIT) {
                Ok(()) if self.msg.get_more() => {
                    return Err(TransportError::Malformed("a reply of several parts".into()));
                }
                Ok(()) => {
                    reply.clear();
                    reply.extend_from_slice(&self.msg);
                    return Ok(());
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(zerr("zmq_recv", e)),
            }
            if gone {
                return Err(TransportError::PeerGone(
                    "ZeroMQ reports the server's connection dropped (it died)".into(),
                ));
            }
            if events(mon).1 > 0 {
                // One more try reads a reply that arrived before the drop.
                gone = true;
                continue;
            }
            let mut items = [
                sock.as_poll_item(zmq::POLLIN),
                mon.as_poll_item(zmq::POLLIN),
            ];
            poll_until(&mut items, deadline)?;
        }
    }
}

/// Sets up the channel of a service over `kind`: one listener (the
/// server's, or a task farm's master's) for `opts.parties`' clients (or
/// workers).
pub fn calls_setup(
    kind: TransportKind,
    opts: &LinkOpts,
) -> Result<(super::ZmqSetup, Endpoint), TransportError> {
    use crate::transport::Transport;
    let opts = LinkOpts {
        parties: Some((opts.parties.map_or(1, |(clients, _)| clients), 1)),
        ..opts.clone()
    };
    with_family!(kind, F => F::setup(&opts))
}

/// The server of calls over `kind`'s channel at `ep` (its side B).
pub fn call_server(
    kind: TransportKind,
    ep: &Endpoint,
    opts: &LinkOpts,
) -> Result<CallServer, TransportError> {
    with_family!(kind, F => CallServer::join::<F>(ep, opts))
}

/// A client of the calls over `kind`'s channel at `ep` (its side A).
pub fn caller(
    kind: TransportKind,
    ep: &Endpoint,
    opts: &LinkOpts,
) -> Result<Caller, TransportError> {
    with_family!(kind, F => Caller::join::<F>(ep, opts))
}

/// Ends the server of `kind`'s channel at `ep`, from the coordinator: a
/// call with an empty request, waiting at most `wait` for its answer.
pub fn end_calls(kind: TransportKind, ep: &Endpoint, wait: Duration) -> Result<(), TransportError> {
    let opts = LinkOpts {
        max_message: 64,
        ..LinkOpts::default()
    };
    let ours = Endpoint {
        in_child: false,
        ..ep.clone()
    };
    let mut c = with_family!(kind, F => Caller::join::<F>(&ours, &opts))?;
    c.set_timeout(Some(wait));
    let mut reply = Vec::new();
    c.call(&[], &mut reply)?;
    if reply != ENDED {
        return Err(TransportError::Malformed(format!(
            "the server answered its end with {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients call a server in threads, each reply routed to its
    /// caller; the coordinator's end stops the server.
    #[test]
    fn replies_reach_their_callers_and_the_end_stops_the_server() {
        for kind in [TransportKind::ZmqIpc, TransportKind::ZmqTcp] {
            let opts = LinkOpts {
                max_message: 1024,
                parties: Some((2, 1)),
                ..LinkOpts::default()
            };
            let (setup, ep) = calls_setup(kind, &opts).unwrap();
            let server = {
                let (ep, opts) = (ep.clone(), opts.clone());
                std::thread::spawn(move || {
                    let mut s = call_server(kind, &ep, &opts).unwrap();
                    let mut buf = Vec::new();
                    let mut n = 0;
                    while s.next(&mut buf).unwrap() {
                        let mut r = b"re:".to_vec();
                        r.extend_from_slice(&buf);
                        s.answer(&r).unwrap();
                        n += 1;
                    }
                    n
                })
            };
            let clients: Vec<_> = (0..2u8)
                .map(|c| {
                    let (ep, opts) = (ep.clone(), opts.clone());
                    std::thread::spawn(move || {
                        let mut k = caller(kind, &ep, &opts).unwrap();
                        let mut reply = Vec::new();
                        for i in 0..100u8 {
                            k.call(&[c, i], &mut reply).unwrap();
                            assert_eq!(reply, [b'r', b'e', b':', c, i]);
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            end_calls(kind, &ep, Duration::from_secs(10)).unwrap();
            assert_eq!(server.join().unwrap(), 200, "{kind}");
            drop(setup);
        }
    }
}
