//! Plots: one SVG per experiment, drawn with plotters' SVG backend.
//!
//! The SVG backend writes text as `<text>` elements and estimates its width without
//! reading any font, so drawing needs no font files and no system library; the viewer
//! renders the text with its own sans-serif font.
//!
//! Each experiment says what its plot shows in [`spec`]: horizontal bars (on a log scale,
//! since costs across models span orders of magnitude) or lines against a size, in one
//! or more panels. Every plot has a title, axes labelled with units, and a legend.

use std::io;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::Experiment;
use crate::figures::{format_value, Figure};

const FONT: &str = "sans-serif";

/// One bar: its label on the axis, the legend entry it belongs to (its colour) and its
/// value.
struct Bar {
    label: String,
    key: String,
    value: f64,
}

/// Horizontal bars on a log scale.
struct Bars {
    title: String,
    x_desc: String,
    unit: String,
    bars: Vec<Bar>,
}

/// One line of a line panel.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
    /// Whose colour it takes (lines of one subject share a colour).
    colour_of: String,
}

/// Lines against a size on a log x axis.
struct Lines {
    title: String,
    x_desc: String,
    y_desc: String,
    y_log: bool,
    lines: Vec<Line>,
    /// A line drawn in grey as a reference (ideal speedup), if any.
    reference: Option<Line>,
}

enum Panel {
    Bars(Bars),
    Lines(Lines),
}

/// A whole plot: a title and its panels, side by side.
struct Plot {
    title: String,
    panels: Vec<Panel>,
}

fn plot_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("drawing a plot: {e}"))
}

/// The colour of a subject: the same in every plot.
fn colour(name: &str) -> RGBColor {
    if let Some(c) = subject_colour(name) {
        return c;
    }
    const OTHERS: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    let h = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
    OTHERS[h % OTHERS.len()]
}

/// The colour of a subject the lab knows (its name, or its name followed by more words),
/// or `None` for anything else.
fn subject_colour(name: &str) -> Option<RGBColor> {
    const TABLE: [(&str, RGBColor); 9] = [
        ("spindle many-to-one", RGBColor(31, 119, 180)),
        ("spindle many-to-many", RGBColor(255, 127, 14)),
        ("spindle one-to-one", RGBColor(44, 160, 44)),
        ("std threads", RGBColor(214, 39, 40)),
        ("bare corosensei", RGBColor(148, 103, 189)),
        ("tokio current-thread", RGBColor(140, 86, 75)),
        ("tokio multi-thread", RGBColor(227, 119, 194)),
        ("page faults, one touch at a time", RGBColor(127, 127, 127)),
        ("handshake floor", RGBColor(127, 127, 127)),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, c)| *c)
}

/// Axis numbers: 1, 20, 500, 2k, 50k, 1M, 0.5.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A log axis's ends: whole powers of ten around the values.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = crate::bench::low_high(values.filter(|v| *v > 0.0 && v.is_finite()));
    if lo > hi {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// The measured figures of `experiment` whose metric starts with `metric`.
fn measured<'a>(figures: &'a [Figure], metric: &'a str) -> impl Iterator<Item = &'a Figure> {
    figures
        .iter()
        .filter(move |f| f.measured() && f.metric.starts_with(metric))
}

/// One bar per measured figure with `unit`, coloured and labelled by subject.
fn bars_by_unit(figures: &[Figure], unit: &str) -> Vec<Bar> {
    labelled_bars_by_unit(figures, unit, |f| f.subject.clone())
}

/// One bar per measured figure of `metric` (its start) in `unit` (not the ratios derived
/// from it), labelled by subject.
fn bars_of_metric(figures: &[Figure], metric: &str, unit: &str) -> Vec<Bar> {
    labelled_bars(measured(figures, metric).filter(|f| f.unit == unit), |f| {
        f.subject.clone()
    })
}

/// [`bars_by_unit`] with labels of the caller's choice (for a subject with two figures).
fn labelled_bars_by_unit(
    figures: &[Figure],
    unit: &str,
    label: impl Fn(&Figure) -> String,
) -> Vec<Bar> {
    labelled_bars(
        figures.iter().filter(|f| f.measured() && f.unit == unit),
        label,
    )
}

/// One bar per figure of `figures`, coloured by subject and labelled by `label`.
fn labelled_bars<'a>(
    figures: impl Iterator<Item = &'a Figure>,
    label: impl Fn(&Figure) -> String,
) -> Vec<Bar> {
    figures
        .map(|f| Bar {
            label: label(f),
            key: f.subject.clone(),
            value: f.value,
        })
        .collect()
}

