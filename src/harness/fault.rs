//! Deaths on purpose, for the fault tests: the coordinator can ask one of
//! a point's peers, by its name in errors (`A`, `consumer 2`, `worker 0`,
//! …), to kill itself with SIGKILL at a chosen phase. Every path a dying
//! peer can take (before `ready`, between `ready` and `go`, while
//! measuring, before its report) is then exercised on purpose rather than
//! when a random kill happens to land there.
//!
//! The request travels in one environment variable, [`ENV`], given to that
//! peer alone; a run from the command line never sets it.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

/// The variable a peer reads its phase from.
pub const ENV: &str = "IPCBENCH_DIE_AT";

/// Where in its life a peer dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// As it starts, before it joins the link or says `ready`.
    Start,
    /// After saying `ready`, before reading `go`.
    Ready,
    /// As soon as it has read `go`.
    Go,
    /// This long after `go`, whatever it is doing then.
    After(Duration),
    /// With its work done, before it writes its (first) report.
    Report,
}

impl Phase {
    /// Every phase, `After` at `mid` after `go`.
    pub fn all(mid: Duration) -> [Phase; 5] {
        [
            Phase::Start,
            Phase::Ready,
            Phase::Go,
            Phase::After(mid),
            Phase::Report,
        ]
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Start => f.write_str("start"),
            Phase::Ready => f.write_str("ready"),
            Phase::Go => f.write_str("go"),
            Phase::After(d) => write!(f, "after-{}us", d.as_micros()),
            Phase::Report => f.write_str("report"),
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Ok(match s {
            "start" => Phase::Start,
            "ready" => Phase::Ready,
            "go" => Phase::Go,
            "report" => Phase::Report,
            _ => {
                let us = s
                    .strip_prefix("after-")
                    .and_then(|r| r.strip_suffix("us"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        format!("{ENV}={s:?}: not start, ready, go, after-<N>us or report")
                    })?;
                Phase::After(Duration::from_micros(us))
            }
        })
    }
}

/// One peer to kill, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The peer's name, as errors give it.
    pub peer: String,
    /// When it dies.
    pub at: Phase,
}

impl Fault {
    /// The environment to add for the peer called `name`.
    pub fn env_for(fault: Option<&Fault>, name: &str) -> Option<(String, String)> {
        fault
            .filter(|f| f.peer == name)
            .map(|f| (ENV.to_owned(), f.at.to_string()))
    }
}

/// The phase this peer was asked to die at, read once.
fn asked() -> Option<Phase> {
    static ASKED: OnceLock<Option<Phase>> = OnceLock::new();
    *ASKED.get_or_init(|| {
        let v = std::env::var(ENV).ok()?;
        match v.parse() {
            Ok(p) => Some(p),
            Err(e) => {
                // A request that cannot be read must not pass unnoticed.
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    })
}

/// Called by a peer as it reaches `phase`: dies there if asked to. `go`
/// also starts the clock of an `After` request.
pub fn reached(phase: Phase) {
    match (asked(), phase) {
        (Some(Phase::After(d)), Phase::Go) => {
            std::thread::spawn(move || {
                std::thread::sleep(d);
                die();
            });
        }
        (Some(a), p) if a == p => die(),
        _ => {}
    }
}

fn die() {
    // SAFETY: raising a signal in this process has no memory effects; the
    // default action of SIGKILL ends it here.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_back_as_written() {
        for p in Phase::all(Duration::from_micros(1500)) {
            assert_eq!(p.to_string().parse::<Phase>(), Ok(p));
        }
        assert!("after-1ms".parse::<Phase>().is_err());
        let f = Fault {
            peer: "consumer 1".into(),
            at: Phase::Ready,
        };
        assert_eq!(
            Fault::env_for(Some(&f), "consumer 1"),
            Some((ENV.to_owned(), "ready".to_owned()))
        );
        assert_eq!(Fault::env_for(Some(&f), "consumer 10"), None);
        assert_eq!(Fault::env_for(None, "A"), None);
    }
}
