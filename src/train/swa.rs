//! Stochastic weight averaging (`--swa start=E,lr=LR[,anneal_epochs=10][,anneal_strategy=cos|linear]`), as the
//! PyTorch recipe with `torch.optim.swa_utils`:
//! ```text
//! swa_model = AveragedModel(model); swa_scheduler = SWALR(opt, swa_lr=LR, anneal_epochs=A, anneal_strategy=S)
//! for epoch in range(epochs):
//!     train_one_epoch(...)
//!     if epoch >= E - 1: swa_model.update_parameters(model); swa_scheduler.step()
//!     else: scheduler.step()
//! update_bn(train_loader, swa_model)
//! ```
//! `E` counts epochs from 1, as Lightning's integer `swa_epoch_start` (its 0-based `swa_start` is `E − 1`). SWALR
//! takes over the learning rate from epoch E (an `--lr-schedule` or ReduceLROnPlateau no longer sets it), created
//! at that epoch's start as Lightning's callback creates it. Validation runs on the trained weights, as Lightning's.
//! After the last epoch the averaged weights go into the model and `update_bn` recomputes the batch norms' running
//! statistics over one pass of the training data, so `model.pt` holds the SWA model (Lightning's final module).
//!
//! The running mean is [`AveragedModel`] with [`AveragingRule::Swa`] (the EMA's type); the per-epoch work is a
//! callback, so the averages, `n_averaged` and SWALR's state travel in the resume state with the other callbacks'.
use std::cell::RefCell;
use std::rc::Rc;

use tch::Tensor;

use super::callbacks::{Callback, CallbackContext, Logs};
use super::features::{AveragedModel, AveragingRule};
use super::{FitConfig, Trainer};
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::nn::store::VarKind;
use crate::optim::Optimizer;

/// SWALR's annealing from the learning rate in use to the SWA learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnealStrategy {
    /// `(1 − cos(π t)) / 2`.
    Cos,
    /// `t`.
    Linear,
}

impl AnnealStrategy {
    fn alpha(self, t: f64) -> f64 {
        match self {
            AnnealStrategy::Cos => (1.0 - (std::f64::consts::PI * t).cos()) / 2.0,
            AnnealStrategy::Linear => t,
        }
    }
}

/// `--swa start=E,lr=LR[,anneal_epochs=10][,anneal_strategy=cos|linear]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwaConfig {
    /// The first epoch of the SWA phase, counted from 1: its weights are the first averaged, and SWALR anneals the
    /// learning rate from the next epoch on.
    pub start: usize,
    /// SWALR's `swa_lr` (every param group's).
    pub lr: f64,
    /// SWALR's `anneal_epochs` (0: the SWA learning rate at once, from epoch `start`).
    pub anneal_epochs: usize,
    pub anneal_strategy: AnnealStrategy,
}

impl SwaConfig {
    pub fn parse(spec: &str) -> Result<SwaConfig> {
        let bad = |msg: String| Error::config(format!("⟨swa⟩ '{spec}': {msg}"));
        let form = "use start=E,lr=LR[,anneal_epochs=10][,anneal_strategy=cos|linear]";
        let (mut start, mut lr) = (None, None);
        let mut c = SwaConfig { start: 0, lr: 0.0, anneal_epochs: 10, anneal_strategy: AnnealStrategy::Cos };
        for (k, v) in crate::util::parse_pairs(spec, None, |part| bad(format!("'{part}' is not key=value; {form}")))? {
            let v = v.as_str();
            match k.as_str() {
                "start" | "swa_epoch_start" => {
                    start = Some(v.parse::<usize>().map_err(|_| {
                        bad(format!("start '{v}' is not a whole number of epochs (the first SWA epoch, from 1)"))
                    })?)
                }
                "lr" | "swa_lr" => lr = Some(v.parse::<f64>().map_err(|_| bad(format!("lr '{v}' is not a number")))?),
                "anneal_epochs" => {
                    c.anneal_epochs = v
                        .parse()
                        .map_err(|_| bad(format!("anneal_epochs '{v}' is not a whole number ≥ 0 (default 10)")))?
                }
                "anneal_strategy" => {
                    c.anneal_strategy = match v {
                        "cos" => AnnealStrategy::Cos,
                        "linear" => AnnealStrategy::Linear,
                        other => return Err(bad(format!("anneal_strategy '{other}' is not cos or linear"))),
                    }
                }
                other => return Err(bad(format!("unknown option '{other}'; {form}"))),
            }
        }
        c.start = start.ok_or_else(|| bad(format!("no start epoch; {form}")))?;
        c.lr = lr.ok_or_else(|| bad(format!("no SWA learning rate; {form}")))?;
        if c.start == 0 {
            return Err(bad("start counts epochs from 1 (Lightning's swa_epoch_start); give e.g. start=8".into()));
        }
        if !(c.lr > 0.0 && c.lr.is_finite()) {
            return Err(bad(format!("lr {} must be a finite number > 0", c.lr)));
        }
        Ok(c)
    }

