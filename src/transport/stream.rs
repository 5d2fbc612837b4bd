//! Whole messages over a byte stream (pipes, stream sockets): each message
//! is a 4-byte little-endian length and its bytes; the length `u32::MAX` is
//! the close frame.
//!
//! The receiver reads into a 64 KiB buffer, so a small message usually costs
//! one `read`; a large one is read straight into the caller's buffer, which
//! grows by at most 1 MiB beyond what has arrived, so a forged length never
//! makes it allocate what the peer did not send. A sender writes the length
//! and the bytes with one `writev`.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use super::TransportError;
use super::fd::poll_ready;

/// The length value of the close frame.
pub const CLOSE: u32 = u32::MAX;
const HEADER: usize = 4;
const RBUF: usize = 64 << 10;
/// How far a large message's buffer may run ahead of the bytes received.
const GROW: usize = 1 << 20;

/// The bytes a broken or hostile stream peer sends (see [`super::Inject`]):
/// a length beyond any limit, or a plausible length followed by only a few
/// bytes (the stand-in then vanishes).
pub fn malformed_bytes(what: super::Malformation) -> Vec<u8> {
    match what {
        super::Malformation::OversizedLength => (CLOSE - 1).to_le_bytes().to_vec(),
        super::Malformation::Truncated => {
            let mut v = (60u32 << 20).to_le_bytes().to_vec();
            v.extend_from_slice(&[0xAB; 10]);
            v
        }
    }
}

/// A stand-in that connects like side B (with `connect`) and writes the
/// malformed bytes (see [`super::Inject`]); only side A can be its victim.
pub fn inject_stream<S: std::io::Write + Send + 'static>(
    victim: super::Side,
    what: super::Malformation,
    connect: impl FnOnce() -> io::Result<S>,
) -> Result<Box<dyn Send>, TransportError> {
    super::stand_in_for_b(victim)?;
    let mut s = connect().map_err(|e| TransportError::io("connecting the stand-in", e))?;
    s.write_all(&malformed_bytes(what))
        .map_err(|e| TransportError::io("injecting", e))?;
    Ok(Box::new(s))
}

/// The byte stream under a [`StreamConn`].
pub trait StreamIo: Send {
    /// One `read`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// One `writev`.
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The descriptor reads wait on.
    fn read_fd(&self) -> RawFd;
    /// The descriptor writes wait on.
    fn write_fd(&self) -> RawFd;
    /// Applies `t` in the kernel if this stream can (socket options);
    /// returns `false` if the caller must poll instead.
    fn set_kernel_timeout(&mut self, t: Option<Duration>) -> io::Result<bool>;
    /// Ends the writing direction (the peer reads end-of-file).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// A connection of whole messages over a [`StreamIo`].
pub struct StreamConn<S: StreamIo> {
    io: S,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    max: usize,
    timeout: Option<Duration>,
    poll_timeouts: bool,
    /// The peer's close frame was read.
    peer_closed: bool,
    /// Our close frame was sent.
    closed: bool,
    /// The stream lost its framing (a bad length, a write cut by a timeout).
    broken: Option<String>,
}

fn classify(e: io::Error, what: &str, peer_closed: bool) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout,
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected => {
            if peer_closed {
                TransportError::Closed
            } else {
                TransportError::PeerGone(format!(
                    "{what}: {e} (the peer died or dropped the connection)"
                ))
            }
        }
        _ => TransportError::io(what, e),
    }
}

impl<S: StreamIo> StreamConn<S> {
    /// Wraps a connected stream; messages above `max` bytes are refused.
    pub fn new(io: S, max: usize) -> Self {
        StreamConn {
            io,
            rbuf: vec![0; RBUF].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(RBUF + HEADER),
            max: max.min(CLOSE as usize - 1),
            timeout: None,
            poll_timeouts: false,
            peer_closed: false,
            closed: false,
            broken: None,
        }
    }

