//! The report's plots, as SVG text made with plotters. Each is a pure
//! function of a run's records. Lines are told apart by colour, marker
//! shape and dash; the legend sits beside the plot, never over the data;
//! every plotted point carries a tooltip (`<title>`) with its figure and
//! interval.

use plotters::coord::Shift;
use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::analysis::{
    self, best_wait, floor, human_ns, human_rate, human_size, key_figure, label, measured,
    transports,
};
use super::page::figure_with_interval;
use crate::record::RunRecord;

/// The plot files of a report, with their titles.
pub const PLOTS: [(&str, &str); 5] = [
    ("latency.svg", "Round-trip latency vs message size"),
    ("throughput.svg", "Stream throughput vs message size"),
    ("scaling.svg", "Scaling: mpmc throughput vs process count"),
    ("spectrum.svg", "Latency percentile spectrum at 64 B"),
    (
        "floor.svg",
        "Each strategy as a multiple of the same-work floor",
    ),
];

const W: u32 = 960;
const H: u32 = 540;
const LEGEND_W: u32 = 250;

/// Ten colours far enough apart to tell lines apart (and print in grey).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(80, 80, 80),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A plotted point: (x, y, optional band top, marked).
type Pt = (f64, f64, Option<f64>, bool);

/// One line of a plot.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    /// Its points.
    points: Vec<Pt>,
    /// A tooltip per point (none when empty).
    tips: Vec<String>,
    /// A companion line drawn thin and faint in the same colour (the
    /// uncorrected p99 beside a corrected one).
    faint: Vec<(f64, f64)>,
}

/// Tooltips for an SVG: invisible circles, each with a `<title>`, laid
/// over the points (plotters draws no `<title>` itself).
fn with_tips(mut svg: String, tips: &[(i32, i32, String)]) -> String {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let extra: String = tips
        .iter()
        .map(|(x, y, t)| {
            format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"7\" fill=\"transparent\" stroke=\"none\"><title>{}</title></circle>\n",
                esc(t)
            )
        })
        .collect();
    match svg.rfind("</svg>") {
        Some(at) => svg.insert_str(at, &extra),
        None => svg.push_str(&extra),
    }
    svg
}

/// A plotting failure (plotters' errors, as text).
fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plotting: {e:?}")
}

/// Series `i`'s colour, marker shape and dash (0 solid, 1 dashed, 2
/// dotted): the palette's ten colours, then the same colours dashed, then
/// dotted, so that twenty or thirty series stay apart.
fn style(i: usize) -> (RGBColor, usize, usize) {
    let round = i / PALETTE.len() % 3;
    (PALETTE[i % PALETTE.len()], round, round)
}

/// The dash and gap lengths (pixels) of dash style `d`.
fn dash_of(d: usize) -> Option<(u32, u32)> {
    match d {
        0 => None,
        1 => Some((9, 5)),
        _ => Some((2, 4)),
    }
}

/// Draws marker `shape` (0 circle, 1 triangle, 2 square) at `c`.
fn marker(
    area: &DrawingArea<SVGBackend, Shift>,
    shape: usize,
    c: (i32, i32),
    color: RGBColor,
    hollow: bool,
) -> Result<(), String> {
    let st = if hollow {
        color.stroke_width(2)
    } else {
        color.filled()
    };
    match shape {
        0 => area.draw(&Circle::new(c, 4, st)),
        // A thin outline, or a hollow triangle reads as a filled one.
        1 if hollow => area.draw(&TriangleMarker::new(c, 6, color.stroke_width(1))),
        1 => area.draw(&TriangleMarker::new(c, 5, st)),
        _ => area.draw(&Rectangle::new(
            [(c.0 - 4, c.1 - 4), (c.0 + 4, c.1 + 4)],
            st,
        )),
    }
    .map_err(err)
}