    /// The SWA phase must begin within the run's `epochs`.
    pub fn check_epochs(&self, spec: &str, epochs: usize) -> Result<()> {
        if self.start > epochs {
            return Err(Error::config(format!(
                "⟨swa⟩ '{spec}': start {} is after the last epoch ({epochs}); give start ≤ {epochs}",
                self.start
            )));
        }
        Ok(())
    }

    /// The 0-based epoch whose end makes the first average (the recipe's `swa_start`).
    pub fn swa_start(&self) -> usize {
        self.start - 1
    }

    /// The learning rate `SWALR.step()` sets when the group's is `lr` and the scheduler has stepped `step` times
    /// before (`step` = `_step_count − 1`; 0 = the step made by its constructor), as torch's `SWALR.get_lr`.
    pub fn swalr_lr(&self, lr: f64, step: u64) -> f64 {
        let a = self.anneal_epochs;
        let step = if a == 0 { step.max(1) } else { step } as f64;
        let a = a.max(1) as f64;
        let prev_alpha = self.anneal_strategy.alpha(((step - 1.0) / a).clamp(0.0, 1.0));
        let prev_lr = if prev_alpha == 1.0 { self.lr } else { (lr - prev_alpha * self.lr) / (1.0 - prev_alpha) };
        let alpha = self.anneal_strategy.alpha((step / a).clamp(0.0, 1.0));
        self.lr * alpha + prev_lr * (1.0 - alpha)
    }
}

/// `--swa` parsed and checked against the rest of the config, before any data is read.
pub fn resolve(config: &crate::config::RunConfig) -> Result<Option<SwaConfig>> {
    let Some(spec) = &config.swa else { return Ok(None) };
    let swa = SwaConfig::parse(spec)?;
    swa.check_epochs(spec, config.epochs)?;
    if config.ema.is_some() {
        return Err(Error::config("⟨swa⟩ and ⟨ema⟩ are two averages of the weights; give one of them"));
    }
    if config.cuda_graph {
        return Err(Error::config(
            "⟨cuda_graph⟩ captures one plain step a batch: it does not yet combine with ⟨swa⟩; leave out one of them",
        ));
    }
    Ok(Some(swa))
}

#[derive(Debug)]
struct State {
    config: SwaConfig,
    average: Option<AveragedModel>,
    /// Averages read from a resume state, put in place at train begin (when the store is at hand).
    pending: Option<Vec<(String, Tensor)>>,
    restored_n: u64,
    /// SWALR's `_step_count`: 0 until the SWA phase begins.
    steps: u64,
    /// The learning rates SWALR set last: the base one, then each param group's.
    lrs: Vec<f64>,
}

impl State {
    fn n_averaged(&self) -> u64 {
        self.average.as_ref().map_or(0, |a| a.n_averaged)
    }
    fn swalr_step(&mut self, optimizer: &mut Optimizer) {
        let step = self.steps;
        let c = self.config;
        self.lrs = self.lrs.iter().map(|&lr| c.swalr_lr(lr, step)).collect();
        self.steps += 1;
        set_lrs(optimizer, &self.lrs);
    }
}

fn current_lrs(optimizer: &Optimizer) -> Vec<f64> {
    std::iter::once(optimizer.lr()).chain(optimizer.group_lrs()).collect()
}

fn set_lrs(optimizer: &mut Optimizer, lrs: &[f64]) {
    if let Some((&base, groups)) = lrs.split_first() {
        if groups.len() == optimizer.groups().len() {
            optimizer.set_group_lrs(groups);
        }
        optimizer.set_base_lr(base);
    }
}

/// A run's SWA: the averages and SWALR, shared by the callback that drives them during `fit` and the end of the run
/// ([`Swa::finish`]).
#[derive(Debug, Clone)]
pub struct Swa {
    state: Rc<RefCell<State>>,
}

impl Swa {
    pub fn new(config: SwaConfig) -> Swa {
        Swa {
            state: Rc::new(RefCell::new(State {
                config,
                average: None,
                pending: None,
                restored_n: 0,
                steps: 0,
                lrs: vec![],
            })),
        }
    }

    /// The callback that averages after every epoch of the SWA phase and sets SWALR's learning rates.
    pub fn callback(&self) -> Box<dyn Callback> {
        Box::new(SwaCallback(self.clone()))
    }

    /// `AveragedModel.n_averaged`: the epochs averaged so far.
    pub fn n_averaged(&self) -> u64 {
        self.state.borrow().n_averaged()
    }

    /// The averaged state dict (buffers as copied at the last update), once an epoch was averaged.
    pub fn state_dict(&self) -> Option<Vec<(String, Tensor)>> {
        let s = self.state.borrow();
        s.average.as_ref().filter(|a| a.n_averaged > 0).map(|a| a.state_dict())
    }

    /// The end of the recipe: the averaged weights into the model (Lightning's `transfer_weights`) and
    /// [`update_bn`] over the training batches of epoch `epochs_done` (the epoch that would come next). Returns
    /// false, leaving the trained weights, when no epoch was averaged (training stopped before the SWA phase).
    pub fn finish(&self, trainer: &Trainer, train: &Dataset, fit: &FitConfig, epochs_done: usize) -> Result<bool> {
        let Some(averaged) = self.state_dict() else { return Ok(false) };
        trainer.store.load_state_dict(&averaged, true, "the SWA weights")?;
        update_bn(trainer, train, fit, epochs_done)?;
        Ok(true)
    }
}

