//! Training-curve plots: PNG and SVG output, odd values, and the errors a user can hit.
use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use tchzoo::plot::{self, Curve, Figure, PANEL_SIZE, TRAIN_COLOR, VAL_COLOR};
use tchzoo::train::history::History;

fn history_of(columns: &[(&str, &[f64])]) -> History {
    let n = columns.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let mut history = History::default();
    for epoch in 0..n {
        let logs: BTreeMap<String, f64> =
            columns.iter().filter_map(|(k, v)| v.get(epoch).map(|x| (k.to_string(), *x))).collect();
        history.push(epoch, &logs);
    }
    history
}

/// Five epochs of a run that learns: loss falls, accuracy rises, with validation, lr and epoch_time.
fn five_epochs() -> History {
    history_of(&[
        ("loss", &[2.3, 1.4, 0.9, 0.6, 0.45]),
        ("val_loss", &[2.1, 1.5, 1.1, 0.9, 0.85]),
        ("accuracy", &[0.21, 0.52, 0.71, 0.82, 0.88]),
        ("val_accuracy", &[0.25, 0.5, 0.66, 0.74, 0.77]),
        ("lr", &[0.1, 0.1, 0.05, 0.05, 0.01]),
        ("epoch_time", &[1.2, 1.1, 1.1, 1.0, 1.0]),
    ])
}

fn count_color(img: &image::RgbImage, c: RGBColor) -> usize {
    img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
}

/// Whether the SVG has a `<text>` element reading exactly `text` (plotters puts it on its own line).
fn svg_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

fn only_file(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect()
}

#[test]
fn png_has_one_panel_per_metric_with_both_curves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot::plot_history(&five_epochs(), &path).unwrap();

    let img = image::open(&path).unwrap().to_rgb8();
    // Two metrics (accuracy, loss; not lr or epoch_time) side by side in one row.
    assert_eq!(img.dimensions(), (2 * PANEL_SIZE.0, PANEL_SIZE.1));
    let first = *img.get_pixel(0, 0);
    assert!(img.pixels().any(|p| *p != first), "the image is a single colour");
    let train = count_color(&img, TRAIN_COLOR);
    let val = count_color(&img, VAL_COLOR);
    assert!(train > 200 && val > 200, "curve pixels: train {train}, validation {val}");
    // Both panels carry both curves.
    let half = |x0: u32| image::imageops::crop_imm(&img, x0, 0, PANEL_SIZE.0, PANEL_SIZE.1).to_image();
    for x0 in [0, PANEL_SIZE.0] {
        let panel = half(x0);
        assert!(count_color(&panel, TRAIN_COLOR) > 100 && count_color(&panel, VAL_COLOR) > 100, "panel at x={x0}");
    }
    // Written through a temporary sibling that is gone afterwards.
    assert_eq!(only_file(dir.path()), vec!["curves.png".to_string()]);
}

#[test]
fn svg_has_titles_legend_and_axis_caption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.svg");
    plot::plot_history(&five_epochs(), &path).unwrap();

    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for text in ["loss", "accuracy", "train", "validation", "epoch"] {
        assert!(svg_text(&svg, text), "the SVG lacks the text {text}");
    }
    for text in ["lr", "epoch_time", "val_loss"] {
        assert!(!svg_text(&svg, text), "the SVG has a panel {text}");
    }
    assert_eq!(only_file(dir.path()), vec!["curves.svg".to_string()]);
}

#[test]
fn grid_wraps_after_two_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.png");
    let h = history_of(&[("loss", &[1.0, 0.5]), ("accuracy", &[0.5, 0.7]), ("mse", &[0.3, 0.2])]);
    plot::plot_history(&h, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (2 * PANEL_SIZE.0, 2 * PANEL_SIZE.1));
}

#[test]
fn one_epoch_and_non_finite_values_still_plot() {
    let dir = tempfile::tempdir().unwrap();
    let one = history_of(&[("loss", &[0.7]), ("val_loss", &[0.8])]);
    let path = dir.path().join("one.png");
    plot::plot_history(&one, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), PANEL_SIZE);
    assert!(count_color(&img, TRAIN_COLOR) > 10, "the single point is drawn");

    let odd = history_of(&[
        ("loss", &[1.0, f64::NAN, 0.5, f64::INFINITY, 0.3, 0.2]),
        ("val_loss", &[f64::NAN; 6]),
        ("accuracy", &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
    ]);
    for name in ["odd.png", "odd.svg"] {
        let path = dir.path().join(name);
        plot::plot_history(&odd, &path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{name}");
    }
    let img = image::open(dir.path().join("odd.png")).unwrap().to_rgb8();
    assert!(count_color(&img, TRAIN_COLOR) > 100);
}

#[test]
fn training_only_history_plots_without_validation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.svg");
    plot::plot_history(&history_of(&[("loss", &[1.0, 0.8, 0.7])]), &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg_text(&svg, "train") && !svg_text(&svg, "validation"));
}

#[test]
fn extension_picks_the_format_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("CURVES.PNG");
    plot::plot_history(&five_epochs(), &upper).unwrap();
    assert!(image::open(&upper).is_ok());

    for (name, needle) in [("curves.jpg", ".jpg"), ("curves", "no file extension")] {
        let path = dir.path().join(name);
        let err = plot::plot_history(&five_epochs(), &path).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains(".png") && !err.contains('\n'), "{err}");
        assert!(!path.exists());
    }
}

#[test]
fn empty_history_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.png");
    let err = plot::plot_history(&History::default(), &path).unwrap_err().to_string();
    assert!(err.contains("no epochs"), "{err}");
    let bookkeeping = history_of(&[("lr", &[0.1]), ("epoch_time", &[1.0])]);
    let err = plot::plot_history(&bookkeeping, &path).unwrap_err().to_string();
    assert!(err.contains("no metrics"), "{err}");
    assert!(!path.exists());
}

/// A figure outside this crate's own: three panels, one per power of x.
struct Powers;

impl Figure for Powers {
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> tchzoo::Result<()> {
        let points = (0..20).map(|i| (i as f64 / 10.0, (i as f64 / 10.0).powi(index as i32 + 1))).collect();
        plot::line_panel(area, &format!("x^{}", index + 1), "x", &[Curve::new("power", RGBColor(200, 0, 0), points)])
    }

    fn panel_size(&self) -> (u32, u32) {
        (300, 200)
    }
}

#[test]
fn render_panels_lays_out_any_figure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("powers.png");
    plot::render_panels(&path, 3, 2, &Powers).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (600, 400));
    assert!(count_color(&img, RGBColor(200, 0, 0)) > 100);

    let svg = dir.path().join("powers.svg");
    plot::render_panels(&svg, 3, 5, &Powers).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains(r#"width="900""#) && svg_text(&text, "x^3"), "{}", &text[..200]);

    assert!(plot::render_panels(&dir.path().join("none.png"), 0, 2, &Powers).is_err());
}
