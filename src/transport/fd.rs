//! File-descriptor plumbing for the kernel transports: waiting with poll(2),
//! handing descriptors to child processes, private socket directories.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::TransportError;

/// Waits until `fd` is ready for `events` (`POLLIN`/`POLLOUT`) or `timeout`
/// passes; returns whether it is ready (hang-ups and errors count as ready:
/// the next read or write reports them).
pub fn poll_ready(fd: RawFd, events: i16, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond wait does not spin.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack, count 1.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number has no memory effects; a bad
    // number gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes a child started by `cmd` inherit `fds` (same numbers), and no
/// other descriptor of ours.
pub fn inherit_in_child(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only fcntl, which is async-signal-safe; it allocates nothing (the
    // vector was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts the child with SIGINT, SIGTERM and SIGHUP ignored (a disposition
/// that survives exec, so it holds from the child's first instruction).
/// A terminal's Ctrl-C reaches the whole process group: it is for the
/// coordinator, which lets the point in progress finish and then stops;
/// a child ends when its coordinator says so, kills it, or dies (the
/// parent-death signal), never halfway through a point on its own.
pub fn ignore_stop_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only signal(), which is async-signal-safe, to set SIG_IGN.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts the child armed to be killed when this process ends (the
/// parent-death signal, which survives exec): a helper that must not
/// outlive the peer that stands for it.
pub fn die_with_parent_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl, which is async-signal-safe and has no memory effects.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of descriptor `fd` named in an address, after checking
/// that it is open. The caller must not use `fd` otherwise afterwards.
pub fn adopt(fd: RawFd) -> Result<OwnedFd, TransportError> {
    // SAFETY: F_GETFD only checks the number.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(TransportError::Setup(format!(
            "descriptor {fd} named in the address is not open in this process (was it inherited?)"
        )));
    }
    // Close it on any later exec.
    set_cloexec(fd, true).map_err(|e| TransportError::io("marking an inherited descriptor", e))?;
    // SAFETY: the descriptor is open and the address gave it to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates `fd` (close-on-exec), so the original may be closed.
pub fn dup(fd: &impl AsRawFd) -> Result<OwnedFd, TransportError> {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor we borrow.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(TransportError::io(
            "duplicating a descriptor",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Closes descriptor `fd` if it is open (a child closes the other side's
/// inherited descriptors so that their end-of-file is not held up).
pub fn close_inherited(fd: RawFd) {
    // SAFETY: the number came from an address meant for this child; nothing
    // in this process owns it as an `OwnedFd`.
    unsafe {
        libc::close(fd);
    }
}

/// Parses `N,N,…` descriptor numbers.
pub fn parse_fds(s: &str) -> Result<Vec<RawFd>, TransportError> {
    s.split(',')
        .map(|n| {
            n.parse()
                .map_err(|_| TransportError::Setup(format!("`{n}` is not a descriptor number")))
        })
        .collect()
}

/// A private directory for socket files: mode 0700, removed with its
/// contents on drop.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Makes `<tmp>/ipcbench-<pid>-<n>-<label>` with mode 0700.
    pub fn new(label: &str) -> Result<PrivateDir, TransportError> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(crate::shm::unique_name(label));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| TransportError::io(format!("creating {}", path.display()), e))?;
        Ok(PrivateDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Restricts a socket file to its owner.
pub fn chmod_owner_only(path: &Path) -> Result<(), TransportError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TransportError::io(format!("restricting {}", path.display()), e))
}
