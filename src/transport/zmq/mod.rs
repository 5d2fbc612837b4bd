//! `zmq-ipc` and `zmq-tcp`: ZeroMQ, the messaging engine people reach for
//! when `multiprocessing`'s managers are not enough, through the `zmq`
//! crate (libzmq 4.3, built from source by `zmq-sys`: no system package).
//!
//! A link is a pair of `PAIR` sockets, the socket type ZeroMQ gives an
//! exclusive two-way connection, each in a context of its own (one I/O
//! thread, libzmq's default). Where several processes share a channel
//! (fan-in, fan-out, mpmc) it is `PUSH` and `PULL`, brokerless: each
//! receiver binds a `PULL`, each sender connects to every receiver and
//! deals its messages round-robin ([`Producer`], [`Consumer`]). Calls
//! (reqrep) are `REQ` clients of a `ROUTER` server ([`calls`]); a task
//! farm's workers are `DEALER`s its master's `ROUTER` hands tasks to
//! ([`farm`]). The coordinator binds the listening socket
//! — a Unix socket in a private directory (0700, socket 0600) for
//! `zmq-ipc`, a TCP port for `zmq-tcp` — and side A hands it to libzmq
//! with `ZMQ_USE_FD`, so side B can connect as soon as the link exists and
//! no port is chosen twice. Addresses: `zmq-ipc:FD:PATH`, `zmq-tcp:FD:IP:PORT`; a shared
//! channel lists one listener per receiver and ends with the number of
//! senders (`zmq-ipc:FD0,FD1:PATH0,PATH1@2`).
//!
//! What ZeroMQ leaves to its users, and how the link does it:
//!
//! - **Nothing dropped.** `PAIR` never drops: at the high-water mark (1,000
//!   messages each way, libzmq's default, kept) a send waits.
//! - **End of stream.** ZeroMQ has none, so [`Conn::close`] sends a
//!   two-part message (an empty part, then `close`); every data message is
//!   one part, so no payload can be taken for it.
//! - **A peer that dies.** ZeroMQ hides disconnections (it reconnects). The
//!   link watches its socket's monitor (`zmq_socket_monitor`) and, once a
//!   `DISCONNECTED` event arrives and what was received before it is read,
//!   reports [`TransportError::PeerGone`]. Side B does not reconnect. Over
//!   TCP, ZeroMQ's own heartbeats (every second, 3 s without an answer)
//!   find a peer whose host went away without closing the connection.
//! - **Strangers.** A loopback port is open to every local process, so
//!   `zmq-tcp` uses ZeroMQ's own authentication: side A is a `PLAIN`
//!   server and answers ZAP requests (ZeroMQ's authentication protocol, on
//!   `inproc://zeromq.zap.01`) with a thread that accepts only the link's
//!   token as password (the `tcp` transport's token, [`super::tcp::TOKEN_ENV`],
//!   never on a command line). A stranger's handshake fails and never takes
//!   the `PAIR`'s one peer; its connection then drops, which a listening
//!   side does not take for its peer's: each connecting side's first
//!   message (a hello; a worker's `ready N`) names its connection, and
//!   only a drop of one so named is a peer gone (`Peers`). (`PLAIN` sends
//!   the token in the clear, as the `tcp` transport does: it keeps out
//!   strangers, not eavesdroppers.)
//!   `zmq-ipc`'s socket is in a directory only its owner can enter.
//! - **Malformed frames.** Messages beyond the link's limit are refused by
//!   libzmq itself (`ZMQ_MAXMSGSIZE`), which drops the connection: the
//!   receiver reports the peer gone and says why that may be, having
//!   allocated nothing for the frame.
//! - **Time bounds.** Sends and receives wait in `zmq_poll` on the socket
//!   and its monitor, within [`Conn::set_timeout`].
//!
//! Measured against ZeroMQ's own way: libzmq's `perf/local_lat` and
//! `perf/remote_lat` time a round trip with blocking `zmq_send` and
//! `zmq_recv` on sockets left at their defaults (high-water mark 1,000,
//! one I/O thread). The link keeps those defaults; what it sets besides
//! is a message limit, a linger, `PLAIN` (at the handshake only) and,
//! over TCP, heartbeats once a second: nothing a message pays for. What
//! it adds per message is waiting in `zmq_poll` on the monitor beside
//! the socket. `examples/zmq_reference.rs` is that measurement with the
//! suite's per-message work (stamp, copy out, check), pinned as the suite
//! pins. On 2026-12-07, four rounds alternating it with `ipcbench run
//! --transports zmq-ipc,zmq-tcp --patterns pingpong --sizes 64,65536
//! --no-python` (release builds, the 2-core VM), the rows' p50 over the
//! reference's: `zmq-ipc` 64 B 1.09, 1.09, 1.09, 0.97 (146–165 µs against
//! 136–152 µs); `zmq-tcp` 64 B 1.14, 1.16, 1.14, 1.11; `zmq-ipc` 64 KiB
//! 1.11, 1.10, 1.22, 1.28; `zmq-tcp` 64 KiB 1.10, 1.14, 1.22, 1.17. At
//! 64 B the rows are ZeroMQ's own figure within 16%; at 64 KiB within 28%.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// Runs `$body` with `$F` the [`Family`] of `$kind`; a strategy other
/// than ZeroMQ's is an error (the calls' and the farm's entry points,
/// which the harness reaches with a kind).
macro_rules! with_family {
    ($kind:expr, $F:ident => $body:expr) => {
        match $kind {
            crate::transport::TransportKind::ZmqIpc => {
                type $F = super::ZmqIpc;
                $body
            }
            crate::transport::TransportKind::ZmqTcp => {
                type $F = super::ZmqTcp;
                $body
            }
            other => Err(crate::transport::TransportError::Setup(format!(
                "{other} is not a ZeroMQ strategy"
            ))),
        }
    };
}

