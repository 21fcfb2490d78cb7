//! Keras' LearningRateScheduler: sets the optimizer's learning rate at the start of each epoch from a schedule.
use super::{Callback, CallbackContext};
use crate::error::{Error, Result};
use crate::optim::schedule::Schedule;
use crate::util::Spec;

pub struct LearningRateScheduler {
    schedule: Box<dyn Fn(usize, f64) -> f64>,
    base_lr: Option<f64>,
    /// Each param group's initial lr (torch's `initial_lr`), scheduled separately as torch's schedulers do.
    base_lrs: Option<Vec<f64>>,
}

impl LearningRateScheduler {
    /// From a closure of (epoch, initial lr) → lr, as Keras' `schedule(epoch, lr)`.
    pub fn new(schedule: impl Fn(usize, f64) -> f64 + 'static) -> Self {
        LearningRateScheduler { schedule: Box::new(schedule), base_lr: None, base_lrs: None }
    }
    pub fn from_schedule(schedule: Schedule) -> Self {
        Self::new(move |epoch, lr| schedule.lr_at(lr, epoch))
    }
    /// `cosine[:t_max=30,eta_min=0]`, `step:step_size=10,gamma=0.1`, `exponential:gamma=0.95`, `constant`.
    /// `epochs` is the default `t_max`.
    pub fn parse(spec: &str, epochs: usize) -> Result<Schedule> {
        let s = Spec::parse(spec, "lr schedule")?;
        let num = |k: &str, d: f64| -> Result<f64> {
            let v = s.options.get(k).map_or(Ok(d), |v| {
                v.parse().map_err(|_| Error::config(format!("lr schedule option {k}={v} is not a number")))
            })?;
            if !v.is_finite() || v < 0.0 {
                return Err(Error::config(format!("lr schedule option {k}={v} must be a finite number ≥ 0")));
            }
            Ok(v)
        };
        let count = |k: &str, d: f64| -> Result<usize> {
            let v = num(k, d)?;
            if v < 1.0 || v.fract() != 0.0 || v > 1e9 {
                return Err(Error::config(format!("lr schedule option {k}={v} must be a whole number ≥ 1")));
            }
            Ok(v as usize)
        };
        let known: &[&str] = match s.source.as_str() {
            "constant" => &[],
            "cosine" => &["t_max", "eta_min"],
            "step" => &["step_size", "gamma"],
            "exponential" => &["gamma"],
            other => {
                return Err(Error::config(format!(
                "unknown lr schedule '{other}'; use constant, cosine, step:step_size=N,gamma=G or exponential:gamma=G"
            )))
            }
        };
        if let Some(k) = s.options.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::config(format!(
                "lr schedule '{}' has no option '{k}'; it takes {}",
                s.source,
                known.join(", ")
            )));
        }
        Ok(match s.source.as_str() {
            "cosine" => {
                Schedule::Cosine { t_max: count("t_max", epochs.max(1) as f64)?, eta_min: num("eta_min", 0.0)? }
            }
            "step" => Schedule::Step { step_size: count("step_size", 10.0)?, gamma: num("gamma", 0.1)? },
            "exponential" => Schedule::Exponential { gamma: num("gamma", 0.95)? },
            _ => Schedule::Constant,
        })
    }
}

impl Callback for LearningRateScheduler {
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if self.base_lr.is_none() {
            self.base_lr = Some(ctx.optimizer.lr());
        }
        if self.base_lrs.is_none() {
            self.base_lrs = Some(ctx.optimizer.group_lrs());
        }
        Ok(())
    }
    fn name(&self) -> &'static str {
        "lr_scheduler"
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "base_lr": self.base_lr, "base_lrs": self.base_lrs })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.base_lr = state.get("base_lr").and_then(|v| v.as_f64());
        self.base_lrs =
            state.get("base_lrs").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_f64()).collect());
        Ok(())
    }
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut CallbackContext) -> Result<()> {
        let base = self.base_lr.unwrap_or_else(|| ctx.optimizer.lr());
        let lr = (self.schedule)(epoch, base);
        match &self.base_lrs {
            Some(bases) if bases.len() == ctx.optimizer.groups().len() && bases.len() > 1 => {
                let lrs: Vec<f64> = bases.iter().map(|&b| (self.schedule)(epoch, b)).collect();
                ctx.optimizer.set_group_lrs(&lrs);
                ctx.optimizer.set_base_lr(lr);
            }
            _ => ctx.optimizer.set_lr(lr),
        }
        Ok(())
    }
}
