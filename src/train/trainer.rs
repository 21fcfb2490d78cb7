//! The trainer: Keras' `fit`, `evaluate` and `predict` over a model, its store and one of our optimizers.
use std::collections::BTreeMap;
use std::time::Instant;

use tch::{Device, Tensor};

use super::amp::{GradScaler, Precision};
use super::callbacks::{Callback, CallbackContext, Logs, StepInfo};
use super::features::{Ema, GradClip, Limit, NormSum};
use super::history::History;
use super::metrics::{Accumulator, Loss, Metric};
use super::progress::{Progress, Verbosity};
use super::resume;
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::nn::VarStore;
use crate::optim::Optimizer;

/// Keras' `fit` arguments.
#[derive(Debug, Clone)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    /// The epoch to start at (0-based), to continue a run.
    pub initial_epoch: usize,
    /// Seeds the per-epoch shuffles.
    pub seed: u64,
    /// The progress bar's mode and where the epoch lines and the callbacks' lines go.
    pub output: crate::report::Output,
    /// Augmentation of training images (random affine, or crop and flip), drawn per sample each epoch.
    pub augment: Option<crate::data::augment::Augment>,
    /// The run folder, which writes the resume state after every epoch; `None` = nowhere.
    pub run_dir: Option<super::run_dir::RunDir>,
    /// The weight of each auxiliary classifier's loss for models that have them (GoogLeNet, Inception v3; see
    /// [`Model::aux_outputs_t`]): 0.3, as the GoogLeNet paper.
    pub aux_loss_weight: f64,
    /// Data-parallel training over this process group (see [`crate::dist`]): this rank's shard of every epoch,
    /// gradients averaged over the ranks, metrics summed over them, files written by rank 0 only.
    pub distributed: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
    /// With `distributed`: after every step, check that every rank holds the same parameters (one all-reduce of
    /// them a step), and stop with an error naming the first that differs.
    pub check_replicas: bool,
    /// Replay each full training batch's step from a CUDA graph (see [`crate::train::cuda_graph`]); checked by
    /// `cuda_graph::check_supported` when the run is set up.
    pub cuda_graph: bool,
    // Lightning's Trainer arguments (see `features`).
    /// One optimizer step every K batches, the loss divided by K; a final partial group is stepped at the epoch's end.
    pub accumulate_grad_batches: usize,
    /// The training batches of each epoch: a number or a fraction of the loader's; `None` = all.
    pub limit_train_batches: Option<Limit>,
    /// The validation batches of each evaluation; `Batches(0)` skips validation.
    pub limit_val_batches: Option<Limit>,
    /// Stop after the batch during which this much time has passed since `fit` began (the epoch is then logged
    /// and validated as far as it went).
    pub max_time: Option<std::time::Duration>,
    /// Batch-level MixUp / CutMix (`--mixup-alpha`, `--cutmix-alpha`): the training batches' images and targets
    /// mixed, the loss taken against the probability targets.
    pub mix: Option<crate::data::mix::BatchMix>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            initial_epoch: 0,
            seed: 0,
            output: Verbosity::Auto.into(),
            augment: None,
            run_dir: None,
            aux_loss_weight: 0.3,
            distributed: None,
            check_replicas: false,
            cuda_graph: false,
            accumulate_grad_batches: 1,
            limit_train_batches: None,
            limit_val_batches: None,
            max_time: None,
            mix: None,
        }
    }
}

/// The loss `fit` minimises on one batch, and the main logits (for the metrics): the loss of the model's training
/// output, plus `aux_weight` × the loss of each auxiliary classifier for models that have them
/// ([`Model::aux_outputs_t`]).
pub fn training_loss(model: &dyn Model, loss: Loss, xs: &Tensor, ys: &Tensor, aux_weight: f64) -> (Tensor, Tensor) {
    training_loss_smoothed(model, loss, xs, ys, aux_weight, 0.0)
}