    /// The same connection with another message limit.
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max.min(CLOSE as usize - 1);
        self
    }

    /// The stream underneath.
    pub fn io(&self) -> &S {
        &self.io
    }

    /// Test support: writes the frame of `msg` cut after `keep` bytes of
    /// its body, as a peer that dies mid-message leaves it. The connection
    /// has lost its framing afterwards: nothing more is sent on it, not
    /// even the close frame.
    #[doc(hidden)]
    pub fn send_cut(&mut self, msg: &[u8], keep: usize) -> Result<(), TransportError> {
        self.check_broken()?;
        let header = (msg.len() as u32).to_le_bytes();
        let r = self.write_all(&mut [IoSlice::new(&header), IoSlice::new(&msg[..keep])]);
        self.broken = Some(format!(
            "a frame was cut after {keep} of {} bytes on purpose",
            msg.len()
        ));
        r
    }

    /// One read into `dst`, honouring the timeout; 0 at end-of-file.
    fn read_some(
        io: &mut S,
        dst: &mut [u8],
        timeout: Option<Duration>,
        poll: bool,
    ) -> Result<usize, TransportError> {
        if poll
            && timeout.is_some()
            && !poll_ready(io.read_fd(), libc::POLLIN, timeout)
                .map_err(|e| TransportError::io("poll", e))?
        {
            return Err(TransportError::Timeout);
        }
        loop {
            match io.read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(classify(e, "reading", false)),
            }
        }
    }

    /// Reads until at least `n` unread bytes are buffered; `Ok(false)` on a
    /// clean end-of-file with nothing buffered.
    fn buffer_at_least(&mut self, n: usize) -> Result<bool, TransportError> {
        while self.rend - self.rstart < n {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            let got = Self::read_some(
                &mut self.io,
                &mut self.rbuf[self.rend..],
                self.timeout,
                self.poll_timeouts,
            )?;
            if got == 0 {
                return if self.rend == self.rstart {
                    Ok(false)
                } else {
                    Err(TransportError::PeerGone(format!(
                        "connection ended in the middle of a frame header ({} of {HEADER} bytes)",
                        self.rend - self.rstart
                    )))
                };
            }
            self.rend += got;
        }
        Ok(true)
    }

    fn write_all(&mut self, bufs: &mut [IoSlice<'_>]) -> Result<(), TransportError> {
        let mut bufs = bufs;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut written = 0;
        while !bufs.is_empty() {
            if self.poll_timeouts
                && self.timeout.is_some()
                && !poll_ready(self.io.write_fd(), libc::POLLOUT, self.timeout)
                    .map_err(|e| TransportError::io("poll", e))?
            {
                if written > 0 {
                    self.broken = Some("a write was cut short by the timeout".into());
                }
                return Err(TransportError::Timeout);
            }
            match self.io.write(bufs) {
                Ok(0) => {
                    return Err(TransportError::PeerGone(
                        "the stream accepts no more bytes".into(),
                    ));
                }
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = classify(e, "writing", self.peer_closed);
                    if written > 0 && written < total {
                        self.broken =
                            Some(format!("a write stopped after {written} of {total} bytes"));
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    fn check_broken(&self) -> Result<(), TransportError> {
        match &self.broken {
            Some(why) => Err(TransportError::Malformed(format!(
                "the stream lost its framing earlier: {why}"
            ))),
            None => Ok(()),
        }
    }

    fn close_inner(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let sent = self
            .write_all(&mut [IoSlice::new(&CLOSE.to_le_bytes())])
            .and_then(|()| {
                self.io
                    .shutdown_write()
                    .map_err(|e| classify(e, "shutting down", self.peer_closed))
            });
        match sent {
            // The peer closed first and is gone: nothing is left to tell it.
            Err(TransportError::Closed) => Ok(()),
            other => other,
        }
    }
}

impl<S: StreamIo> super::Conn for StreamConn<S> {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.check_broken()?;
        super::check_len(msg.len(), self.max)?;
        let header = (msg.len() as u32).to_le_bytes();
        if msg.len() <= RBUF {
            let mut wbuf = std::mem::take(&mut self.wbuf);
            wbuf.clear();
            wbuf.extend_from_slice(&header);
            wbuf.extend_from_slice(msg);
            let r = self.write_all(&mut [IoSlice::new(&wbuf)]);
            self.wbuf = wbuf;
            r
        } else {
            self.write_all(&mut [IoSlice::new(&header), IoSlice::new(msg)])
        }
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.check_broken()?;
        if self.peer_closed {
            return Err(TransportError::Closed);
        }
        if !self.buffer_at_least(HEADER)? {
            return Err(TransportError::PeerGone(
                "the connection ended without an orderly close (the peer crashed or was killed)"
                    .into(),
            ));
        }
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&self.rbuf[self.rstart..self.rstart + HEADER]);
        self.rstart += HEADER;
        let len = u32::from_le_bytes(h);
        if len == CLOSE {
            self.peer_closed = true;
            return Err(TransportError::Closed);
        }
        let len = len as usize;
        if len > self.max {
            let why = format!(
                "length prefix of {len} bytes exceeds the limit of {} bytes",
                self.max
            );
            self.broken = Some(why.clone());
            return Err(TransportError::Malformed(why));
        }
        // Fill buf[..len], growing it no further than GROW past what arrived.
        let mut filled = (self.rend - self.rstart).min(len);
        if buf.len() < filled {
            buf.resize(filled, 0);
        }
        buf[..filled].copy_from_slice(&self.rbuf[self.rstart..self.rstart + filled]);
        self.rstart += filled;
        while filled < len {
            let need = len - filled;
            let got = if need >= RBUF {
                let target = len.min(filled + GROW);
                if buf.len() < target {
                    buf.resize(target, 0);
                }
                Self::read_some(
                    &mut self.io,
                    &mut buf[filled..target],
                    self.timeout,
                    self.poll_timeouts,
                )?
            } else {
                self.rstart = 0;
                self.rend = 0;
                let n = Self::read_some(
                    &mut self.io,
                    &mut self.rbuf[..],
                    self.timeout,
                    self.poll_timeouts,
                )?;
                self.rend = n;
                let take = n.min(need);
                if buf.len() < filled + take {
                    buf.resize(filled + take, 0);
                }
                buf[filled..filled + take].copy_from_slice(&self.rbuf[..take]);
                self.rstart = take;
                take
            };
            if got == 0 {
                return Err(TransportError::PeerGone(format!(
                    "connection ended in the middle of a frame ({filled} of {len} bytes): the peer died mid-message or sent a truncated frame"
                )));
            }
            filled += got;
        }
        buf.truncate(len);
        Ok(len)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        let kernel = self
            .io
            .set_kernel_timeout(timeout)
            .map_err(|e| TransportError::io("setting the socket timeout", e))?;
        self.poll_timeouts = !kernel;
        Ok(())
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.close_inner()
    }
}

impl<S: StreamIo> Drop for StreamConn<S> {
    fn drop(&mut self) {
        if self.broken.is_none() {
            let _ = self.close_inner();
        }
    }
}

/// Implements [`StreamIo`] for a std socket stream type: reads and writes
/// on the socket itself, timeouts through `SO_RCVTIMEO`/`SO_SNDTIMEO` (a
/// zero duration means "none" to the kernel, so it is raised to 1 µs).
macro_rules! socket_stream_io {
    ($t:ty) => {
        impl $crate::transport::stream::StreamIo for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(self, buf)
            }
            fn write(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(self, bufs)
            }
            fn read_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self)
            }
            fn write_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self)
            }
            fn set_kernel_timeout(
                &mut self,
                t: Option<std::time::Duration>,
            ) -> std::io::Result<bool> {
                let t = t.map(|d| d.max(std::time::Duration::from_micros(1)));
                self.set_read_timeout(t)?;
                self.set_write_timeout(t)?;
                Ok(true)
            }
            fn shutdown_write(&mut self) -> std::io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }
        }
    };
}

socket_stream_io!(std::os::unix::net::UnixStream);
socket_stream_io!(std::net::TcpStream);