/// `torch.optim.swa_utils.update_bn(loader, model)`: every trainable batch norm's running statistics reset
/// (mean 0, variance 1, `num_batches_tracked` 0), then one pass without gradients in training mode with
/// `momentum=None`, so they become the average of the batches' statistics. The batches are those `fit` would train
/// on in `epoch` (its shuffle, `--limit-train-batches`, `--augment`), in float32 (no autocast). A frozen batch norm
/// (`--freeze`) stays as it is, as timm's `FrozenBatchNorm2d` is no `_BatchNorm`. Returns the number of batches
/// (0 without batch norm: no pass, as torch returns early).
pub fn update_bn(trainer: &Trainer, train: &Dataset, fit: &FitConfig, epoch: usize) -> Result<usize> {
    let store = &trainer.store;
    let layers: Vec<String> = store
        .entries_meta()
        .into_iter()
        .filter(|(_, _, _, kind)| *kind == VarKind::Buffer)
        .filter_map(|(name, _, _, _)| name.strip_suffix(".running_mean").map(str::to_string))
        .filter(|p| store.get(&format!("{p}.weight")).is_none_or(|w| w.requires_grad()))
        .collect();
    if layers.is_empty() {
        return Ok(0);
    }
    tch::no_grad(|| {
        for p in &layers {
            for (suffix, value) in [("running_mean", 0.0), ("running_var", 1.0), ("num_batches_tracked", 0.0)] {
                if let Some(mut t) = store.get(&format!("{p}.{suffix}")) {
                    let _ = t.fill_(value);
                }
            }
        }
    });
    let device = trainer.device();
    let train = train.to_device(device);
    let loader = DataLoader::new(&train, fit.batch_size, fit.shuffle, fit.seed);
    let n = match fit.limit_train_batches {
        Some(l) => l.batches(loader.len(), "limit-train-batches")?,
        None => loader.len(),
    };
    tch::manual_seed(super::resume::epoch_seed(fit.seed, epoch));
    let mut batches = 0;
    tch::no_grad(|| {
        crate::nn::layers::with_cumulative_batch_norm(|| -> Result<()> {
            for item in loader.epoch(epoch).take(n) {
                let (xs, _) = item?;
                let xs = match &fit.augment {
                    Some(a) => a.apply(&xs),
                    None => xs,
                };
                let xs = if trainer.channels_last { crate::train::amp::channels_last(&xs)? } else { xs };
                let _ = trainer.model.forward_t(&xs, true);
                batches += 1;
            }
            Ok(())
        })
    })?;
    Ok(batches)
}

struct SwaCallback(Swa);

impl Callback for SwaCallback {
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        let mut s = self.0.state.borrow_mut();
        if let Some(tensors) = s.pending.take() {
            let mut average = AveragedModel::new(AveragingRule::Swa, ctx.store);
            average.load(&tensors, s.restored_n)?;
            s.average = Some(average);
        }
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut CallbackContext) -> Result<()> {
        let mut s = self.0.state.borrow_mut();
        if epoch < s.config.swa_start() {
            return Ok(());
        }
        if s.steps == 0 {
            // SWALR's constructor: `initial_lr` and one step (a no-op unless anneal_epochs = 0), on the learning
            // rates the epoch would have had.
            s.lrs = current_lrs(ctx.optimizer);
            s.swalr_step(ctx.optimizer);
        } else {
            // SWALR replaces the schedule: what a scheduler callback set before this one is overwritten.
            set_lrs(ctx.optimizer, &s.lrs);
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, _logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        let mut s = self.0.state.borrow_mut();
        if epoch < s.config.swa_start() {
            return Ok(());
        }
        s.average.get_or_insert_with(|| AveragedModel::new(AveragingRule::Swa, ctx.store)).update(ctx.store);
        s.swalr_step(ctx.optimizer);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "swa"
    }

    fn state(&self) -> serde_json::Value {
        let s = self.0.state.borrow();
        serde_json::json!({ "n_averaged": s.n_averaged(), "steps": s.steps, "lrs": s.lrs })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let bad = || Error::config("the resume state's SWA entry is damaged (n_averaged, steps, lrs)");
        let mut s = self.0.state.borrow_mut();
        s.restored_n = state.get("n_averaged").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        s.steps = state.get("steps").and_then(|v| v.as_u64()).ok_or_else(bad)?;
        s.lrs = state
            .get("lrs")
            .and_then(|v| v.as_array())
            .ok_or_else(bad)?
            .iter()
            .map(|v| v.as_f64().ok_or_else(bad))
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.0.state_dict().unwrap_or_default()
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut s = self.0.state.borrow_mut();
        match (tensors.is_empty(), s.restored_n) {
            (true, 0) => Ok(()),
            (false, n) if n > 0 => {
                s.pending = Some(tensors);
                Ok(())
            }
            _ => Err(Error::config("the resume state's SWA averages do not match its n_averaged")),
        }
    }
}
