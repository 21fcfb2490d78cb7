//! Activation functions beside their derivatives, one small panel each, like the figures of the notes.
//!
//! The derivative is autograd's (what training uses), not a formula: ReLU's shows the value 0 at x = 0 as a dot,
//! the step function's is flat 0. Jumps break the line instead of drawing a vertical stroke.
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{render_panels, Figure, FONT, TRAIN_COLOR, VAL_COLOR};
use crate::error::{Error, Result};
use crate::nn::Activation;

/// The functions drawn by default: the notes' list, in its order.
pub const DEFAULT: &[Activation] = &[
    Activation::Relu,
    Activation::Prelu,
    Activation::LeakyRelu,
    Activation::Elu,
    Activation::Selu,
    Activation::Gelu,
    Activation::Silu,
    Activation::Mish,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::HardSigmoid,
    Activation::Softplus,
    Activation::Softsign,
    Activation::Step,
    Activation::Softmax,
];

/// The x range of every panel.
pub const X_RANGE: (f64, f64) = (-4.0, 4.0);
/// Samples per curve; odd, so that x = 0 is one of them.
pub const SAMPLES: usize = 401;
/// Size of one panel; a function and its derivative take two side by side.
const PANEL: (u32, u32) = (320, 230);

/// `n` evenly spaced points from `lo` to `hi`, both included (x = 0 exactly when the range is symmetric and `n` odd).
pub fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let last = n.saturating_sub(1).max(1) as f64;
    (0..n).map(|i| lo + (hi - lo) * i as f64 / last).collect()
}

/// The values of `act` at `xs` and its derivative by autograd, in float64. Softmax is not elementwise: it is drawn
/// as the first output of softmax over `(x, 0)`, which is σ(x), and its derivative σ(x)(1 − σ(x)).
pub fn sample(act: Activation, xs: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    let x = tch::Tensor::from_slice(xs).set_requires_grad(true);
    let ys = crate::util::catch_torch(|| -> std::result::Result<_, tch::TchError> {
        let ys = match act {
            Activation::Softmax => act.apply(&tch::Tensor::stack(&[&x, &x.zeros_like()], 1)).select(1, 0),
            _ => act.apply(&x),
        };
        let grad = tch::Tensor::f_run_backward(&[ys.sum(tch::Kind::Double)], &[&x], false, false)?;
        Ok((Vec::<f64>::try_from(&ys.detach())?, Vec::<f64>::try_from(&grad[0])?))
    });
    match ys {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Error::invalid(format!("activation {act}: {e}"))),
    }
}

/// A panel title for `act`.
pub fn title(act: Activation) -> String {
    match act {
        Activation::Prelu => format!("PReLU (a = {})", Activation::PRELU_INIT),
        Activation::LeakyRelu => format!("LeakyReLU ({})", Activation::LEAKY_SLOPE),
        Activation::Step => "threshold step".to_string(),
        Activation::Softmax => "softmax(x, 0)₁".to_string(),
        Activation::HardSigmoid => "hard sigmoid".to_string(),
        a => a.torch_name().to_string(),
    }
}

/// Draws each of `acts` in a panel beside its derivative, three pairs to a row, to `path` (.png or .svg).
pub fn plot_activations(acts: &[Activation], path: &Path) -> Result<()> {
    super::Format::from_path(path)?;
    if acts.is_empty() {
        return Err(Error::invalid(format!("plot {}: no activations to draw", path.display())));
    }
    let xs = grid(X_RANGE.0, X_RANGE.1, SAMPLES);
    let curves = acts.iter().map(|&a| Ok((a, sample(a, &xs)?))).collect::<Result<Vec<_>>>()?;
    let figure = ActivationFigure { xs, curves };
    render_panels(path, 2 * acts.len(), 2 * acts.len().min(3), &figure)
}

/// An activation with its values and derivatives at the figure's x grid.
type Sampled = (Activation, (Vec<f64>, Vec<f64>));

struct ActivationFigure {
    xs: Vec<f64>,
    curves: Vec<Sampled>,
}

impl Figure for ActivationFigure {
    fn panel_size(&self) -> (u32, u32) {
        PANEL
    }
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (act, (ys, dys)) = &self.curves[index / 2];
        let derivative = index % 2 == 1;
        let (values, color, caption) =
            if derivative { (dys, VAL_COLOR, format!("d/dx {}", title(*act))) } else { (ys, TRAIN_COLOR, title(*act)) };
        small_panel(area, &caption, &self.xs, values, color)
    }
}

/// One curve on light axes through the origin; the line breaks at jumps, and the value at a jump at x = 0 is marked
/// with a dot (ReLU's derivative there is the documented choice 0).
fn small_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    xs: &[f64],
    ys: &[f64],
    color: RGBColor,
) -> Result<()> {
    let lo = ys.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min).min(0.0);
    let hi = ys.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max).max(0.0);
    // A jump of a fifth of the curve's own span breaks the line (not of the axis span: a flat curve gets ±0.6).
    let jump = 0.2 * (hi - lo);
    let (lo, hi) = if hi - lo < 0.2 { ((lo + hi) / 2.0 - 0.6, (lo + hi) / 2.0 + 0.6) } else { (lo, hi) };
    let pad = (hi - lo) * 0.08;
    let (y_lo, y_hi) = (lo - pad, hi + pad);
    let (x_lo, x_hi) = (xs[0], xs[xs.len() - 1]);

    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17))
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(38)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_labels(9)
        .y_labels(6)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            let s = format!("{y:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .label_style((FONT, 11))
        .bold_line_style(RGBColor(228, 228, 228))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()?;
    let axis = RGBColor(150, 150, 150).stroke_width(1);
    chart.draw_series(LineSeries::new([(x_lo, 0.0), (x_hi, 0.0)], axis))?;
    chart.draw_series(LineSeries::new([(0.0, y_lo), (0.0, y_hi)], axis))?;

    let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]];
    let mut jump_at_zero = false;
    for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
        if i > 0 && (y - ys[i - 1]).abs() > jump {
            runs.push(vec![]);
            jump_at_zero |= x == 0.0 || xs[i - 1] == 0.0;
        }
        if x.is_finite() && y.is_finite() {
            runs.last_mut().expect("one run").push((x, y));
        }
    }
    for run in &runs {
        chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
    }
    if jump_at_zero {
        if let Some(i) = xs.iter().position(|&x| x == 0.0) {
            chart.draw_series([Circle::new((0.0, ys[i]), 4, color.filled())])?;
        }
    }
    Ok(())
}