mod calls;
mod farm;
mod peers;
mod shared;
mod stand_in;
pub use calls::{CallServer, Caller, call_server, caller, calls_setup, end_calls};
pub use farm::{FarmMaster, FarmWorker, farm_master, farm_worker};
use peers::Peers;
pub use shared::{Consumer, Producer};
use stand_in::stand_in;

use super::fd::{PrivateDir, chmod_owner_only};
use super::unix_stream::{ACCEPT_TIMEOUT, fd_and_rest, listener_fd};
use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    check_len,
};

/// The `zmq-ipc` strategy: ZeroMQ over a Unix socket (`ipc://`).
pub struct ZmqIpc;

/// The `zmq-tcp` strategy: ZeroMQ over TCP (`tcp://`), `PLAIN` with the
/// link's token.
pub struct ZmqTcp;

/// The second part of the first message of a connecting side (side B, a
/// sender), by which the listening side knows its connection.
const HELLO: &[u8] = b"hello";
/// The second part of the close message.
const CLOSE: &[u8] = b"close";
/// The second part of the answer to it.
const CLOSED: &[u8] = b"closed";
/// The monitor's endpoint, in each connection's own context.
const MONITOR: &str = "inproc://ipcbench-monitor";
/// ZeroMQ's ZAP endpoint.
const ZAP: &str = "inproc://zeromq.zap.01";
/// The `PLAIN` user name side B presents.
const USER: &str = "ipcbench";
/// How long a close waits for the peer to take it (and what was sent
/// before it to leave).
const LINGER_MS: i32 = 10_000;
/// How long a connection dropped without a close waits for the same: a
/// drop is mostly a path that failed, where the peer may never read again.
const DROP_WAIT: Duration = Duration::from_millis(250);

/// How one of the two ZeroMQ strategies reaches its peer.
trait Family: Transport {
    /// `ipc` or `tcp`.
    const SCHEME: &'static str;
    /// Binds the listening socket; returns it with what follows `FD:` in
    /// the address, and the private directory if there is one.
    fn listen(
        opts: &LinkOpts,
    ) -> Result<(std::os::fd::OwnedFd, String, Option<PrivateDir>), TransportError>;
    /// Whether the link authenticates with `PLAIN` and the token.
    const PLAIN: bool;
    /// A test's stand-in for side B at `rest` (what follows `FD:` in the
    /// address), writing `what` ([`stand_in`]).
    fn stand_in(
        rest: &str,
        password: Option<String>,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError>;
}

/// Sets the 2 s bound on a stand-in's reads.
fn bounded<S>(s: S, set: impl FnOnce(&S) -> std::io::Result<()>) -> Result<S, TransportError> {
    set(&s).map_err(|e| TransportError::io("setting the stand-in's timeout", e))?;
    Ok(s)
}

impl Family for ZmqIpc {
    const SCHEME: &'static str = "ipc";
    const PLAIN: bool = false;
    fn listen(
        opts: &LinkOpts,
    ) -> Result<(std::os::fd::OwnedFd, String, Option<PrivateDir>), TransportError> {
        let dir = PrivateDir::new(&opts.label)?;
        let path = dir.path().join("zmq");
        let l = UnixListener::bind(&path)
            .map_err(|e| TransportError::io(format!("binding {}", path.display()), e))?;
        chmod_owner_only(&path)?;
        Ok((l.into(), path.display().to_string(), Some(dir)))
    }
    fn stand_in(
        path: &str,
        password: Option<String>,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let s = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| TransportError::io("connecting the stand-in", e))?;
        let s = bounded(s, |s| s.set_read_timeout(Some(Duration::from_secs(2))))?;
        Ok(stand_in(s, password, what))
    }
}

impl Family for ZmqTcp {
    const SCHEME: &'static str = "tcp";
    const PLAIN: bool = true;
    fn listen(
        opts: &LinkOpts,
    ) -> Result<(std::os::fd::OwnedFd, String, Option<PrivateDir>), TransportError> {
        let ip = opts.listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let l = std::net::TcpListener::bind((ip, 0))
            .map_err(|e| TransportError::io(format!("binding {ip}"), e))?;
        let local = l
            .local_addr()
            .map_err(|e| TransportError::io("reading the bound port", e))?;
        Ok((l.into(), local.to_string(), None))
    }
    fn stand_in(
        sockaddr: &str,
        password: Option<String>,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let s = std::net::TcpStream::connect(sockaddr)
            .map_err(|e| TransportError::io("connecting the stand-in", e))?;
        let s = bounded(s, |s| s.set_read_timeout(Some(Duration::from_secs(2))))?;
        Ok(stand_in(s, password, what))
    }
}

fn zerr(context: &str, e: zmq::Error) -> TransportError {
    TransportError::io(
        context.to_owned(),
        std::io::Error::from_raw_os_error(e.to_raw()),
    )
}

