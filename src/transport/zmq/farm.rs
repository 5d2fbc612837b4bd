//! Task farms over ZeroMQ, as its users build a load-balanced farm: the
//! master one `ROUTER`, each worker a `DEALER` that says it is ready and
//! then takes tasks and answers each. The `ROUTER` prepends to what it
//! receives the identity it gave the connection, and routes what it sends
//! by that identity, so the master chooses which worker gets each task
//! (the harness keeps a few in flight per worker: credit, as ZeroMQ's
//! guide calls it, rather than `PUSH`'s blind round-robin, which would
//! queue tasks behind a slow worker). What a task and a result mean is the
//! caller's business: here they are opaque bytes, never empty.
//!
//! The master binds the channel's one listener ([`super::calls_setup`]
//! with the workers as its clients); workers connect, without
//! reconnecting. A worker's first message is `ready N` (its number, for
//! errors to name); the master ends each worker with an empty message.
//! `ZMQ_ROUTER_MANDATORY` makes a task for a worker whose connection is
//! gone an error instead of a message silently dropped; a connection that
//! drops while the farm runs is a worker gone, and the worker's side
//! reports the master gone the same way.

use std::time::{Duration, Instant};

use super::{Family, Peers, Watched, poll_until, zerr};
use crate::transport::unix_stream::ACCEPT_TIMEOUT;
use crate::transport::{Endpoint, LinkOpts, TransportError, TransportKind, check_len};

/// What a worker's first message starts with.
const READY: &str = "ready ";

/// The master of a farm: a `ROUTER` on the channel's listener.
pub struct FarmMaster {
    w: Watched,
    msg: zmq::Message,
    /// Each worker's identity, by its number.
    ids: Vec<Vec<u8>>,
    /// The identity of the last message's sender (kept for its buffer).
    from: Vec<u8>,
    max: usize,
    /// The monitor said a connection dropped; set once what came before
    /// it was read.
    gone: bool,
    /// Every worker was sent its end.
    ended: bool,
    /// Which connections are the workers' (each known by its `ready N`).
    peers: Peers,
}

/// A worker of a farm: a `DEALER` connected to the master.
pub struct FarmWorker {
    w: Watched,
    msg: zmq::Message,
    max: usize,
    gone: bool,
}

impl FarmMaster {
    fn join<F: Family>(ep: &Endpoint, opts: &LinkOpts) -> Result<FarmMaster, TransportError> {
        let (w, workers) = Watched::bound::<F>(ep, zmq::ROUTER, opts)?;
        w.sock()
            .set_router_mandatory(true)
            .map_err(|e| zerr("setting ZMQ_ROUTER_MANDATORY", e))?;
        let mut peers = Peers::default();
        peers.handshakes(w.mon(), workers, "the workers")?;
        let mut m = FarmMaster {
            w,
            msg: zmq::Message::new(),
            ids: vec![Vec::new(); workers],
            from: Vec::new(),
            max: opts.max_message,
            gone: false,
            ended: false,
            peers,
        };
        m.hear_every_worker()?;
        m.peers.settled = true;
        Ok(m)
    }

