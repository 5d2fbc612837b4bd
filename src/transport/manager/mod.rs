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

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::fd::PrivateDir;
use super::stream::{StreamConn, StreamIo};
use super::{
    Conn, Endpoint, LinkOpts, LinkSetup, RemoteHost, Side, Transport, TransportError, addr_rest,
};

mod proxy;
mod server;

pub use proxy::Proxy;
pub use server::{handle_requests_for_fuzzing, serve};

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
    pub const LIST_APPEND: u8 = 9;
    pub const LIST_GET: u8 = 10;
    pub const NS_SET: u8 = 11;
    pub const NS_GET: u8 = 12;
    pub const VALUE_SET: u8 = 13;
    pub const VALUE_GET: u8 = 14;
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

/// How a manager is reached.
pub trait Family: Send + 'static {
    /// The transport's name.
    const NAME: &'static str;
    /// The client stream.
    type Stream: StreamIo;
    /// What `serve` listens on, given the setup's private directory and
    /// the host the server runs on (`None`: this one).
    fn listen_spec(dir: &PrivateDir, host: Option<&RemoteHost>) -> Result<String, TransportError>;
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
    fn listen_spec(dir: &PrivateDir, host: Option<&RemoteHost>) -> Result<String, TransportError> {
        match host {
            None => Ok(format!(
                "unix:{}",
                dir.path().join("manager.sock").display()
            )),
            Some(_) => Err(TransportError::Setup(
                "a manager over a Unix socket cannot have its server on another host".into(),
            )),
        }
    }
    fn connect(rest: &str) -> Result<UnixStream, TransportError> {
        UnixStream::connect(rest)
            .map_err(|e| TransportError::io(format!("connecting to the manager at {rest}"), e))
    }
}

impl Family for TcpFamily {
    const NAME: &'static str = "manager-tcp";
    type Stream = TcpStream;
    fn listen_spec(_dir: &PrivateDir, host: Option<&RemoteHost>) -> Result<String, TransportError> {
        // Port 0: the server says which port it has in its `ready` line.
        Ok(match host {
            None => "tcp:127.0.0.1:0".to_owned(),
            Some(h) => format!("tcp:{}", std::net::SocketAddr::new(h.addr, 0)),
        })
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

    fn helper_ended(&mut self) -> Option<super::HelperEnd> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.server.try_wait().ok().flatten()?;
        Some(super::HelperEnd {
            name: "manager server",
            pid: self.server.id(),
            signal: status.signal(),
            code: status.code(),
        })
    }
}

impl Drop for ManagerSetup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Starts a manager server process with `key`, on `host` if given
/// (through its prefix, which passes the environment on: `ip netns exec`
/// does, `ssh` with `SendEnv`); returns it and its address.
pub fn start_server(
    exe: &std::path::Path,
    host: Option<&RemoteHost>,
    listen: &str,
    key: &[u8],
    max: usize,
    env: &[(String, String)],
) -> Result<(Child, String), TransportError> {
    let mut cmd = super::command_through(host.map_or(&[], |h| &h.prefix[..]), exe);
    cmd.args(["peer", "--deadline-s", "86400", "manager-serve", listen])
        .arg(format!("--max-message={max}"))
        .env(AUTHKEY_ENV, to_hex(key))
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Held open by the `Child` while the server is wanted: the server
        // ends when it closes, also on another host whose connection to
        // this one dropped.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    super::fd::ignore_stop_signals_in_child(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
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
            use std::os::unix::process::ExitStatusExt;
            let pid = child.id();
            let _ = child.kill();
            let ended = child.wait().ok();
            let how = match (ended.and_then(|s| s.signal()), ended.and_then(|s| s.code())) {
                (Some(sig), _) if matches!(other, Ok(ref l) if l.is_empty()) => {
                    format!(
                        "was ended by signal {sig}{}",
                        if sig == libc::SIGKILL {
                            " (SIGKILL)"
                        } else {
                            ""
                        }
                    )
                }
                (_, Some(code)) => format!("exited with status {code}; see its error above"),
                _ => match other {
                    Ok(l) if !l.is_empty() => format!("said {l:?}"),
                    _ => format!("said nothing within {} s", READY_TIMEOUT.as_secs()),
                },
            };
            Err(TransportError::Setup(format!(
                "the manager server (pid {pid}) {how} before it was ready"
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
            start_server(&opts.exe, opts.server_host.as_ref(), &F::listen_spec(&dir, opts.server_host.as_ref())?, &key, opts.max_message.saturating_add(REQUEST_OVERHEAD), &opts.helper_env)?;
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
mod tests {
    //! The client's side of a server that dies in the middle of its reply.
    //! (The server's side of a client that does so is in the conformance
    //! suite, against the real server.)
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_reply_cut_short_is_the_server_gone_never_a_short_value() {
        let key = [9u8; KEY_LEN];
        for keep in [0usize, 3, 8] {
            let (client, server) = UnixStream::pair().unwrap();
            let fake = std::thread::spawn(move || {
                let mut conn = StreamConn::new(server, HANDSHAKE_MAX);
                server_handshake(&mut conn, &key).unwrap();
                let mut conn = conn.with_max(1 << 20);
                let mut req = Vec::new();
                conn.recv(&mut req).unwrap();
                assert_eq!(req[0], op::COUNTER_ADD);
                // [OK][the new value: i64], cut after `keep` bytes.
                let mut reply = vec![status::OK];
                reply.extend_from_slice(&41i64.to_le_bytes());
                conn.send_cut(&reply, keep).unwrap();
            });
            let mut proxy = Proxy::new(client, &key, 1 << 20).unwrap();
            // A hang detector: the cut reply is answered at once.
            proxy.set_timeout(Some(Duration::from_secs(60))).unwrap();
            let e = proxy.counter_add(1).unwrap_err();
            fake.join().unwrap();
            assert!(
                matches!(&e, TransportError::PeerGone(why)
                    if why.contains("server went away") && why.contains(&format!("({keep} of 9 bytes)"))),
                "keep {keep}: {e}"
            );
        }
    }
}
