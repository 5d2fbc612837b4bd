//! Process start-up: the time from asking for a peer to its first message
//! back, the cost `multiprocessing`'s start methods are chosen by.
//!
//! The coordinator makes a pipe, starts a child and times until it reads
//! the 8-byte number the child writes into the pipe (checked: it must be
//! the number this start was given); the child's exit is reaped after the
//! clock stops. Three ways to start:
//!
//! - `start-fork`: `fork()`; the child writes at once and `_exit`s (a copy
//!   of the running process, like Python's `fork` start method, with no new
//!   program to load);
//! - `start-fork-exec`: `fork()` then `execv` of the ipcbench binary, whose
//!   `peer hello` role writes the number (a new program: loading, runtime
//!   start, argument parsing);
//! - `start-posix-spawn`: `posix_spawn` of the same binary and role.
//!
//! The Python baseline measures `fork`, `forkserver` and `spawn` the same
//! way (`py-start-*`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::spec::RunOpts;
use super::validate::now_ns;
use crate::record::PointRecord;

/// The pattern's name.
pub const PATTERN: &str = "startup";

/// The bytes of a start-up point's message: the child's first word.
pub const SIZE: usize = 8;

/// The descriptor a started program finds the pipe on.
pub const CHILD_FD: i32 = 100;

/// A way to start a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `fork()`, no exec.
    Fork,
    /// `fork()` and `execv()` of the binary.
    ForkExec,
    /// `posix_spawn()` of the binary.
    PosixSpawn,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 3] = [Method::Fork, Method::ForkExec, Method::PosixSpawn];

    /// The name in results (`transport`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Fork => "start-fork",
            Method::ForkExec => "start-fork-exec",
            Method::PosixSpawn => "start-posix-spawn",
        }
    }

    /// What it is, for `ipcbench list`.
    pub fn description(self) -> &'static str {
        match self {
            Method::Fork => "fork(); the copy writes its first message at once (startup)",
            Method::ForkExec => "fork() + execv() of the ipcbench binary, which writes (startup)",
            Method::PosixSpawn => "posix_spawn() of the ipcbench binary, which writes (startup)",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown start method `{s}`"))
    }
}

/// Starts to time in a point, and the longest a point may take.
fn counts(opts: &RunOpts) -> (u64, u64) {
    let n = opts
        .fixed_count
        .unwrap_or((opts.pingpong_iters / 20).clamp(20, 1000));
    (opts.warmup.min(n / 10).max(2), n)
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just made and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The program and arguments of `ipcbench peer hello`, ready for exec.
struct Program {
    path: CString,
    args: Vec<CString>,
}

impl Program {
    fn new(exe: &std::path::Path, value: u64) -> Result<Program, String> {
        use std::os::unix::ffi::OsStrExt;
        let path = CString::new(exe.as_os_str().as_bytes())
            .map_err(|_| format!("{} has a NUL byte", exe.display()))?;
        let args = [
            exe.as_os_str().as_bytes().to_vec(),
            b"peer".to_vec(),
            b"hello".to_vec(),
            CHILD_FD.to_string().into_bytes(),
            value.to_string().into_bytes(),
        ]
        .into_iter()
        .map(|a| CString::new(a).expect("no NUL in these arguments"))
        .collect();
        Ok(Program { path, args })
    }

    fn argv(&self) -> Vec<*const libc::c_char> {
        self.args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }
}

/// Starts one child with `method`, which writes `value` into `w`; an
/// exec'd child is `prog` with arguments `argv` (made by the caller before
/// its clock starts).
fn start(
    method: Method,
    prog: &Program,
    argv: &[*const libc::c_char],
    w: &OwnedFd,
    value: u64,
) -> Result<i32, String> {
    let wfd = w.as_raw_fd();
    match method {
        Method::Fork => {
            let bytes = value.to_le_bytes();
            // SAFETY: the child calls only async-signal-safe functions
            // (write, _exit) before it ends.
            match unsafe { libc::fork() } {
                -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
                // SAFETY: in the child: write from a local buffer, _exit.
                0 => unsafe {
                    let ok = libc::write(wfd, bytes.as_ptr().cast(), 8) == 8;
                    libc::_exit(if ok { 0 } else { 1 })
                },
                pid => Ok(pid),
            }
        }
        Method::ForkExec => {
            // SAFETY: between fork and exec the child calls only dup2,
            // execv and _exit, all async-signal-safe, on memory prepared
            // before the fork.
            match unsafe { libc::fork() } {
                -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
                // SAFETY: in the child: dup2, execv with the argv and path
                // made before the fork (alive in this copy), _exit.
                0 => unsafe {
                    // dup2 clears close-on-exec on the copy.
                    if libc::dup2(wfd, CHILD_FD) == CHILD_FD {
                        libc::execv(prog.path.as_ptr(), argv.as_ptr());
                    }
                    libc::_exit(127)
                },
                pid => Ok(pid),
            }
        }
        Method::PosixSpawn => {
            let mut pid: libc::pid_t = 0;
            // SAFETY: the file actions are initialised before use and
            // destroyed after; argv is NUL-terminated and outlives the
            // call; environ is the process's environment.
            unsafe {
                let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
                libc::posix_spawn_file_actions_init(&mut fa);
                libc::posix_spawn_file_actions_adddup2(&mut fa, wfd, CHILD_FD);
                unsafe extern "C" {
                    static environ: *const *mut libc::c_char;
                }
                let rc = libc::posix_spawn(
                    &mut pid,
                    prog.path.as_ptr(),
                    &fa,
                    std::ptr::null(),
                    argv.as_ptr() as *const *mut libc::c_char,
                    environ,
                );
                libc::posix_spawn_file_actions_destroy(&mut fa);
                if rc != 0 {
                    return Err(format!(
                        "posix_spawn: {}",
                        std::io::Error::from_raw_os_error(rc)
                    ));
                }
            }
            Ok(pid)
        }
    }
}

/// Reads the child's 8 bytes, waiting until `deadline`.
fn read_value(r: &OwnedFd, deadline: Instant) -> Result<u64, String> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(60_000) as i32) };
        if n == 0 {
            return Err("the child did not write within the deadline".into());
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        // SAFETY: reading into the rest of `buf`.
        let m = unsafe { libc::read(r.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 8 - got) };
        match m {
            0 => return Err(format!("the child closed the pipe after {got} of 8 bytes")),
            m if m < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("read: {e}"));
                }
            }
            m => got += m as usize,
        }
    }
    Ok(u64::from_le_bytes(buf))
}

