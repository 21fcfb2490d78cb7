//! Keras' EarlyStopping: stop when the monitored value has not improved for `patience` epochs.
use serde::{Deserialize, Serialize};

use super::monitor::{check_keys, get, parse_options, Mode, Monitor};
use super::{Callback, CallbackContext, Logs};
use crate::error::{Error, Result};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingConfig {
    pub monitor: String,
    pub min_delta: f64,
    pub patience: usize,
    pub verbose: bool,
    pub mode: Mode,
    pub baseline: Option<f64>,
    pub restore_best_weights: bool,
    pub start_from_epoch: usize,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig {
            monitor: "val_loss".into(),
            min_delta: 0.0,
            patience: 0,
            verbose: false,
            mode: Mode::Auto,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
        }
    }
}

impl EarlyStoppingConfig {
    /// `monitor=val_loss,patience=200,min_delta=0,mode=min,baseline=0.4,restore_best_weights=true`.
    pub fn parse(spec: &str) -> Result<Self> {
        const WHAT: &str = "⟨early_stopping⟩";
        let o = parse_options(spec, WHAT)?;
        check_keys(
            &o,
            &[
                "monitor",
                "min_delta",
                "patience",
                "verbose",
                "mode",
                "baseline",
                "restore_best_weights",
                "start_from_epoch",
            ],
            WHAT,
        )?;
        let d = EarlyStoppingConfig::default();
        Ok(EarlyStoppingConfig {
            monitor: get(&o, "monitor", d.monitor, WHAT)?,
            min_delta: get(&o, "min_delta", d.min_delta, WHAT)?,
            patience: get(&o, "patience", d.patience, WHAT)?,
            verbose: get(&o, "verbose", d.verbose, WHAT)?,
            mode: get(&o, "mode", d.mode, WHAT)?,
            baseline: o
                .get("baseline")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| Error::config(format!("{WHAT}: baseline does not parse")))?,
            restore_best_weights: get(&o, "restore_best_weights", false, WHAT)?,
            start_from_epoch: get(&o, "start_from_epoch", 0, WHAT)?,
        })
    }
}

/// What survives a resume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    pub wait: usize,
    pub best: Option<f64>,
    pub best_epoch: Option<usize>,
    pub stopped_epoch: Option<usize>,
}

pub struct EarlyStopping {
    pub config: EarlyStoppingConfig,
    monitor: Monitor,
    pub state: EarlyStoppingState,
    best_weights: Option<Vec<(String, Tensor)>>,
    restored: bool,
}

impl EarlyStopping {
    pub fn new(config: EarlyStoppingConfig) -> Result<Self> {
        let monitor = Monitor::new(&config.monitor, config.mode, config.min_delta)?;
        Ok(EarlyStopping { config, monitor, state: EarlyStoppingState::default(), best_weights: None, restored: false })
    }
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.state.stopped_epoch
    }
    pub fn best_epoch(&self) -> Option<usize> {
        self.state.best_epoch
    }
    fn snapshot(ctx: &CallbackContext) -> Vec<(String, Tensor)> {
        ctx.store.state_dict().into_iter().map(|(k, t)| (k, t.detach().copy())).collect()
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> &'static str {
        "early_stopping"
    }
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        if !self.restored {
            self.state = EarlyStoppingState::default();
            self.best_weights = None;
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        let Some(&current) = logs.get(&self.config.monitor) else { return Ok(()) };
        if epoch < self.config.start_from_epoch {
            return Ok(());
        }
        if self.config.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(Self::snapshot(ctx));
        }
        self.state.wait += 1;
        let best = self.state.best.unwrap_or(self.monitor.worst());
        if self.monitor.is_improvement(current, best) {
            self.state.best = Some(current);
            self.state.best_epoch = Some(epoch);
            if self.config.restore_best_weights {
                self.best_weights = Some(Self::snapshot(ctx));
            }
            if self.config.baseline.is_none_or(|b| self.monitor.is_improvement(current, b)) {
                self.state.wait = 0;
            }
            return Ok(());
        }
        if self.state.wait >= self.config.patience && epoch > 0 {
            self.state.stopped_epoch = Some(epoch);
            ctx.stop_training = true;
        }
        Ok(())
    }
    fn on_train_end(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if let Some(stopped) = self.state.stopped_epoch {
            if self.config.verbose {
                ctx.say(format!("Epoch {:05}: early stopping", stopped + 1));
            }
            if self.config.restore_best_weights {
                if let Some(w) = &self.best_weights {
                    if self.config.verbose {
                        ctx.say(format!(
                            "Restoring model weights from the end of the best epoch: {}.",
                            self.state.best_epoch.map_or(0, |e| e + 1)
                        ));
                    }
                    ctx.store.load_state_dict(w, true, "best weights")?;
                }
            }
        }
        Ok(())
    }
    fn monitors(&self) -> Vec<String> {
        vec![self.config.monitor.clone()]
    }
    fn curve_mark(&self) -> Option<super::CurveMark> {
        Some(super::CurveMark {
            monitor: (self.config.monitor.clone(), self.monitor.maximize),
            ends_run: true,
            stopped_epoch: self.state.stopped_epoch,
        })
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.best_weights
            .as_ref()
            .map(|w| w.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect())
            .unwrap_or_default()
    }
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        if !tensors.is_empty() {
            self.best_weights = Some(tensors);
        } else if self.config.restore_best_weights && self.state.best.is_some() {
            // The state says a best epoch was seen, so its weights were saved with it: without them the run would
            // end on the last weights, not the best.
            return Err(Error::config(
                "the resume state of early stopping (restore_best_weights) has no best weights".to_string(),
            ));
        }
        Ok(())
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.state =
            serde_json::from_value(state.clone()).map_err(|e| Error::config(format!("early stopping state: {e}")))?;
        self.restored = true;
        Ok(())
    }
}
