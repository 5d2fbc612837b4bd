//! `tcp`: a loopback TCP connection with `TCP_NODELAY`, carrying
//! length-prefixed messages.
//!
//! The coordinator binds the listener on 127.0.0.1 (a free port); side A
//! inherits it and accepts, side B connects. Address: `tcp:FD:IP:PORT`.
//!
//! Any local process can connect to a loopback port, so the link has a
//! token: 16 random bytes the coordinator hands to both sides in the
//! environment ([`TOKEN_ENV`], never on a command line), which side B sends
//! first. Side A drops connections that do not start with it (a stranger
//! who connected first, or a scanner) and goes on accepting.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::stream::StreamConn;
use super::unix_stream::{ACCEPT_TIMEOUT, ListenerSetup, fd_and_rest, listener_fd};
use super::{Endpoint, Inject, LinkOpts, Malformation, Side, Transport, TransportError};

/// The `tcp` strategy.
pub struct Tcp;

/// The environment variable that carries a link's token (hex).
pub const TOKEN_ENV: &str = "IPCBENCH_TCP_TOKEN";
const TOKEN_LEN: usize = 16;
/// How long side A waits for a new connection's token.
const TOKEN_WAIT: Duration = Duration::from_secs(2);

/// The link's token: from the endpoint (in the coordinator's process) or
/// the environment (in a child).
pub(crate) fn token(ep: &Endpoint) -> Result<[u8; TOKEN_LEN], TransportError> {
    let hex = ep
        .env
        .iter()
        .find(|(k, _)| k == TOKEN_ENV)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .ok_or_else(|| TransportError::Setup(format!("no link token: {TOKEN_ENV} is not set")))?;
    let bytes = super::manager::from_hex(&hex)
        .map_err(|_| TransportError::Setup(format!("{TOKEN_ENV} is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| TransportError::Setup(format!("{TOKEN_ENV} is not {TOKEN_LEN} bytes")))
}

/// Connects and presents the token.
fn connect_with_token(sockaddr: &str, token: &[u8]) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(sockaddr)?;
    s.write_all(token)?;
    Ok(s)
}

/// Accepts until a connection presents `token`, by the accept deadline.
fn accept_with_token(listener: &TcpListener, token: &[u8]) -> Result<TcpStream, TransportError> {
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !super::fd::poll_ready(listener.as_raw_fd(), libc::POLLIN, Some(left))
            .map_err(|e| TransportError::io("poll", e))?
        {
            return Err(TransportError::Setup(format!(
                "side B did not connect with the link's token within {} s",
                ACCEPT_TIMEOUT.as_secs()
            )));
        }
        let (mut s, _) = listener
            .accept()
            .map_err(|e| TransportError::io("accepting", e))?;
        let mut got = [0u8; TOKEN_LEN];
        let ok = s
            .set_read_timeout(Some(TOKEN_WAIT))
            .and_then(|()| s.read_exact(&mut got))
            .is_ok()
            // Every byte compared, whatever the first difference.
            && got.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
        if ok {
            s.set_read_timeout(None)
                .map_err(|e| TransportError::io("clearing the read timeout", e))?;
            return Ok(s);
        }
        // A stranger: drop it and go on waiting for side B.
    }
}

impl Inject for Tcp {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (_, sockaddr) = fd_and_rest(&ep.addr, Self::NAME)?;
        let token = token(ep)?;
        super::stream::inject_stream(victim, what, || connect_with_token(sockaddr, &token))
    }
}

impl Transport for Tcp {
    const NAME: &'static str = "tcp";
    type Setup = ListenerSetup;
    type Conn = StreamConn<TcpStream>;

    fn setup(opts: &LinkOpts) -> Result<(ListenerSetup, Endpoint), TransportError> {
        let ip = opts.listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let listener = TcpListener::bind((ip, 0))
            .map_err(|e| TransportError::io(format!("binding {ip}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| TransportError::io("reading the bound port", e))?;
        let fd: std::os::fd::OwnedFd = listener.into();
        let addr = format!("{}:{}:{local}", Self::NAME, fd.as_raw_fd());
        let inherit = vec![fd.as_raw_fd()];
        let token: [u8; TOKEN_LEN] = super::manager::random_bytes()?;
        let mut ep = Endpoint::new(addr, inherit);
        ep.env
            .push((TOKEN_ENV.to_owned(), super::manager::to_hex(&token)));
        Ok((ListenerSetup::new(fd, None), ep))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError> {
        let (fd, sockaddr) = fd_and_rest(&ep.addr, Self::NAME)?;
        let token = token(ep)?;
        let stream = match listener_fd(ep, fd, side)? {
            Some(l) => accept_with_token(&TcpListener::from(l), &token)?,
            None => connect_with_token(sockaddr, &token)
                .map_err(|e| TransportError::io(format!("connecting to {sockaddr}"), e))?,
        };
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        Ok(StreamConn::new(stream, opts.max_message))
    }
}
