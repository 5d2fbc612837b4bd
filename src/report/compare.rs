//! `ipcbench compare A.json B.json`: the same points of two runs side by
//! side, and which changed beyond the noise.

use super::analysis::{
    human_ns, human_rate, key_figure, key_interval, lower_is_better, point_name, vs_adjacent_floor,
};
use crate::record::{PointRecord, RunRecord};

/// The change below which a difference is taken for noise: absolute
/// timings drift by this much between runs of one machine (seen here: the
/// same round trip measured 0.31, 0.37 and 1.0 µs in three runs).
pub const DEFAULT_THRESHOLD: f64 = 0.25;

/// What happened to one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Within the noise.
    Same,
    /// Better beyond the noise.
    Improved,
    /// Worse beyond the noise, or failing where it passed.
    Regressed,
}

/// One point present in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The point's name.
    pub point: String,
    /// The figure compared (`p50 round trip` or `msgs/s`).
    pub metric: &'static str,
    /// A's figure, if A measured it.
    pub a: Option<f64>,
    /// B's figure, if B measured it.
    pub b: Option<f64>,
    /// How much better B is than A (> 1 better, < 1 worse).
    pub speedup: Option<f64>,
    /// Whether `speedup` compares the two figures as multiples of the
    /// floors measured beside each (both points had steady ones), which
    /// takes out a machine that got faster or slower between the runs.
    pub against_floors: bool,
    /// Whether the verdict comes from the two points' 95% intervals (a
    /// change only where they do not overlap) rather than the threshold.
    pub by_intervals: bool,
    /// The verdict.
    pub change: Change,
    /// Why, for a point that failed in either run.
    pub note: String,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Points present in both, in A's order.
    pub rows: Vec<Row>,
    /// Points only A has.
    pub only_a: Vec<String>,
    /// Points only B has.
    pub only_b: Vec<String>,
    /// The threshold used.
    pub threshold: f64,
}

impl Comparison {
    /// The rows that regressed.
    pub fn regressions(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.change == Change::Regressed)
            .count()
    }

    /// The rows that improved.
    pub fn improvements(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.change == Change::Improved)
            .count()
    }
}

type Key<'a> = (
    &'a str,
    &'a str,
    usize,
    usize,
    usize,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
);

/// What makes two points the same measurement: between two hosts is not
/// the same as over loopback.
fn key(p: &PointRecord) -> Key<'_> {
    (
        &p.transport,
        &p.pattern,
        p.msg_size,
        p.producers,
        p.consumers,
        &p.wait,
        p.rate.load.as_deref(),
        p.hosts.as_deref(),
    )
}

/// An open-loop point offered a rate is compared by its corrected p99
/// there (lower is better), without intervals: what it delivers at that
/// load, not the rate it was offered.
fn paced_p99(p: &PointRecord) -> Option<f64> {
    if p.rate.offered_per_s.is_none() || !p.validated {
        return None;
    }
    p.latency_ns.map(|l| l.p99 as f64)
}

/// Compares `b` against `a`; a change beyond `threshold` (0.25 = 25%) in
/// the point's key figure is flagged, and so is a point that validated in
/// `a` and fails in `b`. Skipped points are left out.
pub fn compare(a: &RunRecord, b: &RunRecord, threshold: f64) -> Comparison {
    let skipped = |p: &PointRecord| p.is_skipped();
    let mut rows = Vec::new();
    let mut only_a = Vec::new();
    for pa in a.points.iter().filter(|p| !skipped(p)) {
        let Some(pb) = b.points.iter().find(|p| !skipped(p) && key(p) == key(pa)) else {
            only_a.push(point_name(pa));
            continue;
        };
        let paced = pa.rate.offered_per_s.is_some();
        let (fa, fb) = if paced {
            (paced_p99(pa), paced_p99(pb))
        } else {
            (key_figure(pa), key_figure(pb))
        };
        let lower = paced || lower_is_better(&pa.pattern);
        // Against the floors beside each point when both have steady ones:
        // the same ratio of figure to floor, whatever the machine did.
        let beside = vs_adjacent_floor(pa).zip(vs_adjacent_floor(pb));
        let speedup = match beside.or(fa.zip(fb)) {
            Some((x, y)) if x > 0.0 && y > 0.0 => Some(if lower { x / y } else { y / x }),
            _ => None,
        };
        // Where both points have intervals, a change is one they do not
        // overlap in (each taken over its floor beside it when the speedup
        // is, so that a machine that moved between the runs cancels out).
        let scaled = |p: &PointRecord| -> Option<[f64; 2]> {
            let [lo, hi] = key_interval(p)?;
            match (beside, key_figure(p)) {
                (Some(_), Some(f)) if f > 0.0 => {
                    let k = vs_adjacent_floor(p)? / f;
                    Some([lo * k, hi * k])
                }
                (Some(_), _) => None,
                (None, _) => Some([lo, hi]),
            }
        };
        let intervals = scaled(pa).zip(scaled(pb)).filter(|_| !paced);
        let (change, note) = match (pa.validated, pb.validated) {
            (true, false) => (
                Change::Regressed,
                format!("fails in B: {}", pb.error.as_deref().unwrap_or("-")),
            ),
            (false, true) => (Change::Improved, "failed in A, passes in B".to_owned()),
            (false, false) => (Change::Same, "fails in both".to_owned()),
            (true, true) => match (intervals, speedup) {
                (Some(([a0, a1], [b0, b1])), _) => {
                    let b_better = if lower { b1 < a0 } else { b0 > a1 };
                    let b_worse = if lower { b0 > a1 } else { b1 < a0 };
                    match (b_better, b_worse) {
                        (true, _) => (Change::Improved, String::new()),
                        (_, true) => (Change::Regressed, String::new()),
                        _ => (Change::Same, String::new()),
                    }
                }
                (None, Some(s)) if s < 1.0 / (1.0 + threshold) => {
                    (Change::Regressed, String::new())
                }
                (None, Some(s)) if s > 1.0 + threshold => (Change::Improved, String::new()),
                _ => (Change::Same, String::new()),
            },
        };
        rows.push(Row {
            point: point_name(pa),
            metric: match (lower, pa.pattern.as_str()) {
                (true, "rate" | "reqrep-rate") => "p99 at its load",
                (true, "startup") => "p50 start-up",
                (true, "barrier-cycle") => "p50 generation",
                (true, _) => "p50 round trip",
                _ => "msgs/s",
            },
            a: fa,
            b: fb,
            speedup,
            against_floors: beside.is_some(),
            by_intervals: intervals.is_some() && pa.validated && pb.validated,
            change,
            note,
        });
    }
    let only_b = b
        .points
        .iter()
        .filter(|p| !skipped(p) && !a.points.iter().any(|q| key(q) == key(p)))
        .map(point_name)
        .collect();
    Comparison {
        rows,
        only_a,
        only_b,
        threshold,
    }
}

