//! Stopping a run at once (a second Ctrl-C, SIGTERM or SIGHUP): every
//! process this one started, and every process those started (the Python
//! baseline's workers, a manager's server), is killed and reaped, the
//! shared-memory files any of them created are removed, and the run
//! exits with 128 + the signal. The results file written after the last
//! point is whole (it is replaced atomically), so nothing measured is
//! lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The processes descended from `root` (children, their children, …), by
/// their parent links in `/proc`.
pub fn descendants(root: u32) -> BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((pid, crate::shm::liveness::parent_of(pid)?))
        })
        .collect();
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

/// Kills every process descended from this one and reaps this one's
/// children (waiting at most `bound`); returns the processes killed.
pub fn kill_and_reap(bound: Duration) -> BTreeSet<u32> {
    let me = std::process::id();
    let mut killed = BTreeSet::new();
    // Again until none is left: a child may start one while we kill.
    for _ in 0..5 {
        let now = descendants(me);
        if now.is_subset(&killed) {
            break;
        }
        for &pid in &now {
            // SAFETY: kill with a pid read from /proc and a signal number.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        killed.extend(now);
    }
    let until = Instant::now() + bound;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child, without blocking.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r < 0 || Instant::now() >= until {
            break; // ECHILD: every child reaped.
        }
        if r == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    killed
}

/// Removes the shared-memory files in `/dev/shm` that this process or
/// one of `others` created (by the creator their header or their name
/// records, the Python baseline's included); returns their names.
pub fn remove_files_of(others: &BTreeSet<u32>) -> Vec<String> {
    use crate::shm::region;
    let mine = |pid: u32| pid == std::process::id() || others.contains(&pid);
    let mut removed = Vec::new();
    for l in region::list_leftovers().unwrap_or_default() {
        if l.creator.is_some_and(|c| mine(c.pid)) && region::remove_leftover(&l.name).is_ok() {
            removed.push(l.name);
        }
    }
    removed
}

/// Stops the run now: kills and reaps every process it started, removes
/// their files and its own, says so, and exits with 128 + `signal`.
/// (Said first: the run's own thread, seeing its peers die, may end the
/// process before this one has finished.)
pub fn now(signal: i32) -> ! {
    eprintln!(
        "\na second signal: stopping at once; the results file keeps every point finished before"
    );
    let killed = kill_and_reap(Duration::from_secs(2));
    let removed = remove_files_of(&killed);
    for (dir, pid) in super::python::leftover_dirs() {
        if pid == std::process::id() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    // The second host, if this run made one.
    for (name, pid) in super::hosts::leftovers() {
        if pid == std::process::id() {
            super::hosts::remove(&name);
        }
    }
    eprintln!(
        "{} process(es) killed, {} shared-memory file(s) removed",
        killed.len(),
        removed.len()
    );
    std::process::exit(128 + signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_parent_links_down_the_tree() {
        // A shell that starts a sleep: both are descendants of this process.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let shell = child.id();
        let until = Instant::now() + Duration::from_secs(10);
        let mut d = descendants(std::process::id());
        while d.len() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            d = descendants(std::process::id());
        }
        assert!(d.contains(&shell), "{d:?}");
        let grandchildren = descendants(shell);
        assert_eq!(grandchildren.len(), 1, "the sleep under the shell");
        assert!(grandchildren.is_subset(&d));
        for pid in d
            .iter()
            .filter(|p| **p == shell || grandchildren.contains(p))
        {
            // SAFETY: kill with pids of processes this test started.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = child.wait();
    }
}