/// Lines of `metric` against the figures' n, one per subject.
fn lines_by_subject(figures: &[Figure], metric: &str, dashed: bool, suffix: &str) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for f in measured(figures, metric) {
        let point = (f.n as f64, f.value);
        match lines.iter_mut().find(|l| l.colour_of == f.subject) {
            Some(l) => l.points.push(point),
            None => lines.push(Line {
                name: format!("{}{suffix}", f.subject),
                points: vec![point],
                dashed,
                colour_of: f.subject.clone(),
            }),
        }
    }
    for l in &mut lines {
        l.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// What the plot of experiment `e` shows, from its figures; `None` when there is nothing
/// to draw.
fn spec(e: Experiment, figures: &[Figure]) -> Option<Plot> {
    let bars = |title: &str, x_desc: &str, unit: &str, bars: Vec<Bar>| {
        Panel::Bars(Bars {
            title: title.into(),
            x_desc: x_desc.into(),
            unit: unit.into(),
            bars,
        })
    };
    // Bars of `metric` in `unit`, keyed by subject and labelled with what was measured
    // (the metric after its last ", ").
    let by_what = |metric: &str, unit: &str| -> Vec<Bar> {
        measured(figures, metric)
            .filter(|f| f.unit == unit)
            .map(|f| Bar {
                label: f
                    .metric
                    .rsplit_once(", ")
                    .map_or(f.metric.as_str(), |(_, what)| what)
                    .to_string(),
                key: f.subject.clone(),
                value: f.value,
            })
            .collect()
    };
    let (title, panels) = match e {
        Experiment::Switch => (
            "switch: the cost of one yield, per model",
            vec![bars(
                "lower is better",
                "time per yield (ns, log scale)",
                "ns",
                labelled_bars_by_unit(figures, "ns", |f| {
                    if f.metric == crate::bench::switch::TWO_IN_TURN_METRIC {
                        format!("{} (two in turn)", f.subject)
                    } else {
                        f.subject.clone()
                    }
                }),
            )],
        ),
        Experiment::Spawn => (
            "spawn: creating and joining a thread that does nothing",
            vec![bars(
                "lower is better",
                "time per spawn + join (ns, log scale)",
                "ns",
                bars_by_unit(figures, "ns"),
            )],
        ),
        Experiment::Pingpong => (
            "pingpong: a message's round trip over two channels",
            vec![bars(
                "lower is better",
                "time per round trip (ns, log scale)",
                "ns",
                bars_by_unit(figures, "ns"),
            )],
        ),
        Experiment::Memory => (
            "memory: threads parked at once, memory per thread",
            vec![bars(
                "resident is what the threads cost; reserved is address space only",
                "KiB per parked thread (log scale)",
                "KiB",
                figures
                    .iter()
                    .filter(|f| f.measured() && f.unit == "KiB")
                    .map(|f| Bar {
                        label: format!("{} (n = {})", f.subject, f.n),
                        key: f.metric.clone(),
                        value: f.value,
                    })
                    .collect(),
            )],
        ),
        Experiment::Skynet => {
            let most = figures.iter().map(|f| f.n).max().unwrap_or(0);
            (
                "skynet: a tree of short-lived threads, ten children each",
                vec![bars(
                    "time for the whole tree, lower is better",
                    "time per run (ms, log scale)",
                    "ms",
                    figures
                        .iter()
                        .filter(|f| f.measured() && f.unit == "ms")
                        .map(|f| Bar {
                            label: if f.n == most {
                                f.subject.clone()
                            } else {
                                format!("{} ({} leaves)", f.subject, f.n)
                            },
                            key: f.subject.clone(),
                            value: f.value,
                        })
                        .collect(),
                )],
            )
        }
        Experiment::Parallel => {
            // The speedup figures are "speedup, T threads over ...": T is x; only those
            // against the subject's own 1 thread (which is 1.0 at T = 1).
            let mut lines: Vec<Line> = Vec::new();
            for (f, threads) in measured(figures, "speedup, ")
                .filter(|f| f.metric.ends_with("its 1 thread"))
                .filter_map(|f| {
                    let t = f.metric.trim_start_matches("speedup, ").split(' ').next()?;
                    Some((f, t.parse::<f64>().ok()?))
                })
            {
                match lines.iter_mut().find(|l| l.colour_of == f.subject) {
                    Some(l) => l.points.push((threads, f.value)),
                    None => lines.push(Line {
                        name: f.subject.clone(),
                        points: vec![(1.0, 1.0), (threads, f.value)],
                        dashed: false,
                        colour_of: f.subject.clone(),
                    }),
                }
            }
            let most = lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.0))
                .fold(1.0, f64::max);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let ideal: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
                .into_iter()
                .filter(|&t| t <= most)
                .map(|t| (t, t.min(cores)))
                .collect();
            (
                "parallel: matrix product split over T threads",
                vec![Panel::Lines(Lines {
                    title: "speedup over the same model on 1 thread, higher is better".into(),
                    x_desc: "threads (log scale)".into(),
                    y_desc: "speedup (x)".into(),
                    y_log: false,
                    lines,
                    reference: Some(Line {
                        name: format!("ideal on {cores} cores"),
                        points: ideal,
                        dashed: true,
                        colour_of: String::new(),
                    }),
                })],
            )
        }
        Experiment::Blocking => (
            "blocking: a 1 ms ticker while another thread blocks in read(2)",
            vec![bars(
                "the ticker's longest gap against the time blocked; shorter gaps are better",
                "milliseconds (log scale)",
                "ms",
                figures
                    .iter()
                    .filter(|f| {
                        f.measured()
                            && (f.metric.starts_with("longest gap between ticks")
                                || f.metric.starts_with("time blocked"))
                            && !f
                                .metric
                                .starts_with(crate::bench::blocking_cure::CURE_METRIC)
                    })
                    .map(|f| Bar {
                        label: f.subject.clone(),
                        key: f.metric.clone(),
                        value: f.value,
                    })
                    .collect(),
            )],
        ),
        Experiment::Creation => {
            let panel = |metric: &str, title: &str, y_desc: &str| {
                Panel::Lines(Lines {
                    title: title.into(),
                    x_desc: "threads alive at once, N (log scale)".into(),
                    y_desc: y_desc.into(),
                    y_log: true,
                    lines: lines_by_subject(figures, metric, false, ""),
                    reference: None,
                })
            };
            (
                "creation: N threads created, all alive at once, then joined",
                vec![
                    panel(
                        crate::bench::creation::TIME_METRIC,
                        "time per thread",
                        "µs per thread (log scale)",
                    ),
                    panel(
                        crate::bench::creation::GROWTH_METRIC,
                        "resident memory per thread",
                        "KiB per thread, VmRSS growth (log scale)",
                    ),
                    panel(
                        crate::bench::creation::TASKS_METRIC,
                        "kernel threads in use",
                        "kernel threads (log scale)",
                    ),
                ],
            )
        }
        Experiment::Latency => {
            let mut lines = lines_by_subject(
                figures,
                crate::bench::latency::MEDIAN_METRIC,
                false,
                ", median",
            );
            lines.extend(lines_by_subject(
                figures,
                crate::bench::latency::MAX_METRIC,
                true,
                ", worst",
            ));
            (
                "latency: from runnable to running, beside N CPU-bound threads",
                vec![Panel::Lines(Lines {
                    title: "a probe thread's wake-to-run time; lower is better".into(),
                    x_desc: "CPU-bound threads calling checkpoint(), N (log scale)".into(),
                    y_desc: "wake-to-run latency (µs, log scale)".into(),
                    y_log: true,
                    lines,
                    reference: None,
                })],
            )
        }
        Experiment::Sync => {
            use crate::bench::sync::{
                CHANNEL_METRIC, CHANNEL_UNIT, CONTENTION_METRIC, MUTEX_METRIC,
            };
            // The contention's x axis says its size, as its metric does up to the first ", ".
            let contention = measured(figures, CONTENTION_METRIC)
                .next()
                .and_then(|f| f.metric.split_once(", "))
                .map_or(CONTENTION_METRIC, |(size, _)| size);
            (
                "sync: spindle's Mutex and channel against std, crossbeam-channel and tokio",
                vec![
                    bars(
                        "uncontended Mutex, lower is better",
                        "time per lock + unlock (ns, log scale)",
                        "ns",
                        by_what(MUTEX_METRIC, "ns"),
                    ),
                    bars(
                        "channel of capacity 128, higher is better",
                        "millions of messages per second (log scale)",
                        CHANNEL_UNIT,
                        by_what(CHANNEL_METRIC, CHANNEL_UNIT),
                    ),
                    bars(
                        "one Mutex, contended, lower is better",
                        &format!("{contention} (ms, log scale)"),
                        "ms",
                        by_what(CONTENTION_METRIC, "ms"),
                    ),
                ],
            )
        }
        Experiment::Accounting => {
            use crate::bench::accounting::{SHARE_METRIC, YIELD_METRIC};
            (
                "accounting: CPU time per green thread, sampled",
                vec![
                    bars(
                        "shares of three threads doing 1, 2 and 3 of 6 units",
                        "reported share of their CPU time (%, log scale)",
                        "%",
                        by_what(SHARE_METRIC, "%"),
                    ),
                    bars(
                        "a yield with accounting on and off, lower is better",
                        "time per yield (ns, log scale)",
                        "ns",
                        by_what(YIELD_METRIC, "ns"),
                    ),
                ],
            )
        }
        Experiment::Http => {
            use crate::bench::http::{CPU_METRIC, LATENCY_METRIC, RPS_METRIC};
            (
                "http: a keep-alive server loaded by wrk, 256 connections",
                vec![
                    bars(
                        "throughput, higher is better",
                        "requests per second (log scale)",
                        "req/s",
                        bars_of_metric(figures, RPS_METRIC, "req/s"),
                    ),
                    bars(
                        "latency percentiles, lower is better",
                        "latency (ms, log scale)",
                        "ms",
                        measured(figures, LATENCY_METRIC)
                            .map(|f| Bar {
                                label: format!(
                                    "{}, {}",
                                    f.subject,
                                    f.metric.split(", ").next().unwrap_or(&f.metric)
                                ),
                                key: f.subject.clone(),
                                value: f.value,
                            })
                            .collect(),
                    ),
                    bars(
                        "server CPU time per request, lower is better",
                        "CPU time per request (us, log scale)",
                        "us",
                        bars_of_metric(figures, CPU_METRIC, "us"),
                    ),
                ],
            )
        }
    };
    let panels: Vec<Panel> = panels
        .into_iter()
        .filter(|p| match p {
            Panel::Bars(b) => !b.bars.is_empty(),
            Panel::Lines(l) => !l.lines.is_empty(),
        })
        .collect();
    if panels.is_empty() {
        return None;
    }
    Some(Plot {
        title: title.into(),
        panels,
    })
}

