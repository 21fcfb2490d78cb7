//! The seed's forecaster, `LSTM(n_neurons)` over (n_seq, n_features) windows → Dense(n_pred_seq · n_features) →
//! Reshape((n_pred_seq, n_features)), MSE. Default data: the yearly sunspot numbers 1700–2008 that statsmodels
//! ships (exported by `scripts/setup` to `data/sunspots.csv`), 12 years in, the next year out, the last 20 % of
//! the windows (by time) for validation, min-max scaling fitted on the training years only.
//!
//! Prints the validation RMSE of the LSTM against the persistence baseline (the last given value repeated) and draws
//! forecasts against truth (`forecast.png` in the run). Measured (CPU, seed 42, 100 epochs): RMSE 0.105 for the
//! LSTM against 0.215 for persistence (−51 %), in scaled units.
//!
//! `--config examples/lstm_forecast/digit_rows.json` forecasts the next 3 rows of scikit-learn's handwritten digits
//! from the first 5 (RMSE 3.11 against 5.79 for persistence, pixel units 0..16, after 30 epochs).
//!
//! Run: `cargo run --release --example lstm_forecast`
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use plotters::coord::Shift;
use plotters::prelude::*;
use tch::{Kind, Tensor};
use tchzoo::config::RunConfig;
use tchzoo::plot::{line_panel, render_panels, Curve, Figure, TRAIN_COLOR, VAL_COLOR};
use tchzoo::run::{load_model, ModelSource};
use tchzoo::train::progress::Verbosity;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "examples/lstm_forecast/sunspots.json")]
    config: PathBuf,
    /// Another data spec (e.g. a `series:`), replacing the config's.
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value = "auto")]
    device: String,
}

const GREY: RGBColor = RGBColor(150, 150, 150);

/// Truth, the LSTM's forecast and persistence: one panel per sample, or one panel of a one-step series.
struct ForecastFigure {
    panels: Vec<(String, Vec<Curve>)>,
    x_desc: String,
}

impl Figure for ForecastFigure {
    fn draw_panel<DB: DrawingBackend>(&self, index: usize, area: &DrawingArea<DB, Shift>) -> tchzoo::Result<()> {
        let (title, curves) = &self.panels[index];
        line_panel(area, title, &self.x_desc, curves)
    }
}

fn points(values: &Tensor) -> Vec<(f64, f64)> {
    let v: Vec<f64> = Vec::try_from(values.to_kind(Kind::Double).reshape([-1])).unwrap_or_default();
    v.into_iter().enumerate().map(|(i, y)| (i as f64, y)).collect()
}

fn rmse(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).square().mean(Kind::Double).sqrt().double_value(&[])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = RunConfig::from_user_file(&args.config)?;
    config.device = args.device.clone();
    if let Some(d) = &args.data {
        config.data = d.clone();
    }
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    let dir = tchzoo::run::run_dir(&config);
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = tchzoo::run::train(&config, Verbosity::Silent, vec![])?;
    println!("{}", outcome.summary_line(&config));

    let loaded = load_model(&ModelSource { run: Some(outcome.dir.clone()), ..ModelSource::default() })?;
    let data = tchzoo::data::load(&config.data, config.seed)?;
    let Some(split) = config.validation_split else { bail!("the config needs a validation_split") };
    let (_, val) = data.split_validation(split)?;
    let (n_seq, n_features) = match loaded.input_shape.as_slice() {
        [t] => (*t, 1),
        [t, f] => (*t, *f),
        other => bail!("not a window shape: {other:?}"),
    };
    let n_pred = val.ys.size()[1] / n_features;
    let xs = val.xs.reshape([-1, n_seq, n_features]);
    // The seed's Reshape((n_pred_seq, n_features)).
    let forecast = loaded.trainer.predict(&xs, 256).reshape([-1, n_pred, n_features]);
    let truth = val.ys.reshape([-1, n_pred, n_features]);
    let persistence = xs.narrow(1, n_seq - 1, 1).repeat([1, n_pred, 1]);
    let digits = config.data.starts_with("digit_rows");
    let unit = if digits { 16.0 } else { 1.0 };
    let (model_rmse, base_rmse) = (unit * rmse(&forecast, &truth), unit * rmse(&persistence, &truth));
    let units = if digits { "pixel units 0..16" } else { "scaled units" };
    println!(
        "validation RMSE ({units}): LSTM {model_rmse:.3}, persistence {base_rmse:.3} ({:+.0} %)",
        100.0 * (model_rmse / base_rmse - 1.0)
    );

    let figure = if n_features == 1 && n_pred == 1 {
        let c = |label: &str, color, t: &Tensor| Curve::new(label, color, points(t));
        ForecastFigure {
            panels: vec![(
                format!("validation RMSE: LSTM {model_rmse:.3}, persistence {base_rmse:.3}"),
                vec![
                    c("truth", TRAIN_COLOR, &truth),
                    c("LSTM", VAL_COLOR, &forecast),
                    c("persistence", GREY, &persistence),
                ],
            )],
            x_desc: "validation step".into(),
        }
    } else {
        let panels = (0..4)
            .map(|i| {
                let c = |label: &str, color, t: &Tensor| Curve::new(label, color, points(&(t.get(i) * unit)));
                (
                    format!("validation sample {i}: the next {n_pred} steps"),
                    vec![
                        c("truth", TRAIN_COLOR, &truth),
                        c("LSTM", VAL_COLOR, &forecast),
                        c("persistence", GREY, &persistence),
                    ],
                )
            })
            .collect();
        let x_desc = if digits { "pixel of the forecast rows (row-major)" } else { "forecast value (step-major)" };
        ForecastFigure { panels, x_desc: x_desc.into() }
    };
    let png = outcome.dir.join("forecast.png");
    render_panels(&png, figure.panels.len(), 2, &figure)?;
    println!("wrote {}", png.display());
    Ok(())
}
