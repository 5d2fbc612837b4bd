//! Supervision: peers started as `ipcbench peer …` children, lined up at
//! the start barrier, their reports awaited against a deadline while the
//! others' liveness is watched; a peer that misses it is killed and
//! reaped, and an error names the peers a signal ended.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::control::{PeerArgs, PeerReport};
use super::error::HarnessError;
use super::fault::Fault;
use super::spec::RunOpts;

/// How many of a peer's last stderr lines an error about it quotes.
const SAID: usize = 20;

/// A started peer: its process, its control input, and its output lines.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    name: String,
    /// A line read while looking at a peer that exited, given back by the
    /// next read.
    held: Option<String>,
    /// The last lines the peer wrote to stderr (at most [`SAID`]).
    said: Vec<String>,
}

/// Starts `ipcbench peer bench <args>`, passing it `inherit` and `env`.
pub fn spawn(
    opts: &RunOpts,
    args: &PeerArgs,
    inherit: &[i32],
    env: &[(String, String)],
    name: &str,
) -> Result<Running, HarnessError> {
    let far = opts.far_peer(args.strategy, args.pattern, args.side);
    spawn_on(far, opts, args.to_args(), inherit, env, name)
}

/// Starts `ipcbench peer <args>` with nothing inherited.
pub fn spawn_args(opts: &RunOpts, args: Vec<String>, name: &str) -> Result<Running, HarnessError> {
    spawn_with(opts, args, &[], &[], name)
}

/// Starts `ipcbench peer <args>` from `opts.exe`, passing it `inherit` and
/// `env` (and the fault of `opts`, if it is this peer's).
pub fn spawn_with(
    opts: &RunOpts,
    args: Vec<String>,
    inherit: &[i32],
    env: &[(String, String)],
    name: &str,
) -> Result<Running, HarnessError> {
    spawn_on(None, opts, args, inherit, env, name)
}

/// [`spawn_with`], on the far host if `far` is given (through its prefix:
/// `ip netns exec NAME ipcbench peer …`).
pub fn spawn_on(
    far: Option<&super::hosts::Far>,
    opts: &RunOpts,
    args: Vec<String>,
    inherit: &[i32],
    env: &[(String, String)],
    name: &str,
) -> Result<Running, HarnessError> {
    let exe = &opts.exe;
    let mut cmd = crate::transport::command_through(far.map_or(&[], |f| &f.prefix[..]), exe);
    cmd.arg("peer")
        .args(args)
        .env_remove(super::fault::ENV)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(Fault::env_for(opts.fault.as_ref(), name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::transport::fd::inherit_in_child(&mut cmd, inherit.to_vec());
    crate::transport::fd::ignore_stop_signals_in_child(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        HarnessError::Setup(format!("starting peer {name} ({}): {e}", exe.display()))
    })?;
    let (tx, lines) = mpsc::channel();
    let no = |what: &str| HarnessError::Setup(format!("peer {name} has no {what}"));
    let out = child.stdout.take().ok_or_else(|| no("stdout"))?;
    let err = child.stderr.take().ok_or_else(|| no("stderr"))?;
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {l}"));
        }
    });
    Ok(Running {
        stdin: child.stdin.take(),
        child,
        lines,
        name: name.to_owned(),
        held: None,
        said: Vec::new(),
    })
}

