//! The learning-rate range test of Lightning 2.6's `Tuner.lr_find` (`lightning/pytorch/tuner/lr_finder.py`): train
//! from the current weights with a learning rate that grows exponentially from `min_lr` to `max_lr` over
//! `num_training` optimizer steps, record the loss smoothed as Lightning's `_LRCallback` does, stop when it
//! diverges, and suggest the learning rate at the steepest descent of the smoothed loss (`_LRFinder.suggestion`).
//! The weights, the optimizer's state and learning rate, the float16 loss scaler and the EMA are restored
//! afterwards, as Lightning restores its checkpoint.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{FitConfig, Trainer};
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::util::json::F64;

/// The range test's losses and suggestion, in `tune lr`'s folder and in a `--lr auto` run folder.
pub const JSON_FILE: &str = "lr_find.json";
/// Its plot.
pub const PLOT_FILE: &str = "lr_find.png";

/// `lr_find`'s arguments, with Lightning's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFinderConfig {
    pub min_lr: f64,
    pub max_lr: f64,
    /// Lightning's `num_training`: the optimizer steps from `min_lr` to `max_lr`.
    pub num_training: usize,
    /// Stop when the smoothed loss exceeds this many times the best one; `None` never stops early.
    pub early_stop_threshold: Option<f64>,
    /// The smoothing of `_LRCallback` (`beta`).
    pub beta: f64,
    /// `suggestion(skip_begin, skip_end)`.
    pub skip_begin: usize,
    pub skip_end: usize,
}

impl Default for LrFinderConfig {
    fn default() -> Self {
        LrFinderConfig {
            min_lr: 1e-8,
            max_lr: 1.0,
            num_training: 100,
            early_stop_threshold: Some(4.0),
            beta: 0.98,
            skip_begin: 10,
            skip_end: 1,
        }
    }
}

impl LrFinderConfig {
    /// One line per bad value, before any data is read.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = (self.min_lr, self.max_lr);
        if !(lo.is_finite() && lo > 0.0) {
            return Err(Error::config(format!(
                "⟨min_lr⟩ {lo}: give a finite learning rate > 0 (the schedule is exponential), e.g. 1e-8"
            )));
        }
        if !(hi.is_finite() && hi > 0.0) {
            return Err(Error::config(format!("⟨max_lr⟩ {hi}: give a finite learning rate > 0, e.g. 1")));
        }
        if lo >= hi {
            return Err(Error::config(format!("⟨min_lr⟩ {lo} is not below ⟨max_lr⟩ {hi}; give min < max")));
        }
        if self.num_training < 2 {
            return Err(Error::config(format!(
                "⟨num_steps⟩ {}: the range test needs at least 2 steps (Lightning's default is 100)",
                self.num_training
            )));
        }
        if let Some(t) = self.early_stop_threshold {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::config(format!(
                    "⟨early_stop_threshold⟩ {t}: give a finite number > 0 (Lightning's default is 4), or none"
                )));
            }
        }
        if !(0.0..1.0).contains(&self.beta) {
            return Err(Error::config(format!("lr finder smoothing beta {}: give a number in [0, 1)", self.beta)));
        }
        Ok(())
    }

    /// The learning rate of optimizer step `k` (0-based), as Lightning's `_ExponentialLR`: its constructor's step
    /// leaves `min_lr`, and after step `k` it sets `min_lr · (max_lr / min_lr)^((k + 1) / num_training)`, so the
    /// second step already uses r = 2/N and the last one `max_lr`.
    pub fn lr_at(&self, k: usize) -> f64 {
        if k == 0 {
            self.min_lr
        } else {
            let r = (k + 1) as f64 / self.num_training as f64;
            self.min_lr * (self.max_lr / self.min_lr).powf(r)
        }
    }
}