    /// Reads every worker's `ready N`, learning its identity, by the
    /// accept deadline.
    fn hear_every_worker(&mut self) -> Result<(), TransportError> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        let mut heard = 0;
        while heard < self.ids.len() {
            let mut id = Vec::new();
            let mut body = Vec::new();
            self.recv_parts(&mut id, &mut body, Some(deadline))
                .map_err(|e| match e {
                    TransportError::Timeout => TransportError::Setup(format!(
                        "{heard} of {} workers said they were ready within {} s",
                        self.ids.len(),
                        ACCEPT_TIMEOUT.as_secs()
                    )),
                    e => e,
                })?;
            let n = std::str::from_utf8(&body)
                .ok()
                .and_then(|s| s.strip_prefix(READY))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    TransportError::Malformed(format!(
                        "a worker's first message was {:?}, not `{READY}N`",
                        String::from_utf8_lossy(&body)
                    ))
                })?;
            match self.ids.get_mut(n) {
                Some(slot) if slot.is_empty() => {
                    *slot = id;
                    self.peers.know(self.w.mon(), &mut self.msg)?;
                }
                Some(_) => {
                    return Err(TransportError::Malformed(format!(
                        "worker {n} said it was ready twice"
                    )));
                }
                None => {
                    return Err(TransportError::Malformed(format!(
                        "worker {n} of a farm of {}",
                        self.ids.len()
                    )));
                }
            }
            heard += 1;
        }
        Ok(())
    }

    /// The farm's workers.
    pub fn workers(&self) -> usize {
        self.ids.len()
    }

    /// Sends `task` to worker `w`.
    pub fn send_to(&mut self, w: usize, task: &[u8]) -> Result<(), TransportError> {
        check_len(task.len(), self.max)?;
        if task.is_empty() {
            return Err(TransportError::Setup(
                "an empty task (the empty message ends a worker)".into(),
            ));
        }
        self.send_parts(w, task)
    }

    fn send_parts(&mut self, w: usize, body: &[u8]) -> Result<(), TransportError> {
        let id = &self.ids[w];
        match self.w.sock().send_multipart([&id[..], body], zmq::DONTWAIT) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EHOSTUNREACH) => Err(TransportError::PeerGone(format!(
                "ZeroMQ reports worker {w}'s connection gone (it died)"
            ))),
            // The caller keeps a few tasks per worker in flight, far below
            // the high-water mark (1,000).
            Err(zmq::Error::EAGAIN) => Err(TransportError::Broken(format!(
                "worker {w}'s queue is at ZeroMQ's high-water mark"
            ))),
            Err(e) => Err(zerr("zmq_send", e)),
        }
    }

    /// The next result, into `buf`, waiting at most `timeout` (`None`:
    /// for ever); the number of the worker that sent it.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<usize, TransportError> {
        let mut id = std::mem::take(&mut self.from);
        let r = self.recv_parts(&mut id, buf, timeout.map(|t| Instant::now() + t));
        let r = r.and_then(|()| {
            self.ids.iter().position(|w| *w == id).ok_or_else(|| {
                TransportError::Malformed(
                    "a message from a connection that is none of the farm's workers".into(),
                )
            })
        });
        self.from = id;
        r.and_then(|w| {
            if buf.is_empty() {
                Err(TransportError::Malformed(format!(
                    "an empty result from worker {w}"
                )))
            } else {
                Ok(w)
            }
        })
    }

    /// Receives `[identity][body]`, as a `DEALER`'s message reaches a
    /// `ROUTER`, by `deadline`.
    fn recv_parts(
        &mut self,
        id: &mut Vec<u8>,
        body: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportError> {
        loop {
            let sock = self.w.sock();
            match sock.recv(&mut self.msg, zmq::DONTWAIT) {
                Ok(()) => {
                    id.clear();
                    id.extend_from_slice(&self.msg);
                    let mut parts = 1;
                    while sock.get_rcvmore().map_err(|e| zerr("ZMQ_RCVMORE", e))? {
                        sock.recv(&mut self.msg, 0)
                            .map_err(|e| zerr("zmq_recv", e))?;
                        parts += 1;
                        if parts == 2 {
                            if self.msg.len() > self.max {
                                return Err(TransportError::Malformed(format!(
                                    "a message of {} bytes, beyond the farm's limit of {}",
                                    self.msg.len(),
                                    self.max
                                )));
                            }
                            body.clear();
                            body.extend_from_slice(&self.msg);
                        }
                    }
                    if parts != 2 {
                        return Err(TransportError::Malformed(format!(
                            "a message of {parts} parts, where a worker's has 2 (identity, body)"
                        )));
                    }
                    return Ok(());
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(zerr("zmq_recv", e)),
            }
            if self.gone {
                return Err(TransportError::PeerGone(
                    "ZeroMQ reports a worker's connection dropped (it died)".into(),
                ));
            }
            let mon = self.w.mon();
            if self.peers.gone(mon) > 0 {
                // One more try reads what arrived before the drop.
                self.gone = true;
                continue;
            }
            let mut items = [
                sock.as_poll_item(zmq::POLLIN),
                mon.as_poll_item(zmq::POLLIN),
            ];
            poll_until(&mut items, deadline)?;
        }
    }

    /// Ends every worker (an empty message each), then waits (up to the
    /// linger) until each has let go: over `ipc://` libzmq stops reading
    /// a connection whose peer hung up, so leaving first could lose an end.
    pub fn end(&mut self) -> Result<(), TransportError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        // The ends go out before the socket closes (up to the linger).
        self.w.linger = super::LINGER_MS;
        for w in 0..self.ids.len() {
            self.send_parts(w, b"")?;
        }
        let deadline = Instant::now() + Duration::from_millis(super::LINGER_MS as u64);
        loop {
            let mon = self.w.mon();
            if self.peers.gone(mon) >= self.peers.known {
                return Ok(());
            }
            let mut items = [mon.as_poll_item(zmq::POLLIN)];
            poll_until(&mut items, Some(deadline)).map_err(|e| match e {
                TransportError::Timeout => TransportError::Broken(format!(
                    "{} worker(s) did not let go within {} ms of their end",
                    self.peers.known - self.peers.gone,
                    super::LINGER_MS
                )),
                e => e,
            })?;
        }
    }
}

