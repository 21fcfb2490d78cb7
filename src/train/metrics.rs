//! Losses and metrics. Per-batch values accumulate on the device; the host reads them once per epoch.
use std::collections::BTreeMap;

use tch::{Kind, Reduction, Tensor};

use crate::data::Task;
use crate::error::{did_you_mean, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy from logits, integer targets (Keras' sparse_categorical_crossentropy).
    CrossEntropy,
    /// Sigmoid binary cross-entropy from one logit, 0/1 targets.
    BinaryCrossEntropy,
    /// Mean squared error.
    Mse,
}

impl Loss {
    /// The loss a task calls for: two classes → one logit with binary cross-entropy (Keras' usual binary set-up),
    /// more → cross-entropy, real targets → MSE.
    pub fn for_task(task: Task) -> Loss {
        match task {
            Task::Classification { n_classes: 2 } => Loss::BinaryCrossEntropy,
            Task::Classification { .. } => Loss::CrossEntropy,
            Task::Regression { .. } => Loss::Mse,
        }
    }
    pub fn parse(name: &str, task: Task) -> Result<Loss> {
        let loss = match name {
            "auto" => return Ok(Loss::for_task(task)),
            "ce" | "cross_entropy" | "categorical_crossentropy" | "sparse_categorical_crossentropy" => {
                Loss::CrossEntropy
            }
            "bce" | "binary_crossentropy" | "binary_cross_entropy" => Loss::BinaryCrossEntropy,
            "mse" | "mean_squared_error" => Loss::Mse,
            other => {
                let names = ["auto", "cross_entropy", "binary_crossentropy", "mse"];
                return Err(Error::config(format!(
                    "unknown loss '{other}'{}; choose one of {}",
                    did_you_mean(other, names),
                    names.join(", ")
                )));
            }
        };
        match (loss, task) {
            (Loss::BinaryCrossEntropy, Task::Classification { n_classes }) if n_classes != 2 => Err(Error::config(
                format!("binary cross-entropy needs 2 classes, the data has {n_classes}; use ⟨loss⟩ cross_entropy"),
            )),
            (Loss::CrossEntropy | Loss::BinaryCrossEntropy, Task::Regression { .. }) => {
                Err(Error::config("a classification loss on regression targets; use ⟨loss⟩ mse"))
            }
            _ => Ok(loss),
        }
    }
    /// Output units the model needs for this loss.
    pub fn num_outputs(&self, task: Task) -> i64 {
        match (self, task) {
            (Loss::BinaryCrossEntropy, _) => 1,
            (_, Task::Classification { n_classes }) => n_classes as i64,
            (_, Task::Regression { n_outputs }) => n_outputs as i64,
        }
    }
    /// Mean loss of a batch.
    pub fn compute(&self, logits: &Tensor, ys: &Tensor) -> Tensor {
        match self {
            Loss::CrossEntropy => logits.cross_entropy_for_logits(ys),
            Loss::BinaryCrossEntropy => logits.reshape([-1]).binary_cross_entropy_with_logits::<Tensor>(
                &ys.to_kind(Kind::Float),
                None,
                None,
                Reduction::Mean,
            ),
            Loss::Mse => logits.mse_loss(&ys.reshape(logits.size().as_slice()), Reduction::Mean),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Binary or categorical accuracy, by the loss (Keras reports both as `accuracy`).
    Accuracy,
    /// Top-5 categorical accuracy (10+ classes).
    Top5Accuracy,
    Mse,
    Mae,
}

impl Metric {
    pub const NAMES: &'static [&'static str] = &["accuracy", "top5_accuracy", "mse", "mae"];
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Top5Accuracy => "top5_accuracy",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
        }
    }
    pub fn parse(name: &str) -> Result<Metric> {
        match name {
            "accuracy" | "acc" => Ok(Metric::Accuracy),
            "top5_accuracy" | "top_k_categorical_accuracy" => Ok(Metric::Top5Accuracy),
            "mse" => Ok(Metric::Mse),
            "mae" => Ok(Metric::Mae),
            other => Err(Error::config(format!(
                "unknown metric '{other}'{}; choose from {}",
                did_you_mean(other, Self::NAMES.iter().copied()),
                Self::NAMES.join(", ")
            ))),
        }
    }
    /// Checks the metric makes sense for the loss and classes.
    pub fn check(&self, loss: Loss, task: Task) -> Result<()> {
        match (self, loss, task) {
            (Metric::Accuracy, Loss::Mse, _) => {
                Err(Error::config("accuracy needs a classification loss; use mse or mae for regression"))
            }
            (Metric::Top5Accuracy, Loss::CrossEntropy, Task::Classification { n_classes }) if n_classes >= 10 => Ok(()),
            (Metric::Top5Accuracy, ..) => Err(Error::config("top5_accuracy needs 10 or more classes")),
            _ => Ok(()),
        }
    }
    /// The default metrics for a loss: accuracy for classification, MAE for regression.
    pub fn defaults(loss: Loss) -> Vec<Metric> {
        match loss {
            Loss::Mse => vec![Metric::Mae],
            _ => vec![Metric::Accuracy],
        }
    }
    /// Sum over the batch (not the mean), so epochs of unequal batches average correctly.
    fn batch_sum(&self, loss: Loss, logits: &Tensor, ys: &Tensor) -> Tensor {
        match (self, loss) {
            (Metric::Accuracy, Loss::BinaryCrossEntropy) => {
                logits.reshape([-1]).gt(0.0).eq_tensor(&ys.to_kind(Kind::Bool)).sum(Kind::Double)
            }
            (Metric::Accuracy, _) => logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Double),
            (Metric::Top5Accuracy, _) => {
                let (_, top) = logits.topk(5, -1, true, true);
                top.eq_tensor(&ys.unsqueeze(-1)).any_dim(-1, false).sum(Kind::Double)
            }
            (Metric::Mse, _) => {
                let target = ys.to_kind(Kind::Float).reshape(logits.size().as_slice());
                let per = (logits - target).square();
                per.flatten(1, -1).mean_dim(-1, false, Kind::Double).sum(Kind::Double)
            }
            (Metric::Mae, _) => {
                let target = ys.to_kind(Kind::Float).reshape(logits.size().as_slice());
                let per = (logits - target).abs();
                per.flatten(1, -1).mean_dim(-1, false, Kind::Double).sum(Kind::Double)
            }
        }
    }
}

