//! `os-pipe`: two anonymous pipes (pipe2), one per direction, carrying
//! length-prefixed messages — what `multiprocessing.Pipe(duplex=False)` and
//! `Queue` use underneath.
//!
//! The coordinator makes the pipes; child peers inherit the descriptors and
//! close the other side's, so a side that dies is seen as end-of-file.
//! Address: `os-pipe:a=W,R;b=W,R` (each side's write and read descriptor).

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::fd::{adopt, close_inherited, dup, parse_fds};
use super::stream::{StreamConn, StreamIo};
use super::{
    Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError, addr_rest,
};

/// The `os-pipe` strategy.
pub struct OsPipe;

/// The four descriptors, until the peers have them.
pub struct OsPipeSetup {
    fds: Vec<OwnedFd>,
}

impl LinkSetup for OsPipeSetup {
    fn children_started(&mut self) {
        self.fds.clear();
    }
}

impl Inject for OsPipe {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (w, _) = side_fds(&ep.addr, victim.other())?;
        // SAFETY: the setup owns `w` and outlives this call; we write through a copy.
        let mut f = File::from(dup(&unsafe { std::os::fd::BorrowedFd::borrow_raw(w) })?);
        f.write_all(&super::stream::malformed_bytes(what))
            .map_err(|e| TransportError::io("injecting", e))?;
        Ok(Box::new(f))
    }
}

/// A read pipe and a write pipe.
pub struct PipePair {
    r: File,
    w: Option<File>,
}

impl StreamIo for PipePair {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.w {
            Some(w) => w.write_vectored(bufs),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn read_fd(&self) -> RawFd {
        self.r.as_raw_fd()
    }
    fn write_fd(&self) -> RawFd {
        self.w.as_ref().map_or(-1, |w| w.as_raw_fd())
    }
    fn set_kernel_timeout(&mut self, _t: Option<Duration>) -> io::Result<bool> {
        Ok(false)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.w = None;
        Ok(())
    }
}

fn pipe2() -> Result<(OwnedFd, OwnedFd), TransportError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(TransportError::io("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The (write, read) descriptors of `side` in an address.
fn side_fds(addr: &str, side: Side) -> Result<(RawFd, RawFd), TransportError> {
    let rest = addr_rest(addr, OsPipe::NAME)?;
    let want = format!("{}=", side.name());
    let part = rest
        .split(';')
        .find_map(|p| p.strip_prefix(&want))
        .ok_or_else(|| TransportError::Setup(format!("no side {} in `{addr}`", side.name())))?;
    match parse_fds(part)?[..] {
        [w, r] => Ok((w, r)),
        _ => Err(TransportError::Setup(format!(
            "bad os-pipe address `{addr}`"
        ))),
    }
}

impl Transport for OsPipe {
    const NAME: &'static str = "os-pipe";
    type Setup = OsPipeSetup;
    type Conn = StreamConn<PipePair>;

    fn setup(_opts: &LinkOpts) -> Result<(OsPipeSetup, Endpoint), TransportError> {
        let (ab_r, ab_w) = pipe2()?;
        let (ba_r, ba_w) = pipe2()?;
        let addr = format!(
            "{}:a={},{};b={},{}",
            Self::NAME,
            ab_w.as_raw_fd(),
            ba_r.as_raw_fd(),
            ba_w.as_raw_fd(),
            ab_r.as_raw_fd()
        );
        let inherit = [&ab_r, &ab_w, &ba_r, &ba_w]
            .iter()
            .map(|f| f.as_raw_fd())
            .collect();
        Ok((
            OsPipeSetup {
                fds: vec![ab_r, ab_w, ba_r, ba_w],
            },
            Endpoint::new(addr, inherit),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Self::Conn, TransportError> {
        let (w, r) = side_fds(&ep.addr, side)?;
        let (w, r) = if ep.in_child {
            let (ow, or) = side_fds(&ep.addr, side.other())?;
            close_inherited(ow);
            close_inherited(or);
            (adopt(w)?, adopt(r)?)
        } else {
            // SAFETY: the numbers belong to the setup, alive in this process
            // for this call; we duplicate them and keep only the copies.
            let (bw, br) = unsafe {
                (
                    std::os::fd::BorrowedFd::borrow_raw(w),
                    std::os::fd::BorrowedFd::borrow_raw(r),
                )
            };
            (dup(&bw)?, dup(&br)?)
        };
        Ok(StreamConn::new(
            PipePair {
                r: File::from(r),
                w: Some(File::from(w)),
            },
            opts.max_message,
        ))
    }
}
