//! Plots: training curves now; activations and embeddings draw through the same helpers.
//!
//! Every figure goes through [`render_panels`]: it picks PNG or SVG by the file extension, lays the panels out in a
//! grid, draws text with the embedded DejaVu Sans (a bare GPU machine has no system fonts), and writes the file
//! atomically. A figure implements [`Figure`]; a panel of curves is one call to [`line_panel`].
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

pub mod activations;
mod curves;
pub mod embeddings;

pub use curves::{plot_history, plot_runs, CurveMarks, CurveOptions};

/// Size in pixels of one panel; a figure of `rows x cols` panels is `cols * w` by `rows * h`.
pub const PANEL_SIZE: (u32, u32) = (560, 400);
/// Colour of training curves (matplotlib's tab:blue).
pub const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
/// Colour of validation curves (matplotlib's tab:orange).
pub const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
/// The font family every text uses; it resolves to the embedded font.
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font with plotters once; later calls return the first outcome.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("plot: the embedded font assets/fonts/DejaVuSans.ttf does not parse"))
    }
}

/// Output format, chosen by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    /// `.png` or `.svg` (any case); anything else is an error naming the extension.
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            Some(other) => Err(Error::invalid(format!(
                "plot {}: unsupported format '.{other}'; use a .png or .svg file name",
                path.display()
            ))),
            None => {
                Err(Error::invalid(format!("plot {}: no file extension; use a .png or .svg file name", path.display())))
            }
        }
    }
}

/// A figure made of panels. `draw_panel` is generic over the backend so one figure renders to PNG and SVG alike.
pub trait Figure {
    /// Draws panel `index` (0-based, row-major) into `area`, which is already filled white.
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> Result<()>;

    /// Size in pixels of one panel.
    fn panel_size(&self) -> (u32, u32) {
        PANEL_SIZE
    }
}

/// Plotters' drawing errors become one-line crate errors, so `?` works inside [`Figure::draw_panel`].
impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for Error {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Error::invalid(format!("plot: {e}"))
    }
}

/// Renders `n_panels` panels of `figure` in a grid of at most `cols` columns to `path` (.png or .svg), atomically.
pub fn render_panels<F: Figure>(path: &Path, n_panels: usize, cols: usize, figure: &F) -> Result<()> {
    let format = Format::from_path(path)?;
    if n_panels == 0 {
        return Err(Error::invalid(format!("plot {}: nothing to draw (0 panels)", path.display())));
    }
    ensure_font()?;
    let cols = cols.clamp(1, n_panels);
    let rows = n_panels.div_ceil(cols);
    let (w, h) = figure.panel_size();
    let size = (w.saturating_mul(cols as u32), h.saturating_mul(rows as u32));
    if size.0 == 0 || size.1 == 0 || u64::from(size.0) * u64::from(size.1) > 100_000_000 {
        return Err(Error::invalid(format!(
            "plot {}: a {}x{} pixel figure is out of range ({n_panels} panels of {w}x{h})",
            path.display(),
            size.0,
            size.1
        )));
    }
    let bytes = match format {
        Format::Png => {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                draw_grid(&root, n_panels, (rows, cols), figure)?;
                root.present()?;
            }
            encode_png(&rgb, size, path)?
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                draw_grid(&root, n_panels, (rows, cols), figure)?;
                root.present()?;
            }
            svg.into_bytes()
        }
    };
    crate::util::write_atomic(path, &bytes)
}

fn draw_grid<DB: DrawingBackend, F: Figure>(
    root: &DrawingArea<DB, Shift>,
    n_panels: usize,
    (rows, cols): (usize, usize),
    figure: &F,
) -> Result<()> {
    root.fill(&WHITE)?;
    for (index, area) in root.split_evenly((rows, cols)).iter().take(n_panels).enumerate() {
        figure.draw_panel(index, area)?;
    }
    Ok(())
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32), path: &Path) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::invalid(format!("plot {}: PNG encoding failed: {e}", path.display())))?;
    Ok(out)
}

/// One curve of a [`line_panel`]. Points with a non-finite coordinate are skipped and break the line there.
#[derive(Debug, Clone)]
pub struct Curve {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    pub fn new(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Curve { label: label.into(), color, points }
    }
}