fn legend(
    area: &DrawingArea<SVGBackend, Shift>,
    series: &[Series],
    extra: &[(String, RGBColor)],
) -> Result<(), String> {
    let font = ("sans-serif", 13).into_font();
    for (i, s) in series.iter().enumerate() {
        let (color, shape, dash) = style(i);
        let y = 24 + i as i32 * 20;
        let segments: Vec<(i32, i32)> = match dash_of(dash) {
            None => vec![(6, 34)],
            Some((on, off)) => (6..34)
                .step_by((on + off) as usize)
                .map(|x| (x, (x + on as i32).min(34)))
                .collect(),
        };
        for (x0, x1) in segments {
            area.draw(&PathElement::new(
                vec![(x0, y), (x1, y)],
                color.stroke_width(2),
            ))
            .map_err(err)?;
        }
        marker(area, shape, (20, y), color, false)?;
        area.draw(&Text::new(s.name.clone(), (42, y - 7), font.clone()))
            .map_err(err)?;
    }
    for (j, (name, color)) in extra.iter().enumerate() {
        let y = 24 + (series.len() + j) as i32 * 20 + 6;
        for x in (6..34).step_by(10) {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 6, y)],
                color.stroke_width(1),
            ))
            .map_err(err)?;
        }
        area.draw(&Text::new(name.clone(), (42, y - 7), font.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// Axis bounds on a log scale with some room.
fn log_bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (1.0, 10.0);
    }
    (lo / 1.6, hi * 1.6)
}

struct Axes<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_fmt: &'a dyn Fn(f64) -> String,
    y_fmt: &'a dyn Fn(f64) -> String,
    /// Horizontal reference lines (name, y).
    hlines: Vec<(String, f64)>,
    /// Shade x beyond this (oversubscribed region) with a caption.
    shade_from: Option<(f64, String)>,
    /// Reference lines over x (name, points), drawn black and dashed.
    ref_lines: Vec<(String, Vec<(f64, f64)>)>,
    empty_note: &'a str,
}

