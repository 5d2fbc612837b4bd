//! "Which should I use?": a short guide at the top of the report, written
//! from the run's own verdicts (nothing here names a strategy; every
//! answer is read off the points measured).

use super::analysis::{self, Verdict, human_ratio, human_size, key_figure, lead};
use super::page::{figure_with_interval, strategy_text};
use crate::record::{PointRecord, RunRecord};

/// The size the guide answers for: 64 B when measured, else the smallest.
fn guide_size(verdicts: &[Verdict], pattern: &str) -> Option<usize> {
    let sizes: Vec<usize> = verdicts
        .iter()
        .filter(|v| v.pattern == pattern)
        .map(|v| v.size)
        .collect();
    sizes
        .contains(&64)
        .then_some(64)
        .or_else(|| sizes.into_iter().min())
}

fn verdict<'v>(verdicts: &'v [Verdict], pattern: &str) -> Option<&'v Verdict> {
    let size = guide_size(verdicts, pattern)?;
    verdicts
        .iter()
        .find(|v| v.pattern == pattern && v.size == size)
}

fn cpu(p: &PointRecord) -> String {
    p.cpu_ns_per_msg.map_or(String::new(), |c| {
        format!(", {} of CPU per message", analysis::human_ns(c))
    })
}

/// "shm-ring (spin): 180 ns round trip [175–190], 400 ns of CPU per message"
fn answer(p: &PointRecord) -> String {
    format!(
        "**{}**: {}{}",
        strategy_text(p),
        figure_with_interval(p),
        cpu(p)
    )
}

/// The winner of a verdict, or the tie.
fn winner(v: &Verdict) -> String {
    if v.is_tie() {
        let mut names = vec![strategy_text(&v.best)];
        names.extend(v.tied.iter().map(strategy_text));
        format!(
            "a tie within the intervals between {}; the first reads {}{}",
            names.join(", "),
            figure_with_interval(&v.best),
            cpu(&v.best)
        )
    } else {
        answer(&v.best)
    }
}

const NOT_MEASURED: &str = "not measured in this run";

