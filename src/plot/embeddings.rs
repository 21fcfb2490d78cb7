//! Embeddings in 2-D, as the seed's "Embedding Books with Closest Neighbors": the vectors projected by PCA onto
//! their two main axes (scikit-learn's `PCA(2)`: centred, SVD, signs fixed so that each axis' largest loading is
//! positive), drawn as a labelled scatter with a query and its nearest neighbours highlighted.
//!
//! PCA rather than t-SNE or UMAP: no well-kept Rust crate serves those over tch tensors, and a linear projection
//! is deterministic and shows the main directions of the space. Cosine neighbours are computed in the full space,
//! so a neighbour can sit away from its query in the projection.
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tch::{Kind, Tensor};

use super::{render_panels, Figure, FONT};
use crate::error::{Error, Result};

const POINT: RGBColor = RGBColor(150, 150, 150);
const QUERY: RGBColor = RGBColor(214, 39, 40);
const NEIGHBOUR: RGBColor = RGBColor(31, 119, 180);
/// Above this many points only the highlighted ones are labelled.
const LABEL_ALL_UP_TO: usize = 120;

/// A table projected to 2-D.
#[derive(Debug, Clone)]
pub struct Projection {
    /// One point per row.
    pub points: Vec<(f64, f64)>,
    /// Each axis' share of the variance.
    pub variance: [f64; 2],
}

/// The rows of `table` [N, D] projected on their first two principal axes.
pub fn pca_2d(table: &Tensor) -> Result<Projection> {
    let size = table.size();
    if size.len() != 2 || size[0] < 2 {
        return Err(Error::invalid(format!("PCA needs a table of at least 2 rows, got shape {size:?}")));
    }
    let x = table.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let centred = &x - x.mean_dim(0, true, Kind::Double);
    let (_, s, v) = centred.f_svd(true, true)?;
    let k = v.size()[1].min(2);
    let mut axes = v.narrow(1, 0, k).transpose(0, 1);
    // svd_flip: the largest |loading| of each axis positive.
    let idx = axes.abs().argmax(1, true);
    let signs = axes.gather(1, &idx, false).sign();
    axes *= signs.where_self(&signs.ne(0.0), &signs.ones_like());
    let coords = centred.matmul(&axes.transpose(0, 1));
    let var = s.square();
    let total = var.sum(Kind::Double).double_value(&[]).max(1e-300);
    let ratio = |i: i64| if i < k { var.double_value(&[i]) / total } else { 0.0 };
    let cols: Vec<Vec<f64>> = (0..2)
        .map(|i| {
            if i < k {
                Vec::<f64>::try_from(coords.select(1, i)).unwrap_or_default()
            } else {
                vec![0.0; size[0] as usize]
            }
        })
        .collect();
    Ok(Projection {
        points: cols[0].iter().copied().zip(cols[1].iter().copied()).collect(),
        variance: [ratio(0), ratio(1)],
    })
}

/// A labelled scatter of projected embeddings.
#[derive(Debug, Clone)]
pub struct EmbeddingFigure {
    pub title: String,
    pub names: Vec<String>,
    pub points: Vec<(f64, f64)>,
    pub variance: [f64; 2],
    /// The query's row and its neighbours' rows.
    pub highlight: Option<(usize, Vec<usize>)>,
}

impl EmbeddingFigure {
    /// Projects `table` and names its rows; `highlight` = (query row, neighbour rows).
    pub fn new(title: &str, names: &[String], table: &Tensor, highlight: Option<(usize, Vec<usize>)>) -> Result<Self> {
        if names.len() as i64 != table.size()[0] {
            return Err(Error::invalid(format!("{} names for {} vectors", names.len(), table.size()[0])));
        }
        let Projection { points, variance } = pca_2d(table)?;
        if let Some((q, ns)) = &highlight {
            if ns.iter().chain([q]).any(|&i| i >= names.len()) {
                return Err(Error::invalid("a highlighted row is outside the table"));
            }
        }
        Ok(EmbeddingFigure { title: title.to_string(), names: names.to_vec(), points, variance, highlight })
    }
}