/// A line chart: one line per series, an optional band per point (p50 to
/// p99), hollow markers for marked points.
fn line_chart(series: &[Series], ax: &Axes) -> Result<String, String> {
    let mut svg = String::new();
    let mut tips: Vec<(i32, i32, String)> = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, side) = root.split_horizontally(W - LEGEND_W);
        let (x_lo, x_hi) = log_bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        let (y_lo, y_hi) = log_bounds(
            series
                .iter()
                .flat_map(|s| s.points.iter().flat_map(|p| [Some(p.1), p.2]).flatten())
                .chain(ax.hlines.iter().map(|h| h.1))
                .chain(ax.ref_lines.iter().flat_map(|r| r.1.iter().map(|p| p.1))),
        );
        let mut b = ChartBuilder::on(&plot);
        b.caption(ax.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(78);
        // Ticks where the data are (message sizes, process counts).
        let mut xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        if xs.is_empty() {
            xs = vec![x_lo, x_hi];
        }
        // Too many to label (offered rates): the decades instead.
        if xs.len() > 12 {
            xs = (x_lo.log10().ceil() as i32..=x_hi.log10().floor() as i32)
                .map(|e| 10f64.powi(e))
                .collect();
        }
        let mut chart = b
            .build_cartesian_2d(
                (x_lo..x_hi).log_scale().with_key_points(xs),
                (y_lo..y_hi).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(ax.x_desc)
            .y_desc(ax.y_desc)
            .x_label_formatter(&|v| (ax.x_fmt)(*v))
            .y_label_formatter(&|v| (ax.y_fmt)(*v))
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 12))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(err)?;
        if let Some((from, caption)) = &ax.shade_from
            && *from < x_hi
        {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from.max(x_lo), y_lo), (x_hi, y_hi)],
                    RGBColor(120, 120, 120).mix(0.12).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    caption.clone(),
                    (from.max(x_lo) * 1.05, y_hi / 1.3),
                    ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
                )))
                .map_err(err)?;
        }
        for (name, y) in &ax.hlines {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_lo, *y), (x_hi, *y)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (x_lo * 1.05, *y * 1.12),
                    ("sans-serif", 12),
                )))
                .map_err(err)?;
        }
        for (_, pts) in &ax.ref_lines {
            chart
                .draw_series(DashedLineSeries::new(
                    pts.iter().copied(),
                    6,
                    4,
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?;
            for p in pts {
                let c = chart.backend_coord(p);
                plot.draw(&Cross::new(c, 4, BLACK.stroke_width(1)))
                    .map_err(err)?;
            }
        }
        for (i, s) in series.iter().enumerate() {
            let (color, shape, dash) = style(i);
            // The band: p99 above, p50 below.
            let top: Vec<(f64, f64)> = s.points.iter().filter_map(|p| Some((p.0, p.2?))).collect();
            if top.len() == s.points.len() && top.len() >= 2 {
                let mut poly = top.clone();
                poly.extend(s.points.iter().rev().map(|p| (p.0, p.1)));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        poly,
                        color.mix(0.12).filled(),
                    )))
                    .map_err(err)?;
            }
            if s.faint.len() >= 2 {
                chart
                    .draw_series(LineSeries::new(
                        s.faint.iter().copied(),
                        color.mix(0.35).stroke_width(1),
                    ))
                    .map_err(err)?;
            }
            let line = s.points.iter().map(|p| (p.0, p.1));
            match dash_of(dash) {
                None => chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map(drop),
                Some((on, off)) => chart
                    .draw_series(DashedLineSeries::new(line, on, off, color.stroke_width(2)))
                    .map(drop),
            }
            .map_err(err)?;
            for (k, p) in s.points.iter().enumerate() {
                let c = chart.backend_coord(&(p.0, p.1));
                marker(&plot, shape, c, color, p.3)?;
                if let Some(t) = s.tips.get(k) {
                    tips.push((c.0, c.1, t.clone()));
                }
            }
        }
        if series.is_empty() {
            plot.draw(&Text::new(
                ax.empty_note.to_owned(),
                (40, H as i32 / 2),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
        let extra: Vec<(String, RGBColor)> =
            ax.ref_lines.iter().map(|r| (r.0.clone(), BLACK)).collect();
        legend(&side, series, &extra)?;
        root.present().map_err(err)?;
    }
    Ok(with_tips(svg, &tips))
}

/// Each transport's series for `pattern` over message sizes, at its best
/// waiting strategy; `y` picks the figure and the band top.
fn size_series(
    run: &RunRecord,
    pattern: &str,
    y: impl Fn(&crate::record::PointRecord) -> Option<(f64, Option<f64>)>,
) -> Vec<Series> {
    let mut out = Vec::new();
    for t in transports(run) {
        let Some(w) = best_wait(run, &t, pattern) else {
            continue;
        };
        let mut pts: Vec<(Pt, String)> = measured(run)
            .filter(|p| {
                p.transport == t
                    && p.wait == w
                    && p.pattern == pattern
                    && p.producers == 1
                    && p.consumers == 1
            })
            .filter_map(|p| {
                let (v, top) = y(p)?;
                let tip = format!(
                    "{} at {}: {}",
                    label(&t, &w),
                    human_size(p.msg_size),
                    figure_with_interval(p)
                );
                Some(((p.msg_size as f64, v, top, p.oversubscribed), tip))
            })
            .collect();
        pts.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
        if !pts.is_empty() {
            let (points, tips) = pts.into_iter().unzip();
            out.push(Series {
                name: label(&t, &w),
                points,
                tips,
                faint: Vec::new(),
            });
        }
    }
    out
}

fn size_fmt(v: f64) -> String {
    human_size(v.round() as usize)
}

/// Latency vs message size: pingpong p50 with a band up to p99, the floors
/// as dashed lines.
pub fn latency(run: &RunRecord) -> Result<String, String> {
    let series = size_series(run, "pingpong", |p| {
        let l = p.latency_ns?;
        Some((l.p50 as f64, Some(l.p99 as f64)))
    });
    let hlines = ["spin", "park"]
        .iter()
        .filter_map(|w| {
            let f = floor(run, w)?;
            Some((
                format!("floor ({w}) {}", human_ns(key_figure(f)?)),
                key_figure(f)?,
            ))
        })
        .collect();
    line_chart(
        &series,
        &Axes {
            title: "Round-trip latency (pingpong): median, band to p99",
            x_desc: "message size",
            y_desc: "round trip",
            x_fmt: &size_fmt,
            y_fmt: &|v| human_ns(v),
            hlines,
            shade_from: None,
            ref_lines: Vec::new(),
            empty_note: "no pingpong points in this run",
        },
    )
}

/// Stream throughput (payload bytes per second) vs message size.
pub fn throughput(run: &RunRecord) -> Result<String, String> {
    let series: Vec<Series> =
        size_series(run, "stream", |p| Some((p.throughput?.bytes_per_s, None)))
            .into_iter()
            .filter(|s| s.name != label("floor", "spin"))
            .collect();
    // The copy floor, at every size it was measured: what no channel can
    // beat at that size.
    let mut floor: Vec<(f64, f64)> = measured(run)
        .filter(|p| p.transport == "floor" && p.pattern == "stream")
        .filter_map(|p| Some((p.msg_size as f64, p.throughput?.bytes_per_s)))
        .collect();
    floor.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ref_lines = if floor.is_empty() {
        Vec::new()
    } else {
        vec![("copy floor (same work)".to_owned(), floor)]
    };
    line_chart(
        &series,
        &Axes {
            title: "Stream throughput, one producer to one consumer",
            x_desc: "message size",
            y_desc: "payload bytes per second",
            x_fmt: &size_fmt,
            y_fmt: &|v| analysis::human_bytes_rate(v),
            hlines: Vec::new(),
            shade_from: None,
            ref_lines,
            empty_note: "no stream points in this run",
        },
    )
}

/// Aggregate mpmc throughput vs processes (producers + consumers), one line
/// per transport and waiting strategy, at the smallest size measured;
/// oversubscribed points hollow, in a shaded region.
pub fn scaling(run: &RunRecord) -> Result<String, String> {
    let pts: Vec<_> = measured(run).filter(|p| p.pattern == "mpmc").collect();
    let size = pts
        .iter()
        .map(|p| p.msg_size)
        .min_by_key(|s| s.abs_diff(64));
    let mut series: Vec<Series> = Vec::new();
    for p in pts.iter().filter(|p| Some(p.msg_size) == size) {
        let name = label(&p.transport, &p.wait);
        let pt = (
            (p.producers + p.consumers) as f64,
            p.throughput.map_or(0.0, |t| t.msgs_per_s),
            None,
            p.oversubscribed,
        );
        let tip = format!(
            "{name}, {}x{}: {}",
            p.producers,
            p.consumers,
            figure_with_interval(p)
        );
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                s.points.push(pt);
                s.tips.push(tip);
            }
            None => series.push(Series {
                name,
                points: vec![pt],
                tips: vec![tip],
                faint: Vec::new(),
            }),
        }
    }
    for s in &mut series {
        let mut both: Vec<_> = s.points.iter().copied().zip(s.tips.drain(..)).collect();
        both.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
        (s.points, s.tips) = both.into_iter().unzip();
    }
    let cores = run.machine.cores as f64;
    let title = format!(
        "mpmc N×N at {}: messages per second, all consumers together",
        size.map_or("-".into(), human_size)
    );
    line_chart(
        &series,
        &Axes {
            title: &title,
            x_desc: "processes (producers + consumers); hollow = more busy than CPUs",
            y_desc: "messages per second",
            x_fmt: &|v| format!("{v:.0}"),
            y_fmt: &|v| human_rate(v),
            hlines: Vec::new(),
            shade_from: Some((
                cores + 0.5,
                format!("oversubscribed (> {} CPUs)", run.machine.cores),
            )),
            ref_lines: Vec::new(),
            empty_note: "no mpmc points in this run",
        },
    )
}

