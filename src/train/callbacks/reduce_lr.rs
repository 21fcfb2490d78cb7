//! Keras' ReduceLROnPlateau: multiply the learning rate by `factor` when the monitored value has not improved
//! for `patience` epochs, then wait `cooldown` epochs.
use serde::{Deserialize, Serialize};

use super::monitor::{check_keys, get, parse_options, Mode, Monitor};
use super::{Callback, CallbackContext, Logs};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateauConfig {
    pub monitor: String,
    pub factor: f64,
    pub patience: usize,
    pub verbose: bool,
    pub mode: Mode,
    pub min_delta: f64,
    pub cooldown: usize,
    pub min_lr: f64,
}

impl Default for ReduceLrOnPlateauConfig {
    fn default() -> Self {
        ReduceLrOnPlateauConfig {
            monitor: "val_loss".into(),
            factor: 0.1,
            patience: 10,
            verbose: false,
            mode: Mode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

impl ReduceLrOnPlateauConfig {
    pub fn parse(spec: &str) -> Result<Self> {
        const WHAT: &str = "⟨reduce_lr_on_plateau⟩";
        let o = parse_options(spec, WHAT)?;
        check_keys(&o, &["monitor", "factor", "patience", "verbose", "mode", "min_delta", "cooldown", "min_lr"], WHAT)?;
        let d = Self::default();
        let c = ReduceLrOnPlateauConfig {
            monitor: get(&o, "monitor", d.monitor, WHAT)?,
            factor: get(&o, "factor", d.factor, WHAT)?,
            patience: get(&o, "patience", d.patience, WHAT)?,
            verbose: get(&o, "verbose", d.verbose, WHAT)?,
            mode: get(&o, "mode", d.mode, WHAT)?,
            min_delta: get(&o, "min_delta", d.min_delta, WHAT)?,
            cooldown: get(&o, "cooldown", d.cooldown, WHAT)?,
            min_lr: get(&o, "min_lr", d.min_lr, WHAT)?,
        };
        if !(c.factor > 0.0 && c.factor < 1.0) {
            return Err(Error::config(format!("{WHAT}: factor {} must be in (0, 1)", c.factor)));
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrState {
    pub best: Option<f64>,
    pub wait: usize,
    pub cooldown_counter: usize,
}

pub struct ReduceLrOnPlateau {
    pub config: ReduceLrOnPlateauConfig,
    monitor: Monitor,
    pub state: ReduceLrState,
    restored: bool,
}

impl ReduceLrOnPlateau {
    pub fn new(config: ReduceLrOnPlateauConfig) -> Result<Self> {
        let monitor = Monitor::new(&config.monitor, config.mode, config.min_delta)?;
        Ok(ReduceLrOnPlateau { config, monitor, state: ReduceLrState::default(), restored: false })
    }
}

impl Callback for ReduceLrOnPlateau {
    fn name(&self) -> &'static str {
        "reduce_lr_on_plateau"
    }
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        if !self.restored {
            self.state = ReduceLrState::default();
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        let Some(&current) = logs.get(&self.config.monitor) else { return Ok(()) };
        let in_cooldown = self.state.cooldown_counter > 0;
        if in_cooldown {
            self.state.cooldown_counter -= 1;
            self.state.wait = 0;
        }
        if self.monitor.is_improvement(current, self.state.best.unwrap_or(self.monitor.worst())) {
            self.state.best = Some(current);
            self.state.wait = 0;
        } else if !in_cooldown {
            self.state.wait += 1;
            if self.state.wait >= self.config.patience {
                let old = ctx.optimizer.lr();
                if old > self.config.min_lr {
                    let new = (old * self.config.factor).max(self.config.min_lr);
                    // Each group as torch's ReduceLROnPlateau: max(lr · factor, min_lr).
                    let lrs: Vec<f64> =
                        ctx.optimizer
                            .group_lrs()
                            .iter()
                            .map(|&l| {
                                if l > self.config.min_lr {
                                    (l * self.config.factor).max(self.config.min_lr)
                                } else {
                                    l
                                }
                            })
                            .collect();
                    ctx.optimizer.set_group_lrs(&lrs);
                    ctx.optimizer.set_base_lr(new);
                    if self.config.verbose {
                        ctx.say(format!("Epoch {:05}: ReduceLROnPlateau reducing learning rate to {new}.", epoch + 1));
                    }
                    self.state.cooldown_counter = self.config.cooldown;
                    self.state.wait = 0;
                }
            }
        }
        Ok(())
    }
    fn monitors(&self) -> Vec<String> {
        vec![self.config.monitor.clone()]
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.state =
            serde_json::from_value(state.clone()).map_err(|e| Error::config(format!("reduce-lr state: {e}")))?;
        self.restored = true;
        Ok(())
    }
}
