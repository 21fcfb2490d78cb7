//! The run configuration: JSON (`--config run.json`) with CLI flags on top; the resolved form is written into
//! each run folder as `config.json`.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{OptimizerConfig, OptimizerKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A registry name with options: `lenet5`, `mlp:hidden=64x64`.
    pub model: String,
    /// A data spec: `digits`, `moons:n_samples=500`, a file or folder.
    pub data: String,
    /// Explicit validation data (a data spec); takes precedence over `validation_split`.
    pub validation_data: Option<String>,
    /// Keras' `validation_split`: the last fraction, held out before shuffling. `null` = no validation.
    pub validation_split: Option<f64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    pub optimizer: OptimizerKind,
    /// `null` = the optimizer's default (Adam 1e-3, SGD 1e-2 here, RMSprop 1e-2).
    pub lr: Option<f64>,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// `null` = the optimizer's default (AdamW 1e-2, others 0).
    pub weight_decay: Option<f64>,
    pub betas: (f64, f64),
    pub eps: Option<f64>,
    pub amsgrad: bool,
    pub alpha: f64,
    pub centered: bool,
    /// `auto`, `cross_entropy`, `binary_crossentropy`, `mse`.
    pub loss: String,
    /// Empty = the loss's defaults (accuracy, or mae for regression).
    pub metrics: Vec<String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    pub seed: u64,
    /// The run folder; `null` = `runs/<model>-<data>-<time>`.
    pub out: Option<String>,
    /// Intra-op threads; `null` = libtorch's default.
    pub threads: Option<usize>,
    /// Initial weights (a state dict, .pt or .safetensors, or a general checkpoint) to load before training.
    pub weights: Option<String>,
    /// Loading `weights` requires every name and shape to match; `false` loads what matches and reports the
    /// rest (transfer learning).
    pub strict: bool,
    /// Learning-rate schedule by epoch: `cosine`, `step:step_size=10,gamma=0.1`, `exponential:gamma=0.95`;
    /// `null` = constant.
    pub lr_schedule: Option<String>,
    /// EarlyStopping: `monitor=val_loss,patience=200,min_delta=0,mode=min,baseline=0.4,restore_best_weights=true`.
    pub early_stopping: Option<String>,
    /// ModelCheckpoint: `path-template[,monitor=…,save_best_only=true,…]`; a relative path is in the run folder.
    pub checkpoint: Option<String>,
    /// ReduceLROnPlateau: `monitor=val_loss,factor=0.1,patience=10,…`.
    pub reduce_lr_on_plateau: Option<String>,
    /// CSVLogger: a file path (relative = in the run folder).
    pub csv_logger: Option<String>,
    /// Stop at the end of an epoch whose loss is NaN or infinite.
    pub terminate_on_nan: bool,
    /// Training-time image augmentation: `affine[:rotate=10,scale=0.1,shift=0.1]` or `crop_flip[:pad=4,flip=true]`
    /// (CIFAR's); `null` = none.
    pub augment: Option<String>,
    /// Pretrained weights loaded non-strictly before training (transfer learning): what matches loads, a
    /// classifier of another size is dropped, and the load is reported.
    pub pretrained: Option<String>,
    /// Parameters kept out of training: `features` (all but the classifier) or name prefixes `conv1,layer1`.
    pub freeze: Option<String>,
    /// The epoch (1-based) from which the frozen parameters train too (two-stage fine-tuning).
    pub unfreeze_at: Option<usize>,
    /// For `channel_boost`: the registered model that makes the auxiliary channels, and its weights.
    pub booster: Option<String>,
    pub booster_weights: Option<String>,
    /// In a distributed run, batch normalisation uses the statistics of the global batch (PyTorch's
    /// `SyncBatchNorm`); otherwise each rank normalises with its own batch (DDP's default).
    pub sync_bn: bool,
    /// Mixed precision: `fp32`, `bf16` (autocast to bfloat16) or `fp16` (autocast to float16 with a gradient scaler).
    pub precision: crate::train::amp::Precision,
    /// Weights and inputs in channels-last memory format (faster convolutions on recent GPUs).
    pub channels_last: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: "lenet5".into(),
            data: "digits".into(),
            validation_data: None,
            validation_split: Some(0.2),
            epochs: 50,
            batch_size: 32,
            shuffle: true,
            optimizer: OptimizerKind::Adam,
            lr: Some(2e-3),
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: None,
            betas: (0.9, 0.999),
            eps: None,
            amsgrad: false,
            alpha: 0.99,
            centered: false,
            loss: "auto".into(),
            metrics: vec![],
            device: "auto".into(),
            seed: 42,
            out: None,
            threads: None,
            weights: None,
            strict: true,
            augment: Some("affine".into()),
            early_stopping: None,
            checkpoint: None,
            reduce_lr_on_plateau: None,
            csv_logger: None,
            terminate_on_nan: true,
            lr_schedule: Some("cosine".into()),
            pretrained: None,
            freeze: None,
            unfreeze_at: None,
            booster: None,
            booster_weights: None,
            sync_bn: false,
            precision: crate::train::amp::Precision::Fp32,
            channels_last: false,
        }
    }
}