/// The guide's entries: a question, and its answers from this run.
pub fn guide(run: &RunRecord, verdicts: &[Verdict]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let channel =
        |pattern: &str, what: &str, pick: &dyn Fn(&Verdict) -> Option<String>| match verdict(
            verdicts, pattern,
        ) {
            Some(v) => format!(
                "{what} of {}: {}",
                human_size(v.size),
                pick(v).unwrap_or_else(|| NOT_MEASURED.into())
            ),
            None => format!("{what}: {NOT_MEASURED}"),
        };
    out.push((
        "If you can spare a core for each side (spinning allowed)".to_owned(),
        vec![
            channel("pingpong", "round trips", &|v| Some(winner(v))),
            channel("stream", "streams", &|v| Some(winner(v))),
        ],
    ));
    let calm = |v: &Verdict| match &v.without_spinning {
        Some(p) => Some(answer(p)),
        None if !analysis::spins(&v.best) => Some(winner(v)),
        None => None,
    };
    out.push((
        "If you cannot (the waiting side must sleep: park, or block in the kernel)".to_owned(),
        vec![
            channel("pingpong", "round trips", &calm),
            channel("stream", "streams", &calm),
        ],
    ));
    let late = analysis::late_answers(run);
    // A slow answer is where sleeping pays: the best that does not spin
    // (a spinning wait burns the whole wait in CPU).
    let late_best = late
        .iter()
        .filter(|l| !analysis::is_floor(&l.point.transport) && !analysis::spins(&l.point))
        .min_by(|a, b| a.wait_cost_ns.total_cmp(&b.wait_cost_ns));
    out.push((
        format!(
            "If the answer is slow (the other side works {} before it answers)",
            analysis::human_ns(crate::record::LATE_REPLY_NS as f64)
        ),
        vec![match late_best {
            Some(l) => format!(
                "{}: waiting costs {} beyond the work{}",
                answer(&l.point),
                analysis::human_ns(l.wait_cost_ns),
                l.vs_park_floor.map_or(String::new(), |x| format!(
                    " ({} the park floor's)",
                    human_ratio(x)
                ))
            ),
            None => NOT_MEASURED.into(),
        }],
    ));
    let steady = steady_rates(run);
    if !steady.is_empty() {
        out.push((
            "At a steady rate (open loop: which keeps up, at what tail, for how much CPU)"
                .to_owned(),
            steady,
        ));
    }
    out.push((
        "Many producers or consumers".to_owned(),
        ["mpmc", "fan-in", "fan-out"]
            .iter()
            .map(|p| channel(p, p, &|v| Some(winner(v))))
            .collect(),
    ));
    // Calls to a server's objects and the primitives: only what was
    // measured (a run of one family should not read as a wall of gaps).
    // `sized`: the answer names the message size (a primitive's is its
    // shared counter's, which says nothing).
    let measured_only = |items: &[(&str, &str)], sized: bool| -> Vec<String> {
        let lines: Vec<String> = items
            .iter()
            .filter_map(|(p, what)| Some((verdict(verdicts, p)?, p, what)))
            .map(|(v, p, what)| {
                if sized {
                    channel(p, what, &|v| Some(winner(v)))
                } else {
                    format!("{what}: {}", winner(v))
                }
            })
            .collect();
        if lines.is_empty() {
            vec![NOT_MEASURED.into()]
        } else {
            lines
        }
    };
    out.push((
        "Calling a server's objects (a manager's dict, list, Namespace, Value)".to_owned(),
        measured_only(
            &[
                ("reqrep", "a dict (set, then get)"),
                ("reqrep-list", "a list (append, then [i])"),
                ("reqrep-namespace", "a Namespace (ns.x = v, then ns.x)"),
                ("reqrep-value", "a Value('d') (set, then read)"),
            ],
            true,
        ),
    ));
    out.push((
        "Synchronising processes".to_owned(),
        measured_only(
            &[
                ("lock-increment", "a lock around a shared counter"),
                ("rlock-increment", "a re-entrant lock, taken twice"),
                ("event-pingpong", "turns handed over with Events"),
                ("condition-handoff", "items handed over under a Condition"),
                ("barrier-cycle", "a barrier"),
            ],
            false,
        ),
    ));
    let mut from_python = python(verdicts, run);
    if from_python.is_empty() {
        from_python.push(format!("{NOT_MEASURED} from Python"));
    }
    out.push(("Calling from Python".to_owned(), from_python));
    out.push((
        "Task farms".to_owned(),
        ["pool", "pool-cpu"]
            .iter()
            .map(|p| channel(p, p, &|v| Some(winner(v))))
            .collect(),
    ));
    let far = between_hosts(run);
    if !far.is_empty() {
        out.push((
            "If your processes will live on different machines".to_owned(),
            far,
        ));
    }
    out
}

