//! Training curves from a [`History`]: one panel per metric, training and validation on shared axes, with the best
//! epoch of the monitored value and the epoch early stopping fired marked; other runs may be overlaid.
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{line_panel_marked, render_panels, Curve, Figure, Marker, TRAIN_COLOR, VAL_COLOR};
use crate::error::{did_you_mean, Error, Result};
use crate::train::history::History;

/// Panels per row in the curves figure.
const COLUMNS: usize = 2;

const BEST_COLOR: RGBColor = RGBColor(44, 160, 44);
const STOP_COLOR: RGBColor = RGBColor(214, 39, 40);
/// Colours of overlaid runs (train solid colour, validation the same colour lighter).
const RUN_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// What to mark on the curves.
#[derive(Debug, Clone, Default)]
pub struct CurveMarks {
    /// The monitored value and whether larger is better: its best epoch gets a line.
    pub monitor: Option<(String, bool)>,
    /// The epoch (0-based) at which early stopping fired.
    pub stopped_epoch: Option<usize>,
}

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct CurveOptions {
    /// The panels (`loss`, `accuracy`, …); `None` = every metric of the history.
    pub metrics: Option<Vec<String>>,
    pub marks: CurveMarks,
}

/// Plots each metric of `history.metric_names()` (`accuracy`, `loss`, …) in its own panel titled with its name:
/// the training curve and, when the history has it, the `val_` curve, against the 1-based epoch. Writes a PNG or
/// an SVG by the extension of `path`.
pub fn plot_history(history: &History, path: &Path) -> Result<()> {
    plot_runs(&[("", history)], path, &CurveOptions::default())
}

/// Plots one run with marks, or overlays several runs (`(label, history)`), one panel per metric.
pub fn plot_runs(runs: &[(&str, &History)], path: &Path, options: &CurveOptions) -> Result<()> {
    super::Format::from_path(path)?;
    let Some((_, first)) = runs.first() else {
        return Err(Error::invalid(format!("plot {}: no runs to plot", path.display())));
    };
    let available: Vec<String> =
        first.metric_names().into_iter().filter(|n| first.get(n).is_some_and(|v| !v.is_empty())).collect();
    let names = match &options.metrics {
        None => available.clone(),
        Some(wanted) => {
            for w in wanted {
                // lr and epoch_time are not drawn by default, but may be asked for.
                if !available.contains(w) && first.get(w).is_none_or(|v| v.is_empty()) {
                    return Err(Error::config(format!(
                        "⟨metrics⟩ {w}: the history has no '{w}'{} (it has {})",
                        did_you_mean(w, available.iter().map(String::as_str)),
                        available.join(", ")
                    )));
                }
            }
            wanted.clone()
        }
    };
    if names.is_empty() {
        let what = if first.history.is_empty() { "no epochs" } else { "no metrics besides lr and epoch_time" };
        return Err(Error::invalid(format!("plot {}: the history has {what} to plot", path.display())));
    }
    let markers = if runs.len() == 1 { markers(first, &options.marks) } else { vec![] };
    render_panels(path, names.len(), COLUMNS.min(names.len()), &HistoryFigure { runs, names, markers })
}

fn markers(history: &History, marks: &CurveMarks) -> Vec<Marker> {
    let mut out = vec![];
    if let Some((monitor, maximize)) = &marks.monitor {
        if let Some(values) = history.get(monitor) {
            let best = values.iter().enumerate().filter(|(_, v)| v.is_finite()).reduce(|a, b| {
                if (*maximize && b.1 > a.1) || (!*maximize && b.1 < a.1) {
                    b
                } else {
                    a
                }
            });
            if let Some((i, v)) = best {
                let epoch = history.epoch.get(i).copied().unwrap_or(i) + 1;
                out.push(Marker {
                    x: epoch as f64,
                    label: format!("best {monitor} {v:.4} (epoch {epoch})"),
                    color: BEST_COLOR,
                });
            }
        }
    }
    if let Some(stopped) = marks.stopped_epoch {
        out.push(Marker {
            x: (stopped + 1) as f64,
            label: format!("early stopping (epoch {})", stopped + 1),
            color: STOP_COLOR,
        });
    }
    out
}

struct HistoryFigure<'a> {
    runs: &'a [(&'a str, &'a History)],
    names: Vec<String>,
    markers: Vec<Marker>,
}

/// The points of one series against the 1-based epoch. The epoch numbers are used when they line up with the
/// values (a resumed run starts past 1); otherwise values count from epoch 1.
fn points(history: &History, values: &[f64]) -> Vec<(f64, f64)> {
    let epochs = &history.epoch;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let epoch = if epochs.len() == values.len() { epochs[i] + 1 } else { i + 1 };
            (epoch as f64, v)
        })
        .collect()
}

fn lighter(c: RGBColor) -> RGBColor {
    let mix = |v: u8| (v as u16 + (255 - v as u16) / 2) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

impl Figure for HistoryFigure<'_> {
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let name = &self.names[index];
        let mut curves = vec![];
        let single = self.runs.len() == 1;
        for (i, (label, h)) in self.runs.iter().enumerate() {
            let (train_color, val_color) =
                if single { (TRAIN_COLOR, VAL_COLOR) } else { (RUN_COLORS[i % 6], lighter(RUN_COLORS[i % 6])) };
            let prefix = if single { String::new() } else { format!("{label} ") };
            if let Some(train) = h.get(name).filter(|v| !v.is_empty()) {
                curves.push(Curve::new(format!("{prefix}train"), train_color, points(h, train)));
            }
            if let Some(val) = h.get(&format!("val_{name}")).filter(|v| !v.is_empty()) {
                curves.push(Curve::new(format!("{prefix}validation"), val_color, points(h, val)));
            }
        }
        line_panel_marked(area, name, "epoch", &curves, &self.markers)
    }
}