/// Sets `ZMQ_USE_FD`, which the `zmq` crate does not wrap: libzmq then
/// listens on `fd` (which it owns from here on) instead of binding.
fn use_fd(sock: &mut zmq::Socket, fd: std::os::fd::OwnedFd) -> Result<(), TransportError> {
    let raw: libc::c_int = fd.into_raw_fd();
    // SAFETY: a live socket, an option libzmq 4.3 knows, an int value.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            sock.as_mut_ptr(),
            zmq_sys::ZMQ_USE_FD as libc::c_int,
            (&raw const raw).cast(),
            std::mem::size_of::<libc::c_int>(),
        )
    };
    if rc != 0 {
        // SAFETY: the option was refused, so the descriptor is still ours.
        unsafe { libc::close(raw) };
        return Err(TransportError::io(
            "setting ZMQ_USE_FD",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Answers ZAP requests in side A's context: `PLAIN` with the token as
/// password is let in, anything else refused. Ends when the context does.
fn zap_handler(sock: zmq::Socket, token: String) {
    loop {
        let Ok(req) = sock.recv_multipart(0) else {
            return; // ETERM: the connection is being dropped.
        };
        // version, request id, domain, address, identity, mechanism,
        // then the mechanism's credentials.
        let ok = req.len() == 8
            && req[5] == b"PLAIN"
            && req[6] == USER.as_bytes()
            && req[7].len() == token.len()
            && req[7]
                .iter()
                .zip(token.as_bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
        let id = req.get(1).cloned().unwrap_or_default();
        let (code, text): (&[u8], &[u8]) = if ok {
            (b"200", b"OK")
        } else {
            (b"400", b"not the link's token")
        };
        let reply: [&[u8]; 6] = [b"1.0", &id, code, text, b"", b""];
        if sock.send_multipart(reply, 0).is_err() {
            return;
        }
    }
}

/// One end of a ZeroMQ link.
pub struct ZmqConn {
    sock: Option<zmq::Socket>,
    monitor: Option<zmq::Socket>,
    zap: Option<std::thread::JoinHandle<()>>,
    ctx: zmq::Context,
    msg: zmq::Message,
    max: usize,
    timeout: Option<Duration>,
    /// The monitor said the connection dropped; set once what came before
    /// it was read.
    gone: bool,
    /// The peer's close was received.
    peer_closed: bool,
    /// This side's close was sent.
    closed: bool,
    /// Side A's (the listening side's): which connection is side B's.
    peers: Option<Peers>,
}

impl ZmqConn {
    fn sock(&self) -> &zmq::Socket {
        self.sock.as_ref().expect("the socket lives until drop")
    }

    /// Reads the monitor's pending events; `true` if one says the
    /// peer's connection dropped.
    fn disconnected(&mut self) -> bool {
        let Some(mon) = self.monitor.as_ref() else {
            return false;
        };
        match self.peers.as_mut() {
            Some(p) => p.gone(mon) > 0,
            None => events(mon).1 > 0,
        }
    }

    /// Side A: reads side B's hello, its first message, by the accept
    /// deadline, and so knows which connection is side B's.
    fn hear_hello(&mut self, peers: &mut Peers, whom: &str) -> Result<(), TransportError> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        let sock = self.sock.as_ref().expect("the socket lives until drop");
        let mon = self.monitor.as_ref().expect("the monitor lives until drop");
        loop {
            match sock.recv(&mut self.msg, zmq::DONTWAIT) {
                Ok(()) => {
                    let first_empty = self.msg.is_empty() && self.msg.get_more();
                    if first_empty {
                        sock.recv(&mut self.msg, 0)
                            .map_err(|e| zerr("zmq_recv", e))?;
                    }
                    if !first_empty || self.msg.get_more() || &self.msg[..] != HELLO {
                        return Err(TransportError::Malformed(format!(
                            "{whom}'s first message is not its hello"
                        )));
                    }
                    return peers.know(mon, &mut self.msg);
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(zerr("zmq_recv", e)),
            }
            peers.feed(mon);
            wait_by(&[sock, mon], deadline, || {
                format!("{whom} made its ZeroMQ handshake but sent no hello")
            })?;
        }
    }

    fn gone_error(&self) -> TransportError {
        TransportError::PeerGone(format!(
            "ZeroMQ reports the connection dropped (the peer died, or sent a message \
             beyond the link's limit of {} bytes, which libzmq refuses)",
            self.max
        ))
    }

    /// Waits until the socket is ready for `events` or the monitor has
    /// news, within the timeout; `Timeout` past it.
    fn wait(
        &self,
        events: zmq::PollEvents,
        deadline: Option<Instant>,
    ) -> Result<(), TransportError> {
        let mon = self.monitor.as_ref().expect("the monitor lives until drop");
        let mut items = [
            self.sock().as_poll_item(events),
            mon.as_poll_item(zmq::POLLIN),
        ];
        poll_until(&mut items, deadline)
    }

    /// Runs `attempt` (non-blocking) until it succeeds, waiting on the
    /// socket for `events` between tries.
    fn retry<R>(
        &mut self,
        events: zmq::PollEvents,
        mut attempt: impl FnMut(&mut Self) -> Result<Option<R>, TransportError>,
    ) -> Result<R, TransportError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(r) = attempt(self)? {
                return Ok(r);
            }
            if self.gone {
                return Err(self.gone_error());
            }
            if self.disconnected() {
                // One more try reads what arrived before the drop.
                self.gone = true;
                continue;
            }
            self.wait(events, deadline)?;
        }
    }

    /// Receives the next message into `self.msg`: `Ok(true)` for data,
    /// `Ok(false)` for the peer's close (which is answered) or, once this
    /// side closed, the answer to its own.
    fn next(&mut self) -> Result<bool, TransportError> {
        if self.peer_closed {
            return Err(TransportError::Closed);
        }
        let data = self.next_message()?;
        if !data && self.peer_closed && !self.closed {
            // The peer waits for this before it lets its connection go.
            let _ = self.send_parts(&[b"", CLOSED]);
        }
        Ok(data)
    }

    fn next_message(&mut self) -> Result<bool, TransportError> {
        self.retry(zmq::POLLIN, |c| {
            let sock = c.sock.as_ref().expect("the socket lives until drop");
            match sock.recv(&mut c.msg, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(None),
                Err(e) => return Err(zerr("zmq_recv", e)),
            }
            if !c.msg.get_more() {
                if c.msg.len() > c.max {
                    return Err(TransportError::Malformed(format!(
                        "a message of {} bytes, beyond the link's limit of {}",
                        c.msg.len(),
                        c.max
                    )));
                }
                return Ok(Some(true));
            }
            // A message of several parts: only the close is one.
            let first_empty = c.msg.is_empty();
            let mut parts = vec![];
            loop {
                sock.recv(&mut c.msg, 0).map_err(|e| zerr("zmq_recv", e))?;
                parts.push(c.msg.len());
                if !c.msg.get_more() {
                    break;
                }
            }
            if first_empty && parts.len() == 1 && &c.msg[..] == CLOSE {
                c.peer_closed = true;
                Ok(Some(false))
            } else if first_empty && parts.len() == 1 && &c.msg[..] == CLOSED && c.closed {
                Ok(Some(false))
            } else {
                Err(TransportError::Malformed(format!(
                    "a message of {} parts, which no peer of this link sends",
                    parts.len() + 1
                )))
            }
        })
    }

    fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), TransportError> {
        let mut i = 0;
        self.retry(zmq::POLLOUT, |c| {
            let sock = c.sock.as_ref().expect("the socket lives until drop");
            // Once the first part is queued, the rest follow at once.
            while i < parts.len() {
                let more = if i + 1 < parts.len() { zmq::SNDMORE } else { 0 };
                let flags = if i == 0 { zmq::DONTWAIT } else { 0 };
                match sock.send(parts[i], flags | more) {
                    Ok(()) => i += 1,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) if i == 0 => return Ok(None),
                    Err(e) => return Err(zerr("zmq_send", e)),
                }
            }
            Ok(Some(()))
        })
    }

    /// Sends the close once and waits (up to the linger) until the peer
    /// has read it — its answer, its own close or its end — then lets the
    /// socket go. Over `ipc://` libzmq stops reading a connection whose
    /// peer hung up while the receiver was at its high-water mark, so what
    /// was still in the kernel would be lost if the closer left at once.
    fn shut(&mut self, wait: Duration) -> Result<(), TransportError> {
        let sent = if self.closed || self.gone {
            Ok(())
        } else {
            self.closed = true;
            self.timeout = Some(wait);
            self.send_parts(&[b"", CLOSE]).map(|()| {
                // Whatever the peer still sends is not wanted any more.
                while !self.peer_closed {
                    match self.next_message() {
                        Ok(true) => {}
                        Ok(false) | Err(_) => break,
                    }
                }
            })
        };
        if let Some(s) = self.sock.take() {
            // What was sent leaves within the linger, unless the peer is gone.
            let _ = s.set_linger(if self.gone {
                0
            } else {
                wait.as_millis() as i32
            });
        }
        self.monitor = None;
        // Ends the context: waits for the close to leave, then ends the
        // ZAP thread's socket.
        let _ = self.ctx.destroy();
        if let Some(t) = self.zap.take() {
            let _ = t.join();
        }
        sent
    }
}