/// What a range test found (`lr_find.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LrFinderResult {
    pub min_lr: f64,
    pub max_lr: f64,
    pub num_training: usize,
    pub early_stop_threshold: Option<f64>,
    /// The learning rate of each recorded step.
    pub lrs: Vec<f64>,
    /// The smoothed loss after each recorded step (NaN and infinities as Python's `json` writes them).
    pub losses: Vec<F64>,
    /// The steepest descent's learning rate; `None` when fewer than 2 finite losses remain after the skips.
    pub suggestion: Option<f64>,
    /// Its index in `lrs`.
    pub suggestion_index: Option<usize>,
    /// The optimizer steps taken (fewer than `num_training` when the loss diverged).
    pub steps: usize,
    pub stopped_early: bool,
}

impl LrFinderResult {
    pub fn losses(&self) -> Vec<f64> {
        self.losses.iter().map(|l| l.0).collect()
    }

    /// "Learning-rate finder: suggested lr 1.2e-3 (…)", the line `tune lr` and `train --lr auto` print.
    pub fn summary_line(&self) -> String {
        let range = format!(
            "{} steps of {} from {:e} to {:e}{}",
            self.steps,
            self.num_training,
            self.min_lr,
            self.max_lr,
            if self.stopped_early { ", stopped early as the loss diverged" } else { "" }
        );
        match (self.suggestion, self.suggestion_index) {
            (Some(lr), Some(i)) => format!(
                "Learning-rate finder: suggested lr {lr:.4e} (the steepest descent of the smoothed loss, at recorded \
                 step {} of {}; {range})",
                i + 1,
                self.lrs.len()
            ),
            _ => format!(
                "Learning-rate finder: no suggestion ({} losses recorded, too few after skipping the first and last \
                 ones; {range})",
                self.losses.len()
            ),
        }
    }

    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = crate::util::json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::util::write_atomic(path, text.as_bytes())
    }

    pub fn load_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        crate::util::json::from_str(&text)
            .map_err(|e| Error::data(path.display(), format!("not an lr_find.json file: {e}")))
    }

    /// `lr_find.png` (or .svg): the smoothed loss against the learning rate on a log axis, the suggestion marked.
    pub fn plot(&self, path: &Path) -> Result<()> {
        crate::plot::render_panels(path, 1, 1, &LrFinderPlot(self))
    }
}

/// The range test on `train` with the batches, shuffles, augmentation, accumulation and batch limit of `fit`
/// (its epochs are ignored: the data repeats until `num_training` steps). The trainer's weights, optimizer state,
/// learning rate, loss scaler and EMA are as before when it returns, also after an error.
pub fn lr_find(
    trainer: &mut Trainer,
    train: &Dataset,
    fit: &FitConfig,
    config: &LrFinderConfig,
) -> Result<LrFinderResult> {
    config.validate()?;
    if fit.batch_size == 0 {
        return Err(Error::config("batch size must be at least 1"));
    }
    if fit.accumulate_grad_batches == 0 {
        return Err(Error::config("⟨accumulate_grad_batches⟩ 0: give at least 1 (1 = a step every batch)"));
    }
    if fit.distributed.is_some() {
        return Err(Error::config("the learning-rate finder runs in one process; leave out ⟨distributed⟩"));
    }
    trainer.check_fit(train, None, &[])?;
    let saved = Snapshot::take(trainer);
    let outcome = run(trainer, train, fit, config);
    saved.restore(trainer)?;
    outcome
}

