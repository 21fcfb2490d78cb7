//! Training curves from a [`History`]: one panel per metric, training and validation on shared axes.
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{line_panel, render_panels, Curve, Figure, TRAIN_COLOR, VAL_COLOR};
use crate::error::{Error, Result};
use crate::train::history::History;

/// Panels per row in the curves figure.
const COLUMNS: usize = 2;

/// Plots each metric of `history.metric_names()` (`accuracy`, `loss`, …) in its own panel titled with its name:
/// the training curve and, when the history has it, the `val_` curve, against the 1-based epoch. Writes a PNG or
/// an SVG by the extension of `path`.
pub fn plot_history(history: &History, path: &Path) -> Result<()> {
    super::Format::from_path(path)?;
    let names: Vec<String> =
        history.metric_names().into_iter().filter(|n| history.get(n).is_some_and(|v| !v.is_empty())).collect();
    if names.is_empty() {
        let what = if history.history.is_empty() { "no epochs" } else { "no metrics besides lr and epoch_time" };
        return Err(Error::invalid(format!("plot {}: the history has {what} to plot", path.display())));
    }
    render_panels(path, names.len(), COLUMNS, &HistoryFigure { history, names })
}

struct HistoryFigure<'a> {
    history: &'a History,
    names: Vec<String>,
}

impl HistoryFigure<'_> {
    /// The points of one series against the 1-based epoch. The epoch numbers are used when they line up with the
    /// values (a resumed run starts past 1); otherwise values count from epoch 1.
    fn points(&self, values: &[f64]) -> Vec<(f64, f64)> {
        let epochs = &self.history.epoch;
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let epoch = if epochs.len() == values.len() { epochs[i] + 1 } else { i + 1 };
                (epoch as f64, v)
            })
            .collect()
    }
}

impl Figure for HistoryFigure<'_> {
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let name = &self.names[index];
        let mut curves = vec![Curve::new("train", TRAIN_COLOR, self.points(self.history.get(name).unwrap_or(&[])))];
        if let Some(val) = self.history.get(&format!("val_{name}")).filter(|v| !v.is_empty()) {
            curves.push(Curve::new("validation", VAL_COLOR, self.points(val)));
        }
        line_panel(area, name, "epoch", &curves)
    }
}