impl RunConfig {
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::config(format!("{}: {e}", path.display())))
    }
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::config(format!("the run config does not serialise: {e}")))
    }

    /// The optimizer's hyper-parameters: `torch.optim`'s defaults where the config leaves them unset.
    pub fn optimizer_config(&self) -> Result<OptimizerConfig> {
        let mut c = OptimizerConfig::new(self.optimizer);
        if self.optimizer == OptimizerKind::Sgd {
            c.lr = 1e-2;
        }
        if let Some(lr) = self.lr {
            c.lr = lr;
        }
        if let Some(wd) = self.weight_decay {
            c.weight_decay = wd;
        }
        if let Some(eps) = self.eps {
            c.eps = eps;
        }
        c.momentum = self.momentum;
        c.dampening = self.dampening;
        c.nesterov = self.nesterov;
        c.betas = self.betas;
        c.amsgrad = self.amsgrad;
        c.alpha = self.alpha;
        c.centered = self.centered;
        c.validate()?;
        Ok(c)
    }

    /// Checks what can be checked before any data is read.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if self.threads == Some(0) {
            return Err(Error::config("threads 0: give at least 1, or leave it unset for libtorch's default"));
        }
        if let Some(f) = self.validation_split {
            if !(f > 0.0 && f < 1.0) {
                return Err(Error::config(format!(
                    "validation split {f} is outside (0, 1); use e.g. 0.2, or --no-validation"
                )));
            }
        }
        self.optimizer_config()?;
        if let Some(s) = &self.lr_schedule {
            crate::train::callbacks::LearningRateScheduler::parse(s, self.epochs)?;
        }
        if let Some(s) = &self.early_stopping {
            crate::train::callbacks::EarlyStoppingConfig::parse(s)?;
        }
        if let Some(s) = &self.checkpoint {
            crate::train::callbacks::ModelCheckpointConfig::parse(s)?;
        }
        if let Some(s) = &self.reduce_lr_on_plateau {
            crate::train::callbacks::ReduceLrOnPlateauConfig::parse(s)?;
            if self.lr_schedule.is_some() {
                return Err(Error::config(
                    "both an lr schedule and ReduceLROnPlateau set the learning rate; use --lr-schedule none with it",
                ));
            }
        }
        if let Some(a) = &self.augment {
            crate::data::augment::Augment::parse(a)?;
        }
        crate::device::parse(&self.device)?;
        crate::models::find(&crate::util::Spec::parse(&self.model, "model")?.source)?;
        if self.unfreeze_at.is_some() && self.freeze.is_none() {
            return Err(Error::config("--unfreeze-at needs --freeze (what to unfreeze)"));
        }
        if self.unfreeze_at == Some(0) {
            return Err(Error::config("--unfreeze-at counts epochs from 1; give e.g. --unfreeze-at 3"));
        }
        if self.pretrained.is_some() && self.weights.is_some() {
            return Err(Error::config("give --weights (strict) or --pretrained (transfer learning), not both"));
        }
        if self.booster_weights.is_some() && self.booster.is_none() {
            return Err(Error::config("--booster-weights needs --booster NAME (the model those weights are for)"));
        }
        Ok(())
    }
}
