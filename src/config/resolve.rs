//! The resolved run: a [`RunConfig`] (the user's form, with its spec strings, as `config.json` keeps it) parsed and
//! checked once into typed values. Everything downstream of the CLI takes a [`Run`]; nothing parses a spec string
//! again.
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{RunConfig, AUTO_AUGMENT, MAX_THREADS};
use crate::data::augment::Augment;
use crate::data::autoaugment::Policy;
use crate::data::transforms::Interpolation;
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::models::ModelEntry;
use crate::optim::schedule::Schedule;
use crate::optim::{GroupSpec, OptimizerConfig};
use crate::train::callbacks::{EarlyStoppingConfig, ModelCheckpointConfig, ReduceLrOnPlateauConfig};
use crate::train::features::{EmaConfig, GradClip};
use crate::train::metrics::Metric;

/// A validated run: the user's config and every spec in it, parsed.
#[derive(Debug, Clone)]
pub struct Run {
    /// The user's form, written into the run folder as `config.json` (so older files stay readable).
    pub config: RunConfig,
    /// The model spec's registry entry.
    pub model: &'static ModelEntry,
    pub device: tch::Device,
    /// The optimizer's hyper-parameters (`torch.optim`'s defaults where the config leaves them unset).
    pub optimizer: OptimizerConfig,
    /// How the parameters split into param groups (`no_decay_norm_bias`, `lr_mult`).
    pub groups: GroupSpec,
    /// The metrics asked for (empty: the loss's defaults).
    pub metrics: Vec<Metric>,
    /// The callbacks the config asks for, as typed configs (`fast_dev_run` has already turned off those Lightning
    /// turns off).
    pub callbacks: CallbackConfigs,
    /// Augmentation of data held in memory; `Auto` until the data's sample shape resolves it.
    pub augment: AugmentChoice,
    /// Image folders: the interpolation asked for (`None`: the model's).
    pub interpolation: Option<Interpolation>,
    /// Image folders: TrivialAugmentWide / RandAugment / AugMix after the crop and flip.
    pub auto_augment: Option<Policy>,
    /// Gradient clipping by norm or by value.
    pub clip: Option<GradClip>,
    pub ema: Option<EmaConfig>,
    /// Stochastic weight averaging (`train::swa`).
    pub swa: Option<crate::train::swa::SwaConfig>,
    pub max_time: Option<Duration>,
    /// `data`, resolved: what the readers take (`config.data` keeps the user's string).
    pub data: DataSource,
    /// `validation_data`, resolved.
    pub validation_data: Option<DataSource>,
}

/// The callbacks of a config, in the order a run builds them.
#[derive(Debug, Clone, Default)]
pub struct CallbackConfigs {
    /// A learning-rate schedule over the run's epochs.
    pub lr_schedule: Option<Schedule>,
    pub terminate_on_nan: bool,
    pub reduce_lr_on_plateau: Option<ReduceLrOnPlateauConfig>,
    pub early_stopping: Option<EarlyStoppingConfig>,
    pub checkpoint: Option<ModelCheckpointConfig>,
    /// The CSV log's path as given (relative: inside the run folder).
    pub csv_logger: Option<PathBuf>,
    /// TensorBoard and the step log, as the config asks (off under `fast_dev_run`, as Lightning's loggers are).
    pub loggers: bool,
}

/// `augment` resolved: `auto` waits for the data (affine for images, none otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AugmentChoice {
    Auto,
    Off,
    On(Augment),
}

impl AugmentChoice {
    /// The augmentation to apply (`Auto` not yet resolved: none).
    pub fn get(&self) -> Option<Augment> {
        match self {
            AugmentChoice::On(a) => Some(*a),
            _ => None,
        }
    }
}