fn run(trainer: &mut Trainer, train: &Dataset, fit: &FitConfig, config: &LrFinderConfig) -> Result<LrFinderResult> {
    let train = train.to_device(trainer.device());
    let loader = DataLoader::new(&train, fit.batch_size, fit.shuffle, fit.seed);
    let n_train = match fit.limit_train_batches {
        Some(l) => l.batches(loader.len(), "limit-train-batches")?,
        None => loader.len(),
    };
    if n_train == 0 {
        return Err(Error::data(&train.name, "no training batches for the learning-rate finder"));
    }
    let accumulate = fit.accumulate_grad_batches;
    let params = trainer.store.parameters();
    let (mut lrs, mut losses) = (vec![], vec![]);
    // `_LRCallback`'s state; `global_step` counts optimizer steps, as Lightning's `trainer.global_step`.
    let (mut avg_loss, mut best_loss) = (0.0f64, 0.0f64);
    let (mut global_step, mut stopped_early) = (0usize, false);
    trainer.optimizer.set_lr(config.lr_at(0));
    let mut epoch = 0;
    'epochs: while global_step < config.num_training {
        // As `fit`: dropout and augmentation draw from a generator seeded per epoch.
        tch::manual_seed(super::resume::epoch_seed(fit.seed, epoch));
        let mut batches = loader.epoch(epoch);
        for (batch, item) in batches.by_ref().take(n_train).enumerate() {
            let (xs, ys) = item?;
            let xs = match &fit.augment {
                Some(a) => tch::no_grad(|| a.apply(&xs)),
                None => xs,
            };
            // `_LRCallback` records at the last batch of an accumulation group only.
            let records = (batch + 1) % accumulate == 0;
            if records {
                lrs.push(trainer.optimizer.lr());
            }
            if batch % accumulate == 0 {
                trainer.optimizer.zero_grad()?;
            }
            let (loss, _) = trainer.backward(&xs, &ys, fit.aux_loss_weight, accumulate)?;
            if (batch + 1) % accumulate == 0 || batch + 1 == n_train {
                trainer.optimizer_step(&params, None)?;
                global_step += 1;
                // The scheduler's step after every optimizer step (Lightning's interval="step").
                trainer.optimizer.set_lr(config.lr_at(global_step));
            }
            if records {
                // The batch's loss as Lightning's closure returns it: divided by the accumulation.
                let current = if accumulate > 1 { &loss / accumulate as f64 } else { loss }.double_value(&[]);
                avg_loss = config.beta * avg_loss + (1.0 - config.beta) * current;
                let smoothed = avg_loss / (1.0 - config.beta.powf((global_step + 1) as f64));
                let diverged = config.early_stop_threshold.is_some_and(|t| global_step > 1 && smoothed > t * best_loss);
                if smoothed < best_loss || global_step == 1 {
                    best_loss = smoothed;
                }
                losses.push(smoothed);
                if diverged {
                    stopped_early = true;
                    break 'epochs;
                }
            }
            if global_step >= config.num_training {
                break 'epochs;
            }
            if super::resume::stop_requested() {
                return Err(Error::Interrupted("the learning-rate finder was stopped".into()));
            }
        }
        batches.report_skipped();
        epoch += 1;
    }
    let suggestion_index = suggestion_index(&lrs, &losses, config.skip_begin, config.skip_end);
    Ok(LrFinderResult {
        min_lr: config.min_lr,
        max_lr: config.max_lr,
        num_training: config.num_training,
        early_stop_threshold: config.early_stop_threshold,
        suggestion: suggestion_index.map(|i| lrs[i]),
        suggestion_index,
        lrs,
        losses: losses.into_iter().map(F64).collect(),
        steps: global_step,
        stopped_early,
    })
}

/// `_LRFinder.suggestion(skip_begin, skip_end)`: the index of the steepest negative gradient of the losses with
/// respect to the learning rates, both as float32 (Python's `torch.tensor` of the lists), over the entries left
/// after skipping `skip_begin` at the start and `skip_end` at the end and dropping non-finite losses; `None` when
/// fewer than 2 remain. The gradient is `torch.gradient(losses, spacing=[lrs])` (second-order central differences
/// on the uneven grid, first-order at the ends), operation by operation in float32 as ATen computes it, and the
/// minimum is `argmin`'s (the first NaN, else the first smallest).
pub fn suggestion_index(lrs: &[f64], losses: &[f64], skip_begin: usize, skip_end: usize) -> Option<usize> {
    let n = lrs.len().min(losses.len());
    // Python's `list[skip_begin:-skip_end]`; with skip_end = 0 that slice is empty.
    let end = if skip_end == 0 { 0 } else { n.saturating_sub(skip_end) };
    let kept: Vec<(usize, f32, f32)> = (skip_begin..end.max(skip_begin))
        .map(|i| (i, lrs[i] as f32, losses[i] as f32))
        .filter(|(_, _, l)| l.is_finite())
        .collect();
    if kept.len() < 2 {
        return None;
    }
    let x: Vec<f32> = kept.iter().map(|k| k.1).collect();
    let f: Vec<f32> = kept.iter().map(|k| k.2).collect();
    let gradient = gradient_f32(&f, &x);
    let mut best = 0;
    for (i, g) in gradient.iter().enumerate() {
        let b = gradient[best];
        if b.is_nan() {
            break;
        }
        if g.is_nan() || *g < b {
            best = i;
        }
    }
    Some(kept[best].0)
}