/// Percentiles p50 … max of each transport's pingpong at 64 B (or the
/// ratio tables' size), one line each.
pub fn spectrum(run: &RunRecord) -> Result<String, String> {
    const NAMES: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];
    let size = analysis::ratio_size(run).unwrap_or(64);
    let mut series = Vec::new();
    let mut add = |name: String, l: crate::record::Latency| {
        let vals = [
            Some(l.p50),
            Some(l.p90),
            Some(l.p99),
            Some(l.p999),
            l.p9999,
            Some(l.max),
        ];
        let (points, tips) = vals
            .iter()
            .enumerate()
            // Evenly spaced on the log axis: x = 10^i.
            .filter_map(|(i, v)| {
                let v = (*v)? as f64;
                Some((
                    (10f64.powi(i as i32), v, None, false),
                    format!("{name} {}: {}", NAMES[i], human_ns(v)),
                ))
            })
            .unzip();
        series.push(Series {
            name,
            points,
            tips,
            faint: Vec::new(),
        });
    };
    for w in ["spin", "park"] {
        if let Some(l) = floor(run, w).and_then(|f| f.latency_ns) {
            add(format!("floor ({w})"), l);
        }
    }
    for t in transports(run) {
        let Some(w) = best_wait(run, &t, "pingpong") else {
            continue;
        };
        if let Some(l) = analysis::point(run, &t, &w, "pingpong", size).and_then(|p| p.latency_ns) {
            add(label(&t, &w), l);
        }
    }
    let title = format!("Round-trip percentiles at {} (pingpong)", human_size(size));
    line_chart(
        &series,
        &Axes {
            title: &title,
            x_desc: "percentile",
            y_desc: "round trip",
            x_fmt: &|v| {
                let l = v.log10();
                let i = l.round();
                if (l - i).abs() < 0.01 && (0.0..NAMES.len() as f64).contains(&i) {
                    NAMES[i as usize].to_owned()
                } else {
                    String::new()
                }
            },
            y_fmt: &|v| human_ns(v),
            hlines: Vec::new(),
            shade_from: None,
            ref_lines: Vec::new(),
            empty_note: "no pingpong points in this run",
        },
    )
}