/// A vertical line across a panel at `x`, with a legend entry (the best epoch, the epoch early stopping fired).
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    pub color: RGBColor,
}

/// Curves with this many points or fewer also get a dot per point.
const MAX_POINTS_WITH_MARKERS: usize = 40;

/// Draws `curves` on shared axes with a title, an x-axis caption and a legend. Whole-number x values (epochs, steps)
/// get whole-number ticks; a single x value or a flat curve still gets a readable range.
pub fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    curves: &[Curve],
) -> Result<()> {
    line_panel_marked(area, title, x_desc, curves, &[])
}

/// [`line_panel`] with vertical markers.
pub fn line_panel_marked<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    curves: &[Curve],
    markers: &[Marker],
) -> Result<()> {
    let finite = || curves.iter().flat_map(|c| c.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (x_range, y_range) = match (span(finite().map(|p| p.0)), span(finite().map(|p| p.1))) {
        (Some(xs), Some(ys)) => (xs, ys),
        _ => ((0.0, 1.0), (0.0, 1.0)),
    };
    let whole_x = finite().all(|(x, _)| x.fract() == 0.0);
    let (x_lo, x_hi) = if x_range.0 == x_range.1 { (x_range.0 - 1.0, x_range.1 + 1.0) } else { pad(x_range, 0.02) };
    let (y_lo, y_hi) = if y_range.0 == y_range.1 {
        let d = (y_range.0.abs() * 0.05).max(0.05);
        (y_range.0 - d, y_range.1 + d)
    } else {
        pad(y_range, 0.05)
    };
    let x_labels = if whole_x { ((x_hi - x_lo) as usize).saturating_add(1).clamp(2, 10) } else { 8 };

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    // Whole-number data labels only whole-number ticks (no "epoch 2.5").
    let x_fmt = |x: &f64| match whole_x {
        true if x.fract() != 0.0 => String::new(),
        true => format!("{x:.0}"),
        false => {
            let s = format!("{x:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;

    if finite().next().is_none() {
        let centre = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0);
        let style = TextStyle::from((FONT, 16).into_font())
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart.plotting_area().draw(&Text::new("no finite values", centre, style))?;
    }

    for curve in curves {
        let color = curve.color;
        let line = color.stroke_width(2);
        let mut runs = finite_runs(&curve.points);
        let n_points: usize = runs.iter().map(Vec::len).sum();
        if runs.is_empty() {
            runs.push(Vec::new()); // still draw once, for the legend entry
        }
        for (i, run) in runs.iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run.iter().copied(), line))?;
            if i == 0 {
                drawn
                    .label(curve.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2)));
            }
        }
        let dots = runs.iter().filter(|run| n_points <= MAX_POINTS_WITH_MARKERS || run.len() == 1).flatten();
        chart.draw_series(dots.map(|&p| Circle::new(p, 3, color.filled())))?;
    }

    for m in markers.iter().filter(|m| m.x.is_finite() && m.x >= x_lo && m.x <= x_hi) {
        let color = m.color;
        chart
            .draw_series(DashedLineSeries::new(vec![(m.x, y_lo), (m.x, y_hi)], 6, 4, color.stroke_width(2)))?
            .label(m.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2)));
    }

    // Keep the legend clear of where the curves end: rising curves (accuracy) end high, falling ones (loss) low.
    let end_high = curves
        .iter()
        .filter_map(|c| c.points.iter().rev().find(|(x, y)| x.is_finite() && y.is_finite()))
        .next()
        .is_some_and(|&(_, y)| y > (y_lo + y_hi) / 2.0);
    chart
        .configure_series_labels()
        .position(if end_high { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()?;
    Ok(())
}

/// Minimum and maximum of the values, or `None` for none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Widens a range by `frac` of its width on each side, unless that would overflow.
fn pad((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let d = (hi - lo) * frac;
    if (lo - d).is_finite() && (hi + d).is_finite() {
        (lo - d, hi + d)
    } else {
        (lo, hi)
    }
}

/// The maximal runs of consecutive points whose coordinates are both finite.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    points.split(|(x, y)| !(x.is_finite() && y.is_finite())).filter(|run| !run.is_empty()).map(<[_]>::to_vec).collect()
}
