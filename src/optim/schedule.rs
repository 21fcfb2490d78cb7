//! Learning-rate schedules by epoch (the callbacks issue drives them through LearningRateScheduler).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    Constant,
    /// lr · gamma^(epoch / step_size), as `torch.optim.lr_scheduler.StepLR`.
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// lr · gamma^epoch, as `ExponentialLR`.
    Exponential {
        gamma: f64,
    },
    /// eta_min + (lr − eta_min)(1 + cos(π·epoch/t_max))/2, as `CosineAnnealingLR`.
    Cosine {
        t_max: usize,
        eta_min: f64,
    },
}

impl Schedule {
    pub fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => base_lr,
            Schedule::Step { step_size, gamma } => base_lr * gamma.powi((epoch / step_size.max(1)) as i32),
            Schedule::Exponential { gamma } => base_lr * gamma.powi(epoch as i32),
            Schedule::Cosine { t_max, eta_min } => {
                let t = epoch.min(t_max) as f64 / t_max.max(1) as f64;
                eta_min + (base_lr - eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }
}
