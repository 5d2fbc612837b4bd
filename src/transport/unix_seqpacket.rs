//! `unix-seqpacket`: an AF_UNIX `SOCK_SEQPACKET` socket, which keeps message
//! boundaries in the kernel. A packet is a 4-byte flags word and up to
//! 64 KiB of payload; larger messages are cut into packets flagged `MORE`
//! but the last, and the close packet is flagged `CLOSE`.
//!
//! Set-up as for `unix-stream`: listener in a private directory, inherited
//! by side A. Address: `unix-seqpacket:FD:PATH`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use super::fd::{PrivateDir, chmod_owner_only};
use super::unix_stream::{ListenerSetup, fd_and_rest, listener_fd, wait_accept};
use super::{Conn, Endpoint, Inject, LinkOpts, Malformation, Side, Transport, TransportError};

/// Payload bytes per packet.
pub const PACKET: usize = 64 << 10;
const HEADER: usize = 4;
const MORE: u32 = 1;
const CLOSE: u32 = 2;

/// The `unix-seqpacket` strategy.
pub struct UnixSeqpacket;

impl Inject for UnixSeqpacket {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        super::stand_in_for_b(victim)?;
        let (_, path) = fd_and_rest(&ep.addr, Self::NAME)?;
        let fd = socket()?;
        let (sa, len) = sockaddr(Path::new(path))?;
        connect_to(&fd, &sa, len).map_err(|e| TransportError::io("connecting the stand-in", e))?;
        let packet: Vec<u8> = match what {
            // A packet larger than any packet of ours.
            Malformation::OversizedLength => vec![0; HEADER + PACKET + 100],
            // The first packet of a message whose rest never comes.
            Malformation::Truncated => MORE
                .to_le_bytes()
                .iter()
                .copied()
                .chain([0xAB; 10])
                .collect(),
        };
        // SAFETY: a live buffer of the given length.
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                packet.as_ptr() as *const libc::c_void,
                packet.len(),
                0,
            )
        };
        if r < 0 {
            return Err(TransportError::io("injecting", io::Error::last_os_error()));
        }
        Ok(Box::new(fd))
    }
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), TransportError> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return Err(TransportError::Setup(format!(
            "socket path {} is too long",
            path.display()
        )));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn connect_to(fd: &OwnedFd, sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<()> {
    // SAFETY: `sa` is a valid sockaddr_un and `len` does not exceed it.
    let r = unsafe { libc::connect(fd.as_raw_fd(), sa as *const _ as *const libc::sockaddr, len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind_to(fd: &OwnedFd, sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<()> {
    // SAFETY: `sa` is a valid sockaddr_un and `len` does not exceed it.
    let r = unsafe { libc::bind(fd.as_raw_fd(), sa as *const _ as *const libc::sockaddr, len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socket() -> Result<OwnedFd, TransportError> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(TransportError::io(
            "socket(AF_UNIX, SOCK_SEQPACKET)",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(r: libc::c_int, what: &str) -> Result<(), TransportError> {
    if r < 0 {
        Err(TransportError::io(what, io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

fn set_timeout_opt(fd: RawFd, opt: libc::c_int, t: Option<Duration>) -> Result<(), TransportError> {
    let t = t
        .map(|d| d.max(Duration::from_micros(1)))
        .unwrap_or_default();
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid timeval of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(r, "setting the socket timeout")
}

/// A connected seqpacket socket.
pub struct SeqpacketConn {
    fd: OwnedFd,
    rbuf: Box<[u8]>,
    max: usize,
    peer_closed: bool,
    closed: bool,
}

impl SeqpacketConn {
    fn send_packet(&mut self, flags: u32, payload: &[u8]) -> Result<(), TransportError> {
        let header = flags.to_le_bytes();
        let iov = [
            libc::iovec {
                iov_base: header.as_ptr() as *mut libc::c_void,
                iov_len: HEADER,
            },
            libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            },
        ];
        loop {
            // SAFETY: both iovecs point at live buffers of the stated lengths.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    return Err(TransportError::Timeout);
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset if self.peer_closed => {
                    return Err(TransportError::Closed);
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    return Err(TransportError::PeerGone(format!(
                        "sending: {e} (the peer died)"
                    )));
                }
                _ => return Err(TransportError::io("sending a packet", e)),
            }
        }
    }

    /// Receives one packet into `rbuf`; returns its flags and payload length.
    fn recv_packet(&mut self) -> Result<(u32, usize), TransportError> {
        loop {
            // SAFETY: rbuf is a live buffer of the given length; MSG_TRUNC
            // makes recv report the packet's real length.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.rbuf.as_mut_ptr() as *mut libc::c_void,
                    self.rbuf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        Err(TransportError::Timeout)
                    }
                    io::ErrorKind::ConnectionReset => {
                        Err(TransportError::PeerGone(format!("receiving: {e}")))
                    }
                    _ => Err(TransportError::io("receiving a packet", e)),
                };
            }
            let n = r as usize;
            if n == 0 {
                return Err(TransportError::PeerGone(
                    "the connection ended without an orderly close (the peer crashed or was killed)".into(),
                ));
            }
            if n > self.rbuf.len() {
                return Err(TransportError::Malformed(format!(
                    "packet of {n} bytes exceeds the {} bytes a packet may hold",
                    self.rbuf.len()
                )));
            }
            if n < HEADER {
                return Err(TransportError::Malformed(format!(
                    "packet of {n} bytes has no header"
                )));
            }
            let flags =
                u32::from_le_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]]);
            if flags & !(MORE | CLOSE) != 0 {
                return Err(TransportError::Malformed(format!(
                    "unknown packet flags {flags:#x}"
                )));
            }
            return Ok((flags, n - HEADER));
        }
    }
}

impl Conn for SeqpacketConn {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        if msg.len() <= PACKET {
            return self.send_packet(0, msg);
        }
        let mut chunks = msg.chunks(PACKET).peekable();
        while let Some(c) = chunks.next() {
            let flags = if chunks.peek().is_some() { MORE } else { 0 };
            self.send_packet(flags, c)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        if self.peer_closed {
            return Err(TransportError::Closed);
        }
        buf.clear();
        loop {
            let (flags, n) = self.recv_packet()?;
            if flags & CLOSE != 0 {
                self.peer_closed = true;
                return Err(TransportError::Closed);
            }
            if buf.len() + n > self.max {
                return Err(TransportError::Malformed(format!(
                    "message grows past the limit of {} bytes",
                    self.max
                )));
            }
            buf.extend_from_slice(&self.rbuf[HEADER..HEADER + n]);
            if flags & MORE == 0 {
                return Ok(buf.len());
            }
        }
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        set_timeout_opt(self.fd.as_raw_fd(), libc::SO_RCVTIMEO, timeout)?;
        set_timeout_opt(self.fd.as_raw_fd(), libc::SO_SNDTIMEO, timeout)
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.close_inner()
    }
}

impl SeqpacketConn {
    fn close_inner(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        match self.send_packet(CLOSE, &[]) {
            // The peer closed first and is gone: nothing is left to tell it.
            Err(TransportError::Closed) => Ok(()),
            other => other,
        }
    }
}

impl Drop for SeqpacketConn {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl Transport for UnixSeqpacket {
    const NAME: &'static str = "unix-seqpacket";
    type Setup = ListenerSetup;
    type Conn = SeqpacketConn;

    fn setup(opts: &LinkOpts) -> Result<(ListenerSetup, Endpoint), TransportError> {
        let dir = PrivateDir::new(&opts.label)?;
        let path = dir.path().join("sock");
        let (sa, len) = sockaddr(&path)?;
        let fd = socket()?;
        bind_to(&fd, &sa, len)
            .map_err(|e| TransportError::io("binding the seqpacket socket", e))?;
        chmod_owner_only(&path)?;
        // SAFETY: listen on a bound socket.
        check(unsafe { libc::listen(fd.as_raw_fd(), 16) }, "listening")?;
        let addr = format!("{}:{}:{}", Self::NAME, fd.as_raw_fd(), path.display());
        let inherit = vec![fd.as_raw_fd()];
        Ok((
            ListenerSetup::new(fd, Some(dir)),
            Endpoint::new(addr, inherit),
        ))
    }

    fn connect(
        ep: &Endpoint,
        side: Side,
        opts: &LinkOpts,
    ) -> Result<SeqpacketConn, TransportError> {
        let (lfd, path) = fd_and_rest(&ep.addr, Self::NAME)?;
        let fd = match listener_fd(ep, lfd, side)? {
            Some(l) => {
                wait_accept(l.as_raw_fd())?;
                // SAFETY: accept4 on a listening socket; no address wanted.
                let c = unsafe {
                    libc::accept4(
                        l.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                check(c, "accepting")?;
                // SAFETY: a new descriptor nothing else owns.
                unsafe { OwnedFd::from_raw_fd(c) }
            }
            None => {
                let fd = socket()?;
                let (sa, len) = sockaddr(Path::new(path))?;
                connect_to(&fd, &sa, len).map_err(|e| TransportError::io("connecting", e))?;
                fd
            }
        };
        Ok(SeqpacketConn {
            fd,
            rbuf: vec![0; HEADER + PACKET].into_boxed_slice(),
            max: opts.max_message,
            peer_closed: false,
            closed: false,
        })
    }
}