/// A horizontal bar chart: bars along a log x axis, one row each.
type BarChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<WithKeyPoints<LogCoord<f64>>, RangedCoordf64>>;

/// A horizontal bar chart's frame: `rows` rows from the top, a log x
/// axis over `lo..hi` with a tick at each of `ticks` in range, described
/// by `x_desc` and labelled by `x_fmt`, a left margin `label_w` pixels
/// wide for the bars' names ([`bar_label`]).
fn bar_frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    label_w: u32,
    (lo, hi): (f64, f64),
    ticks: impl Iterator<Item = f64>,
    rows: f64,
    (x_desc, x_fmt): (&str, &dyn Fn(&f64) -> String),
) -> Result<BarChart<'a, 'b>, String> {
    let ticks: Vec<f64> = ticks.filter(|t| (lo..=hi).contains(t)).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(label_w)
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(ticks), 0f64..rows)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(x_desc)
        .x_label_formatter(x_fmt)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// `name` right-aligned in the left margin, level with the middle of the
/// row whose bottom is at `y` (`at` = (the axis's low end, y)).
fn bar_label(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &BarChart<'_, '_>,
    name: &str,
    (lo, y): (f64, f64),
    size: u32,
) -> Result<(), String> {
    let right = ("sans-serif", size).into_font().into_text_style(root).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    let (px, py) = chart.backend_coord(&(lo, y + 0.5));
    root.draw(&Text::new(name.to_owned(), (px - 8, py), right))
        .map_err(err)
}