/// As [`training_loss`], with cross-entropy's label smoothing (`nn.CrossEntropyLoss(label_smoothing=...)`).
pub fn training_loss_smoothed(
    model: &dyn Model,
    loss: Loss,
    xs: &Tensor,
    ys: &Tensor,
    aux_weight: f64,
    smoothing: f64,
) -> (Tensor, Tensor) {
    match model.aux_outputs_t(xs) {
        None => {
            let logits = model.forward_t(xs, true);
            (criterion(loss, &logits, ys, smoothing), logits)
        }
        Some((logits, aux)) => {
            let main = criterion(loss, &logits, ys, smoothing);
            (aux.iter().fold(main, |total, a| total + criterion(loss, a, ys, smoothing) * aux_weight), logits)
        }
    }
}

/// The loss of a batch, with label smoothing for cross-entropy; probability targets [N, K] (MixUp, CutMix) take
/// cross-entropy's probability form.
fn criterion(loss: Loss, logits: &Tensor, ys: &Tensor, smoothing: f64) -> Tensor {
    match loss {
        Loss::CrossEntropy if smoothing > 0.0 || ys.is_floating_point() => {
            smoothed_cross_entropy(logits, ys, smoothing)
        }
        _ => loss.compute(logits, ys),
    }
}

/// `nn.CrossEntropyLoss(label_smoothing=smoothing)` of logits [N, K] and class labels [N] or probability targets
/// [N, K], mean over the batch.
pub fn smoothed_cross_entropy(logits: &Tensor, ys: &Tensor, smoothing: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(ys, None, tch::Reduction::Mean, -100, smoothing)
}

pub struct Trainer {
    pub model: Box<dyn Model>,
    pub store: VarStore,
    pub optimizer: Optimizer,
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    /// Autocast of the forward passes (training and evaluation); see [`Trainer::set_precision`].
    pub precision: Precision,
    /// float16's loss scaler.
    pub scaler: Option<GradScaler>,
    /// Inputs (and, from `set_channels_last`, 4-D weights) in channels-last memory format.
    pub channels_last: bool,
    /// Cross-entropy's label smoothing (training and evaluation loss, as torchvision's reference criterion).
    pub label_smoothing: f64,
    /// Gradient clipping before every optimizer step (after float16's unscaling); by norm, `grad_norm` is logged.
    pub clip: Option<GradClip>,
    /// The moving average of the weights, updated after every optimizer step; validation uses it.
    pub ema: Option<Ema>,
}

impl Trainer {
    pub fn new(model: Box<dyn Model>, store: VarStore, optimizer: Optimizer, loss: Loss, metrics: Vec<Metric>) -> Self {
        Trainer {
            model,
            store,
            optimizer,
            loss,
            metrics,
            precision: Precision::Fp32,
            scaler: None,
            channels_last: false,
            label_smoothing: 0.0,
            clip: None,
            ema: None,
        }
    }