impl Running {
    /// The next line that is not stderr noise, if one comes by `until`; an
    /// error, with what the peer wrote to stderr, if its output ended first.
    fn next_line(&mut self, until: Instant, what: &str) -> Result<Option<String>, HarnessError> {
        if let Some(l) = self.held.take() {
            return Ok(Some(l));
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("stderr: ") => {
                    if self.said.len() == SAID {
                        self.said.remove(0);
                    }
                    self.said.push(l["stderr: ".len()..].to_owned());
                }
                Ok(l) => return Ok(Some(l)),
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(self.ended_as(status, what.to_owned()));
                }
            }
        }
    }

    /// The next line that is not stderr noise, by `deadline`, looking at
    /// `others` every [`LIVENESS_CHECK_EVERY`]: the error it finds (one of
    /// them ended) ends the wait at once.
    ///
    /// [`LIVENESS_CHECK_EVERY`]: crate::shm::wait::LIVENESS_CHECK_EVERY
    fn await_line(
        &mut self,
        what: &str,
        deadline: Instant,
        mut others: impl FnMut() -> Option<HarnessError>,
    ) -> Result<String, HarnessError> {
        loop {
            let step = (Instant::now() + crate::shm::wait::LIVENESS_CHECK_EVERY).min(deadline);
            if let Some(l) = self.next_line(step, what)? {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Deadline {
                    role: self.name.clone(),
                    waiting_for: what.to_owned(),
                });
            }
            if let Some(e) = others() {
                return Err(e);
            }
        }
    }

    /// The next line that is not stderr noise, by `deadline`.
    fn expect_line(&mut self, deadline: Instant, what: &str) -> Result<String, HarnessError> {
        self.next_line(deadline, what)?
            .ok_or_else(|| HarnessError::Deadline {
                role: self.name.clone(),
                waiting_for: what.to_owned(),
            })
    }

    /// Why this peer will not answer, if its process has ended: the error
    /// it reported, or the end of its output. A good report it wrote before
    /// exiting is kept for [`Running::report`].
    fn gone(&mut self) -> Option<HarnessError> {
        if !self.exited() {
            return None;
        }
        // Its output ends as soon as the reader threads have drained it.
        match self.next_line(Instant::now() + REAP_GRACE, "its report") {
            Err(e) => Some(e),
            Ok(None) => None,
            Ok(Some(line)) => {
                let failed = self.parse_report(&line).err();
                self.held = Some(line);
                failed
            }
        }
    }

    /// This peer ended as `status` says (a signal or an exit status, with
    /// its last words), while `context` was awaited or had happened.
    fn ended_as(&self, status: Option<std::process::ExitStatus>, context: String) -> HarnessError {
        use std::os::unix::process::ExitStatusExt;
        HarnessError::PeerGone {
            role: self.name.clone(),
            pid: self.child.id(),
            signal: status.and_then(|s| s.signal()),
            code: status.and_then(|s| s.code()),
            said: self.said.clone(),
            context,
        }
    }

    /// Why this peer, whose process has ended, will not be told `go`: the
    /// failure it reported, or how it ended (its signal or exit status,
    /// with its last words).
    fn ended_before_go(&mut self) -> HarnessError {
        let until = Instant::now() + REAP_GRACE;
        loop {
            match self.next_line(until, "go") {
                Err(e) => return e,
                Ok(Some(l)) if l != "ready" => {
                    if let Err(e @ HarnessError::PeerFailed { .. }) = self.parse_report(&l) {
                        return e;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = self.child.try_wait().ok().flatten();
                    return self.ended_as(status, "go".into());
                }
            }
        }
    }

    /// Tells the peer `go` (past its start barrier).
    pub fn go(&mut self) -> Result<(), HarnessError> {
        self.tell("go")
    }

    /// Writes `line` on the peer's control input.
    pub fn tell(&mut self, line: &str) -> Result<(), HarnessError> {
        let name = &self.name;
        let broken = |e: String| HarnessError::PeerFailed {
            role: name.clone(),
            error: format!("its control channel took no {line:?}: {e}"),
        };
        let stdin = self.stdin.as_mut().ok_or_else(|| broken("closed".into()))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| broken(e.to_string()))
    }

    /// Closes the peer's control input (a session's peer ends on it).
    pub fn hang_up(&mut self) {
        self.stdin = None;
    }

    /// Whether the peer's process has ended.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The peer's name in errors (`A`, `producer 0`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's next report; a report of a failure is an error.
    pub fn report(&mut self, deadline: Instant) -> Result<PeerReport, HarnessError> {
        let line = self.expect_line(deadline, "its report")?;
        self.parse_report(&line)
    }

    fn parse_report(&self, line: &str) -> Result<PeerReport, HarnessError> {
        let r: PeerReport = serde_json::from_str(line).map_err(|e| {
            HarnessError::Invalid(format!(
                "peer {} sent a bad report ({e}): {line}",
                self.name
            ))
        })?;
        match r.error {
            Some(error) => Err(HarnessError::PeerFailed {
                role: self.name.clone(),
                error,
            }),
            None => Ok(r),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a peer behind: kill it if it is still running, and reap it.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One report from each of `waited`, in their order. While a report is
/// awaited, the processes of the others and of `watched` are looked at
/// every [`LIVENESS_CHECK_EVERY`]: one that ended without a good report ends
/// the wait at once with its own last words, instead of leaving the
/// coordinator on a peer that waits for the dead one, or for nothing.
///
/// [`LIVENESS_CHECK_EVERY`]: crate::shm::wait::LIVENESS_CHECK_EVERY
pub fn reports(
    waited: &mut [Running],
    watched: &mut [Running],
    deadline: Instant,
) -> Result<Vec<PeerReport>, HarnessError> {
    let mut out = Vec::with_capacity(waited.len());
    for i in 0..waited.len() {
        let (p, rest) = waited[i..].split_first_mut().expect("i < len");
        let line = p.await_line("its report", deadline, || {
            rest.iter_mut()
                .chain(watched.iter_mut())
                .find_map(Running::gone)
        })?;
        out.push(p.parse_report(&line)?);
    }
    Ok(out)
}

/// Lines a point's peers up at the start barrier: waits for each one's
/// `ready` while watching the others (a peer that ends first ends the wait
/// at once, in its own words: the one left waiting for it would otherwise
/// hold the coordinator until the deadline), runs `between`, then tells
/// each `go`.
pub fn line_up(
    peers: &mut [Running],
    deadline: Instant,
    between: impl FnOnce(),
) -> Result<(), HarnessError> {
    for i in 0..peers.len() {
        let (before, rest) = peers.split_at_mut(i);
        let (p, after) = rest.split_first_mut().expect("i < len");
        let line = p.await_line("ready", deadline, || {
            before
                .iter_mut()
                .chain(after.iter_mut())
                .find_map(|o| o.exited().then(|| o.ended_before_go()))
        })?;
        if line != "ready" {
            return Err(p.parse_report(&line).err().unwrap_or_else(|| {
                HarnessError::Invalid(format!("peer {} said {line:?} instead of ready", p.name))
            }));
        }
    }
    between();
    for p in peers.iter_mut() {
        p.go()?;
    }
    Ok(())
}

/// Runs `work` on a thread of its own while `peers` are watched: a peer
/// that ends first ends the wait at once, in its own words, where `work`
/// (the coordinator's side of a link, say, accepting a peer that will
/// never come) would wait out its own timeout. Work left behind so
/// finishes or times out on its own thread, and its result is dropped.
pub fn watching<T: Send + 'static>(
    peers: &mut [Running],
    deadline: Instant,
    work: impl FnOnce() -> Result<T, HarnessError> + Send + 'static,
) -> Result<T, HarnessError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    loop {
        let step = (Instant::now() + crate::shm::wait::LIVENESS_CHECK_EVERY).min(deadline);
        match rx.recv_timeout(step.saturating_duration_since(Instant::now())) {
            Ok(r) => return r,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(HarnessError::Setup(
                    "the coordinator's thread panicked".into(),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(j) = peers.iter_mut().position(Running::exited) {
                    return Err(peers[j].ended_before_go());
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::Setup(
                        "the coordinator's side of the link missed the deadline".into(),
                    ));
                }
            }
        }
    }
}