/// Horizontal bars: each strategy's median round trip at 64 B (or the
/// ratio tables' size) as a multiple of the same-work copy floor of a round
/// trip (log scale), sorted by that multiple, best on top; `*` marks a
/// multiple against the run's floor-copy point because the floors beside
/// the strategy disagreed.
pub fn floor_bars(run: &RunRecord) -> Result<String, String> {
    let size = analysis::ratio_size(run).unwrap_or(64);
    let mut rows: Vec<(String, f64, f64, String)> = analysis::ratios(run, "pingpong", size)
        .into_iter()
        .filter(|r| r.point.transport != "floor-copy")
        .filter_map(|r| {
            let mark = if !r.floor_beside && !r.point.adjacent_floors.is_empty() {
                "*"
            } else {
                ""
            };
            Some((
                format!("{}{mark}", label(&r.point.transport, &r.point.wait)),
                r.vs_copy_floor?,
                key_figure(&r.point)?,
                figure_with_interval(&r.point),
            ))
        })
        .collect();
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut svg = String::new();
    let mut tips: Vec<(i32, i32, String)> = Vec::new();
    {
        let h = (90 + rows.len() as u32 * 26).max(240);
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let hi = rows.iter().map(|r| r.1).fold(2.0, f64::max) * 3.0;
        let lo = rows.iter().map(|r| r.1).fold(0.8, f64::min) * 0.9;
        let n = rows.len().max(1) as f64;
        let mut chart = bar_frame(
            &root,
            &format!(
                "Median round trip at {} as a multiple of the same-work copy floor (1× = floor-copy)",
                human_size(size)
            ),
            230,
            (lo, hi),
            // 1× to 9× in each decade.
            (-2..=3).flat_map(|e| (1..10).map(move |m| m as f64 * 10f64.powi(e))),
            n,
            (
                "multiple of the copy floor's round trip, measured beside each strategy (log scale; * = the run's floor)",
                &|v| format!("{v:.1}×"),
            ),
        )?;
        for (i, (name, mult, ns, tip)) in rows.iter().enumerate() {
            // Row i spans [n-1-i, n-i): best on top.
            let y = n - i as f64 - 1.0;
            bar_label(&root, &chart, name, (lo, y), 13)?;
            let (color, _, _) = style(i);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo, y + 0.18), (mult.max(lo * 1.01), y + 0.82)],
                    color.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} ({})", analysis::human_ratio(*mult), human_ns(*ns)),
                    (mult.max(lo * 1.01) * 1.08, y + 0.62),
                    ("sans-serif", 12),
                )))
                .map_err(err)?;
            let c = chart.backend_coord(&(*mult, y + 0.5));
            tips.push((
                c.0,
                c.1,
                format!(
                    "{name}: {} the copy floor; {tip}",
                    analysis::human_ratio(*mult)
                ),
            ));
        }
        if rows.is_empty() {
            root.draw(&Text::new(
                "no copy floor or pingpong points in this run".to_owned(),
                (40, h as i32 / 2),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(with_tips(svg, &tips))
}

/// The plots of the section "Under a steady load", drawn when the run has
/// open-loop points.
pub const STEADY_PLOTS: [(&str, &str); 2] = [
    (
        "steady.svg",
        "Latency against offered load: corrected p50, band to corrected p99; the thin line is \
         the uncorrected p99; hollow points fell behind (past the knee)",
    ),
    ("steady-cpu.svg", "CPU per message against offered load"),
];

/// One line per strategy of the hockey-stick plot: at each offered rate
/// sustained or not, the corrected p50 with a band up to the corrected
/// p99, and the uncorrected p99 faintly beside it. Each transport at the
/// wait with the highest knee, to keep the plot readable (the table has
/// every wait).
pub fn steady(run: &RunRecord) -> Result<String, String> {
    let series = steady_series(run, false, |p| {
        let l = p.latency_ns?;
        Some((l.p50 as f64, Some(l.p99 as f64)))
    });
    line_chart(
        &series,
        &Axes {
            title: "Open loop: latency from the intended send time",
            x_desc: "offered messages per second",
            y_desc: "one-way latency",
            x_fmt: &|v| human_rate(v),
            y_fmt: &|v| human_ns(v),
            hlines: Vec::new(),
            shade_from: None,
            ref_lines: Vec::new(),
            empty_note: "no open-loop points in this run",
        },
    )
}

/// Both peers' CPU per message against the offered rate: every wait of
/// the shared-memory ring (spinning burns a core whatever the rate; a
/// parking wait does not), each other transport at its best wait, and
/// one core's worth (1 s of CPU per second) for reference.
pub fn steady_cpu(run: &RunRecord) -> Result<String, String> {
    let series = steady_series(run, true, |p| Some((p.cpu_ns_per_msg?, None)));
    let mut rates: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let core: Vec<(f64, f64)> = rates.iter().map(|&r| (r, 1e9 / r)).collect();
    let ref_lines = if core.len() >= 2 {
        vec![("one core busy".to_owned(), core)]
    } else {
        Vec::new()
    };
    line_chart(
        &series,
        &Axes {
            title: "Open loop: CPU of both peers per message",
            x_desc: "offered messages per second",
            y_desc: "CPU time per message",
            x_fmt: &|v| human_rate(v),
            y_fmt: &|v| human_ns(v),
            hlines: Vec::new(),
            shade_from: None,
            ref_lines,
            empty_note: "no open-loop points in this run",
        },
    )
}

/// The series of the open-loop plots at the size most lines have: each
/// transport at the wait with the highest knee, or (`every_ring_wait`)
/// shm-ring at every wait; `y` picks the figure and band top.
fn steady_series(
    run: &RunRecord,
    every_ring_wait: bool,
    y: impl Fn(&crate::record::PointRecord) -> Option<(f64, Option<f64>)>,
) -> Vec<Series> {
    use super::steady;
    let mut lines = steady::lines(run);
    lines.retain(|l| l.is_channel());
    let Some(size) = lines.iter().map(|l| l.size).min() else {
        return Vec::new();
    };
    let at_size: Vec<&steady::Line> = lines.iter().filter(|l| l.size == size).collect();
    let mut chosen: Vec<&steady::Line> = Vec::new();
    for l in &at_size {
        if every_ring_wait && l.transport == "shm-ring" {
            chosen.push(l);
            continue;
        }
        match chosen.iter().position(|c| c.transport == l.transport) {
            None => chosen.push(l),
            Some(i) if l.knee().unwrap_or(0.0) > chosen[i].knee().unwrap_or(0.0) => chosen[i] = l,
            Some(_) => {}
        }
    }
    chosen
        .into_iter()
        .filter_map(|l| {
            let mut pts: Vec<(Pt, String)> = Vec::new();
            let mut faint = Vec::new();
            for p in &l.paced {
                let (Some(x), Some((v, top))) = (steady::offered(p), y(p)) else {
                    continue;
                };
                if let (Some(u), Some(_)) = (p.rate.latency_uncorrected_ns, top) {
                    faint.push((x, u.p99 as f64));
                }
                let tip = format!(
                    "{} at {}/s offered: {}",
                    l.label(),
                    analysis::human_rate(x).trim_end_matches("/s").trim_end(),
                    super::page::figure_text(p)
                );
                pts.push(((x, v, top, steady::past_knee(p)), tip));
            }
            pts.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
            faint.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!pts.is_empty()).then(|| {
                let (points, tips) = pts.into_iter().unzip();
                Series {
                    name: l.label(),
                    points,
                    tips,
                    faint,
                }
            })
        })
        .collect()
}

/// Every plot of a run: (file name, SVG); the open-loop ones only when
/// the run has open-loop points.
pub fn all(run: &RunRecord) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = vec![
        (PLOTS[0].0, latency(run)?),
        (PLOTS[1].0, throughput(run)?),
        (PLOTS[2].0, scaling(run)?),
        (PLOTS[3].0, spectrum(run)?),
        (PLOTS[4].0, floor_bars(run)?),
    ];
    if !super::steady::lines(run).is_empty() {
        out.push((STEADY_PLOTS[0].0, steady(run)?));
        out.push((STEADY_PLOTS[1].0, steady_cpu(run)?));
    }
    Ok(out)
}