    /// Mixed precision as PyTorch's AMP: the forward passes under autocast to bfloat16 or float16 (parameters and
    /// optimizer stay float32), and for float16 a `GradScaler` (initial scale 2^16).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.scaler = (precision == Precision::Fp16).then(|| GradScaler::new(self.device(), 65536.0));
    }

    /// `model.to(memory_format=torch.channels_last)` and channels-last input batches.
    pub fn set_channels_last(&mut self) -> Result<()> {
        crate::train::amp::store_to_channels_last(&self.store)?;
        self.channels_last = true;
        Ok(())
    }

    fn prepare_input(&self, xs: Tensor) -> Result<Tensor> {
        if self.channels_last {
            crate::train::amp::channels_last(&xs)
        } else {
            Ok(xs)
        }
    }

    /// One optimizer step on a batch (`train_on_batch`): zero the gradients, forward and backward, step.
    /// Returns the loss and the main logits.
    fn step(
        &mut self,
        xs: &Tensor,
        ys: &Tensor,
        aux_weight: f64,
        params: &[Tensor],
        group: Option<&crate::dist::ProcessGroup>,
    ) -> Result<(Tensor, Tensor)> {
        self.optimizer.zero_grad()?;
        let out = self.backward(xs, ys, aux_weight, 1)?;
        self.optimizer_step(params, group)?;
        Ok(out)
    }

    /// Forward under autocast and backward of the loss divided by `accumulate` (of the scaled loss for float16);
    /// the gradients add to those already there. Returns the undivided loss and the main logits.
    pub(crate) fn backward(
        &mut self,
        xs: &Tensor,
        ys: &Tensor,
        aux_weight: f64,
        accumulate: usize,
    ) -> Result<(Tensor, Tensor)> {
        let xs = self.prepare_input(xs.shallow_clone())?;
        let (loss, logits) = crate::train::amp::autocast(self.precision, self.device(), || {
            training_loss_smoothed(self.model.as_ref(), self.loss, &xs, ys, aux_weight, self.label_smoothing)
        })?;
        let divided = if accumulate > 1 { &loss / accumulate as f64 } else { loss.shallow_clone() };
        match &self.scaler {
            Some(s) => s.scale_loss(&divided).f_backward()?,
            None => divided.f_backward()?,
        }
        Ok((loss, logits))
    }

    /// The optimizer step on the gradients there are: averaged over the ranks of `group`, unscaled (float16),
    /// clipped, then the step unless a float16 gradient overflowed, then the EMA update (as a PyTorch loop calls
    /// `update_parameters` after every `scaler.step`). Returns the total gradient norm when clipping by norm.
    pub(crate) fn optimizer_step(
        &mut self,
        params: &[Tensor],
        group: Option<&crate::dist::ProcessGroup>,
    ) -> Result<Option<Tensor>> {
        if let Some(g) = group {
            g.average_gradients(params)?;
        }
        let found_inf = self.scaler.as_ref().map(|s| s.unscale(params)).transpose()?;
        let norm = self.clip.as_ref().map(|c| c.apply(params)).transpose()?.flatten();
        let take = match (&mut self.scaler, &found_inf) {
            (Some(s), Some(f)) => s.finish_step(f),
            _ => true,
        };
        if take {
            self.optimizer.step()?;
        }
        if let Some(ema) = &mut self.ema {
            ema.update(&self.store);
        }
        Ok(norm)
    }

    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// The names `fit` will log: `loss`, each metric, their `val_` forms when there is validation data, `lr`,
    /// `epoch_time`.
    pub fn log_names(&self, with_validation: bool) -> Vec<String> {
        let mut names = vec!["loss".to_string()];
        names.extend(self.metrics.iter().map(|m| m.name().to_string()));
        if with_validation {
            let val: Vec<String> = names.iter().map(|n| format!("val_{n}")).collect();
            names.extend(val);
        }
        if matches!(self.clip, Some(GradClip::Norm { .. })) {
            names.push("grad_norm".into());
        }
        names.push("lr".into());
        names.push("epoch_time".into());
        names
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        if data.is_empty() {
            return Err(Error::data(&data.name, "the dataset is empty"));
        }
        match (data.task, self.loss) {
            (crate::data::Task::Regression { .. }, Loss::CrossEntropy | Loss::BinaryCrossEntropy) => {
                return Err(Error::data(&data.name, "real-valued targets with a classification loss; use mse"))
            }
            (crate::data::Task::Classification { .. }, Loss::Mse) => {
                return Err(Error::data(&data.name, "class labels with the mse loss; use a classification loss"))
            }
            (crate::data::Task::Classification { n_classes }, Loss::BinaryCrossEntropy) if n_classes > 2 => {
                return Err(Error::data(
                    &data.name,
                    format!("{n_classes} classes with binary cross-entropy, which takes labels 0 and 1"),
                ))
            }
            _ => {}
        }
        if let (Some(n), Loss::CrossEntropy) = (data.n_classes(), self.loss) {
            if n as i64 > self.model.num_outputs() {
                return Err(Error::data(
                    &data.name,
                    format!("labels run to class {} but the model has {} outputs", n - 1, self.model.num_outputs()),
                ));
            }
        }
        self.model.check_input(&data.xs).map_err(|e| Error::data(&data.name, e.to_string()))
    }

    /// What `fit` checks before the first epoch: the data against the loss and model, and every monitored name
    /// against what the run logs.
    pub fn check_fit(
        &self,
        train: &Dataset,
        validation: Option<&Dataset>,
        callbacks: &[Box<dyn Callback>],
    ) -> Result<()> {
        self.check_data(train)?;
        if let Some(v) = validation {
            self.check_data(v)?;
        }
        let produced = self.log_names(validation.is_some());
        for cb in callbacks.iter() {
            for m in cb.monitors() {
                if !produced.contains(&m) {
                    // Without validation data a `val_` name of a logged metric needs it; otherwise the name is
                    // unknown (`val_acc` for `val_accuracy`).
                    let needs_validation = validation.is_none()
                        && m.strip_prefix("val_").is_some_and(|base| produced.iter().any(|p| p == base));
                    return Err(Error::config(format!(
                        "a callback monitors '{m}', {}{}; it logs: {}",
                        if needs_validation { "which needs validation data" } else { "which this run does not log" },
                        if needs_validation {
                            "; add ⟨validation_split⟩ or ⟨validation_data⟩".to_string()
                        } else {
                            crate::error::did_you_mean(&m, produced.iter().map(String::as_str))
                        },
                        produced.join(", "),
                    )));
                }
            }
        }
        Ok(())
    }

    /// Trains for `config.epochs − config.initial_epoch` epochs and returns the history of this call.
    pub fn fit(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        config: &FitConfig,
        callbacks: &mut [Box<dyn Callback>],
    ) -> Result<History> {
        self.fit_with_history(train, validation, config, callbacks, History::default())
    }

    /// As `fit`, continuing `history` (a resumed run).
    pub fn fit_with_history(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        config: &FitConfig,
        callbacks: &mut [Box<dyn Callback>],
        mut history: History,
    ) -> Result<History> {
        if config.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if config.accumulate_grad_batches == 0 {
            return Err(Error::config("⟨accumulate_grad_batches⟩ 0: give at least 1 (1 = a step every batch)"));
        }
        let validation = validation.filter(|_| !config.limit_val_batches.is_some_and(|l| l.is_zero()));
        self.check_fit(train, validation, callbacks)?;
        let device = self.device();
        let train = train.to_device(device);
        let validation = validation.map(|v| v.to_device(device));
        let group = config.distributed.clone();
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank, g.world));
        let loader = DataLoader::new(&train, config.batch_size, config.shuffle, config.seed).shard(rank, world, true);
        let n_train = match config.limit_train_batches {
            Some(l) => l.batches(loader.len(), "limit-train-batches")?,
            None => loader.len(),
        };
        let accumulate = config.accumulate_grad_batches;
        let fit_started = Instant::now();
        let mut progress = Progress::new(config.output.clone());
        let params = self.store.parameters();
        let buffers = self.store.buffers();
        if let Some(g) = &group {
            // As DDP's constructor: every rank starts from rank 0's parameters and buffers.
            g.broadcast_from_chief(&params)?;
            g.broadcast_from_chief(&buffers)?;
        }

        macro_rules! ctx {
            ($h:expr) => {
                CallbackContext {
                    store: &self.store,
                    optimizer: &mut self.optimizer,
                    history: $h,
                    stop_training: false,
                    is_chief: group.as_ref().is_none_or(|g| g.is_chief()),
                    actions: Vec::new(),
                    output: config.output.clone(),
                }
            };
        }
        let mut graphed = config.cuda_graph.then(|| super::cuda_graph::GraphedStep::new(device));
        let mut stop = false;
        {
            let mut ctx = ctx!(&history);
            for cb in callbacks.iter_mut() {
                cb.on_train_begin(&mut ctx)?;
                ctx.apply_actions()?;
            }
            stop |= ctx.stop_training;
        }
        resume::clear_stop();
        let mut epoch = config.initial_epoch;
        while epoch < config.epochs && !stop {
            let started = Instant::now();
            // Dropout and augmentation draw from libtorch's generator: seeding it per epoch makes epoch `e` the same
            // whether the run started at 0 or resumed at `e`.
            // Each rank draws its own dropout and augmentation (as each DDP process seeds its own generator).
            tch::manual_seed(resume::epoch_seed(config.seed, epoch).wrapping_add(rank as i64));
            {
                let mut ctx = ctx!(&history);
                for cb in callbacks.iter_mut() {
                    cb.on_epoch_begin(epoch, &mut ctx)?;
                    ctx.apply_actions()?;
                }
            }
            let lr = self.optimizer.lr();
            progress.epoch_begin(epoch, config.epochs, n_train);
            let mut acc = Accumulator::new(self.loss, &self.metrics);
            let mut norms = NormSum::default();
            let mut batches = loader.epoch(epoch).reporting(&config.output);
            let clock = train.images.is_some().then(|| progress.data_clock());
            for (batch, item) in super::progress::timed(batches.by_ref().take(n_train), clock).enumerate() {
                let (xs, ys) = item?;
                let xs = match &config.augment {
                    Some(a) => tch::no_grad(|| a.apply(&xs)),
                    None => xs,
                };
                // MixUp / CutMix: the targets become probability rows; the metrics take each row's heaviest class.
                let (xs, ys, targets) = match &config.mix {
                    Some(m) => {
                        let (xs, targets) = tch::no_grad(|| m.apply(&xs, &ys, epoch, batch, rank))?;
                        (xs, crate::data::mix::hard_labels(&targets), targets)
                    }
                    None => {
                        let targets = ys.shallow_clone();
                        (xs, ys, targets)
                    }
                };
                if let Some(g) = &group {
                    // DDP's broadcast_buffers: rank 0's running statistics before every forward pass.
                    g.broadcast_from_chief(&buffers)?;
                }
                let (mut stepped, mut step_norm) = (true, None);
                let (loss, logits) = match &mut graphed {
                    // One captured step per batch: `cuda_graph::check_supported` and `features::validate` refuse
                    // what it cannot hold (distributed, float16, accumulation, clipping).
                    Some(g) => {
                        let lr = self.optimizer.lr();
                        g.run(&xs, &targets, lr, |xs: &Tensor, ys: &Tensor| {
                            self.step(xs, ys, config.aux_loss_weight, &params, None)
                        })?
                    }
                    None => {
                        // Lightning's accumulation: zero at a group's first batch, step at its last or the epoch's
                        // last.
                        if batch % accumulate == 0 {
                            self.optimizer.zero_grad()?;
                        }
                        let out = self.backward(&xs, &targets, config.aux_loss_weight, accumulate)?;
                        stepped = (batch + 1) % accumulate == 0 || batch + 1 == n_train;
                        if stepped {
                            step_norm = self.optimizer_step(&params, group.as_deref())?;
                            if let Some(norm) = &step_norm {
                                norms.add(norm);
                            }
                            if let (Some(g), true) = (&group, config.check_replicas) {
                                check_replicas(g, &self.store, epoch, batch)?;
                            }
                        }
                        out
                    }
                };
                acc.add(&loss, &logits, &ys);
                let lr = self.optimizer.lr();
                progress.step_end(lr, step_norm.as_ref());
                progress.batch_end(&loss);
                if resume::stop_requested() {
                    progress.abandon();
                    return Err(Error::Interrupted(match &config.run_dir {
                        Some(dir) if epoch > config.initial_epoch || dir.holds_run() => format!(
                            "stopped during epoch {}; {} epoch(s) are saved: continue with ⟨resume⟩ {}",
                            epoch + 1,
                            epoch,
                            dir.path().display()
                        ),
                        _ => format!("stopped during epoch {} before any epoch was saved", epoch + 1),
                    }));
                }
                if !callbacks.is_empty() {
                    let mut ctx = ctx!(&history);
                    for cb in callbacks.iter_mut() {
                        cb.on_batch_end(batch, &mut ctx)?;
                        ctx.apply_actions()?;
                    }
                    let step = StepInfo {
                        epoch,
                        batch,
                        stepped,
                        last_batch: batch + 1 == n_train,
                        loss: &loss,
                        lr,
                        grad_norm: step_norm.as_ref(),
                    };
                    for cb in callbacks.iter_mut() {
                        cb.on_train_batch_end(&step, &mut ctx)?;
                        ctx.apply_actions()?;
                    }
                    stop |= ctx.stop_training;
                }
                if config.max_time.is_some_and(|t| fit_started.elapsed() >= t) {
                    stop = true;
                    break;
                }
            }
            if train.images.is_some() {
                progress.set_data_wait(batches.waited().as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9));
            }
            batches.report_skipped();
            drop(batches);
            if let Some(g) = &group {
                acc.all_reduce(g, device)?;
            }
            let mut logs: Logs = acc.finish("")?;
            if let Some(v) = &validation {
                let n_val = DataLoader::new(v, config.batch_size, false, 0).shard(rank, world, false).len();
                let n_val = match config.limit_val_batches {
                    Some(l) => l.batches(n_val, "limit-val-batches")?,
                    None => n_val,
                };
                let evaluate =
                    || self.evaluate_sharded(v, config.batch_size, "val_", group.as_deref(), n_val, &config.output);
                logs.extend(match &self.ema {
                    Some(ema) => ema.with_weights(&self.store, evaluate)?,
                    None => evaluate()?,
                });
            }
            if let Some(n) = norms.mean() {
                logs.insert("grad_norm".into(), n);
            }
            let seconds = started.elapsed().as_secs_f64();
            logs.insert("lr".into(), lr);
            logs.insert("epoch_time".into(), seconds);
            history.push(epoch, &logs);
            progress.epoch_end(epoch, config.epochs, &logs, seconds);
            let mut ctx = ctx!(&history);
            for cb in callbacks.iter_mut() {
                cb.on_epoch_end(epoch, &logs, &mut ctx)?;
                ctx.apply_actions()?;
            }
            stop |= ctx.stop_training;
            if let Some(g) = &group {
                // Early stopping's decision is rank 0's on every rank, so all stop after the same epoch.
                stop = g.chief_decides(stop, device)?;
            }
            if let (Some(dir), true) = (&config.run_dir, rank == 0) {
                let finished = stop || epoch + 1 == config.epochs;
                let state = resume::TrainingState {
                    store: &self.store,
                    optimizer: &self.optimizer,
                    grad_scaler: self.scaler.as_ref().map(|s| s.state()),
                    ema: self.ema.as_ref(),
                };
                dir.save_resume(epoch, finished, state, &history, callbacks)?;
            }
            epoch += 1;
        }
        let mut ctx = ctx!(&history);
        for cb in callbacks.iter_mut() {
            cb.on_train_end(&mut ctx)?;
            ctx.apply_actions()?;
        }
        Ok(history)
    }

    /// Loss and metrics over `data` in eval mode, as Keras' `evaluate`.
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<BTreeMap<String, f64>> {
        self.evaluate_prefixed(data, batch_size, "")
    }

    fn evaluate_prefixed(&self, data: &Dataset, batch_size: usize, prefix: &str) -> Result<BTreeMap<String, f64>> {
        self.evaluate_sharded(data, batch_size, prefix, None, usize::MAX, &crate::report::Output::silent())
    }

    /// As `evaluate`; in a distributed run each rank evaluates every `world`-th sample and the sums are added up
    /// over the ranks, so the figures are those of the whole set (each sample counted once).
    fn evaluate_sharded(
        &self,
        data: &Dataset,
        batch_size: usize,
        prefix: &str,
        group: Option<&crate::dist::ProcessGroup>,
        max_batches: usize,
        output: &crate::report::Output,
    ) -> Result<BTreeMap<String, f64>> {
        self.check_data(data)?;
        let device = self.device();
        let (rank, world) = group.map_or((0, 1), |g| (g.rank, g.world));
        let mut acc = Accumulator::new(self.loss, &self.metrics);
        tch::no_grad(|| -> Result<()> {
            let loader = DataLoader::new(data, batch_size.max(1), false, 0).shard(rank, world, false);
            let mut batches = loader.epoch(0).reporting(output);
            for item in batches.by_ref().take(max_batches) {
                let (xs, ys) = item?;
                let (xs, ys) = (self.prepare_input(xs.to_device(device))?, ys.to_device(device));
                let (loss, logits) = crate::train::amp::autocast(self.precision, device, || {
                    let logits = self.model.forward_t(&xs, false);
                    (criterion(self.loss, &logits, &ys, self.label_smoothing), logits)
                })?;
                acc.add(&loss, &logits, &ys);
            }
            batches.report_skipped();
            Ok(())
        })?;
        if let Some(g) = group {
            acc.all_reduce(g, device)?;
        }
        acc.finish(prefix)
    }

    /// The model's outputs (logits) for `xs`, in eval mode and batches, on the CPU.
    pub fn predict(&self, xs: &Tensor, batch_size: usize) -> Tensor {
        let device = self.device();
        tch::no_grad(|| {
            let outs: Vec<Tensor> = xs
                .split(batch_size.max(1) as i64, 0)
                .iter()
                .map(|b| self.model.forward_t(&b.to_device(device), false).to_device(Device::Cpu))
                .collect();
            Tensor::cat(&outs, 0)
        })
    }

    /// Probabilities from the logits: softmax for cross-entropy, sigmoid for binary; raw values for regression.
    pub fn predict_proba(&self, xs: &Tensor, batch_size: usize) -> Tensor {
        let logits = self.predict(xs, batch_size);
        match self.loss {
            Loss::CrossEntropy => logits.softmax(-1, tch::Kind::Float),
            Loss::BinaryCrossEntropy => logits.sigmoid(),
            Loss::Mse => logits,
        }
    }

    /// Keras' `predict_on_batch`: the model's outputs for one batch in eval mode, on the CPU; the inputs are
    /// checked first (`Model::check_input`), so a bad index is an error, not a panic.
    pub fn predict_on_batch(&self, xs: &Tensor) -> Result<Tensor> {
        self.model.check_input(xs)?;
        let xs = xs.to_device(self.device());
        Ok(tch::no_grad(|| self.model.forward_t(&xs, false)).to_device(Device::Cpu))
    }

    /// Keras' `train_on_batch`: one optimizer step on one batch (training mode), for online updates in a loop.
    /// Returns the batch's loss and metrics, computed on the outputs before the step.
    pub fn train_on_batch(&mut self, xs: &Tensor, ys: &Tensor) -> Result<BTreeMap<String, f64>> {
        self.model.check_input(xs)?;
        if xs.size().first() != ys.size().first() {
            return Err(Error::invalid(format!("train_on_batch: inputs {:?} but targets {:?}", xs.size(), ys.size())));
        }
        let device = self.device();
        let (xs, ys) = (xs.to_device(device), ys.to_device(device));
        let aux_weight = FitConfig::default().aux_loss_weight;
        let params = self.store.parameters();
        let (loss, logits) = self.step(&xs, &ys, aux_weight, &params, None)?;
        let mut acc = Accumulator::new(self.loss, &self.metrics);
        acc.add(&loss, &logits, &ys);
        acc.finish("")
    }
}

/// Fails when the ranks' parameters differ after a step: the element-wise maximum and minimum over the ranks of
/// every parameter must be equal (bit for bit).
fn check_replicas(group: &crate::dist::ProcessGroup, store: &VarStore, epoch: usize, batch: usize) -> Result<()> {
    use crate::dist::ReduceOp;
    let named = store.named_parameters();
    let (hi, lo): (Vec<Tensor>, Vec<Tensor>) =
        tch::no_grad(|| named.iter().map(|(_, p)| (p.detach().copy(), p.detach().copy())).unzip());
    group.all_reduce(&hi, ReduceOp::Max)?;
    group.all_reduce(&lo, ReduceOp::Min)?;
    for ((name, _), (h, l)) in named.iter().zip(hi.iter().zip(&lo)) {
        let gap = (h - l).abs().max().double_value(&[]);
        if gap != 0.0 {
            return Err(Error::Distributed(format!(
                "the ranks' parameters differ after epoch {} step {}: '{name}' by up to {gap:e}",
                epoch + 1,
                batch + 1
            )));
        }
    }
    Ok(())
}
