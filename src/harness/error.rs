//! What can go wrong with a measurement, as the coordinator sees it. A
//! point's record keeps the message (`error`) and whether it was
//! [`HarnessError::Skipped`] (`status`); code that decides on a failure
//! matches on the variant, never on the text.

/// Why a measurement has no figures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// Deliberately not run, for this reason (e.g. pure spinning with
    /// more busy processes than CPUs measures the scheduler).
    #[error("{0}")]
    Skipped(String),
    /// A peer's process ended before it said what it measured: a crash, a
    /// kill from outside, or an exit. `signal` is what ended it, if a
    /// signal did; `said` its last lines on stderr; `context` what the
    /// coordinator was waiting for, or the error it saw first.
    #[error("{}", gone(.role, *.pid, (*.signal, *.code), .said, .context))]
    PeerGone {
        /// `A`, `B`, `producer 0`, `worker 3`, …
        role: String,
        /// Its process id.
        pid: u32,
        /// The signal that ended it.
        signal: Option<i32>,
        /// Its exit status, if it exited.
        code: Option<i32>,
        /// Its last stderr lines (at most 20).
        said: Vec<String>,
        /// What was awaited, or the error seen first.
        context: String,
    },
    /// A peer did not answer by the point's deadline (it is killed).
    #[error("peer {role} missed its deadline waiting for {waiting_for}")]
    Deadline {
        /// Which peer.
        role: String,
        /// What it was waiting for.
        waiting_for: String,
    },
    /// A peer reported a failure in its own words: a message that failed
    /// its check, a transport error, a bad argument.
    #[error("peer {role}: {error}")]
    PeerFailed {
        /// Which peer.
        role: String,
        /// What it said.
        error: String,
    },
    /// What the coordinator checks across peers did not hold: counts,
    /// exactly-once, calls served, a malformed report.
    #[error("{0}")]
    Invalid(String),
    /// The link, a region, or a process could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    /// Whether the measurement was skipped on purpose.
    pub fn is_skipped(&self) -> bool {
        matches!(self, HarnessError::Skipped(_))
    }
}

fn gone(
    role: &str,
    pid: u32,
    (signal, code): (Option<i32>, Option<i32>),
    said: &[String],
    context: &str,
) -> String {
    match signal {
        Some(sig) => format!(
            "peer {role} (pid {pid}) was ended by signal {sig}{}: {context}",
            if sig == libc::SIGKILL {
                " (SIGKILL)"
            } else {
                ""
            }
        ),
        None => format!(
            "peer {role} (pid {pid}) exited{} before {context}: {}",
            code.map_or(String::new(), |c| format!(" with status {c}")),
            if said.is_empty() {
                "no message".to_owned()
            } else {
                said.join("; ")
            }
        ),
    }
}

/// A record of `rec`'s kind, failed or skipped by `e`.
pub fn settle(rec: &mut crate::record::PointRecord, e: &HarnessError) {
    if e.is_skipped() {
        rec.skip(e.to_string());
    } else {
        rec.fail(e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gone_says_who_and_how() {
        let e = HarnessError::PeerGone {
            role: "B".into(),
            pid: 42,
            signal: Some(libc::SIGKILL),
            code: None,
            said: vec![],
            context: "peer A: connection reset".into(),
        };
        assert_eq!(
            e.to_string(),
            "peer B (pid 42) was ended by signal 9 (SIGKILL): peer A: connection reset"
        );
        let e = HarnessError::PeerGone {
            role: "producer 1".into(),
            pid: 7,
            signal: None,
            code: Some(1),
            said: vec!["error: boom".into()],
            context: "its report".into(),
        };
        assert_eq!(
            e.to_string(),
            "peer producer 1 (pid 7) exited with status 1 before its report: error: boom"
        );
        let mut rec = crate::record::PointRecord::unmeasured("t", "stream", 8, (1, 1), "spin");
        settle(&mut rec, &HarnessError::Skipped("pure spin".into()));
        assert!(rec.is_skipped() && rec.error.as_deref() == Some("pure spin"));
        settle(&mut rec, &e);
        assert_eq!(rec.status, crate::record::Status::Failed);
    }
}