/// The network strategies measured between two hosts: for round trips
/// and streams at the smallest size measured so, the fastest, or the tie
/// within the intervals.
fn between_hosts(run: &RunRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for (pattern, what) in [("pingpong", "round trips"), ("stream", "streams")] {
        let pts: Vec<&PointRecord> = run
            .points
            .iter()
            .filter(|p| p.hosts.is_some() && p.pattern == pattern && p.key_figure().is_some())
            .collect();
        let Some(size) = pts.iter().map(|p| p.msg_size).min() else {
            continue;
        };
        let mut at: Vec<&PointRecord> = pts.into_iter().filter(|p| p.msg_size == size).collect();
        let lower = crate::record::lower_is_better(pattern);
        at.sort_by(|a, b| {
            let (x, y) = (a.key_figure().unwrap_or(0.0), b.key_figure().unwrap_or(0.0));
            if lower {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        });
        let best = at[0];
        let overlaps =
            |p: &PointRecord| match (analysis::key_interval(best), analysis::key_interval(p)) {
                (Some([a, b]), Some([c, d])) => a <= d && c <= b,
                _ => false,
            };
        let tied: Vec<&PointRecord> = at[1..].iter().copied().filter(|p| overlaps(p)).collect();
        let hosts = best.hosts.as_deref().unwrap_or("-");
        lines.push(if tied.is_empty() {
            format!(
                "{what} of {} between two hosts ({hosts}): {}",
                human_size(size),
                answer(best)
            )
        } else {
            let mut names = vec![strategy_text(best)];
            names.extend(tied.iter().map(|p| strategy_text(p)));
            format!(
                "{what} of {} between two hosts ({hosts}): a tie within the intervals between {}; \
                 the first reads {}",
                human_size(size),
                names.join(", "),
                figure_with_interval(best)
            )
        });
    }
    lines
}

/// The best Python strategy for round trips and streams, and what the
/// best shared-memory strategy gains over it.
fn python(verdicts: &[Verdict], run: &RunRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for pattern in ["pingpong", "stream"] {
        let Some(size) = guide_size(verdicts, pattern) else {
            continue;
        };
        let at = |py: bool| {
            analysis::measured(run)
                .filter(|p| {
                    p.pattern == pattern
                        && p.msg_size == size
                        && p.producers == 1
                        && p.consumers == 1
                        && p.transport.starts_with("py-") == py
                        && (py || p.transport.starts_with("shm-"))
                })
                .filter_map(|p| Some((p, key_figure(p)?)))
                .reduce(|a, b| {
                    if analysis::better(pattern, b.1, a.1) {
                        b
                    } else {
                        a
                    }
                })
        };
        match (at(true), at(false)) {
            (Some((py, fp)), shm) => lines.push(format!(
                "{pattern} of {}: {}{}",
                human_size(size),
                answer(py),
                shm.map_or(String::new(), |(s, fs)| format!(
                    "; the shared-memory core's best, {}, is {} faster",
                    strategy_text(s),
                    human_ratio(lead(pattern, fs, fp))
                ))
            )),
            (None, _) => lines.push(format!("{pattern}: {NOT_MEASURED} from Python")),
        }
    }
    lines
}

/// For each absolute rate of the open-loop ladder: the strategies that
/// sustain it, the one with the lowest corrected p99 (a lead under 25% is
/// a tie: a p99 has no interval here), and the one that costs least CPU.
fn steady_rates(run: &RunRecord) -> Vec<String> {
    use super::steady;
    let mut lines = steady::lines(run);
    // Channels only: calls to a server are another workload; and over
    // loopback, like the rest of the verdict.
    lines.retain(|l| l.is_channel() && !l.hosts);
    let mut rates: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.paced.iter())
        .filter(|p| p.rate.load.as_deref().is_some_and(|l| !l.ends_with('%')))
        .filter_map(|p| steady::offered(p))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let p99 = |p: &PointRecord| p.latency_ns.map_or(f64::MAX, |l| l.p99 as f64);
    let cpu_of = |p: &PointRecord| p.cpu_ns_per_msg.unwrap_or(f64::MAX);
    let brief = |l: &steady::Line, p: &PointRecord| {
        format!(
            "**{}** (p99 {}, {} of CPU per message)",
            l.label(),
            analysis::human_ns(p99(p)),
            analysis::human_ns(cpu_of(p))
        )
    };
    rates
        .into_iter()
        .map(|r| {
            let mut kept: Vec<(&steady::Line, &PointRecord)> = lines
                .iter()
                .filter_map(|l| Some((l, l.at(r)?)))
                .filter(|(l, p)| l.sustains(p))
                .collect();
            let rate = analysis::human_rate(r);
            if kept.is_empty() {
                return format!("at {rate}: no strategy measured kept up within its threshold");
            }
            kept.sort_by(|a, b| p99(a.1).total_cmp(&p99(b.1)));
            let (l0, p0) = kept[0];
            let tail = match kept.get(1) {
                Some((l1, p1)) if p99(p1) < p99(p0) * 1.25 => format!(
                    "lowest p99: a tie (no interval, within 25%) between {} and {}",
                    brief(l0, p0),
                    brief(l1, p1)
                ),
                _ => format!("lowest p99: {}", brief(l0, p0)),
            };
            let (lc, pc) = *kept
                .iter()
                .min_by(|a, b| cpu_of(a.1).total_cmp(&cpu_of(b.1)))
                .unwrap_or(&kept[0]);
            format!(
                "at {rate} ({} of {} strategies keep up): {tail}; least CPU: {}",
                kept.len(),
                lines.iter().filter(|l| l.at(r).is_some()).count(),
                brief(lc, pc)
            )
        })
        .collect()
}