impl Conn for ZmqConn {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        check_len(msg.len(), self.max)?;
        if self.closed {
            return Err(TransportError::Broken("this side closed the link".into()));
        }
        self.send_parts(&[msg])
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        if !self.next()? {
            return Err(TransportError::Closed);
        }
        buf.clear();
        buf.extend_from_slice(&self.msg);
        Ok(self.msg.len())
    }

    /// `f` reads the message where libzmq put it: no copy out.
    fn recv_with<R>(
        &mut self,
        _buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        if !self.next()? {
            return Err(TransportError::Closed);
        }
        Ok(f(&self.msg))
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.shut(Duration::from_millis(LINGER_MS as u64))
    }
}

impl Drop for ZmqConn {
    fn drop(&mut self) {
        if self.sock.is_some() {
            let _ = self.shut(DROP_WAIT);
        }
    }
}

/// Makes a socket of `kind` in `ctx` with the link's options, watched by
/// a monitor (`inproc://…-N`, `n` unique in `ctx`); binds it on `listener`
/// (answering ZAP requests with `token` if given: then the returned thread
/// is the handler) or connects it to `url` (presenting `token`).
fn open(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    n: usize,
    url: &str,
    listener: Option<std::os::fd::OwnedFd>,
    token: Option<&str>,
    max: usize,
) -> Result<
    (
        zmq::Socket,
        zmq::Socket,
        Option<std::thread::JoinHandle<()>>,
    ),
    TransportError,
