//! REPORT.md and index.html: one document built once as blocks, rendered
//! twice. The HTML embeds its plots and needs no network.

use super::analysis::{
    self, counts, human_bytes_rate, human_ns, human_rate, human_ratio, human_size, key_figure,
    label, lower_is_better, point_name,
};
use crate::record::{PointRecord, RunRecord, Status};

/// A piece of the document.
#[derive(Debug, Clone)]
pub enum Block {
    /// A heading of level 1–3.
    Heading(u8, String),
    /// A paragraph (inline `code` and **bold** allowed).
    Para(String),
    /// A table: header and rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A plot: file name and title.
    Plot(String, String),
    /// A list of items, each with optional sub-items.
    List(Vec<(String, Vec<String>)>),
    /// A paragraph that is one link: its text and where it goes.
    Link(String, String),
}

/// A point's key figure with its unit (`180 ns round trip`, `19 M msgs/s`);
/// an open-loop point's corrected p99 at its offered rate, or that it fell
/// behind (past its knee, its median says only how long it ran).
pub fn figure_text(p: &PointRecord) -> String {
    if crate::record::open_loop(&p.pattern)
        && p.status == Status::Ok
        && let (Some(l), Some(got)) = (p.latency_ns, p.rate.achieved_per_s)
    {
        return match p.rate.offered_per_s {
            None => format!("capacity {} msgs/s (unpaced)", per_s(got)),
            Some(off) if super::steady::past_knee(p) => format!(
                "past its knee: took in {} of {} msgs/s offered{}",
                per_s(got),
                per_s(off),
                p.rate
                    .latency_growth
                    .map_or(String::new(), |g| format!(", latency grew {g:.1}×"))
            ),
            Some(off) => format!(
                "p99 {} (p50 {}) at {} msgs/s",
                human_ns(l.p99 as f64),
                human_ns(l.p50 as f64),
                per_s(off)
            ),
        };
    }
    match key_figure(p) {
        Some(f) if p.pattern == "startup" => format!("{} to first message", human_ns(f)),
        Some(f) if p.pattern == "barrier-cycle" => format!("{} per generation", human_ns(f)),
        Some(f) if lower_is_better(&p.pattern) => format!("{} round trip", human_ns(f)),
        Some(f) if crate::record::calls(&p.pattern) => format!("{} calls/s", per_s(f)),
        Some(f) if p.pattern.starts_with("pool") => format!("{} tasks/s", per_s(f)),
        Some(f) if p.pattern.ends_with("-increment") => format!("{} cycles/s", per_s(f)),
        Some(f) => format!("{} msgs/s", per_s(f)),
        None => "-".into(),
    }
}