/// How `ipcbench compare` writes its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A table to read in a terminal.
    #[default]
    Text,
    /// A Markdown table to paste into a pull request.
    Markdown,
    /// Every row with its figures and verdict, for a script.
    Json,
}

impl Change {
    /// The verdict as written in every format.
    pub fn word(self) -> &'static str {
        match self {
            Change::Same => "same",
            Change::Improved => "improved",
            Change::Regressed => "regressed",
        }
    }
}

/// The comparison in `format`: text and Markdown show the rows that
/// changed (every row with `all`), then the summary; JSON carries every
/// row, each with its verdict.
pub fn render_as(c: &Comparison, a_name: &str, b_name: &str, format: Format, all: bool) -> String {
    match format {
        Format::Text => render_text(c, a_name, b_name, all),
        Format::Markdown => render_markdown(c, a_name, b_name, all),
        Format::Json => render_json(c, a_name, b_name),
    }
}

/// The files of `ipcbench compare --report DIR`: `compare.svg` (a bar per
/// point that changed, B's speedup over A), and `COMPARE.md` and
/// `index.html` with it and the table of those points.
pub fn report_files(
    c: &Comparison,
    a_name: &str,
    b_name: &str,
) -> Result<Vec<(String, String)>, String> {
    use super::page::{Block, html, markdown};
    let svg = super::plots::compare_bars(c)?;
    let rows: Vec<Vec<String>> = shown(c, false)
        .map(|r| {
            vec![
                r.point.clone(),
                r.metric.to_owned(),
                figure(r.metric, r.a),
                figure(r.metric, r.b),
                speedup_cell(r),
                if r.note.is_empty() {
                    r.change.word().to_owned()
                } else {
                    format!("{}: {}", r.change.word(), r.note)
                },
            ]
        })
        .collect();
    let blocks = vec![
        Block::Heading(1, "ipcbench compare".into()),
        Block::Para(format!(
            "A = `{a_name}`, B = `{b_name}`: {}.",
            explanation(c)
        )),
        Block::Plot(
            "compare.svg".into(),
            "B's speedup over A at each point that changed".into(),
        ),
        Block::Table(
            ["point", "figure", "A", "B", "speedup", "change"]
                .map(String::from)
                .to_vec(),
            rows,
        ),
        Block::Para(summary(c, false) + "."),
    ];
    Ok(vec![
        ("COMPARE.md".to_owned(), markdown(&blocks)),
        (
            "index.html".to_owned(),
            html(&blocks, &[("compare.svg", svg.clone())]),
        ),
        ("compare.svg".to_owned(), svg),
    ])
}

/// The comparison as a plain-text table of every row, with a summary line.
pub fn render(c: &Comparison, a_name: &str, b_name: &str) -> String {
    render_text(c, a_name, b_name, true)
}

fn figure(metric: &str, v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if metric == "msgs/s" => human_rate(v),
        Some(v) => human_ns(v),
    }
}