> {
    let mut sock = ctx
        .socket(kind)
        .map_err(|e| zerr("making a ZeroMQ socket", e))?;
    let set = |r: zmq::Result<()>, what: &str| r.map_err(|e| zerr(what, e));
    // libzmq applies the limit to the handshake's commands too (READY and
    // its metadata are tens of bytes), so it is never below 64 KiB; the
    // link's own limit is checked on every message received.
    let limit = i64::try_from(max.max(64 << 10)).unwrap_or(i64::MAX);
    set(sock.set_maxmsgsize(limit), "setting ZMQ_MAXMSGSIZE")?;
    set(sock.set_linger(LINGER_MS), "setting ZMQ_LINGER")?;
    if url.starts_with("tcp:") {
        set(sock.set_heartbeat_ivl(1000), "setting ZMQ_HEARTBEAT_IVL")?;
        set(
            sock.set_heartbeat_timeout(3000),
            "setting ZMQ_HEARTBEAT_TIMEOUT",
        )?;
    }
    let watch = format!("{MONITOR}-{n}");
    set(
        sock.monitor(
            &watch,
            (zmq::SocketEvent::ACCEPTED as i32)
                | (zmq::SocketEvent::DISCONNECTED as i32)
                | (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32),
        ),
        "starting the socket's monitor",
    )?;
    let monitor = ctx
        .socket(zmq::PAIR)
        .map_err(|e| zerr("making the monitor's socket", e))?;
    set(monitor.connect(&watch), "connecting the monitor")?;
    let mut zap = None;
    match listener {
        Some(l) => {
            if let Some(token) = token {
                let z = ctx
                    .socket(zmq::REP)
                    .map_err(|e| zerr("making the ZAP socket", e))?;
                set(z.bind(ZAP), "binding the ZAP handler")?;
                let token = token.to_owned();
                zap = Some(std::thread::spawn(move || zap_handler(z, token)));
                set(sock.set_plain_server(true), "setting ZMQ_PLAIN_SERVER")?;
                set(sock.set_zap_domain("ipcbench"), "setting ZMQ_ZAP_DOMAIN")?;
            }
            use_fd(&mut sock, l)?;
            set(sock.bind(url), &format!("listening at {url}"))?;
        }
        None => {
            if let Some(token) = token {
                set(
                    sock.set_plain_username(Some(USER)),
                    "setting ZMQ_PLAIN_USERNAME",
                )?;
                set(
                    sock.set_plain_password(Some(token)),
                    "setting ZMQ_PLAIN_PASSWORD",
                )?;
            }
            // A dropped connection is the end: no reconnecting.
            set(sock.set_reconnect_ivl(-1), "setting ZMQ_RECONNECT_IVL")?;
            set(sock.connect(url), &format!("connecting to {url}"))?;
        }
    }
    Ok((sock, monitor, zap))
}

/// A socket of a shared channel's peer with its monitor, in a context of
/// its own (with the ZAP handler's thread where it authenticates): what
/// the calls' and the farm's ends are made of. Dropping it lets the
/// socket go after `linger` ms (0 unless its last messages must leave).
struct Watched {
    sock: Option<zmq::Socket>,
    /// Kept, and read: libzmq sends each event from the socket's own
    /// thread and waits while the monitor's queue is full or unread.
    mon: Option<zmq::Socket>,
    zap: Option<std::thread::JoinHandle<()>>,
    ctx: zmq::Context,
    linger: i32,
}

impl Watched {
    /// Binds a socket of `kind` on the channel's first listener (the
    /// server's, or the master's); with the parsed address's count of
    /// clients.
    fn bound<F: Family>(
        ep: &Endpoint,
        kind: zmq::SocketType,
        opts: &LinkOpts,
    ) -> Result<(Watched, usize), TransportError> {
        let a = parse::<F>(&ep.addr)?;
        let mine = if ep.in_child {
            super::fd::adopt(a.fds[0])?
        } else {
            // SAFETY: the setup owns the descriptor and outlives this call;
            // we keep a copy.
            super::fd::dup(&unsafe { std::os::fd::BorrowedFd::borrow_raw(a.fds[0]) })?
        };
        let ctx = zmq::Context::new();
        let (sock, mon, zap) = open(
            &ctx,
            kind,
            0,
            &first_url::<F>(&a),
            Some(mine),
            plain_token::<F>(ep)?.as_deref(),
            opts.max_message,
        )?;
        let w = Watched {
            sock: Some(sock),
            mon: Some(mon),
            zap,
            ctx,
            linger: 0,
        };
        Ok((w, a.producers.unwrap_or(1)))
    }

    /// Connects a socket of `kind` to the channel's first listener, with
    /// the handshake done (`whom`: the peer, as errors name it).
    fn connected<F: Family>(
        ep: &Endpoint,
        kind: zmq::SocketType,
        opts: &LinkOpts,
        whom: &str,
    ) -> Result<Watched, TransportError> {
        let a = parse::<F>(&ep.addr)?;
        if ep.in_child {
            a.fds.iter().for_each(|&fd| super::fd::close_inherited(fd));
        }
        let ctx = zmq::Context::new();
        let (sock, mon, zap) = open(
            &ctx,
            kind,
            0,
            &first_url::<F>(&a),
            None,
            plain_token::<F>(ep)?.as_deref(),
            opts.max_message,
        )?;
        handshake(&mon, whom)?;
        Ok(Watched {
            sock: Some(sock),
            mon: Some(mon),
            zap,
            ctx,
            linger: 0,
        })
    }