impl FarmWorker {
    fn join<F: Family>(
        ep: &Endpoint,
        opts: &LinkOpts,
        number: usize,
    ) -> Result<FarmWorker, TransportError> {
        let w = Watched::connected::<F>(ep, zmq::DEALER, opts, "the master")?;
        // Connected: the hello leaves at once.
        w.sock()
            .send(format!("{READY}{number}").as_bytes(), zmq::DONTWAIT)
            .map_err(|e| zerr("zmq_send", e))?;
        // Every answer is read before the master sends the end: nothing
        // waits to leave when the worker does (linger 0).
        Ok(FarmWorker {
            w,
            msg: zmq::Message::new(),
            max: opts.max_message,
            gone: false,
        })
    }

    fn gone_error(&self) -> TransportError {
        TransportError::PeerGone("ZeroMQ reports the master's connection dropped (it died)".into())
    }

    /// Waits on the socket for `events`, or for the monitor's news.
    fn wait(&mut self, events: zmq::PollEvents) -> Result<(), TransportError> {
        let (sock, mon) = (self.w.sock(), self.w.mon());
        if super::events(mon).1 > 0 {
            // One more try reads (or sends) what it can before the drop.
            if self.gone {
                return Err(self.gone_error());
            }
            self.gone = true;
            return Ok(());
        }
        if self.gone {
            return Err(self.gone_error());
        }
        let mut items = [sock.as_poll_item(events), mon.as_poll_item(zmq::POLLIN)];
        poll_until(&mut items, None)
    }

    /// The next task, into `buf`; false at the master's end.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, TransportError> {
        loop {
            let sock = self.w.sock();
            match sock.recv(&mut self.msg, zmq::DONTWAIT) {
                Ok(()) if self.msg.get_more() => {
                    return Err(TransportError::Malformed(
                        "a task of several parts, where the master sends one".into(),
                    ));
                }
                Ok(()) if self.msg.is_empty() => return Ok(false),
                Ok(()) if self.msg.len() > self.max => {
                    return Err(TransportError::Malformed(format!(
                        "a task of {} bytes, beyond the farm's limit of {}",
                        self.msg.len(),
                        self.max
                    )));
                }
                Ok(()) => {
                    buf.clear();
                    buf.extend_from_slice(&self.msg);
                    return Ok(true);
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(zerr("zmq_recv", e)),
            }
            self.wait(zmq::POLLIN)?;
        }
    }

    /// Sends `result` to the master.
    pub fn answer(&mut self, result: &[u8]) -> Result<(), TransportError> {
        check_len(result.len(), self.max)?;
        if result.is_empty() {
            return Err(TransportError::Setup(
                "an empty result (the master refuses it)".into(),
            ));
        }
        loop {
            let sock = self.w.sock();
            // A DEALER with no live connection would wait for ever.
            match sock.send(result, zmq::DONTWAIT) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(zerr("zmq_send", e)),
            }
            self.wait(zmq::POLLOUT)?;
        }
    }
}