/// Horizontal bars for `ipcbench compare --report`: each point that
/// changed beyond the noise, B's speedup over A (log scale, 1× = the
/// same), worst on top; regressions red, improvements green. A point that
/// fails in either run has no speedup and is left to the table.
pub fn compare_bars(c: &super::compare::Comparison) -> Result<String, String> {
    use super::compare::Change;
    let mut rows: Vec<(&str, f64, bool)> = c
        .rows
        .iter()
        .filter(|r| r.change != Change::Same)
        .filter_map(|r| Some((r.point.as_str(), r.speedup?, r.change == Change::Regressed)))
        .collect();
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut svg = String::new();
    let mut tips: Vec<(i32, i32, String)> = Vec::new();
    {
        let h = (90 + rows.len() as u32 * 24).max(240);
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let hi = rows.iter().map(|r| r.1).fold(1.5, f64::max) * 1.6;
        let lo = rows.iter().map(|r| r.1).fold(1.0 / 1.5, f64::min) / 1.6;
        let n = rows.len().max(1) as f64;
        let mut chart = bar_frame(
            &root,
            "B against A: the points that changed beyond the noise",
            330,
            (lo, hi),
            // Halvings and doublings.
            (-12..=12).map(|k| 2f64.powi(k)),
            n,
            (
                "speedup of B over A (log scale; > 1× faster, < 1× slower)",
                &|v| format!("{v:.2}×"),
            ),
        )?;
        for (i, (name, x, worse)) in rows.iter().enumerate() {
            let y = n - i as f64 - 1.0;
            bar_label(&root, &chart, name, (lo, y), 12)?;
            let color = if *worse {
                RGBColor(214, 39, 40)
            } else {
                RGBColor(44, 160, 44)
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x.min(1.0), y + 0.2), (x.max(1.0), y + 0.8)],
                    color.filled(),
                )))
                .map_err(err)?;
            let cc = chart.backend_coord(&(*x, y + 0.5));
            tips.push((
                cc.0,
                cc.1,
                format!(
                    "{name}: {x:.2}× ({})",
                    if *worse { "regressed" } else { "improved" }
                ),
            ));
        }
        chart
            .draw_series(LineSeries::new(
                [(1.0, 0.0), (1.0, n)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        if rows.is_empty() {
            root.draw(&Text::new(
                "no point changed beyond the noise".to_owned(),
                (40, h as i32 / 2),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(with_tips(svg, &tips))
}