/// Running sums of the loss and metrics over an epoch, kept on the device.
#[derive(Debug)]
pub struct Accumulator {
    loss: Loss,
    metrics: Vec<Metric>,
    /// [loss_sum, metric_sums…, count]
    sums: Option<Tensor>,
    /// The batch size as a 0-dim float64 tensor on the device, made once per size: a number operand would be
    /// wrapped and cast on every step, and a host scalar copied over would synchronise on CUDA.
    count: Option<(i64, Tensor)>,
}

impl Accumulator {
    pub fn new(loss: Loss, metrics: &[Metric]) -> Self {
        Accumulator { loss, metrics: metrics.to_vec(), sums: None, count: None }
    }
    /// Adds one batch: `batch_loss` is the batch mean.
    pub fn add(&mut self, batch_loss: &Tensor, logits: &Tensor, ys: &Tensor) {
        tch::no_grad(|| {
            let n = ys.size()[0];
            let n_t = match &self.count {
                Some((m, t)) if *m == n && t.device() == logits.device() => t.shallow_clone(),
                _ => {
                    let t = Tensor::full([] as [i64; 0], n as f64, (Kind::Double, logits.device()));
                    self.count = Some((n, t.shallow_clone()));
                    t
                }
            };
            let mut parts = vec![batch_loss.detach().to_kind(Kind::Double) * &n_t];
            for m in &self.metrics {
                parts.push(m.batch_sum(self.loss, &logits.detach(), ys));
            }
            parts.push(n_t);
            let row = Tensor::stack(&parts, 0);
            match &mut self.sums {
                None => self.sums = Some(row),
                Some(s) => {
                    let _ = s.g_add_(&row);
                }
            }
        });
    }
    /// Sums the running sums over the ranks of a distributed run, so that `finish` gives the global means (a rank
    /// that saw no batch adds zeros).
    pub fn all_reduce(&mut self, group: &crate::dist::ProcessGroup, device: tch::Device) -> crate::error::Result<()> {
        let sums = match self.sums.take() {
            Some(s) => s,
            None => Tensor::zeros([self.metrics.len() as i64 + 2], (Kind::Double, device)),
        };
        self.sums = Some(group.sum_f64(&sums)?);
        Ok(())
    }
    /// The epoch's means, read from the device once. Keys: `loss` and metric names, with `prefix` (`val_`).
    pub fn finish(&self, prefix: &str) -> crate::error::Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        let Some(sums) = &self.sums else { return Ok(out) };
        let values: Vec<f64> = Vec::<f64>::try_from(sums.to_device(tch::Device::Cpu))?;
        if values.len() != self.metrics.len() + 2 {
            return Err(crate::error::Error::invalid(format!(
                "the epoch's running sums hold {} values, not {} (loss, {} metrics, count)",
                values.len(),
                self.metrics.len() + 2,
                self.metrics.len()
            )));
        }
        let count = values[values.len() - 1];
        if count == 0.0 {
            return Ok(out);
        }
        out.insert(format!("{prefix}loss"), values[0] / count);
        for (i, m) in self.metrics.iter().enumerate() {
            out.insert(format!("{prefix}{}", m.name()), values[i + 1] / count);
        }
        Ok(out)
    }
}