/// A point's error, with the link's helper process (a manager's server)
/// named if it has ended: its clients fail first, with errors that name
/// only a closed connection. Waits a moment for it to be reaped.
pub fn blame_helper(
    setup: &mut dyn crate::transport::LinkSetup,
    err: HarnessError,
) -> HarnessError {
    if err.is_skipped() {
        return err;
    }
    match poll_until(Instant::now() + REAP_GRACE, || setup.helper_ended()) {
        Some(h) if !matches!(&err, HarnessError::PeerGone { pid, .. } if *pid == h.pid) => {
            HarnessError::PeerGone {
                role: h.name.to_owned(),
                pid: h.pid,
                signal: h.signal,
                code: h.code,
                said: Vec::new(),
                context: err.to_string(),
            }
        }
        _ => err,
    }
}

/// How long a look at a process that has ended waits for what the kernel
/// still has to finish: its reaping, the end of its output. The peer that
/// fails first often saw its partner's death before the kernel was done.
const REAP_GRACE: Duration = Duration::from_millis(200);

/// `f`'s first `Some`, polled every 2 ms until `until`.
fn poll_until<T>(until: Instant, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `body` over a point's peers; its error names the peers that a
/// signal ended ([`blame`]), whatever path it came by.
pub fn supervised<T>(
    peers: &mut [Running],
    body: impl FnOnce(&mut [Running]) -> Result<T, HarnessError>,
) -> Result<T, HarnessError> {
    body(peers).map_err(|e| blame(peers.iter_mut(), e))
}

/// Runs both peers of a point and returns their reports (A, B).
pub fn run_pair(
    opts: &RunOpts,
    args: [PeerArgs; 2],
    inherit: &[i32],
    env: &[(String, String)],
    after_ready: &mut dyn FnMut(),
) -> Result<(PeerReport, PeerReport), HarnessError> {
    let deadline = Instant::now() + opts.deadline;
    let b = spawn(opts, &args[1], inherit, env, "B")?;
    let a = spawn(opts, &args[0], inherit, env, "A")?;
    // B is told `go` first, so that it waits when A starts.
    let mut ba = [b, a];
    supervised(&mut ba, |ba| {
        line_up(ba, deadline, after_ready)?;
        // A failed peer ends the point at once (the other is killed on drop).
        let mut r = reports(ba, &mut [], deadline)?.into_iter();
        let b = r.next().expect("B's");
        Ok((r.next().expect("A's"), b))
    })
}

/// A point's error, with the peers that a signal ended (a crash, or a
/// kill from outside) named: the peer that lost its partner often fails
/// first, with an error that names only a pid or an end of file. Each
/// such peer wraps the error as [`HarnessError::PeerGone`].
pub fn blame<'a>(
    peers: impl IntoIterator<Item = &'a mut Running>,
    err: HarnessError,
) -> HarnessError {
    use std::os::unix::process::ExitStatusExt;
    let grace = Instant::now() + REAP_GRACE;
    let mut err = err;
    for p in peers {
        let Some(status) = poll_until(grace, || p.child.try_wait().ok().flatten()) else {
            continue;
        };
        // Ended by a signal, and not already said of this peer.
        if status.signal().is_some()
            && !matches!(&err, HarnessError::PeerGone { pid, signal: Some(_), .. } if *pid == p.child.id())
        {
            err = p.ended_as(Some(status), err.to_string());
        }
    }
    err
}