impl RunConfig {
    /// Parses and checks every value that can be checked before any data is read, once.
    pub fn resolve(&self) -> Result<Run> {
        let c = self;
        if c.epochs == 0 {
            return Err(Error::config("epochs must be at least 1"));
        }
        if c.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if c.threads == Some(0) {
            return Err(Error::config("threads 0: give at least 1, or leave it unset for libtorch's default"));
        }
        if let Some(t) = c.threads.filter(|&t| t > MAX_THREADS) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            return Err(Error::config(format!(
                "threads {t} is more than {MAX_THREADS} (this machine has {cores} cores); give at most {cores}"
            )));
        }
        if let Some(f) = c.validation_split {
            if !(f > 0.0 && f < 1.0) {
                return Err(Error::config(format!(
                    "validation split {f} is outside (0, 1); use e.g. 0.2, or ⟨no_validation⟩"
                )));
            }
        }
        let optimizer = c.optimizer_config()?;
        let groups = crate::optim::GroupSpec {
            no_decay_norm_bias: c.no_decay_norm_bias,
            lr_mult: match &c.lr_mult {
                Some(s) => crate::optim::groups::parse_lr_mult(s)?,
                None => vec![],
            },
        };
        let metrics = c.metrics.iter().map(|m| Metric::parse(m)).collect::<Result<Vec<_>>>()?;
        // `--fast-dev-run`: one epoch without checkpoint, early stopping or CSV logger, as Lightning runs it.
        let dev_run = c.fast_dev_run.is_some();
        let schedule_epochs = if dev_run { 1 } else { c.epochs };
        let callbacks = CallbackConfigs {
            lr_schedule: c
                .lr_schedule
                .as_deref()
                .map(|s| crate::train::callbacks::LearningRateScheduler::parse(s, schedule_epochs))
                .transpose()?,
            terminate_on_nan: c.terminate_on_nan,
            reduce_lr_on_plateau: c.reduce_lr_on_plateau.as_deref().map(ReduceLrOnPlateauConfig::parse).transpose()?,
            early_stopping: c.early_stopping.as_deref().map(EarlyStoppingConfig::parse).transpose()?,
            checkpoint: c.checkpoint.as_deref().map(ModelCheckpointConfig::parse).transpose()?,
            csv_logger: c.csv_logger.as_deref().map(PathBuf::from),
            loggers: !dev_run,
        };
        crate::train::loggers::validate(c)?;
        if callbacks.reduce_lr_on_plateau.is_some() && callbacks.lr_schedule.is_some() {
            return Err(Error::config(
                "both an lr schedule and ReduceLROnPlateau set the learning rate; use ⟨lr_schedule⟩ none with it",
            ));
        }
        let callbacks = if dev_run {
            CallbackConfigs { checkpoint: None, early_stopping: None, csv_logger: None, ..callbacks }
        } else {
            callbacks
        };
        let augment = match c.augment.as_deref() {
            None => AugmentChoice::Off,
            Some(AUTO_AUGMENT) => AugmentChoice::Auto,
            Some(a) => AugmentChoice::On(Augment::parse(a)?),
        };
        let device = crate::device::parse(&c.device)?;
        let model = crate::models::find(&crate::util::Spec::parse(&c.model, "model")?.source)?;
        if c.unfreeze_at.is_some() && c.freeze.is_none() {
            return Err(Error::config("⟨unfreeze_at⟩ needs ⟨freeze⟩ (what to unfreeze)"));
        }
        if c.unfreeze_at == Some(0) {
            return Err(Error::config("⟨unfreeze_at⟩ counts epochs from 1; give e.g. ⟨unfreeze_at⟩ 3"));
        }
        if c.pretrained.is_some() && c.weights.is_some() {
            return Err(Error::config("give ⟨weights⟩ (strict) or ⟨pretrained⟩ (transfer learning), not both"));
        }
        if !(0.0..1.0).contains(&c.label_smoothing) {
            return Err(Error::config(format!(
                "label smoothing {} is outside [0, 1); use e.g. 0.1",
                c.label_smoothing
            )));
        }
        if c.workers == Some(0) || c.prefetch == Some(0) {
            return Err(Error::config("⟨workers⟩ and ⟨prefetch⟩ take at least 1"));
        }
        let interpolation = c.interpolation.as_deref().map(Interpolation::parse).transpose()?;
        crate::train::features::validate(c)?;
        let clip = crate::train::features::grad_clip(c)?;
        let ema = c.ema.as_deref().map(EmaConfig::parse).transpose()?;
        let swa = crate::train::swa::resolve(c)?;
        let max_time = c.max_time.as_deref().map(crate::train::features::parse_max_time).transpose()?;
        crate::data::mix::check_alpha("⟨mixup_alpha⟩", c.mixup_alpha)?;
        crate::data::mix::check_alpha("⟨cutmix_alpha⟩", c.cutmix_alpha)?;
        crate::data::erase::check_probability(c.random_erase)?;
        let auto_augment = c.auto_augment.as_deref().map(Policy::parse).transpose()?;
        if c.booster_weights.is_some() && c.booster.is_none() {
            return Err(Error::config("⟨booster_weights⟩ needs ⟨booster⟩ NAME (the model those weights are for)"));
        }
        // Last, as the readers' errors came after every other check; a path is only classified here (a finished
        // run's data may be gone), its existence is the reader's to check.
        let data = DataSource::parse(&c.data)?;
        let validation_data = c.validation_data.as_deref().map(DataSource::parse).transpose()?;
        Ok(Run {
            config: c.clone(),
            model,
            device,
            optimizer,
            groups,
            metrics,
            callbacks,
            augment,
            interpolation,
            auto_augment,
            clip,
            ema,
            swa,
            max_time,
            data,
            validation_data,
        })
    }
}

impl Run {
    /// Resolves `augment: auto` for data whose samples have `sample_shape` (affine for images, [C, H, W]), in the
    /// typed value and in the recorded config.
    pub fn resolve_augment(&mut self, sample_shape: &[i64]) -> Result<()> {
        if self.augment == AugmentChoice::Auto {
            let image = sample_shape.len() == 3;
            self.config.augment = image.then(|| "affine".to_string());
            self.augment = match &self.config.augment {
                Some(a) => AugmentChoice::On(Augment::parse(a)?),
                None => AugmentChoice::Off,
            };
        }
        Ok(())
    }

    /// No augmentation of data held in memory (an image folder's crop and flip are its augmentation).
    pub fn clear_augment(&mut self) {
        self.augment = AugmentChoice::Off;
        self.config.augment = None;
    }

    /// Sets the learning rate the run trains with (`--lr auto`'s suggestion), in the optimizer and the record.
    pub fn set_lr(&mut self, lr: f64) {
        self.optimizer.hyper.lr = lr;
        self.config.hyper.lr = Some(lr);
    }

    /// The run folder as given (`out`), when set.
    pub fn out(&self) -> Option<&Path> {
        self.config.out.as_deref().map(Path::new)
    }
}