/// Draws the plot of experiment `e` into `dir/NAME.svg`: its file name, or `None` when its
/// figures give nothing to draw.
pub fn write(e: Experiment, figures: &[Figure], dir: &Path) -> io::Result<Option<String>> {
    let Some(plot) = spec(e, figures) else {
        return Ok(None);
    };
    let file = format!("{}.svg", e.name());
    let path = dir.join(&file);
    let (width, height) = size(&plot);
    {
        let root = SVGBackend::new(&path, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let body = root
            .titled(&plot.title, (FONT, 22).into_font().style(FontStyle::Bold))
            .map_err(plot_error)?;
        let areas = body.split_evenly((1, plot.panels.len()));
        for (panel, area) in plot.panels.iter().zip(&areas) {
            match panel {
                Panel::Bars(b) => draw_bars(area, b)?,
                Panel::Lines(l) => {
                    // The top part of the plot is left empty for the legend.
                    let entries = l.lines.len() + usize::from(l.reference.is_some());
                    let room = 1.0 - (entries as f64 * 17.0 + 16.0) / (height as f64 - 170.0);
                    let ys = || {
                        l.lines
                            .iter()
                            .chain(&l.reference)
                            .flat_map(|l| l.points.iter().map(|p| p.1))
                    };
                    if l.y_log {
                        let (lo, hi) = log_bounds(ys());
                        let top = lo * (hi / lo).powf(1.0 / room.max(0.3));
                        draw_lines(area, l, (lo..top).log_scale())?
                    } else {
                        let hi = ys().fold(0.0, f64::max).max(1.0) * 1.05;
                        draw_lines(area, l, 0.0..hi / room.max(0.3))?
                    }
                }
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Some(file))
}

/// The size of the SVG in pixels.
fn size(plot: &Plot) -> (u32, u32) {
    let bars = plot
        .panels
        .iter()
        .map(|p| match p {
            Panel::Bars(b) => b.bars.len(),
            Panel::Lines(_) => 0,
        })
        .max()
        .unwrap_or(0) as u32;
    let height = (260 + 34 * bars).max(520);
    let width = match plot.panels.len() {
        1 => 1100,
        k => 620 * k as u32,
    };
    (width, height)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Horizontal bars on a log scale, the first bar at the top, each with its value written
/// beside it.
fn draw_bars(area: &Area, b: &Bars) -> io::Result<()> {
    let n = b.bars.len();
    let (lo, hi) = log_bounds(b.bars.iter().map(|b| b.value));
    // Room to the right of the longest bar for its value.
    let hi = hi * 4.0;
    let longest_label = b.bars.iter().map(|b| b.label.len()).max().unwrap_or(0);
    let label_width = (longest_label as u32 * 7 + 16).clamp(100, 560);
    let mut keys: Vec<&str> = Vec::new();
    for bar in &b.bars {
        if !keys.contains(&bar.key.as_str()) {
            keys.push(&bar.key);
        }
    }
    // Empty rows above the bars for the legend (an entry is about 0.6 of a row).
    let spare = (keys.len() * 2).div_ceil(3) + 1;
    let rows = n + spare;
    let row = |i: usize| (n - 1 - i) as i32;
    // A label repeated by the next bar (a group of bars) is written once, by the first.
    let labels: Vec<&str> = b
        .bars
        .iter()
        .enumerate()
        .map(|(i, bar)| {
            if i > 0 && b.bars[i - 1].label == bar.label {
                ""
            } else {
                bar.label.as_str()
            }
        })
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&b.title, (FONT, 16))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(label_width)
        .build_cartesian_2d((lo..hi).log_scale(), (0..rows as i32 - 1).into_segmented())
        .map_err(plot_error)?;
    // About one x label per 110 pixels (plotters' default of 10 in a full-width panel),
    // so that the labels of a narrow panel do not run into each other.
    let x_labels = (area.dim_in_pixel().0 / 110).max(4) as usize;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(x_labels)
        .y_labels(rows + 1)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (*i as usize) < n => {
                labels[n - 1 - *i as usize].to_string()
            }
            _ => String::new(),
        })
        .x_label_formatter(&|v| axis_number(*v))
        .x_desc(&b.x_desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(plot_error)?;
    // Bars of one key share a colour: the subject's, when a key names one (sync labels its
    // bars by what was measured and keys them by subject); otherwise the keys are metrics
    // and, with several of them, colours go by key order.
    let key_colour = |k: usize, key: &str| {
        let keys_are_subjects = keys.iter().any(|k| subject_colour(k).is_some())
            || b.bars.iter().any(|bar| bar.key == bar.label);
        if keys.len() > 1 && !keys_are_subjects {
            [
                RGBColor(31, 119, 180),
                RGBColor(255, 127, 14),
                RGBColor(44, 160, 44),
            ][k % 3]
        } else {
            colour(key)
        }
    };
    for (k, key) in keys.iter().enumerate() {
        let c = key_colour(k, key);
        chart
            .draw_series(
                b.bars
                    .iter()
                    .enumerate()
                    .filter(|(_, bar)| bar.key == *key)
                    .map(|(i, bar)| {
                        let mut r = Rectangle::new(
                            [
                                (lo, SegmentValue::Exact(row(i))),
                                (bar.value, SegmentValue::Exact(row(i) + 1)),
                            ],
                            c.filled(),
                        );
                        r.set_margin(5, 5, 0, 0);
                        r
                    }),
            )
            .map_err(plot_error)?
            .label(*key)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    let value_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(b.bars.iter().enumerate().map(|(i, bar)| {
            Text::new(
                format!("{} {}", format_value(bar.value), b.unit),
                (bar.value * 1.1, SegmentValue::CenterOf(row(i))),
                value_style.clone(),
            )
        }))
        .map_err(plot_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(plot_error)
}

/// Lines against a size on a log x axis (ticks at the sizes measured), y on `y_range`.
fn draw_lines<Y>(area: &Area, l: &Lines, y_range: Y) -> io::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut xs: Vec<f64> = l
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (x_lo, x_hi) = (
        xs.first().copied().unwrap_or(1.0),
        xs.last().copied().unwrap_or(10.0),
    );
    // Thin the ticks out when sizes crowd together on the log axis.
    let mut ticks: Vec<f64> = Vec::new();
    for &x in &xs {
        if ticks.last().is_none_or(|&t| x / t >= 1.9) {
            ticks.push(x);
        }
    }
    let x_range = ((x_lo / 1.3)..(x_hi * 1.3))
        .log_scale()
        .with_key_points(ticks);
    let mut chart = ChartBuilder::on(area)
        .caption(&l.title, (FONT, 16))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| axis_number(*v))
        .y_label_formatter(&|v| axis_number(*v))
        .x_desc(&l.x_desc)
        .y_desc(&l.y_desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(plot_error)?;
    let grey = RGBColor(120, 120, 120);
    for line in l.lines.iter().chain(&l.reference) {
        let c = if line.colour_of.is_empty() {
            grey
        } else {
            colour(&line.colour_of)
        };
        let style = c.stroke_width(2);
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(
                line.points.iter().copied(),
                8,
                5,
                style,
            ))
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))
        }
        .map_err(plot_error)?;
        let dashed = line.dashed;
        drawn.label(&line.name).legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 7, y)], style)
            } else {
                PathElement::new(vec![(x, y), (x + 20, y)], style)
            }
        });
        chart
            .draw_series(line.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(plot_error)
}