/// The master of the farm over `kind`'s channel at `ep`.
pub fn farm_master(
    kind: TransportKind,
    ep: &Endpoint,
    opts: &LinkOpts,
) -> Result<FarmMaster, TransportError> {
    with_family!(kind, F => FarmMaster::join::<F>(ep, opts))
}

/// Worker `number` of the farm over `kind`'s channel at `ep`.
pub fn farm_worker(
    kind: TransportKind,
    ep: &Endpoint,
    opts: &LinkOpts,
    number: usize,
) -> Result<FarmWorker, TransportError> {
    with_family!(kind, F => FarmWorker::join::<F>(ep, opts, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three workers in threads answer every task sent to each; results
    /// come back named by their worker; the end stops them all. A
    /// stranger who comes and goes on `zmq-tcp`'s port midway is no worker.
    #[test]
    fn tasks_reach_the_worker_chosen_and_the_end_stops_every_worker() {
        for kind in [TransportKind::ZmqIpc, TransportKind::ZmqTcp] {
            let opts = LinkOpts {
                max_message: 64,
                parties: Some((3, 1)),
                ..LinkOpts::default()
            };
            let (setup, ep) = super::super::calls_setup(kind, &opts).unwrap();
            let workers: Vec<_> = (0..3usize)
                .map(|n| {
                    let (ep, opts) = (ep.clone(), opts.clone());
                    std::thread::spawn(move || {
                        let mut w = farm_worker(kind, &ep, &opts, n).unwrap();
                        let mut buf = Vec::new();
                        let mut done = 0;
                        while w.next(&mut buf).unwrap() {
                            buf.push(n as u8);
                            w.answer(&buf).unwrap();
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            let mut m = farm_master(kind, &ep, &opts).unwrap();
            assert_eq!(m.workers(), 3);
            let mut buf = Vec::new();
            for i in 0..90u8 {
                if i == 45 && kind == TransportKind::ZmqTcp {
                    // Not a worker gone: a stranger's connection.
                    super::super::tests::stranger_comes_and_goes(&ep.addr);
                }
                let w = (i % 3) as usize;
                m.send_to(w, &[i]).unwrap();
                let from = m.recv(&mut buf, Some(Duration::from_secs(10))).unwrap();
                assert_eq!((from, &buf[..]), (w, &[i, w as u8][..]), "{kind}");
            }
            assert!(m.send_to(0, &[]).is_err(), "an empty task is refused");
            m.end().unwrap();
            let done: Vec<usize> = workers.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(done, [30, 30, 30], "{kind}");
            drop(m);
            drop(setup);
        }
    }

    /// A peer that connects with the token but does not speak as a
    /// worker does (its first message is not `ready N`, or names a worker
    /// the farm does not have) fails the master's start, naming what came.
    #[test]
    fn a_worker_that_does_not_say_ready_fails_the_start() {
        for hello in [&b"hello"[..], b"ready 7"] {
            let opts = LinkOpts {
                max_message: 64,
                parties: Some((1, 1)),
                ..LinkOpts::default()
            };
            let kind = TransportKind::ZmqTcp;
            let (setup, ep) = super::super::calls_setup(kind, &opts).unwrap();
            let stranger = {
                let (ep, opts) = (ep.clone(), opts.clone());
                std::thread::spawn(move || {
                    let w = Watched::connected::<super::super::ZmqTcp>(
                        &ep,
                        zmq::DEALER,
                        &opts,
                        "the master",
                    )
                    .unwrap();
                    w.sock().send(hello, 0).unwrap();
                    // Held until the master has read it.
                    std::thread::sleep(Duration::from_millis(500));
                })
            };
            let err = farm_master(kind, &ep, &opts).err().expect("refused");
            let said = err.to_string();
            assert!(
                matches!(err, TransportError::Malformed(_)) && said.contains("worker"),
                "{said}"
            );
            stranger.join().unwrap();
            drop(setup);
        }
    }
}