/// `--lr VALUE` into a config: a number, or `auto` (the range test picks it before training).
pub fn set_lr_flag(config: &mut crate::config::RunConfig, value: &str) -> Result<()> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("auto") {
        config.hyper.lr = None;
        config.lr_auto = true;
    } else {
        let lr = v
            .parse::<f64>()
            .map_err(|_| Error::config(format!("⟨lr⟩ '{value}': give a number, e.g. 0.001, or auto")))?;
        config.hyper.lr = Some(lr);
        config.lr_auto = false;
    }
    Ok(())
}

/// The batches a run's training would see, as the finder's `FitConfig`: batch size, shuffling, seed, augmentation
/// (`augment` resolved), accumulation and batch limits.
pub fn fit_config(run: &crate::config::Run) -> Result<FitConfig> {
    let config = &run.config;
    if config.fast_dev_run.is_some() {
        return Err(Error::config(
            "the learning-rate finder does not run with ⟨fast_dev_run⟩ (Lightning skips it there); give ⟨lr⟩ a \
             number, or leave out ⟨fast_dev_run⟩",
        ));
    }
    Ok(super::features::configure_fit(
        run,
        FitConfig {
            batch_size: config.batch_size,
            shuffle: config.shuffle,
            seed: config.seed,
            output: crate::report::Output::silent(),
            augment: run.augment.get(),
            ..FitConfig::default()
        },
    ))
}

/// `--lr auto`: the range test with Lightning's defaults on a prepared run (`augment` resolved); its suggestion
/// becomes the run's learning rate and the optimizer's.
pub fn auto_lr(run: &mut crate::config::Run, trainer: &mut Trainer, train: &Dataset) -> Result<LrFinderResult> {
    let fit = fit_config(run)?;
    let finder = LrFinderConfig::default();
    let result = lr_find(trainer, train, &fit, &finder)?;
    let lr = result.suggestion.ok_or_else(|| {
        Error::config(format!(
            "⟨lr⟩ auto: the learning-rate finder made no suggestion ({} loss{} recorded; it needs 2 finite ones after \
             skipping the first {} and the last {}); give ⟨lr⟩ a number",
            result.losses.len(),
            if result.losses.len() == 1 { "" } else { "es" },
            finder.skip_begin,
            finder.skip_end
        ))
    })?;
    run.set_lr(lr);
    trainer.optimizer.set_lr(lr);
    Ok(result)
}

/// `torch.gradient(f, spacing=[x])[0]` for 1-D float32 `f` and coordinates `x` (edge_order 1), with ATen's
/// operations in its order (`aten/src/ATen/native/ReduceOps.cpp`, `gradient_helper`).
fn gradient_f32(f: &[f32], x: &[f32]) -> Vec<f32> {
    let n = f.len();
    let dx: Vec<f32> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let mut g = Vec::with_capacity(n);
    g.push((f[1] - f[0]) / dx[0]);
    for i in 1..n - 1 {
        let (dx1, dx2) = (dx[i - 1], dx[i]);
        let a = -dx2 / (dx1 * (dx1 + dx2));
        let b = (dx2 - dx1) / (dx1 * dx2);
        let c = dx1 / (dx2 * (dx1 + dx2));
        g.push(a * f[i - 1] + b * f[i] + c * f[i + 1]);
    }
    g.push((f[n - 1] - f[n - 2]) / dx[n - 2]);
    g
}