/// The machine's topology as the header gives it: how its CPUs share
/// cores and caches, NUMA nodes, and what moves timings.
fn topology_text(run: &RunRecord) -> String {
    let Some(t) = &run.machine.topology else {
        return "The machine's topology was not recorded (results before schema 3).".into();
    };
    let smt = t.cpus.iter().any(|c| c.siblings.len() > 1);
    let mut nodes: Vec<u32> = t.cpus.iter().filter_map(|c| c.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let caches: Vec<String> = t
        .caches
        .iter()
        .map(|c| {
            let by = if c.shared_by.len() > 1 {
                format!(" shared by CPUs {:?}", c.shared_by)
            } else {
                " per CPU".into()
            };
            format!("L{} {} {}{by}", c.level, c.kind.to_lowercase(), c.size)
        })
        .collect();
    let pairs: Vec<String> = {
        let mut rel: Vec<String> = run
            .points
            .iter()
            .filter_map(|p| {
                Some(format!(
                    "{:?} ({})",
                    p.cpus.get(..2)?,
                    p.cpu_relation.as_deref()?
                ))
            })
            .collect();
        rel.sort();
        rel.dedup();
        rel
    };
    format!(
        "Topology: {} CPUs, {}; {} NUMA node(s); caches: {}. Frequency governor: {}; boost: {}; \
         transparent huge pages: {}; virtualisation: {}. Peers ran on CPUs {}.",
        t.cpus.len(),
        if smt {
            "with SMT siblings"
        } else {
            "no SMT siblings"
        },
        nodes.len().max(1),
        if caches.is_empty() {
            "-".into()
        } else {
            caches.join(", ")
        },
        t.governor.as_deref().unwrap_or("none exposed"),
        t.boost
            .map_or("not exposed", |b| if b { "on" } else { "off" }),
        t.transparent_hugepages.as_deref().unwrap_or("-"),
        t.virtualization,
        if pairs.is_empty() {
            "-".into()
        } else {
            pairs.join(", ")
        },
    )
}

/// A point's key figure with its 95% interval in brackets, when it has one.
pub fn figure_with_interval(p: &PointRecord) -> String {
    let f = figure_text(p);
    match analysis::key_interval(p) {
        Some([lo, hi]) if lower_is_better(&p.pattern) => {
            format!("{f} [{}–{}]", human_ns(lo), human_ns(hi))
        }
        Some([lo, hi]) => format!("{f} [{}–{}]", per_s(lo), per_s(hi)),
        None => f,
    }
}

/// `19.01 M`, `21.7 k`: a rate without its unit.
pub(super) fn per_s(r: f64) -> String {
    human_rate(r).trim_end_matches("/s").trim_end().to_owned()
}

/// A point's strategy, wait and process counts (`shm-ring (spin), 4×4`).
pub fn strategy_text(p: &PointRecord) -> String {
    let c = counts(p);
    let l = label(&p.transport, &p.wait);
    if c.is_empty() { l } else { format!("{l}, {c}") }
}

/// The whole document for `run`.
pub fn blocks(run: &RunRecord) -> Vec<Block> {
    let m = &run.machine;
    let skipped = run.points.iter().filter(|p| p.is_skipped()).count();
    let failed = run
        .points
        .iter()
        .filter(|p| p.status == Status::Failed)
        .count();
    let profile = run
        .config
        .get("profile")
        .or_else(|| run.config.get("source"))
        .and_then(|v| v.as_str())
        .unwrap_or("-");
    let mut b = vec![
        Block::Heading(1, format!("ipcbench report: run {}", run.run_id)),
        Block::Para(format!(
            "Measured {} on **{}** ({} CPUs), {}, kernel {}; built by {} from commit `{}`; profile `{profile}`. \
             {} points measured, {failed} failed, {skipped} skipped.",
            run.started_at,
            m.cpu_model,
            m.cores,
            m.os,
            m.kernel,
            m.rustc,
            m.git_commit,
            run.points.len() - failed - skipped,
        )),
        Block::Para(topology_text(run)),
    ];
    // Network strategies whose far side ran on another host: said before
    // any of their figures, which are not loopback figures.
    let far: std::collections::BTreeSet<(&str, &str)> = run
        .points
        .iter()
        .filter_map(|p| Some((p.transport.as_str(), p.hosts.as_deref()?)))
        .collect();
    if !far.is_empty() {
        let names: Vec<String> = far.iter().map(|(t, h)| format!("{t} ({h})")).collect();
        b.push(Block::Para(format!(
            "**Between two hosts**: some of {}'s points were measured again with part of them \
             on a second host (side B, the senders or clients, a manager's server, a farm's \
             workers). Those figures are not loopback figures: they are in the section \
             \"Between two hosts\", beside their loopback twins, and nowhere else (the verdict, \
             tables and plots compare points on one host; the warnings name them too).",
            names.join(", ")
        )));
    }
    b.extend([Block::Para(
        "Every figure comes from this one run on this one machine, with every message checked \
             (sequence number and checksum). Absolute timings drift between runs and machines: \
             compare strategies by the ratios measured here."
            .into(),
    )]);

    let verdicts = analysis::verdicts(run);
    b.push(Block::Heading(2, "Which should I use?".into()));
    b.push(Block::List(super::guide::guide(run, &verdicts)));

    b.push(Block::Heading(
        2,
        "Verdict: the fastest at each size".into(),
    ));
    b.push(Block::Para(
        "For each pattern and message size, the fastest strategy at its best waiting strategy \
         (pingpong by median round trip, the others by messages or calls per second), with the \
         95% interval of its figure in brackets, and its lead over the next strategy. Where the \
         intervals overlap the row says **tie** and names every strategy inside the winner's \
         interval, or inside it once each figure is taken over the same-work floor measured \
         beside it (the machine's cross-core speed can move between points), or when the winner is \
         behind once so taken (it ran while the machine was faster). Where a figure has \
         no interval (a few kinds of point have none), a lead under 25% is called a tie, as \
         `compare` calls such a change noise; a larger lead is marked (no interval). The best strategy \
         that does not spin (parks, or blocks in the kernel) is named beside a winner that \
         spins, with both one's CPU per message: fastest and fastest without burning a core are \
         different answers. Points with more busy processes than CPUs compete only where nothing \
         else was measured."
            .into(),
    ));
    b.push(Block::Table(
        [
            "pattern",
            "size",
            "fastest",
            "its figure",
            "lead",
            "next",
            "its figure",
            "best without spinning",
            "CPU per message",
        ]
        .map(String::from)
        .to_vec(),
        verdicts
            .iter()
            .map(|v| {
                let next = v.runner_up.as_ref();
                let fastest = if v.is_tie() {
                    let others: Vec<String> = v.tied.iter().map(strategy_text).collect();
                    format!("tie: **{}**, {}", strategy_text(&v.best), others.join(", "))
                } else {
                    format!("**{}**", strategy_text(&v.best))
                };
                let lead = match v.lead() {
                    None => "-".into(),
                    Some(_) if v.is_tie() && !v.has_intervals => {
                        "tie (no interval, within 25%)".into()
                    }
                    Some(_) if v.is_tie() => "tie".into(),
                    Some(l) if v.has_intervals => human_ratio(l),
                    Some(l) => format!("{} (no interval)", human_ratio(l)),
                };
                let calm = v.without_spinning.as_ref();
                let cpu = |p: &PointRecord| p.cpu_ns_per_msg.map_or("-".into(), human_ns);
                vec![
                    v.pattern.clone(),
                    human_size(v.size),
                    fastest,
                    figure_with_interval(&v.best),
                    lead,
                    next.map_or("(alone)".into(), strategy_text),
                    next.map_or("-".into(), figure_with_interval),
                    calm.map_or(
                        if analysis::spins(&v.best) {
                            "-"
                        } else {
                            "(the fastest)"
                        }
                        .into(),
                        |c| format!("{}: {}", strategy_text(c), figure_text(c)),
                    ),
                    match calm {
                        Some(c) => format!("{} vs {}", cpu(&v.best), cpu(c)),
                        None => cpu(&v.best),
                    },
                ]
            })
            .collect(),
    ));

    if let Some(size) = analysis::ratio_size(run) {
        b.push(Block::Heading(
            2,
            format!(
                "Round trips at {} against the floors, os-pipe and Python",
                human_size(size)
            ),
        ));
        b.push(Block::Para(
            "The floors are a raw cache-line ping-pong between two processes (spin) and a raw \
             futex ping-pong (park): what the hardware and the kernel allow. A multiple of 1.5× \
             the spin floor is 50% slower than the hardware; a speedup of 100× over os-pipe is a \
             hundred times faster. × copy floor is against the same-work floor of a round trip at \
             this size (floor-copy: a slot per direction; each message stamped, written into \
             shared memory once, and read and checked once on the other side with the check \
             every strategy's peers make): the least work any strategy does for the round trip, \
             so no correct strategy reads below 1×. It is the copy floor measured on the same \
             CPUs just before and just after the strategy when those agree within 25% (the \
             distance between two virtual CPUs can change while a run goes on); one marked * had \
             floors beside it that disagreed, and is against the run's floor-copy point. Each \
             strategy is shown at its best waiting strategy at this size. CPU is both peers' \
             user + system time per round trip."
                .into(),
        ));
        let floors: Vec<Vec<String>> = ["spin", "park"]
            .iter()
            .filter_map(|w| analysis::floor(run, w))
            .map(|f| {
                let l = f.latency_ns.unwrap_or_default();
                vec![
                    format!("floor ({})", f.wait),
                    human_ns(l.p50 as f64),
                    human_ns(l.p99 as f64),
                    "1×".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    f.cpu_ns_per_msg.map_or("-".into(), human_ns),
                ]
            })
            .collect();
        let rows = analysis::ratios(run, "pingpong", size)
            .into_iter()
            .map(|r| {
                let l = r.point.latency_ns.unwrap_or_default();
                vec![
                    label(&r.point.transport, &r.point.wait),
                    human_ns(l.p50 as f64),
                    human_ns(l.p99 as f64),
                    r.vs_spin_floor.map_or("-".into(), human_ratio),
                    r.vs_park_floor.map_or("-".into(), human_ratio),
                    r.vs_copy_floor.map_or("-".into(), |x| {
                        format!("{}{}", human_ratio(x), unsteady_mark(&r))
                    }),
                    r.speedup_vs_os_pipe.map_or("-".into(), human_ratio),
                    r.speedup_vs_python
                        .map_or("-".into(), |(py, x)| format!("{} vs {py}", human_ratio(x))),
                    r.point.cpu_ns_per_msg.map_or("-".into(), human_ns),
                ]
            });
        b.push(Block::Table(
            [
                "strategy",
                "p50",
                "p99",
                "× spin floor",
                "× park floor",
                "× copy floor",
                "speedup vs os-pipe",
                "speedup vs Python",
                "CPU per round trip",
            ]
            .map(String::from)
            .to_vec(),
            floors.into_iter().chain(rows).collect(),
        ));
    }

    let stream_sizes: Vec<usize> = [64usize, 64 << 10]
        .into_iter()
        .filter(|s| analysis::measured(run).any(|p| p.pattern == "stream" && p.msg_size == *s))
        .collect();
    for (i, size) in stream_sizes.into_iter().enumerate() {
        b.push(Block::Heading(
            2,
            format!("Streams of {} messages", human_size(size)),
        ));
        b.push(Block::Para(if i > 0 {
            "The copy floor and its * as above.".into()
        } else {
            "The copy floor: one process stamps each message and writes it into shared slots \
             once, the other reads and checks it once where it lies (the check every strategy's \
             receiver makes), nothing else: no correct strategy reads above 100% of it. A \
             strategy's share of it is taken against the copy floor measured on the same CPUs \
             just before and just after it when those agree within 25%; one marked * had floors \
             beside it that disagreed, and is against the run's copy floor point. Each strategy \
             is shown at its best waiting strategy at this size."
                .into()
        }));
        let rows = analysis::ratios(run, "stream", size)
            .into_iter()
            .map(|r| {
                let t = r.point.throughput.unwrap_or_default();
                vec![
                    label(&r.point.transport, &r.point.wait),
                    human_rate(t.msgs_per_s),
                    human_bytes_rate(t.bytes_per_s),
                    r.of_copy_floor.map_or("-".into(), |x| {
                        format!("{:.0}%{}", 100.0 * x, unsteady_mark(&r))
                    }),
                    r.speedup_vs_os_pipe.map_or("-".into(), human_ratio),
                    r.speedup_vs_python
                        .map_or("-".into(), |(py, x)| format!("{} vs {py}", human_ratio(x))),
                    r.point.cpu_ns_per_msg.map_or("-".into(), human_ns),
                ]
            })
            .collect();
        b.push(Block::Table(
            [
                "strategy",
                "messages/s",
                "payload/s",
                "of the copy floor",
                "speedup vs os-pipe",
                "speedup vs Python",
                "CPU per message",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ));
    }

    for (pattern, what) in [
        (
            "pingpong",
            "Round trips against the same-work floor, every size",
        ),
        ("stream", "Streams against the same-work floor, every size"),
    ] {
        let (header, rows) = floor_table(run, pattern);
        if rows.is_empty() {
            continue;
        }
        b.push(Block::Heading(2, what.into()));
        b.push(Block::Para(if pattern == "pingpong" {
            "Each strategy's median round trip at its best wait at each size, as a multiple of \
             the round trip's copy floor (as above: beside the point when steady, * when not); \
             the floor's own figure heads each column. 1× is the floor; below 0.9× is a bug."
                .into()
        } else {
            "Each strategy's messages per second at its best wait at each size, as a share of the \
             stream's copy floor (as above); the floor's own figure heads each column. 100% is \
             the floor; above 111% is a bug."
                .into()
        }));
        b.push(Block::Table(header, rows));
    }

    let late = analysis::late_answers(run);
    if !late.is_empty() {
        b.push(Block::Heading(
            2,
            format!(
                "When the answer is late ({})",
                human_size(late[0].point.msg_size)
            ),
        ));
        let work = human_ns(crate::record::LATE_REPLY_NS as f64);
        b.push(Block::Para(format!(
            "pingpong-late: the echo works {work} on each message before it answers, so a \
             waiting side that spins burns that time and one that parks sleeps through it. The \
             wait's cost is the round trip less those {work}; its yardstick is the park floor \
             made to wait the same way. CPU is both peers' per round trip, the echo's work \
             included."
        )));
        let rows = late
            .iter()
            .map(|r| {
                let l = r.point.latency_ns.unwrap_or_default();
                vec![
                    if r.point.transport == "floor" {
                        format!("floor ({})", r.point.wait)
                    } else {
                        label(&r.point.transport, &r.point.wait)
                    },
                    human_ns(l.p50 as f64),
                    human_ns(r.wait_cost_ns),
                    r.vs_park_floor.map_or("-".into(), human_ratio),
                    r.point.cpu_ns_per_msg.map_or("-".into(), human_ns),
                ]
            })
            .collect();
        b.push(Block::Table(
            [
                "strategy",
                "round trip p50",
                "wait cost",
                "× park floor's",
                "CPU per round trip",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ));
    }

    b.extend(super::steady::section(run));

    let farms = analysis::pool_scaling(run);
    if !farms.is_empty() {
        let ws: Vec<usize> = {
            let mut v: Vec<usize> = farms
                .iter()
                .flat_map(|f| f.points.iter().map(|(w, _, _)| *w))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        b.push(Block::Heading(2, "Task farms".into()));
        b.push(Block::Para(format!(
            "A master hands numbered 64-byte tasks to W worker processes and reads every result \
             (`pool`: no work, the IPC's own cost; `pool-cpu`: {} µs of CPU per task, so \
             the question is whether the IPC keeps the workers busy). Tasks per second, and in \
             brackets the speedup over the same strategy with one worker; this machine has {} \
             CPUs, so beyond that the workers share them.",
            crate::record::POOL_WORK_NS / 1000,
            run.machine.cores
        )));
        let mut header = vec!["pattern".to_owned(), "strategy".to_owned()];
        header.extend(
            ws.iter()
                .map(|w| format!("{w} worker{}", if *w == 1 { "" } else { "s" })),
        );
        let rows = farms
            .iter()
            .map(|f| {
                let mut row = vec![f.pattern.clone(), f.strategy.clone()];
                row.extend(
                    ws.iter()
                        .map(|w| match f.points.iter().find(|(x, _, _)| x == w) {
                            Some((_, r, Some(s))) if *w != 1 => {
                                format!("{} ({})", human_rate(*r), human_ratio(*s))
                            }
                            Some((_, r, _)) => human_rate(*r),
                            None => "-".into(),
                        }),
                );
                row
            })
            .collect();
        b.push(Block::Table(header, rows));
    }

    let speedups = analysis::python_speedups(run);
    if !speedups.is_empty() {
        b.push(Block::Heading(2, "Against Python's multiprocessing".into()));
        b.push(Block::Para(
            "Each Rust strategy beside its Python counterpart, measured in this run with the same \
             patterns, sizes, process counts, pinning and message checks: how many times faster \
             (lower round trip, or more messages or calls per second) the Rust strategy is."
                .into(),
        ));
        b.push(Block::Table(
            [
                "pattern",
                "size",
                "Rust",
                "its figure",
                "Python",
                "its figure",
                "speedup",
            ]
            .map(String::from)
            .to_vec(),
            speedups
                .iter()
                .map(|s| {
                    vec![
                        s.rust.pattern.clone(),
                        human_size(s.rust.msg_size),
                        strategy_text(&s.rust),
                        figure_text(&s.rust),
                        strategy_text(&s.python),
                        figure_text(&s.python),
                        format!("**{}**", human_ratio(s.speedup)),
                    ]
                })
                .collect(),
        ));
    }

    b.push(Block::Heading(2, "Plots".into()));
    for (file, title) in super::plots::PLOTS {
        b.push(Block::Plot(file.into(), title.into()));
    }

    b.push(Block::Heading(2, "Warnings".into()));
    let warnings = analysis::warnings(run);
    if warnings.is_empty() {
        b.push(Block::Para(
            "None: every point validated, none oversubscribed, noisy or thin.".into(),
        ));
    } else {
        b.push(Block::List(
            warnings
                .into_iter()
                .map(|w| {
                    let mut advice = w.advice.chars();
                    let first = advice.next().map(|c| c.to_uppercase().collect::<String>());
                    (
                        format!(
                            "**{}.** {}{}.",
                            w.what,
                            first.unwrap_or_default(),
                            advice.as_str()
                        ),
                        w.points,
                    )
                })
                .collect(),
        ));
    }

    criterion_section(run, &mut b);
    hosts_section(run, &mut b);

    b.push(Block::Heading(2, "All points".into()));
    b.push(Block::Para(
        "Latency is the round trip for pingpong, per call for reqrep, one way (queueing \
         included) for the rest; throughput is round trips, calls or messages per second."
            .into(),
    ));
    b.push(Block::Table(
        [
            "point",
            "p50",
            "p99",
            "p99.9",
            "throughput",
            "CPU/msg",
            "note",
        ]
        .map(String::from)
        .to_vec(),
        run.points
            .iter()
            .map(|p| {
                let l = p.latency_ns;
                let lat = |f: fn(&crate::record::Latency) -> u64| {
                    l.map_or("-".into(), |l| human_ns(f(&l) as f64))
                };
                let note = match &p.error {
                    Some(e) if p.is_skipped() => format!("skipped: {e}"),
                    Some(e) => format!("FAILED: {e}"),
                    None if p.oversubscribed => "oversubscribed".into(),
                    None if crate::record::open_loop(&p.pattern) => figure_text(p),
                    None => String::new(),
                };
                // Behind its offered rate, an open-loop point's median
                // says how long it ran, not what the channel costs.
                let behind = super::steady::past_knee(p);
                vec![
                    point_name(p),
                    if behind {
                        "past its knee".into()
                    } else {
                        lat(|l| l.p50)
                    },
                    lat(|l| l.p99),
                    lat(|l| l.p999),
                    p.throughput
                        .map_or("-".into(), |t| human_rate(t.msgs_per_s)),
                    p.cpu_ns_per_msg.map_or("-".into(), human_ns),
                    note,
                ]
            })
            .collect(),
    ));
    b
}

/// Network strategies between two hosts, each point beside the same
/// measurement over loopback in this run (its twin, measured just before
/// it) and the ratio of their key figures.
fn hosts_section(run: &RunRecord, b: &mut Vec<Block>) {
    let far: Vec<&PointRecord> = run.points.iter().filter(|p| p.hosts.is_some()).collect();
    if far.is_empty() {
        return;
    }
    b.push(Block::Heading(2, "Between two hosts".into()));
    b.push(Block::Para(format!(
        "The network strategies with their far side on a second host ({}), beside the same \
         point over loopback measured just before it. On the second host ran what the third \
         column names: side B (the echo of pingpong, the receiver of a stream); side A, the \
         senders or clients of ZeroMQ's shared channels, connecting to receivers or a server \
         here; a task farm's workers, their master here; or a manager's server (with a farm's \
         workers), which the processes here reached from the first host, as a `BaseManager`'s \
         clients reach a server on another machine: each of their calls crosses the link. The \
         ratio is between hosts over loopback: the round trip's time for pingpong, messages, \
         calls or tasks per second otherwise.",
        far[0].hosts.as_deref().unwrap_or("-")
    )));
    let twin = |p: &PointRecord| {
        run.points.iter().find(|q| {
            q.hosts.is_none()
                && (
                    q.transport.as_str(),
                    q.pattern.as_str(),
                    q.msg_size,
                    q.wait.as_str(),
                ) == (
                    p.transport.as_str(),
                    p.pattern.as_str(),
                    p.msg_size,
                    p.wait.as_str(),
                )
                && (q.producers, q.consumers) == (p.producers, p.consumers)
                && q.rate.load == p.rate.load
        })
    };
    let rows = far
        .iter()
        .map(|p| {
            let twin = twin(p);
            let ratio = match (twin.and_then(|t| t.key_figure()), p.key_figure()) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
                _ => "-".into(),
            };
            vec![
                p.transport.clone(),
                format!(
                    "{} {}",
                    super::analysis::pattern_text(p),
                    human_size(p.msg_size)
                ),
                p.far_side.clone().unwrap_or_else(|| "-".into()),
                twin.map_or("not measured".into(), figure_text),
                figure_text(p),
                ratio,
            ]
        })
        .collect();
    b.push(Block::Table(
        [
            "strategy",
            "point",
            "on the second host",
            "loopback",
            "between hosts",
            "ratio",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    ));
    side_by_side(&far, twin, b);
}

/// The network strategies measured between hosts side by side, a column
/// each (a messaging engine beside the suite's own manager and Python's
/// `BaseManager`), a row per point over loopback and between hosts.
fn side_by_side<'a>(
    far: &[&'a PointRecord],
    twin: impl Fn(&PointRecord) -> Option<&'a PointRecord>,
    b: &mut Vec<Block>,
) {
    // A point: its pattern with its processes (`mpmc 2x2`), and its size.
    let key = |p: &PointRecord| (super::analysis::pattern_text(p), p.msg_size);
    let mut names: Vec<&str> = Vec::new();
    let mut points: Vec<(String, usize)> = Vec::new();
    for p in far {
        if !names.contains(&p.transport.as_str()) {
            names.push(&p.transport);
        }
        if !points.contains(&key(p)) {
            points.push(key(p));
        }
    }
    if names.len() < 2 {
        return;
    }
    let cell = |t: &str, pt: &(String, usize), between: bool| {
        far.iter()
            .find(|p| p.transport == t && key(p) == *pt)
            .and_then(|p| if between { Some(*p) } else { twin(p) })
            .map_or("-".into(), figure_text)
    };
    let rows = points
        .iter()
        .flat_map(|pt| {
            [false, true].map(|between| {
                let mut row = vec![format!(
                    "{} {}, {}",
                    pt.0,
                    human_size(pt.1),
                    if between { "between hosts" } else { "loopback" }
                )];
                row.extend(names.iter().map(|t| cell(t, pt, between)));
                row
            })
        })
        .collect();
    b.push(Block::Para(
        "Side by side: each strategy measured between hosts, and its loopback twin.".into(),
    ));
    b.push(Block::Table(
        std::iter::once("point".to_owned())
            .chain(names.iter().map(|n| n.to_string()))
            .collect(),
        rows,
    ));
}

/// `cargo bench` runs: criterion's own estimate of each benchmark beside
/// the last round's figures, and a link to criterion's report.
fn criterion_section(run: &RunRecord, b: &mut Vec<Block>) {
    let with: Vec<&PointRecord> = run
        .points
        .iter()
        .filter(|p| p.criterion.is_some())
        .collect();
    if with.is_empty() {
        return;
    }
    b.push(Block::Heading(2, "Criterion's estimates".into()));
    b.push(Block::Para(
        "Criterion timed each benchmark in rounds of growing length, every message of every round \
         checked, and estimated the time per iteration over all of them, with its interval. What \
         it timed: a latency benchmark's round trips timed as one batch (no clock read between \
         them: the `batched mean` of the results), a throughput or scaling benchmark's messages \
         first to last. Beside it, the same figure of the last round, and that round's median \
         of round trips each timed on its own (which carries two clock reads each) and its \
         rate; the figures elsewhere in this report are the last round's."
            .into(),
    ));
    if let Some(href) = run.config.get("criterion_report").and_then(|v| v.as_str()) {
        let href = if href.starts_with('/') {
            format!("file://{href}")
        } else {
            href.to_owned()
        };
        b.push(Block::Link(
            "Criterion's own report: every benchmark's samples, and its change since the last run"
                .into(),
            href,
        ));
    }
    b.push(Block::Table(
        [
            "benchmark",
            "criterion",
            "interval",
            "last round",
            "last round p50",
            "last round rate",
        ]
        .map(String::from)
        .to_vec(),
        with.iter()
            .map(|p| {
                let c = p.criterion.as_ref().expect("filtered");
                vec![
                    format!("`{}`", c.id),
                    format!("{} ({})", human_ns(c.ns), c.statistic),
                    format!(
                        "{} – {} ({:.0}%)",
                        human_ns(c.interval_ns[0]),
                        human_ns(c.interval_ns[1]),
                        c.confidence * 100.0
                    ),
                    if p.pattern == "pingpong" {
                        p.batched_mean_ns
                    } else {
                        (p.messages > 0).then(|| p.elapsed_ns as f64 / p.messages as f64)
                    }
                    .map_or("-".into(), human_ns),
                    p.latency_ns.map_or("-".into(), |l| human_ns(l.p50 as f64)),
                    p.throughput
                        .map_or("-".into(), |t| human_rate(t.msgs_per_s)),
                ]
            })
            .collect(),
    ));
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The document as Markdown; plots are linked as files beside it.
pub fn markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Heading(l, t) => {
                s.push_str(&format!("{} {t}\n\n", "#".repeat(*l as usize)));
            }
            Block::Para(t) => s.push_str(&format!("{t}\n\n")),
            Block::Table(h, rows) => {
                s.push_str(&format!("| {} |\n", h.join(" | ")));
                s.push_str(&format!("|{}\n", "---|".repeat(h.len())));
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
                    s.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                s.push('\n');
            }
            Block::Plot(file, title) => s.push_str(&format!("![{title}]({file})\n\n")),
            Block::Link(text, href) => s.push_str(&format!("[{text}](<{href}>)\n\n")),
            Block::List(items) => {
                for (item, subs) in items {
                    s.push_str(&format!("- {item}\n"));
                    for sub in subs {
                        s.push_str(&format!("  - {}\n", sub.replace('\n', " ")));
                    }
                }
                s.push('\n');
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline Markdown of our own text (`code`, **bold**) as HTML.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let e = esc(s);
    let mut code = false;
    let mut bold = false;
    let mut rest = e.as_str();
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("**") && !code {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[2..];
        } else if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The document as one HTML page with the plots' SVG inline (`plots` maps
/// file names to SVG text).
pub fn html(blocks: &[Block], plots: &[(&str, String)]) -> String {
    let title = blocks
        .iter()
        .find_map(|b| match b {
            Block::Heading(1, t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "ipcbench report".into());
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}\n\
         th {{ background: #f2f2f2; }}\n\
         tr:nth-child(even) td {{ background: #fafafa; }}\n\
         figure {{ margin: 1.5em 0; }}\n\
         figure svg {{ max-width: 100%; height: auto; border: 1px solid #eee; }}\n\
         code {{ background: #f4f4f4; padding: 0 0.2em; }}\n\
         nav#contents ul {{ columns: 2; }}\n\
         th[data-sort] {{ background: #e4ecf7; }}\n\
         th[data-sort=asc]::after {{ content: ' \\25B2'; }}\n\
         th[data-sort=desc]::after {{ content: ' \\25BC'; }}\n\
         input.filter {{ margin-top: 1em; width: 20em; }}\n\
         </style>\n</head>\n<body>\n",
        esc(&title)
    );
    // Every second-level heading, with the anchor the contents link to.
    let ids = heading_ids(blocks);
    let mut heading = 0;
    for b in blocks {
        match b {
            Block::Heading(2, t) => {
                s.push_str(&format!(
                    "<h2 id=\"{}\">{}</h2>\n",
                    esc(&ids[heading].0),
                    inline(t)
                ));
                heading += 1;
            }
            Block::Heading(1, t) => {
                s.push_str(&format!("<h1>{}</h1>\n", inline(t)));
                if !ids.is_empty() {
                    s.push_str("<nav id=\"contents\"><strong>Contents</strong>\n<ul>\n");
                    for (id, t) in &ids {
                        s.push_str(&format!(
                            "<li><a href=\"#{}\">{}</a></li>\n",
                            esc(id),
                            inline(t)
                        ));
                    }
                    s.push_str("</ul></nav>\n");
                }
            }
            Block::Heading(l, t) => s.push_str(&format!("<h{l}>{}</h{l}>\n", inline(t))),
            Block::Para(t) => s.push_str(&format!("<p>{}</p>\n", inline(t))),
            Block::Link(text, href) => s.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>\n",
                esc(href),
                inline(text)
            )),
            Block::Table(h, rows) => {
                s.push_str("<table>\n<thead><tr>");
                for c in h {
                    s.push_str(&format!("<th>{}</th>", inline(c)));
                }
                s.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    s.push_str("<tr>");
                    for c in r {
                        s.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody>\n</table>\n");
            }
            Block::Plot(file, title) => {
                let svg = plots
                    .iter()
                    .find(|(f, _)| f == file)
                    .map(|(_, svg)| svg.as_str())
                    .unwrap_or("");
                s.push_str(&format!(
                    "<figure id=\"{}\" data-plot=\"{}\">\n{}\n<figcaption>{} (<a href=\"{}\">{}</a>)</figcaption>\n</figure>\n",
                    esc(file.trim_end_matches(".svg")),
                    esc(file),
                    svg,
                    esc(title),
                    esc(file),
                    esc(file)
                ));
            }
            Block::List(items) => {
                s.push_str("<ul>\n");
                for (item, subs) in items {
                    s.push_str(&format!("<li>{}", inline(item)));
                    if !subs.is_empty() {
                        s.push_str("<ul>");
                        for sub in subs {
                            s.push_str(&format!("<li>{}</li>", esc(sub)));
                        }
                        s.push_str("</ul>");
                    }
                    s.push_str("</li>\n");
                }
                s.push_str("</ul>\n");
            }
        }
    }
    s.push_str(TABLE_SCRIPT);
    s.push_str("</body>\n</html>\n");
    s
}

/// Each second-level heading's anchor (its words in lower case joined by
/// dashes, made unique) and text, in order.
fn heading_ids(blocks: &[Block]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading(2, t) => Some(t),
            _ => None,
        })
        .map(|t| {
            let words: Vec<String> = t
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            let base = if words.is_empty() {
                "section".to_owned()
            } else {
                words.join("-")
            };
            let mut id = base.clone();
            let mut n = 2;
            while !seen.insert(id.clone()) {
                id = format!("{base}-{n}");
                n += 1;
            }
            (id, t.clone())
        })
        .collect()
}

/// Makes every table sortable by a click on a column's heading (numbers
/// with their units — ns to s, k/s and M/s, B to MiB, ×, % — by value,
/// the rest as text; a second click reverses), and puts a filter box
/// above tables of 20 rows or more. Offline, and only an addition: with
/// scripts off the page reads the same, unsorted.
const TABLE_SCRIPT: &str = include_str!("table.html");

/// `*` for a ratio taken against the run's floor because the floors
/// measured beside its point disagreed.
/// A strategy per row, a size per column: its multiple (round trips) or
/// share (streams) of the same-work floor at that size.
fn floor_table(run: &RunRecord, pattern: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut sizes: Vec<usize> = analysis::measured(run)
        .filter(|p| p.pattern == pattern && p.producers == 1 && p.consumers == 1)
        .filter(|p| !analysis::is_floor(&p.transport))
        .map(|p| p.msg_size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let floor_name = if pattern == "pingpong" {
        "floor-copy"
    } else {
        "floor"
    };
    let mut header = vec!["strategy".to_owned()];
    for &size in &sizes {
        let f = analysis::point(run, floor_name, "spin", pattern, size).and_then(key_figure);
        header.push(match f {
            Some(f) if pattern == "pingpong" => format!("{} ({})", human_size(size), human_ns(f)),
            Some(f) => format!("{} ({}/s)", human_size(size), per_s(f)),
            None => human_size(size),
        });
    }
    let per_size: Vec<Vec<analysis::Ratio>> = sizes
        .iter()
        .map(|&s| analysis::ratios(run, pattern, s))
        .collect();
    let mut rows = Vec::new();
    for t in analysis::transports(run) {
        if analysis::is_floor(&t) {
            continue;
        }
        let cells: Vec<String> = per_size
            .iter()
            .map(|rs| match rs.iter().find(|r| r.point.transport == t) {
                Some(r) if pattern == "pingpong" => r.vs_copy_floor.map_or("-".into(), |x| {
                    format!("{} ({}){}", human_ratio(x), r.point.wait, unsteady_mark(r))
                }),
                Some(r) => r.of_copy_floor.map_or("-".into(), |x| {
                    format!("{:.0}% ({}){}", 100.0 * x, r.point.wait, unsteady_mark(r))
                }),
                None => "-".into(),
            })
            .collect();
        if cells.iter().any(|c| c != "-") {
            let mut row = vec![t.clone()];
            row.extend(cells);
            rows.push(row);
        }
    }
    (header, rows)
}

fn unsteady_mark(r: &analysis::Ratio) -> &'static str {
    if !r.floor_beside && !r.point.adjacent_floors.is_empty() {
        "*"
    } else {
        ""
    }
}