    fn sock(&self) -> &zmq::Socket {
        self.sock.as_ref().expect("the socket lives until drop")
    }

    fn mon(&self) -> &zmq::Socket {
        self.mon.as_ref().expect("the monitor lives until drop")
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = s.set_linger(self.linger);
        }
        self.mon = None;
        let _ = self.ctx.destroy();
        if let Some(t) = self.zap.take() {
            let _ = t.join();
        }
    }
}

/// The token of a `zmq-tcp` channel, as `PLAIN`'s password.
fn plain_token<F: Family>(ep: &Endpoint) -> Result<Option<String>, TransportError> {
    Ok(if F::PLAIN {
        Some(super::manager::to_hex(&super::tcp::token(ep)?))
    } else {
        None
    })
}

/// The URL of a channel's first listener.
fn first_url<F: Family>(a: &Addr<'_>) -> String {
    format!("{}://{}", F::SCHEME, a.addrs[0])
}

/// The monitor's next pending event, if there is one: its id and value
/// (for `ACCEPTED` and `DISCONNECTED`, the connection's descriptor).
fn next_event(mon: &zmq::Socket) -> Option<(u16, u32)> {
    let ev = mon.recv_bytes(zmq::DONTWAIT).ok()?;
    // Two parts: the event (u16 id, u32 value), then the address.
    while mon.get_rcvmore().unwrap_or(false) {
        let _ = mon.recv_bytes(0);
    }
    Some(if ev.len() >= 6 {
        (
            u16::from_le_bytes([ev[0], ev[1]]),
            u32::from_le_bytes([ev[2], ev[3], ev[4], ev[5]]),
        )
    } else {
        (0, 0)
    })
}

/// The monitor's pending events: how many handshakes succeeded and how
/// many connections dropped. For a connecting socket, whose one
/// connection is its peer's; a listening one tells its peers from
/// strangers with [`Peers`].
fn events(mon: &zmq::Socket) -> (usize, usize) {
    let (mut up, mut down) = (0, 0);
    while let Some((id, _)) = next_event(mon) {
        if id == zmq_sys::ZMQ_EVENT_HANDSHAKE_SUCCEEDED as u16 {
            up += 1;
        } else if id == zmq_sys::ZMQ_EVENT_DISCONNECTED as u16 {
            down += 1;
        }
    }
    (up, down)
}

/// Waits, by the accept deadline, until a connecting socket's handshake
/// succeeded, reading events one by one so that any after it stay for
/// the connection to see. A drop before then is an error: the socket's
/// one connection is its peer's.
fn handshake(mon: &zmq::Socket, whom: &str) -> Result<(), TransportError> {
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    loop {
        wait_by(&[mon], deadline, || {
            format!("no ZeroMQ handshake with {whom}")
        })?;
        while let Some((id, _)) = next_event(mon) {
            if id == zmq_sys::ZMQ_EVENT_HANDSHAKE_SUCCEEDED as u16 {
                return Ok(());
            }
            if id == zmq_sys::ZMQ_EVENT_DISCONNECTED as u16 {
                return Err(TransportError::Setup(format!(
                    "{whom} dropped the connection during ZeroMQ's handshake (a wrong token?)"
                )));
            }
        }
    }
}

/// Waits until one of `socks` is readable or `deadline` passed: then a
/// setup error saying `what` did not happen within the accept deadline.
fn wait_by(
    socks: &[&zmq::Socket],
    deadline: Instant,
    what: impl FnOnce() -> String,
) -> Result<(), TransportError> {
    if Instant::now() >= deadline {
        return Err(TransportError::Setup(format!(
            "{} within {} s",
            what(),
            ACCEPT_TIMEOUT.as_secs()
        )));
    }
    let mut items: Vec<zmq::PollItem> = socks.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
    match poll_until(&mut items, Some(deadline)) {
        Ok(()) | Err(TransportError::Timeout) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits in `zmq_poll` on `items` until `deadline` (none: for ever);
/// `Timeout` once past it.
fn poll_until(
    items: &mut [zmq::PollItem],
    deadline: Option<Instant>,
) -> Result<(), TransportError> {
    let left = match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            left.as_millis().max(1) as i64
        }
    };
    match zmq::poll(items, left) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(e) => Err(zerr("zmq_poll", e)),
    }
}