/// Waits for `pid` to exit; its status must be 0.
fn reap(pid: i32, deadline: Instant) -> Result<(), String> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                (true, 0) => Ok(()),
                (true, 127) => Err(format!(
                    "child {pid} exited with 127: the program could not be executed"
                )),
                (true, c) => Err(format!("child {pid} exited with status {c}")),
                _ => Err(format!(
                    "child {pid} was killed by signal {}",
                    libc::WTERMSIG(status)
                )),
            };
        }
        if r < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if Instant::now() >= deadline {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("child {pid} did not exit by the deadline; killed"));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// One start, timed: from the call that starts the child to its number read.
fn one(
    method: Method,
    exe: &std::path::Path,
    value: u64,
    deadline: Instant,
) -> Result<u64, String> {
    let (r, w) = pipe()?;
    // What an exec'd child needs is made before the clock starts (and
    // before any fork).
    let prog = Program::new(exe, value)?;
    let argv = prog.argv();
    let t0 = now_ns();
    let pid = start(method, &prog, &argv, &w, value)?;
    // Only the child's copy stays open: a child that ends without writing
    // is an end of file, not a wait until the deadline.
    drop(w);
    let got = read_value(&r, deadline);
    let t1 = now_ns();
    let reaped = reap(pid, deadline);
    let got = match (got, &reaped) {
        (Err(e), Err(why)) => return Err(format!("{e}; {why}")),
        (got, _) => got?,
    };
    reaped?;
    if got != value {
        return Err(format!("start {value}: the child wrote {got}"));
    }
    Ok(t1 - t0)
}

/// Measures one start method. A failure is recorded, never a number.
pub fn run_point(method: Method, opts: &RunOpts) -> PointRecord {
    let mut rec = PointRecord::unmeasured(method.name(), PATTERN, SIZE, (1, 1), "kernel");
    let (warmup, iters) = counts(opts);
    let deadline = Instant::now() + opts.deadline;
    let cpu0 = super::measure::cpu_time_ns();
    let mut samples = Vec::with_capacity(iters as usize);
    let mut first = 0;
    for i in 0..warmup + iters {
        if i == warmup {
            first = now_ns();
        }
        match one(method, &opts.exe, i + 1, deadline) {
            Ok(ns) if i >= warmup => samples.push(ns),
            Ok(_) => {}
            Err(e) => {
                rec.fail(format!("start {i}: {e}"));
                return rec;
            }
        }
    }
    let elapsed = now_ns() - first;
    rec.pass();
    rec.messages = iters;
    rec.elapsed_ns = elapsed;
    rec.latency_ns = super::measure::latency_of(&samples);
    rec.throughput =
        super::point::throughput_of(elapsed > 0, || iters as f64 * 1e9 / elapsed as f64, 8);
    // The coordinator's own CPU (the children's is not counted here).
    rec.cpu_ns_per_msg = Some((super::measure::cpu_time_ns() - cpu0) as f64 / iters as f64);
    rec
}

/// The `peer hello` role: writes `value` into descriptor `fd`.
pub fn hello(fd: i32, value: u64) -> Result<(), String> {
    let bytes = value.to_le_bytes();
    // SAFETY: writing 8 bytes from a local buffer to a descriptor.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(format!(
            "writing to fd {fd}: {}",
            std::io::Error::last_os_error()
        ))
    }
}
