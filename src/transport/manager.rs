//! `manager-unix` and `manager-tcp`: a Manager-style proxy server, the
//! counterpart of `multiprocessing.Manager()` and of a `BaseManager` served
//! over the network.
//!
//! A server process (`ipcbench peer manager-serve`) owns named queues, a
//! dictionary, a lock and a counter. Clients are proxies: every method call
//! is one synchronous request and one reply over a Unix socket or TCP, and
//! the server runs one thread per connection, as Python's does. A link's
//! side A puts into queue `ab` and gets from `ba`; side B the reverse.
//!
//! # Handshake
//!
//! Every connection starts with a mutual challenge/response on a shared
//! 32-byte authkey, before any request is read:
//!
//! 1. the server sends a fresh random 32-byte nonce;
//! 2. the client answers `HMAC-SHA256(key, "ipcbench-client" ‖ nonce)`;
//! 3. the server checks it in constant time and answers `WELCOME`, or
//!    `FAILURE` and closes (the refused client learns nothing of the key);
//! 4. the client sends its own nonce and checks the server's
//!    `HMAC-SHA256(key, "ipcbench-server" ‖ nonce)`, so a client never talks
//!    to a server that does not hold the key.
//!
//! The key reaches peers in the environment variable [`AUTHKEY_ENV`]
//! (hex), never on a command line, which other users can read.
//!
//! # Requests
//!
//! A request is one frame `[op: u8][name_len: u8][name][payload]`; a reply
//! is `[status: u8][payload]`. A queue's getters learn `CLOSED` once it was
//! closed and drained, and `PEER_GONE` once a connection that put into it
//! ended without closing (its process died).

use crate::shm::sync::{AtomicU64, Ordering};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::fd::{PrivateDir, chmod_owner_only};
use super::stream::{StreamConn, StreamIo};
use super::{Conn, Endpoint, LinkOpts, LinkSetup, Side, Transport, TransportError, addr_rest};

/// The environment variable that carries the authkey (hex) to peers.
pub const AUTHKEY_ENV: &str = "IPCBENCH_AUTHKEY";
/// Bytes of key and of each nonce.
pub const KEY_LEN: usize = 32;
/// The largest request or reply during the handshake.
const HANDSHAKE_MAX: usize = 64;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `setup` waits for the server to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes a request adds to its payload: op code, name length, name.
const REQUEST_OVERHEAD: usize = 2 + 255;

const WELCOME: &[u8] = b"WELCOME";
const FAILURE: &[u8] = b"FAILURE";

/// Request codes.
mod op {
    pub const PUT: u8 = 1;
    pub const GET: u8 = 2;
    pub const CLOSE_QUEUE: u8 = 3;
    pub const DICT_SET: u8 = 4;
    pub const DICT_GET: u8 = 5;
    pub const LOCK_ACQUIRE: u8 = 6;
    pub const LOCK_RELEASE: u8 = 7;
    pub const COUNTER_ADD: u8 = 8;
}

/// Reply codes.
mod status {
    pub const OK: u8 = 0;
    pub const EMPTY: u8 = 1;
    pub const CLOSED: u8 = 2;
    pub const PEER_GONE: u8 = 3;
    pub const MISSING: u8 = 4;
    pub const ERROR: u8 = 5;
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], role: &[u8], nonce: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(role);
    m.update(nonce);
    m
}

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], TransportError> {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: writes at most N - got bytes into the rest of `b`.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr() as *mut libc::c_void, N - got, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(TransportError::io("getrandom", e));
        }
        got += r as usize;
    }
    Ok(b)
}