/// Makes the socket of one side of a link, connected (or listening, with
/// the handshake done) within the accept deadline.
fn join<F: Family>(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<ZmqConn, TransportError> {
    let (fd, rest) = fd_and_rest(&ep.addr, F::NAME)?;
    let url = format!("{}://{rest}", F::SCHEME);
    let listener = listener_fd(ep, fd, side)?;
    let listens = listener.is_some();
    let token = plain_token::<F>(ep)?;
    let ctx = zmq::Context::new();
    let (sock, monitor, zap) = open(
        &ctx,
        zmq::PAIR,
        0,
        &url,
        listener,
        token.as_deref(),
        opts.max_message,
    )?;
    let mut conn = ZmqConn {
        sock: Some(sock),
        monitor: Some(monitor),
        zap,
        ctx,
        msg: zmq::Message::new(),
        max: opts.max_message,
        timeout: None,
        gone: false,
        peer_closed: false,
        closed: false,
        peers: None,
    };
    let whom = format!("side {}", side.other().name());
    if listens {
        let mut peers = Peers::default();
        peers.handshakes(conn.monitor.as_ref().expect("just made"), 1, &whom)?;
        conn.hear_hello(&mut peers, &whom)?;
        peers.settled = true;
        conn.peers = Some(peers);
    } else {
        handshake(conn.monitor.as_ref().expect("just made"), &whom)?;
        conn.send_parts(&[b"", HELLO])?;
    }
    Ok(conn)
}

/// One end of a ZeroMQ link, or of a channel several processes share.
pub enum ZmqEnd {
    /// A `PAIR` socket: a link between two processes.
    Link(ZmqConn),
    /// A sender of a shared channel: a `PUSH` socket to each receiver.
    Producer(Producer),
    /// A receiver of a shared channel: one `PULL` socket every sender
    /// connects to.
    Consumer(Consumer),
}

impl Conn for ZmqEnd {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        match self {
            ZmqEnd::Link(c) => c.send(msg),
            ZmqEnd::Producer(p) => p.send(msg),
            ZmqEnd::Consumer(_) => Err(TransportError::Setup(
                "a receiver of a shared ZeroMQ channel does not send".into(),
            )),
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        match self {
            ZmqEnd::Link(c) => c.recv(buf),
            ZmqEnd::Consumer(c) => c.recv_with(|m| {
                buf.clear();
                buf.extend_from_slice(m);
                m.len()
            }),
            ZmqEnd::Producer(_) => Err(TransportError::Setup(
                "a sender of a shared ZeroMQ channel does not receive".into(),
            )),
        }
    }

    #[inline]
    fn recv_with<R>(
        &mut self,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        match self {
            ZmqEnd::Link(c) => c.recv_with(buf, f),
            ZmqEnd::Consumer(c) => c.recv_with(f),
            ZmqEnd::Producer(_) => Err(TransportError::Setup(
                "a sender of a shared ZeroMQ channel does not receive".into(),
            )),
        }
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        match self {
            ZmqEnd::Link(c) => c.set_timeout(timeout),
            ZmqEnd::Producer(p) => {
                p.timeout = timeout;
                Ok(())
            }
            ZmqEnd::Consumer(c) => {
                c.timeout = timeout;
                Ok(())
            }
        }
    }

    fn close(self) -> Result<(), TransportError> {
        match self {
            ZmqEnd::Link(c) => c.close(),
            ZmqEnd::Producer(mut p) => p.finish(Duration::from_millis(LINGER_MS as u64)),
            ZmqEnd::Consumer(c) => {
                drop(c);
                Ok(())
            }
        }
    }
}

/// Everything a ZeroMQ link or channel made: its listening sockets (one
/// for a link, one per receiver for a channel several share) and their
/// private directory, until every side has connected.
pub struct ZmqSetup {
    listeners: Vec<std::os::fd::OwnedFd>,
    _dirs: Vec<PrivateDir>,
    shared: bool,
}

impl LinkSetup for ZmqSetup {
    fn children_started(&mut self) {
        self.listeners.clear();
    }

    /// Each sender ends the stream down every one of its sockets when it
    /// leaves; there is nothing left for the coordinator to do.
    fn end_stream(&mut self) -> Result<(), TransportError> {
        if self.shared {
            Ok(())
        } else {
            Err(TransportError::Setup(
                "this ZeroMQ link joins two processes; it has no shared stream to end".into(),
            ))
        }
    }
}

fn setup<F: Family>(opts: &LinkOpts) -> Result<(ZmqSetup, Endpoint), TransportError> {
    let n = opts.parties.map_or(1, |(_, consumers)| consumers.max(1));
    let (mut fds, mut addrs, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (fd, rest, dir) = F::listen(opts)?;
        fds.push(fd);
        addrs.push(rest);
        dirs.extend(dir);
    }
    let list: Vec<String> = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let mut addr = format!("{}:{}:{}", F::NAME, list.join(","), addrs.join(","));
    if let Some((producers, _)) = opts.parties {
        addr.push_str(&format!("@{producers}"));
    }
    let mut ep = Endpoint::new(addr, fds.iter().map(|f| f.as_raw_fd()).collect());
    if F::PLAIN {
        let token: [u8; 16] = super::manager::random_bytes()?;
        ep.env.push((
            super::tcp::TOKEN_ENV.to_owned(),
            super::manager::to_hex(&token),
        ));
    }
    let setup = ZmqSetup {
        listeners: fds,
        _dirs: dirs,
        shared: opts.parties.is_some(),
    };
    Ok((setup, ep))
}

/// A parsed address: the listeners' descriptors and addresses, and for a
/// shared channel the number of senders.
struct Addr<'a> {
    fds: Vec<RawFd>,
    addrs: Vec<&'a str>,
    producers: Option<usize>,
}

fn parse<F: Family>(addr: &str) -> Result<Addr<'_>, TransportError> {
    let bad = || TransportError::Setup(format!("bad {} address `{addr}`", F::NAME));
    let rest = super::addr_rest(addr, F::NAME)?;
    let (fds, rest) = rest.split_once(':').ok_or_else(bad)?;
    let fds = super::fd::parse_fds(fds)?;
    let (rest, producers) = match rest.rsplit_once('@') {
        Some((r, p)) => (r, Some(p.parse().map_err(|_| bad())?)),
        None => (rest, None),
    };
    let addrs: Vec<&str> = rest.split(',').collect();
    if addrs.len() != fds.len() || fds.is_empty() {
        return Err(bad());
    }
    Ok(Addr {
        fds,
        addrs,
        producers,
    })
}