/// `|1.32×`, `~0.98×` or `-`: the speedup and how it was judged.
fn speedup_cell(r: &Row) -> String {
    r.speedup.map_or("-".into(), |x| {
        format!(
            "{}{}{x:.2}×",
            if r.by_intervals { "|" } else { "" },
            if r.against_floors { "~" } else { "" }
        )
    })
}

/// The rows a text or Markdown answer shows.
fn shown(c: &Comparison, all: bool) -> impl Iterator<Item = &Row> {
    c.rows
        .iter()
        .filter(move |r| all || r.change != Change::Same)
}

/// The closing line of text and Markdown, and what was left out.
fn summary(c: &Comparison, all: bool) -> String {
    let same = c.rows.len() - c.regressions() - c.improvements();
    let mut s = format!(
        "{} points compared: {} regressed, {} improved, {} within the noise",
        c.rows.len(),
        c.regressions(),
        c.improvements(),
        same
    );
    if !all && same > 0 {
        s.push_str(" (not listed; --all lists them)");
    }
    s
}

fn explanation(c: &Comparison) -> String {
    format!(
        "{} ±{:.0}%; {}",
        "a change is flagged where the two points' 95% intervals do not overlap (marked |), \
         or, where either has none, beyond",
        c.threshold * 100.0,
        "speedup > 1 means B is faster; a speedup marked ~ compares each figure as a \
         multiple of the floor measured beside it"
    )
}

fn render_markdown(c: &Comparison, a_name: &str, b_name: &str, all: bool) -> String {
    let cell = |x: &str| x.replace('|', "\\|");
    let mut s = format!("A = `{a_name}`, B = `{b_name}`: {}.\n\n", explanation(c));
    let rows: Vec<&Row> = shown(c, all).collect();
    if !rows.is_empty() {
        s.push_str("| point | figure | A | B | speedup | change |\n|---|---|---:|---:|---:|---|\n");
        for r in rows {
            let change = match r.change {
                Change::Same => String::new(),
                Change::Improved => "improved".into(),
                Change::Regressed => "**regression**".into(),
            };
            let note = if r.note.is_empty() || r.change == Change::Same {
                String::new()
            } else {
                format!(": {}", r.note)
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {change}{} |\n",
                cell(&r.point),
                r.metric,
                figure(r.metric, r.a),
                figure(r.metric, r.b),
                cell(&speedup_cell(r)),
                cell(&note)
            ));
        }
        s.push('\n');
    }
    for (name, v) in [("Only in A", &c.only_a), ("Only in B", &c.only_b)] {
        if !v.is_empty() {
            s.push_str(&format!(
                "{name} ({}): {}\n\n",
                v.len(),
                cell(&v.join("; "))
            ));
        }
    }
    s.push_str(&summary(c, all));
    s.push('\n');
    s
}

fn render_json(c: &Comparison, a_name: &str, b_name: &str) -> String {
    let rows: Vec<serde_json::Value> = c
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "point": r.point,
                "figure": r.metric,
                "a": r.a,
                "b": r.b,
                "speedup": r.speedup,
                "against_floors": r.against_floors,
                "by_intervals": r.by_intervals,
                "change": r.change.word(),
                "note": r.note,
            })
        })
        .collect();
    let v = serde_json::json!({
        "a": a_name,
        "b": b_name,
        "threshold": c.threshold,
        "compared": c.rows.len(),
        "regressed": c.regressions(),
        "improved": c.improvements(),
        "rows": rows,
        "only_a": c.only_a,
        "only_b": c.only_b,
    });
    let mut s =
        serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn render_text(c: &Comparison, a_name: &str, b_name: &str, all: bool) -> String {
    let fmt = figure;
    let mut s = format!("A = {a_name}\nB = {b_name}\n{}\n\n", explanation(c));
    let w = shown(c, all)
        .map(|r| r.point.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    if shown(c, all).next().is_some() {
        s.push_str(&format!(
            "{:<w$}  {:<14}  {:>11}  {:>11}  {:>8}  {}\n",
            "point", "figure", "A", "B", "speedup", "change"
        ));
    }
    for r in shown(c, all) {
        let flag = match r.change {
            Change::Same => "",
            Change::Improved => "improved",
            Change::Regressed => "REGRESSION",
        };
        s.push_str(
            format!(
                "{:<w$}  {:<14}  {:>11}  {:>11}  {:>8}  {flag}{}{}\n",
                r.point,
                r.metric,
                fmt(r.metric, r.a),
                fmt(r.metric, r.b),
                speedup_cell(r),
                if flag.is_empty() || r.note.is_empty() {
                    ""
                } else {
                    ": "
                },
                r.note
            )
            .trim_end(),
        );
        s.push('\n');
    }
    for (name, v) in [("only in A", &c.only_a), ("only in B", &c.only_b)] {
        if !v.is_empty() {
            s.push_str(&format!("\n{name} ({}): {}\n", v.len(), v.join("; ")));
        }
    }
    s.push_str(&format!("\n{}\n", summary(c, all)));
    s
}