/// What the range test changes and puts back.
struct Snapshot {
    weights: Vec<(String, Tensor)>,
    lr: f64,
    optimizer: Vec<Vec<(String, Tensor)>>,
    scaler: Option<crate::train::amp::ScalerState>,
    ema: Option<(Vec<(String, Tensor)>, u64)>,
}

impl Snapshot {
    fn take(trainer: &Trainer) -> Snapshot {
        let deep = |v: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
            tch::no_grad(|| v.into_iter().map(|(k, t)| (k, t.detach().copy())).collect())
        };
        let n = trainer.optimizer.params().len();
        Snapshot {
            weights: deep(trainer.store.state_dict()),
            lr: trainer.optimizer.lr(),
            optimizer: (0..n).map(|i| deep(trainer.optimizer.param_state(i))).collect(),
            scaler: trainer.scaler.as_ref().map(|s| s.state()),
            ema: trainer.ema.as_ref().map(|e| (deep(e.state_dict()), e.n_averaged)),
        }
    }

    fn restore(self, trainer: &mut Trainer) -> Result<()> {
        trainer.store.load_state_dict(&self.weights, true, "the weights before the lr finder")?;
        trainer.optimizer.set_lr(self.lr);
        for (i, mut state) in self.optimizer.into_iter().enumerate() {
            // A parameter without state had made no step: its step count goes back to 0 with it.
            if !state.iter().any(|(k, _)| k == "step") {
                state.push(("step".into(), Tensor::from(0f32)));
            }
            trainer.optimizer.set_param_state(i, state)?;
        }
        if let (Some(s), Some(saved)) = (trainer.scaler.as_mut(), &self.scaler) {
            s.load_state(saved);
        }
        if let (Some(e), Some((tensors, n))) = (trainer.ema.as_mut(), &self.ema) {
            e.load(tensors, *n)?;
        }
        Ok(())
    }
}

struct LrFinderPlot<'a>(&'a LrFinderResult);

impl crate::plot::Figure for LrFinderPlot<'_> {
    fn draw_panel<DB: plotters::prelude::DrawingBackend>(
        &self,
        _index: usize,
        area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()> {
        use plotters::prelude::*;
        let r = self.0;
        let font = crate::plot::FONT;
        let points: Vec<(f64, f64)> = r
            .lrs
            .iter()
            .zip(r.losses())
            .map(|(&x, y)| (x, y))
            .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
            .collect();
        let (x_lo, x_hi) = (r.min_lr.min(r.max_lr), r.max_lr.max(r.min_lr));
        let (mut y_lo, mut y_hi) =
            points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
        if !(y_lo.is_finite() && y_hi.is_finite()) {
            (y_lo, y_hi) = (0.0, 1.0);
        }
        if y_lo == y_hi {
            let d = (y_lo.abs() * 0.05).max(0.05);
            (y_lo, y_hi) = (y_lo - d, y_hi + d);
        } else {
            let d = (y_hi - y_lo) * 0.05;
            (y_lo, y_hi) = (y_lo - d, y_hi + d);
        }
        let title = match r.suggestion {
            Some(s) => format!("Learning-rate range test: suggested lr {s:.3e}"),
            None => "Learning-rate range test: no suggestion".to_string(),
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, (font, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("smoothed loss")
            .x_labels(10)
            .y_labels(8)
            .x_label_formatter(&|x: &f64| format!("{x:.0e}"))
            .label_style((font, 14))
            .axis_desc_style((font, 15))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()?;
        let color = crate::plot::TRAIN_COLOR;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label("smoothed loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2)));
        if let Some(i) = r.suggestion_index {
            let (x, y) = (r.lrs[i], r.losses[i].0);
            let red = RGBColor(214, 39, 40);
            chart
                .draw_series(DashedLineSeries::new(vec![(x, y_lo), (x, y_hi)], 6, 4, red.stroke_width(2)))?
                .label(format!("suggestion {x:.3e}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], red.stroke_width(2)));
            chart.draw_series(std::iter::once(Circle::new((x, y), 6, red.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((font, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    }
}