/// Joins a link, or a channel several share, as `side`.
fn connect<F: Family>(
    ep: &Endpoint,
    side: Side,
    opts: &LinkOpts,
) -> Result<ZmqEnd, TransportError> {
    let a = parse::<F>(&ep.addr)?;
    let Some(producers) = a.producers else {
        return join::<F>(ep, side, opts).map(ZmqEnd::Link);
    };
    let token = plain_token::<F>(ep)?;
    match side {
        Side::A => {
            if ep.in_child {
                a.fds.iter().for_each(|&fd| super::fd::close_inherited(fd));
            }
            let urls: Vec<String> = a
                .addrs
                .iter()
                .map(|r| format!("{}://{r}", F::SCHEME))
                .collect();
            Producer::join(&urls, token.as_deref(), opts).map(ZmqEnd::Producer)
        }
        Side::B => {
            let i = opts.party;
            let Some(&fd) = a.fds.get(i) else {
                return Err(TransportError::Setup(format!(
                    "receiver {i} of a channel with {} receivers",
                    a.fds.len()
                )));
            };
            let mine = if ep.in_child {
                for (j, &other) in a.fds.iter().enumerate() {
                    if j != i {
                        super::fd::close_inherited(other);
                    }
                }
                super::fd::adopt(fd)?
            } else {
                // SAFETY: the setup owns `fd` and outlives this call; we keep a copy.
                super::fd::dup(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })?
            };
            let url = format!("{}://{}", F::SCHEME, a.addrs[i]);
            Consumer::join(&url, mine, token, producers, opts).map(ZmqEnd::Consumer)
        }
    }
}

/// The `Transport` and `Inject` impls of one of the two families, which
/// differ only in how they reach the peer ([`Family`]).
macro_rules! zmq_transport {
    ($ty:ty, $name:literal) => {
        impl Transport for $ty {
            const NAME: &'static str = $name;
            type Setup = ZmqSetup;
            type Conn = ZmqEnd;
            fn setup(opts: &LinkOpts) -> Result<(ZmqSetup, Endpoint), TransportError> {
                setup::<Self>(opts)
            }
            fn connect(
                ep: &Endpoint,
                side: Side,
                opts: &LinkOpts,
            ) -> Result<ZmqEnd, TransportError> {
                connect::<Self>(ep, side, opts)
            }
        }

        impl Inject for $ty {
            fn inject(
                ep: &Endpoint,
                victim: Side,
                what: Malformation,
            ) -> Result<Box<dyn Send>, TransportError> {
                super::stand_in_for_b(victim)?;
                let (_, rest) = fd_and_rest(&ep.addr, Self::NAME)?;
                Self::stand_in(rest, plain_token::<Self>(ep)?, what)
            }
        }
    };
}

zmq_transport!(ZmqIpc, "zmq-ipc");
zmq_transport!(ZmqTcp, "zmq-tcp");

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A stranger on a `zmq-tcp` listener once its peers are in: garbage,
    /// then gone, its connection dropping as a dead peer's would; the
    /// test waits until its drop has reached the listener's monitor.
    pub(super) fn stranger_comes_and_goes(ep_addr: &str) {
        let a = parse::<ZmqTcp>(ep_addr).unwrap();
        let mut s = std::net::TcpStream::connect(a.addrs[0]).unwrap();
        s.write_all(&[0xffu8; 64]).unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Two senders and a receiver of a shared `zmq-tcp` channel, in
    /// threads: a stranger who comes and goes mid-stream is not a sender
    /// gone; every message arrives, and the senders' ends close the stream.
    #[test]
    fn a_stranger_mid_stream_is_not_a_sender_gone() {
        let opts = LinkOpts {
            max_message: 64,
            parties: Some((2, 1)),
            ..LinkOpts::default()
        };
        let (setup, ep) = ZmqTcp::setup(&opts).unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let senders: Vec<_> = (0..2u8)
            .map(|n| {
                let (ep, opts, wait) = (ep.clone(), opts.clone(), wait.clone());
                std::thread::spawn(move || {
                    let mut p = ZmqTcp::connect(&ep, Side::A, &opts).unwrap();
                    for i in 0..50u8 {
                        if i == 25 {
                            wait.lock().unwrap().recv().unwrap();
                        }
                        p.send(&[n, i]).unwrap();
                    }
                })
            })
            .collect();
        let mut c = ZmqTcp::connect(&ep, Side::B, &opts).unwrap();
        c.set_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut seen = [0u8; 2];
        for k in 0..100 {
            if k == 10 {
                stranger_comes_and_goes(&ep.addr);
                go.send(()).unwrap();
                go.send(()).unwrap();
            }
            c.recv(&mut buf).unwrap();
            let n = buf[0] as usize;
            assert_eq!(buf[1], seen[n], "sender {n}'s messages in order");
            seen[n] += 1;
        }
        assert!(matches!(c.recv(&mut buf), Err(TransportError::Closed)));
        senders.into_iter().for_each(|t| t.join().unwrap());
        drop(c);
        drop(setup);
    }
}