impl Figure for EmbeddingFigure {
    fn panel_size(&self) -> (u32, u32) {
        (1000, 800)
    }

    fn draw_panel<DB: DrawingBackend>(&self, _index: usize, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let span = |f: fn(&(f64, f64)) -> f64| {
            let (lo, hi) =
                self.points.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let pad = ((hi - lo) * 0.08).max(1e-6);
            (lo - pad)..(hi + pad)
        };
        let (xs, ys) = (span(|p| p.0), span(|p| p.1));
        let (x_tick, y_tick) = (tick_label(xs.end - xs.start), tick_label(ys.end - ys.start));
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_label_formatter(&x_tick)
            .y_label_formatter(&y_tick)
            .x_desc(format!("PC1 ({:.0}% of the variance)", 100.0 * self.variance[0]))
            .y_desc(format!("PC2 ({:.0}%)", 100.0 * self.variance[1]))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .bold_line_style(RGBColor(230, 230, 230))
            .light_line_style(RGBColor(246, 246, 246))
            .draw()?;
        let (query, neighbours) = match &self.highlight {
            Some((q, ns)) => (Some(*q), ns.clone()),
            None => (None, vec![]),
        };
        let label_all = self.points.len() <= LABEL_ALL_UP_TO;
        let plain = (0..self.points.len()).filter(|i| Some(*i) != query && !neighbours.contains(i));
        chart.draw_series(plain.clone().map(|i| Circle::new(self.points[i], 3, POINT.filled())))?;
        let small: TextStyle<'static> = TextStyle::from((FONT, 11).into_font()).color(&RGBColor(110, 110, 110));
        // Labels sit a few pixels up and right of their point.
        let label = |i: usize, style: TextStyle<'static>| {
            EmptyElement::at(self.points[i]) + Text::new(self.names[i].clone(), (5, -4), style)
        };
        if label_all {
            chart.draw_series(plain.map(|i| label(i, small.clone())))?;
        }
        let bold = |c: &'static RGBColor| {
            TextStyle::from((FONT, 15).into_font()).color(c).pos(Pos::new(HPos::Left, VPos::Bottom))
        };
        if !neighbours.is_empty() {
            chart
                .draw_series(neighbours.iter().map(|&i| Circle::new(self.points[i], 6, NEIGHBOUR.filled())))?
                .label("nearest by cosine similarity")
                .legend(|(x, y)| Circle::new((x + 10, y), 6, NEIGHBOUR.filled()));
            chart.draw_series(neighbours.iter().map(|&i| label(i, bold(&NEIGHBOUR))))?;
        }
        if let Some(q) = query {
            chart
                .draw_series([Circle::new(self.points[q], 8, QUERY.filled())])?
                .label(format!("query: {}", self.names[q]))
                .legend(|(x, y)| Circle::new((x + 10, y), 7, QUERY.filled()));
            chart.draw_series([label(q, bold(&QUERY))])?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()?;
        }
        Ok(())
    }
}

/// Writes the figure to `path` (.png or .svg).
pub fn plot_embeddings(figure: &EmbeddingFigure, path: &Path) -> Result<()> {
    render_panels(path, 1, 1, figure)
}

/// An axis label with as many decimals as ticks over `span` need (about ten ticks), and never "-0.0": a tick a
/// rounding error below zero reads 0.
fn tick_label(span: f64) -> impl Fn(&f64) -> String {
    let decimals = if span > 0.0 { (-(span / 10.0).log10().floor()).max(0.0) as usize } else { 2 };
    move |v: &f64| {
        let text = format!("{v:.decimals$}");
        match text.strip_prefix('-') {
            Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tick_tests {
    #[test]
    fn ticks_have_the_decimals_of_their_span_and_no_negative_zero() {
        let t = super::tick_label(0.25);
        assert_eq!((t(&-0.0000001), t(&0.05), t(&-0.1)), ("0.00".into(), "0.05".into(), "-0.10".into()));
        assert_eq!(super::tick_label(200.0)(&-0.3), "0");
    }
}
