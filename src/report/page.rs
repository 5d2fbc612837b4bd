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
}

fn figure_text(p: &PointRecord) -> String {
    match key_figure(p) {
        Some(f) if p.pattern == "startup" => format!("{} to first message", human_ns(f)),
        Some(f) if lower_is_better(&p.pattern) => format!("{} round trip", human_ns(f)),
        Some(f) if p.pattern == "reqrep" => format!("{} calls/s", per_s(f)),
        Some(f) if p.pattern.starts_with("pool") => format!("{} tasks/s", per_s(f)),
        Some(f) if p.pattern.ends_with("-increment") => format!("{} cycles/s", per_s(f)),
        Some(f) => format!("{} msgs/s", per_s(f)),
        None => "-".into(),
    }
}

/// `19.01 M`, `21.7 k`: a rate without its unit.
fn per_s(r: f64) -> String {
    human_rate(r).trim_end_matches("/s").trim_end().to_owned()
}

fn strategy_text(p: &PointRecord) -> String {
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
        Block::Para(
            "Every figure comes from this one run on this one machine, with every message checked \
             (sequence number and checksum). Absolute timings drift between runs and machines: \
             compare strategies by the ratios measured here."
                .into(),
        ),
    ];

    b.push(Block::Heading(2, "Verdict: which IPC should I use?".into()));
    b.push(Block::Para(
        "For each pattern and message size, the fastest strategy at its best waiting strategy \
         (pingpong by median round trip, the others by messages or calls per second) and its lead \
         over the next strategy. Points with more busy processes than CPUs compete only where \
         nothing else was measured."
            .into(),
    ));
    let verdicts = analysis::verdicts(run);
    b.push(Block::Table(
        [
            "pattern",
            "size",
            "fastest",
            "its figure",
            "lead",
            "next",
            "its figure",
        ]
        .map(String::from)
        .to_vec(),
        verdicts
            .iter()
            .map(|v| {
                let next = v.runner_up.as_ref();
                vec![
                    v.pattern.clone(),
                    human_size(v.size),
                    format!("**{}**", strategy_text(&v.best)),
                    figure_text(&v.best),
                    v.lead().map_or("-".into(), human_ratio),
                    next.map_or("(alone)".into(), strategy_text),
                    next.map_or("-".into(), figure_text),
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
             hundred times faster. × copy floor is against the copy floor of a round trip at the same \
             size (floor-copy: a slot per direction, each a flag word and the message, copied in \
             and out): the least a channel made of two one-way channels does for a message that \
             size, and the yardstick where a message spans more than a few cache lines; when \
             both had steady spin floors beside them, it is the ratio of their multiples of \
             those, so that the machine's speed at the two moments cancels out. \
             CPU is both peers' user + system time per round trip. \
             A strategy's multiple of the spin floor is taken against the floor measured on the \
             same CPUs just before and just after it when those agree within 25% (the distance \
             between two virtual CPUs can change while a run goes on); one marked * had floors \
             beside it that disagreed, and is against the run's floor point."
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
                    r.vs_spin_floor.map_or("-".into(), |x| {
                        format!("{}{}", human_ratio(x), unsteady_mark(&r))
                    }),
                    r.vs_park_floor.map_or("-".into(), human_ratio),
                    r.vs_copy_floor.map_or("-".into(), human_ratio),
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
            "The copy floor: one process copies each message into shared slots, the other \
             copies it out, nothing else. A strategy's share of it is taken against the copy \
             floor measured on the same CPUs just before and just after it when those agree within \
             25%; one marked * had floors beside it that disagreed, and is against the run's \
             copy floor point."
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
                    None => String::new(),
                };
                vec![
                    point_name(p),
                    lat(|l| l.p50),
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
         </style>\n</head>\n<body>\n",
        esc(&title)
    );
    for b in blocks {
        match b {
            Block::Heading(l, t) => s.push_str(&format!("<h{l}>{}</h{l}>\n", inline(t))),
            Block::Para(t) => s.push_str(&format!("<p>{}</p>\n", inline(t))),
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
    s.push_str("</body>\n</html>\n");
    s
}

/// `*` for a ratio taken against the run's floor because the floors
/// measured beside its point disagreed.
fn unsteady_mark(r: &analysis::Ratio) -> &'static str {
    if !r.floor_beside && !r.point.adjacent_floors.is_empty() {
        "*"
    } else {
        ""
    }
}