/// Hex of a key.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key from hex.
pub fn from_hex(s: &str) -> Result<Vec<u8>, TransportError> {
    let bad = || TransportError::Auth(format!("{AUTHKEY_ENV} is not an even-length hex string"));
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// The authkey given to this process.
pub fn key_from_env() -> Result<Vec<u8>, TransportError> {
    let hex = std::env::var(AUTHKEY_ENV)
        .map_err(|_| TransportError::Auth(format!("no authkey: set {AUTHKEY_ENV} (hex)")))?;
    from_hex(&hex)
}

// ---------------------------------------------------------------------------
// Handshake.

fn server_handshake<S: StreamIo>(
    conn: &mut StreamConn<S>,
    key: &[u8],
) -> Result<(), TransportError> {
    let nonce: [u8; KEY_LEN] = random_bytes()?;
    conn.send(&nonce)?;
    let mut buf = Vec::new();
    conn.recv(&mut buf)?;
    if mac(key, b"ipcbench-client", &nonce)
        .verify_slice(&buf)
        .is_err()
    {
        let _ = conn.send(FAILURE);
        return Err(TransportError::Auth(
            "a client presented a wrong authkey digest".into(),
        ));
    }
    conn.send(WELCOME)?;
    conn.recv(&mut buf)?;
    if buf.len() != KEY_LEN {
        return Err(TransportError::Auth(
            "the client's challenge has the wrong length".into(),
        ));
    }
    let answer = mac(key, b"ipcbench-server", &buf).finalize().into_bytes();
    conn.send(&answer)
}

fn client_handshake<S: StreamIo>(
    conn: &mut StreamConn<S>,
    key: &[u8],
) -> Result<(), TransportError> {
    let mut buf = Vec::new();
    let auth = |e: TransportError| match e {
        TransportError::Closed | TransportError::PeerGone(_) => {
            TransportError::Auth("the server closed the connection during the handshake".into())
        }
        e => e,
    };
    conn.recv(&mut buf).map_err(auth)?;
    if buf.len() != KEY_LEN {
        return Err(TransportError::Auth(
            "the server's challenge has the wrong length".into(),
        ));
    }
    let digest = mac(key, b"ipcbench-client", &buf).finalize().into_bytes();
    conn.send(&digest).map_err(auth)?;
    conn.recv(&mut buf).map_err(auth)?;
    if buf != WELCOME {
        return Err(TransportError::Auth(
            "the server refused the authkey".into(),
        ));
    }
    let nonce: [u8; KEY_LEN] = random_bytes()?;
    conn.send(&nonce).map_err(auth)?;
    conn.recv(&mut buf).map_err(auth)?;
    if mac(key, b"ipcbench-server", &nonce)
        .verify_slice(&buf)
        .is_err()
    {
        return Err(TransportError::Auth(
            "the server does not hold the authkey".into(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Server.

#[derive(Default)]
struct ServerQueue {
    items: VecDeque<Vec<u8>>,
    closed: bool,
    /// Connections that put into this queue.
    writers: HashSet<u64>,
    /// A writer's connection ended without closing.
    writer_lost: bool,
}

#[derive(Default)]
struct Objects {
    queues: HashMap<Vec<u8>, ServerQueue>,
    dict: HashMap<Vec<u8>, Vec<u8>>,
    lock_holder: Option<u64>,
    counter: i64,
}

/// What the server owns.
#[derive(Default)]
struct State {
    objects: Mutex<Objects>,
    changed: Condvar,
}

/// Handles `requests` in order, as the server does for one connection, and
/// returns the replies; requests that would wait are made not to (a get
/// waits 0 ms, a lock this connection holds is not taken again). For
/// fuzzing the protocol without sockets (the targets in `fuzz/`).
#[doc(hidden)]
pub fn handle_requests_for_fuzzing(requests: &[&[u8]]) -> Vec<Vec<u8>> {
    let state = State::default();
    let mut held = false;
    let mut out = Vec::new();
    requests
        .iter()
        .map(|req| {
            let mut r = req.to_vec();
            let code = r.first().copied();
            if code == Some(op::GET) {
                // [op][name length][name][wait in ms: u32]: wait 0 ms.
                let payload_at = 2 + r.get(1).copied().unwrap_or(0) as usize;
                if r.len() == payload_at + 4 {
                    r[payload_at..].copy_from_slice(&0u32.to_le_bytes());
                }
            }
            if code == Some(op::LOCK_ACQUIRE) && held {
                return Vec::new();
            }
            state.handle(0, &r, &mut out);
            if out.first() == Some(&status::OK) {
                match code {
                    Some(op::LOCK_ACQUIRE) => held = true,
                    Some(op::LOCK_RELEASE) => held = false,
                    _ => {}
                }
            }
            out.clone()
        })
        .collect()
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A handler that panicked cannot leave the objects half-changed in a
        // way that matters here; keep serving.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one request from connection `id`; writes the reply into `out`.
    fn handle(&self, id: u64, req: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let Some((&code, rest)) = req.split_first() else {
            return error(out, "empty request");
        };
        let Some((&name_len, rest)) = rest.split_first() else {
            return error(out, "request without a name");
        };
        let Some((name, payload)) = rest.split_at_checked(name_len as usize) else {
            return error(out, "name runs past the request");
        };
        match code {
            op::PUT => {
                let mut o = self.lock();
                let q = o.queues.entry(name.to_vec()).or_default();
                if q.closed {
                    out.push(status::CLOSED);
                    return;
                }
                q.writers.insert(id);
                q.items.push_back(payload.to_vec());
                drop(o);
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::GET => {
                let Ok(ms) = <[u8; 4]>::try_from(payload) else {
                    return error(out, "GET takes a 4-byte timeout");
                };
                let ms = u32::from_le_bytes(ms);
                let deadline =
                    (ms != u32::MAX).then(|| Instant::now() + Duration::from_millis(ms.into()));
                let mut o = self.lock();
                loop {
                    let q = o.queues.entry(name.to_vec()).or_default();
                    if let Some(item) = q.items.pop_front() {
                        out.push(status::OK);
                        out.extend_from_slice(&item);
                        return;
                    }
                    if q.closed {
                        return out.push(status::CLOSED);
                    }
                    if q.writer_lost {
                        return out.push(status::PEER_GONE);
                    }
                    o = match deadline {
                        None => self.changed.wait(o).unwrap_or_else(|p| p.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return out.push(status::EMPTY);
                            }
                            self.changed
                                .wait_timeout(o, left)
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                    };
                }
            }
            op::CLOSE_QUEUE => {
                self.lock().queues.entry(name.to_vec()).or_default().closed = true;
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::DICT_SET => {
                self.lock().dict.insert(name.to_vec(), payload.to_vec());
                out.push(status::OK);
            }
            op::DICT_GET => match self.lock().dict.get(name) {
                Some(v) => {
                    out.push(status::OK);
                    out.extend_from_slice(v);
                }
                None => out.push(status::MISSING),
            },
            op::LOCK_ACQUIRE => {
                let mut o = self.lock();
                while o.lock_holder.is_some() {
                    o = self.changed.wait(o).unwrap_or_else(|p| p.into_inner());
                }
                o.lock_holder = Some(id);
                out.push(status::OK);
            }
            op::LOCK_RELEASE => {
                let mut o = self.lock();
                if o.lock_holder.take().is_none() {
                    return error(out, "release of an unlocked lock");
                }
                drop(o);
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::COUNTER_ADD => {
                let Ok(n) = <[u8; 8]>::try_from(payload) else {
                    return error(out, "COUNTER_ADD takes an 8-byte amount");
                };
                let mut o = self.lock();
                o.counter = o.counter.wrapping_add(i64::from_le_bytes(n));
                out.push(status::OK);
                out.extend_from_slice(&o.counter.to_le_bytes());
            }
            other => error(out, &format!("unknown request code {other}")),
        }
    }

    /// Connection `id` ended; `orderly` if it closed in order.
    fn disconnected(&self, id: u64, orderly: bool) {
        let mut o = self.lock();
        if !orderly {
            for q in o.queues.values_mut() {
                if q.writers.contains(&id) && !q.closed {
                    q.writer_lost = true;
                }
            }
        }
        if o.lock_holder == Some(id) {
            o.lock_holder = None;
        }
        drop(o);
        self.changed.notify_all();
    }
}

fn error(out: &mut Vec<u8>, why: &str) {
    out.clear();
    out.push(status::ERROR);
    out.extend_from_slice(why.as_bytes());
}

fn serve_conn<S: StreamIo>(stream: S, state: &State, key: &[u8], id: u64, max: usize) {
    let mut conn = StreamConn::new(stream, HANDSHAKE_MAX);
    let _ = conn.set_timeout(Some(HANDSHAKE_TIMEOUT));
    if server_handshake(&mut conn, key).is_err() {
        // Refused: nothing more is said on this connection.
        return;
    }
    let mut conn = conn.with_max(max);
    let _ = conn.set_timeout(None);
    let (mut req, mut reply) = (Vec::new(), Vec::new());
    loop {
        match conn.recv(&mut req) {
            Ok(_) => {
                state.handle(id, &req, &mut reply);
                if conn.send(&reply).is_err() {
                    state.disconnected(id, false);
                    return;
                }
            }
            Err(TransportError::Closed) => return state.disconnected(id, true),
            Err(_) => return state.disconnected(id, false),
        }
    }
}

/// Runs a manager server on `listen` (`unix:PATH` or `tcp:IP:PORT`, port 0
/// for any), printing `ready ADDR` once it accepts connections. Serves until
/// the process is killed.
pub fn serve(listen: &str, key: &[u8], max: usize) -> Result<(), TransportError> {
    let state = Arc::new(State::default());
    let key: Arc<[u8]> = key.into();
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    if let Some(path) = listen.strip_prefix("unix:") {
        let l = UnixListener::bind(path)
            .map_err(|e| TransportError::io(format!("binding {path}"), e))?;
        chmod_owner_only(path.as_ref())?;
        println!("ready manager-unix:{path}");
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (state, key) = (state.clone(), key.clone());
            // Relaxed: only uniqueness matters.
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || serve_conn(s, &state, &key, id, max));
        }
    } else if let Some(addr) = listen.strip_prefix("tcp:") {
        let l = TcpListener::bind(addr)
            .map_err(|e| TransportError::io(format!("binding {addr}"), e))?;
        let local = l
            .local_addr()
            .map_err(|e| TransportError::io("reading the port", e))?;
        println!("ready manager-tcp:{local}");
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let _ = s.set_nodelay(true);
            let (state, key) = (state.clone(), key.clone());
            // Relaxed: only uniqueness matters.
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || serve_conn(s, &state, &key, id, max));
        }
    } else {
        return Err(TransportError::Setup(format!(
            "`{listen}` is neither unix:PATH nor tcp:IP:PORT"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Client.

/// A proxy to the server's objects: every call is one request and one reply.
pub struct Proxy<S: StreamIo> {
    conn: StreamConn<S>,
    req: Vec<u8>,
    timeout: Option<Duration>,
}

fn reply_err(code: u8, body: &[u8]) -> TransportError {
    match code {
        status::CLOSED => TransportError::Closed,
        status::PEER_GONE => TransportError::PeerGone(
            "a process that put into this queue died without closing it".into(),
        ),
        status::EMPTY => TransportError::Timeout,
        status::ERROR => TransportError::Malformed(format!(
            "the server refused a request: {}",
            String::from_utf8_lossy(body)
        )),
        c => TransportError::Malformed(format!("unexpected reply code {c}")),
    }
}

impl<S: StreamIo> Proxy<S> {
    /// Authenticates on a connected stream.
    pub fn new(stream: S, key: &[u8], max: usize) -> Result<Self, TransportError> {
        let mut conn = StreamConn::new(stream, HANDSHAKE_MAX);
        conn.set_timeout(Some(HANDSHAKE_TIMEOUT))?;
        client_handshake(&mut conn, key)?;
        let mut conn = conn.with_max(max.saturating_add(16));
        conn.set_timeout(None)?;
        Ok(Proxy {
            conn,
            req: Vec::new(),
            timeout: None,
        })
    }

    /// Sends request `code` on object `name` with `payload`; the reply's
    /// status and body land in `reply`.
    fn call(
        &mut self,
        code: u8,
        name: &[u8],
        payload: &[u8],
        reply: &mut Vec<u8>,
    ) -> Result<u8, TransportError> {
        self.req.clear();
        self.req.push(code);
        self.req.push(name.len() as u8);
        self.req.extend_from_slice(name);
        self.req.extend_from_slice(payload);
        self.conn.send(&self.req)?;
        self.conn.recv(reply).map_err(|e| match e {
            TransportError::Closed | TransportError::PeerGone(_) => {
                TransportError::PeerGone(format!("the manager server went away: {e}"))
            }
            e => e,
        })?;
        match reply.first() {
            Some(&s) => Ok(s),
            None => Err(TransportError::Malformed("empty reply".into())),
        }
    }

    fn expect_ok(
        &mut self,
        code: u8,
        name: &[u8],
        payload: &[u8],
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        match self.call(code, name, payload, reply)? {
            status::OK => {
                reply.remove(0);
                Ok(())
            }
            s => Err(reply_err(s, &reply[1..])),
        }
    }

    /// Test support: sends `req` as it is and returns the reply's body, or
    /// the error its status stands for.
    #[doc(hidden)]
    pub fn raw_request(&mut self, req: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut reply = Vec::new();
        self.conn.send(req)?;
        self.conn.recv(&mut reply)?;
        match reply.first() {
            Some(&status::OK) => Ok(reply[1..].to_vec()),
            Some(&s) => Err(reply_err(s, &reply[1..])),
            None => Err(TransportError::Malformed("empty reply".into())),
        }
    }

    /// `queue[name].put(item)`.
    pub fn put(&mut self, name: &[u8], item: &[u8]) -> Result<(), TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::PUT, name, item, &mut reply)
    }

    /// `queue[name].get()`, into `buf`, within the proxy's timeout.
    pub fn get(&mut self, name: &[u8], buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        let ms = self
            .timeout
            .map_or(u32::MAX, |t| t.as_millis().min(u32::MAX as u128 - 1) as u32);
        self.expect_ok(op::GET, name, &ms.to_le_bytes(), buf)?;
        Ok(buf.len())
    }

    /// Closes `queue[name]`: getters drain it, then learn it closed.
    pub fn close_queue(&mut self, name: &[u8]) -> Result<(), TransportError> {
        self.expect_ok(op::CLOSE_QUEUE, name, &[], &mut Vec::new())
    }

    /// `dict[key] = value`.
    pub fn dict_set(&mut self, key: &[u8], value: &[u8]) -> Result<(), TransportError> {
        self.expect_ok(op::DICT_SET, key, value, &mut Vec::new())
    }

    /// `dict.get(key)`.
    pub fn dict_get(
        &mut self,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, TransportError> {
        match self.call(op::DICT_GET, key, &[], out)? {
            status::OK => {
                out.remove(0);
                Ok(Some(out.len()))
            }
            status::MISSING => Ok(None),
            s => Err(reply_err(s, &out[1..])),
        }
    }

    /// `lock.acquire()`.
    pub fn lock_acquire(&mut self) -> Result<(), TransportError> {
        self.expect_ok(op::LOCK_ACQUIRE, b"", &[], &mut Vec::new())
    }

    /// `lock.release()`.
    pub fn lock_release(&mut self) -> Result<(), TransportError> {
        self.expect_ok(op::LOCK_RELEASE, b"", &[], &mut Vec::new())
    }

    /// `counter += n`; returns the new value.
    pub fn counter_add(&mut self, n: i64) -> Result<i64, TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::COUNTER_ADD, b"", &n.to_le_bytes(), &mut reply)?;
        let v: [u8; 8] = reply
            .as_slice()
            .try_into()
            .map_err(|_| TransportError::Malformed("counter reply is not 8 bytes".into()))?;
        Ok(i64::from_le_bytes(v))
    }

    /// Bounds later calls (a `get` waits at most this long in the server).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = t;
        // The socket waits a little longer than the server does.
        self.conn.set_timeout(t.map(|t| t + Duration::from_secs(5)))
    }
}

// ---------------------------------------------------------------------------
// The transport.

/// How a manager is reached.
pub trait Family: Send + 'static {
    /// The transport's name.
    const NAME: &'static str;
    /// The client stream.
    type Stream: StreamIo;
    /// What `serve` listens on, given the setup's private directory.
    fn listen_spec(dir: &PrivateDir) -> String;
    /// Connects to the address after the `NAME:` prefix.
    fn connect(rest: &str) -> Result<Self::Stream, TransportError>;
}

/// Unix-socket family.
pub struct UnixFamily;
/// TCP loopback family.
pub struct TcpFamily;

impl Family for UnixFamily {
    const NAME: &'static str = "manager-unix";
    type Stream = UnixStream;
    fn listen_spec(dir: &PrivateDir) -> String {
        format!("unix:{}", dir.path().join("manager.sock").display())
    }
    fn connect(rest: &str) -> Result<UnixStream, TransportError> {
        UnixStream::connect(rest)
            .map_err(|e| TransportError::io(format!("connecting to the manager at {rest}"), e))
    }
}

impl Family for TcpFamily {
    const NAME: &'static str = "manager-tcp";
    type Stream = TcpStream;
    fn listen_spec(_dir: &PrivateDir) -> String {
        "tcp:127.0.0.1:0".to_owned()
    }
    fn connect(rest: &str) -> Result<TcpStream, TransportError> {
        let s = TcpStream::connect(rest)
            .map_err(|e| TransportError::io(format!("connecting to the manager at {rest}"), e))?;
        s.set_nodelay(true)
            .map_err(|e| TransportError::io("TCP_NODELAY", e))?;
        Ok(s)
    }
}

/// The manager strategy over family `F`.
pub struct Manager<F: Family>(std::marker::PhantomData<F>);
/// `manager-unix`.
pub type ManagerUnix = Manager<UnixFamily>;
/// `manager-tcp`.
pub type ManagerTcp = Manager<TcpFamily>;

/// Ends a queue on the server (a proxy call made by the coordinator).
type Ender = Box<dyn FnMut(&[u8]) -> Result<(), TransportError> + Send>;

/// The server process and its directory; dropping kills and reaps it.
pub struct ManagerSetup {
    server: Child,
    ender: Ender,
    _dir: PrivateDir,
}

impl LinkSetup for ManagerSetup {
    fn end_stream(&mut self) -> Result<(), TransportError> {
        (self.ender)(b"ab")
    }
}

impl Drop for ManagerSetup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Starts a manager server process with `key`; returns it and its address.
pub fn start_server(
    exe: &std::path::Path,
    listen: &str,
    key: &[u8],
    max: usize,
) -> Result<(Child, String), TransportError> {
    let mut child = Command::new(exe)
        .args(["peer", "--deadline-s", "86400", "manager-serve", listen])
        .arg(format!("--max-message={max}"))
        .env(AUTHKEY_ENV, to_hex(key))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            TransportError::io(format!("starting the manager server {}", exe.display()), e)
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TransportError::Setup("no server stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) if line.starts_with("ready ") => {
            Ok((child, line["ready ".len()..].trim().to_owned()))
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(TransportError::Setup(format!(
                "the manager server did not start ({})",
                match other {
                    Ok(l) if l.is_empty() => "it exited; see its error above".to_owned(),
                    Ok(l) => format!("it said {l:?}"),
                    Err(_) => format!("no word within {} s", READY_TIMEOUT.as_secs()),
                }
            )))
        }
    }
}

/// Work done with a proxy, whichever stream its manager is served over
/// (the harness's calls of a dictionary, a task farm's workers and master).
pub trait ProxyTask {
    /// What the work gives.
    type Out;
    /// Does the work with `proxy`.
    fn run<S: StreamIo>(self, proxy: Proxy<S>) -> Self::Out;
}

/// Connects a proxy to the server of the manager strategy `kind` at `ep`
/// and does `task` with it. Every strategy whose registry row says it
/// shares through a server is one of these.
pub fn with_proxy<P: ProxyTask>(
    kind: super::TransportKind,
    ep: &Endpoint,
    opts: &LinkOpts,
    task: P,
) -> Result<P::Out, TransportError> {
    use super::TransportKind;
    match kind {
        TransportKind::ManagerUnix => Ok(task.run(ManagerUnix::proxy(ep, opts)?)),
        TransportKind::ManagerTcp => Ok(task.run(ManagerTcp::proxy(ep, opts)?)),
        other => Err(TransportError::Setup(format!(
            "{other} serves no objects to proxies"
        ))),
    }
}

/// One side of a manager link: a proxy plus the queue names it uses.
pub struct ManagerConn<S: StreamIo> {
    proxy: Proxy<S>,
    out: &'static [u8],
    inp: &'static [u8],
    max: usize,
    closed: bool,
}

impl<F: Family> Manager<F> {
    /// A proxy to the server at `ep`, with the link's key.
    pub fn proxy(ep: &Endpoint, opts: &LinkOpts) -> Result<Proxy<F::Stream>, TransportError> {
        let key = match ep.env.iter().find(|(k, _)| k == AUTHKEY_ENV) {
            Some((_, hex)) => from_hex(hex)?,
            None => key_from_env()?,
        };
        let rest = addr_rest(&ep.addr, F::NAME)?;
        Proxy::new(F::connect(rest)?, &key, opts.max_message)
    }

    /// Connects side `side` with an explicit key (a wrong one is refused).
    pub fn connect_with_key(
        ep: &Endpoint,
        side: Side,
        opts: &LinkOpts,
        key: &[u8],
    ) -> Result<ManagerConn<F::Stream>, TransportError> {
        let rest = addr_rest(&ep.addr, F::NAME)?;
        let proxy = Proxy::new(F::connect(rest)?, key, opts.max_message)?;
        let (out, inp): (&'static [u8], &'static [u8]) = match side {
            Side::A => (b"ab", b"ba"),
            Side::B => (b"ba", b"ab"),
        };
        Ok(ManagerConn {
            proxy,
            out,
            inp,
            max: opts.max_message,
            closed: false,
        })
    }
}

impl<F: Family> Transport for Manager<F> {
    const NAME: &'static str = F::NAME;
    type Setup = ManagerSetup;
    type Conn = ManagerConn<F::Stream>;

    fn setup(opts: &LinkOpts) -> Result<(ManagerSetup, Endpoint), TransportError> {
        let dir = PrivateDir::new(&opts.label)?;
        let key: [u8; KEY_LEN] = random_bytes()?;
        let (server, addr) =
            // A request carries the message plus its op code and queue name.
            start_server(&opts.exe, &F::listen_spec(&dir), &key, opts.max_message.saturating_add(REQUEST_OVERHEAD))?;
        let (ender_addr, ender_key, ender_max) = (addr.clone(), key, opts.max_message);
        let ender: Ender = Box::new(move |queue| {
            let rest = addr_rest(&ender_addr, F::NAME)?;
            let mut proxy = Proxy::new(F::connect(rest)?, &ender_key, ender_max)?;
            proxy.close_queue(queue)
        });
        Ok((
            ManagerSetup {
                server,
                ender,
                _dir: dir,
            },
            Endpoint {
                addr,
                inherit: Vec::new(),
                in_child: false,
                env: vec![(AUTHKEY_ENV.to_owned(), to_hex(&key))],
            },
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError> {
        let key = match ep.env.iter().find(|(k, _)| k == AUTHKEY_ENV) {
            Some((_, hex)) => from_hex(hex)?,
            None => key_from_env()?,
        };
        Self::connect_with_key(ep, side, opts, &key)
    }
}

impl<S: StreamIo> Conn for ManagerConn<S> {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        self.proxy.put(self.out, msg)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.proxy.get(self.inp, buf)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.proxy.set_timeout(timeout)
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.closed = true;
        self.proxy.close_queue(self.out)
    }

    fn leave(mut self) -> Result<(), TransportError> {
        // Disconnect in order without closing the queue others still use.
        self.closed = true;
        Ok(())
    }
}

impl<S: StreamIo> Drop for ManagerConn<S> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.proxy.close_queue(self.out);
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! The request handler fed 100 000 generated requests (known and
    //! unknown codes, names running past the request, payloads of the
    //! wrong size): no panic, every reply one of the status codes, errors
    //! say what was wrong, and what was stored reads back.
    use super::*;
    use crate::harness::validate::mix64;

    #[test]
    fn the_request_handler_survives_generated_requests() {
        let state = State::default();
        let mut seed = 0x5eed_u64;
        let mut next = || {
            seed = seed.wrapping_add(1);
            mix64(seed)
        };
        let (mut dict, mut counter, mut locked) = (HashMap::new(), 0i64, false);
        let (mut out, mut errors) = (Vec::new(), 0u64);
        for case in 0..100_000u64 {
            let code = (next() % 11) as u8;
            let name: Vec<u8> = (0..next() % 4).map(|_| b'a' + (next() % 3) as u8).collect();
            let mut payload: Vec<u8> = (0..next() % 24).map(|_| next() as u8).collect();
            // Blocking requests would wait for ever on one thread: GET waits
            // at most 0 ms, and the lock is only taken while free.
            if code == op::GET && next() % 4 != 0 {
                payload = 0u32.to_le_bytes().to_vec();
            }
            if code == op::GET
                && payload.len() == 4
                && u32::from_le_bytes(payload[..4].try_into().unwrap()) > 0
            {
                payload = 0u32.to_le_bytes().to_vec();
            }
            if code == op::LOCK_ACQUIRE && locked {
                continue;
            }
            let mut req = vec![code];
            // Sometimes a name length that runs past the request.
            let claimed = if next() % 8 == 0 {
                (name.len() + payload.len() + 1 + (next() % 10) as usize).min(255)
            } else {
                name.len()
            };
            req.push(claimed as u8);
            req.extend_from_slice(&name);
            req.extend_from_slice(&payload);
            if next() % 50 == 0 {
                req.truncate((next() % 2) as usize);
            }
            state.handle(case % 5, &req, &mut out);
            let status = *out.first().expect("every request gets a reply");
            assert!(status <= status::ERROR, "case {case}: status {status}");
            assert!(
                out.len() <= 1 + 64 + 24,
                "case {case}: a {}-byte reply",
                out.len()
            );
            if status == status::ERROR {
                errors += 1;
                assert!(out.len() > 1, "case {case}: an error must say why");
                continue;
            }
            let well_formed = req.len() >= 2 && claimed == name.len();
            assert!(
                well_formed || code > op::COUNTER_ADD,
                "case {case}: bad request accepted"
            );
            match code {
                op::DICT_SET => {
                    dict.insert(name.clone(), payload.clone());
                }
                op::DICT_GET => match dict.get(&name) {
                    Some(v) => assert_eq!(&out[1..], &v[..], "case {case}"),
                    None => assert_eq!(status, status::MISSING, "case {case}"),
                },
                op::COUNTER_ADD => {
                    counter =
                        counter.wrapping_add(i64::from_le_bytes(payload[..8].try_into().unwrap()));
                    assert_eq!(out[1..], counter.to_le_bytes(), "case {case}");
                }
                op::LOCK_ACQUIRE => locked = true,
                op::LOCK_RELEASE => locked = false,
                _ => {}
            }
        }
        assert!(
            errors > 10_000,
            "the generator must reach the error paths ({errors})"
        );
    }
}
