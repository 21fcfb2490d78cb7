//! Keras' ModelCheckpoint: save the model (weights, or weights with optimizer state) every `save_freq` epochs,
//! or only when the monitored value improves, to a path template such as `ckpt-{epoch:03d}-{val_loss:.4f}.pt`.
//! Lightning's options (`save_top_k`, `save_last`, `every_n_train_steps`, `train_time_interval`) switch to
//! Lightning's ModelCheckpoint bookkeeping instead ([`keep`]).
//! It names the files and decides which to write and delete; it pushes [`Action`]s, which the trainer carries out.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::monitor::{check_keys, get, parse_options, Mode, Monitor};
use super::terminate_on_nan::logs_are_finite;
use super::{Action, Callback, CallbackContext, Logs, Saved, StepInfo};
use crate::error::{Error, Result};

mod keep;
pub use keep::KeepState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheckpointConfig {
    pub filepath: String,
    pub monitor: String,
    pub verbose: bool,
    pub save_best_only: bool,
    pub save_weights_only: bool,
    pub mode: Mode,
    /// Save every N epochs (`period=N`; Keras' `save_freq=epoch` is 1).
    pub save_freq: usize,
    pub initial_value_threshold: Option<f64>,
    /// Lightning's `save_top_k`: keep the K best by the monitored value (−1: all; 0: none); needs save_best_only.
    #[serde(default)]
    pub save_top_k: Option<i64>,
    /// Lightning's `save_last`: `last.pt` (next to the template's files) is the newest checkpoint written.
    #[serde(default)]
    pub save_last: bool,
    /// Lightning's `every_n_train_steps`: save after every N optimizer steps instead of at epoch ends.
    #[serde(default)]
    pub every_n_train_steps: Option<u64>,
    /// Lightning's `train_time_interval`, in minutes: save when this much time passed since the last check.
    #[serde(default)]
    pub train_time_interval: Option<f64>,
}

impl ModelCheckpointConfig {
    pub fn new(filepath: &str) -> Self {
        ModelCheckpointConfig {
            filepath: filepath.to_string(),
            monitor: "val_loss".into(),
            verbose: false,
            save_best_only: false,
            save_weights_only: false,
            mode: Mode::Auto,
            save_freq: 1,
            initial_value_threshold: None,
            save_top_k: None,
            save_last: false,
            every_n_train_steps: None,
            train_time_interval: None,
        }
    }
    /// True when a Lightning option is given: the files are kept as Lightning's ModelCheckpoint keeps them.
    pub fn lightning(&self) -> bool {
        self.save_top_k.is_some()
            || self.save_last
            || self.every_n_train_steps.is_some()
            || self.train_time_interval.is_some()
    }
    /// Lightning's `save_top_k` in effect: 1 (Lightning's default) with save_best_only, else −1 (every save kept,
    /// as Keras without save_best_only).
    pub fn top_k(&self) -> i64 {
        self.save_top_k.unwrap_or(if self.save_best_only { 1 } else { -1 })
    }
    /// `best_model.pt,monitor=val_accuracy,mode=max,save_best_only=true`.
    pub fn parse(spec: &str) -> Result<Self> {
        const WHAT: &str = "⟨checkpoint⟩";
        let (path, rest) = match spec.split_once(',') {
            Some((p, r)) if !p.contains('=') => (p, r),
            _ if !spec.contains('=') => (spec, ""),
            _ => {
                return Err(Error::config(format!(
                    "{WHAT} '{spec}': start with the file path, e.g. best.pt,monitor=val_loss"
                )))
            }
        };
        let o = parse_options(rest, WHAT)?;
        check_keys(
            &o,
            &[
                "monitor",
                "verbose",
                "save_best_only",
                "save_weights_only",
                "mode",
                "save_freq",
                "period",
                "initial_value_threshold",
                "save_top_k",
                "save_last",
                "every_n_train_steps",
                "train_time_interval",
            ],
            WHAT,
        )?;
        // Keras' `save_freq` is "epoch" or a number of batches; checkpoints here are written at epoch ends, so a
        // number of epochs is `period` (Keras 2's name for it).
        let save_freq = match (o.get("save_freq").map(String::as_str), o.get("period")) {
            (Some(_), Some(_)) => {
                return Err(Error::config(format!("{WHAT}: give save_freq=epoch or period=N, not both")))
            }
            (Some("epoch"), None) | (None, None) => 1,
            (Some(n), None) => {
                return Err(Error::config(format!(
                    "{WHAT}: save_freq={n}: a number counts batches in Keras, and checkpoints here are written at \
                     the end of an epoch; use save_freq=epoch, or period=N to save every N epochs"
                )))
            }
            (None, Some(_)) => get(&o, "period", 1, WHAT)?,
        };
        let d = Self::new(path);
        let c = ModelCheckpointConfig {
            monitor: get(&o, "monitor", d.monitor.clone(), WHAT)?,
            verbose: get(&o, "verbose", d.verbose, WHAT)?,
            save_best_only: get(&o, "save_best_only", false, WHAT)?,
            save_weights_only: get(&o, "save_weights_only", false, WHAT)?,
            mode: get(&o, "mode", d.mode, WHAT)?,
            save_freq,
            initial_value_threshold: o
                .get("initial_value_threshold")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| Error::config(format!("{WHAT}: initial_value_threshold does not parse")))?,
            save_top_k: o.get("save_top_k").map(|_| get(&o, "save_top_k", 0i64, WHAT)).transpose()?,
            save_last: get(&o, "save_last", false, WHAT)?,
            every_n_train_steps: o
                .get("every_n_train_steps")
                .map(|_| get(&o, "every_n_train_steps", 0u64, WHAT))
                .transpose()?,
            train_time_interval: o
                .get("train_time_interval")
                .map(|_| get(&o, "train_time_interval", 0.0f64, WHAT))
                .transpose()?,
            ..d
        };
        if o.contains_key("period") && (c.every_n_train_steps.is_some() || c.train_time_interval.is_some()) {
            return Err(Error::config(format!(
                "{WHAT}: period (Lightning's every_n_epochs), every_n_train_steps and train_time_interval are \
                 mutually exclusive, as in Lightning; give one"
            )));
        }
        c.check_template()?;
        check_extension(&c.filepath)?;
        Ok(c)
    }
    /// Fails now, not at epoch 200, on a template that cannot be filled.
    pub fn check_template(&self) -> Result<()> {
        if self.save_freq == 0 {
            return Err(Error::config("⟨checkpoint⟩: period must be at least 1"));
        }
        self.check_lightning()?;
        let keys = template_keys(&self.filepath)?;
        // The longest name the template can give (a float32 loss is at most 3.4e38 in size; epochs stay below
        // 10^9) must fit the file system's 255 bytes per name, or the run would fail after its first epoch.
        for (epoch, value) in [(0, 0.0), (999_999_998, -(f32::MAX as f64))] {
            let logs: Logs = keys.iter().map(|k| (k.clone(), value)).collect();
            let path = fill_template(&self.filepath, epoch, &logs)?;
            if let Some(long) = Path::new(&path).iter().find(|c| c.len() > 255) {
                return Err(Error::config(format!(
                    "checkpoint path '{}': a name of the path can reach {} bytes; file names hold at most 255",
                    self.filepath,
                    long.len()
                )));
            }
        }
        Ok(())
    }
}

impl ModelCheckpointConfig {
    /// Lightning's options, checked as its `__validate_init_configuration` and more strictly where a value would
    /// silently do nothing.
    fn check_lightning(&self) -> Result<()> {
        const WHAT: &str = "⟨checkpoint⟩";
        if let Some(k) = self.save_top_k {
            if !self.save_best_only {
                return Err(Error::config(format!(
                    "{WHAT}: save_top_k={k} keeps the best checkpoints by the monitored value, which needs \
                     save_best_only=true (without it every checkpoint is kept)"
                )));
            }
            if k < -1 {
                return Err(Error::config(format!(
                    "{WHAT}: save_top_k={k} must be -1 (keep all), 0 (none) or a positive count"
                )));
            }
        }
        if self.every_n_train_steps == Some(0) {
            return Err(Error::config(format!(
                "{WHAT}: every_n_train_steps=0 never saves; give a number of optimizer steps of at least 1"
            )));
        }
        if let Some(m) = self.train_time_interval {
            if !m.is_finite() || m < 0.0 {
                return Err(Error::config(format!(
                    "{WHAT}: train_time_interval={m} must be a number of minutes, at least 0"
                )));
            }
        }
        if self.every_n_train_steps.is_some() && self.train_time_interval.is_some() {
            return Err(Error::config(format!(
                "{WHAT}: every_n_train_steps and train_time_interval are mutually exclusive, as in Lightning; give one"
            )));
        }
        if self.lightning() && self.initial_value_threshold.is_some() {
            return Err(Error::config(format!(
                "{WHAT}: initial_value_threshold is Keras' option and Lightning's save_top_k/save_last/\
                 every_n_train_steps/train_time_interval have none; drop one of them"
            )));
        }
        Ok(())
    }
}

/// Refuses Keras' file formats: a `.h5`/`.hdf5`/`.keras` name would hold a PyTorch file that no tool reads as such.
pub fn check_extension(template: &str) -> Result<()> {
    let ext = Path::new(template).extension().and_then(|e| e.to_str()).map(|e| e.to_lowercase());
    if let Some(ext @ ("h5" | "hdf5" | "keras")) = ext.as_deref() {
        return Err(Error::config(format!(
            "⟨checkpoint⟩ {template}: .{ext} is a Keras format, which tchzoo does not write; use .pt (a PyTorch \
             checkpoint) or .safetensors (with save_weights_only=true)"
        )));
    }
    Ok(())
}

/// The names a template uses (besides `epoch`).
pub fn template_keys(template: &str) -> Result<Vec<String>> {
    let mut keys = vec![];
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| Error::config(format!("checkpoint path '{template}': a '{{' has no closing '}}'")))?;
        let field = &rest[start + 1..start + end];
        let name = field.split(':').next().unwrap_or("");
        if name != "epoch" {
            keys.push(name.to_string());
        }
        rest = &rest[start + end + 1..];
    }
    Ok(keys)
}

/// Fills `{epoch:03d}`, `{val_loss:.4f}`, `{name}` (Python's format mini-language for d and f). `epoch` is 1-based.
pub fn fill_template(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| Error::config(format!("checkpoint path '{template}': a '{{' has no closing '}}'")))?;
        let field = &rest[start + 1..start + end];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = if name == "epoch" {
            (epoch + 1) as f64
        } else {
            *logs.get(name).ok_or_else(|| {
                Error::config(format!(
                    "checkpoint path '{template}' uses '{{{name}}}', which the run does not log (it logs: {})",
                    logs.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?
        };
        out.push_str(&format_value(value, spec, template)?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn format_value(v: f64, spec: &str, template: &str) -> Result<String> {
    let bad =
        || Error::config(format!("checkpoint path '{template}': format '{spec}' not understood (use e.g. 03d or .4f)"));
    if spec.is_empty() {
        return Ok(if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") });
    }
    // Widths and precisions beyond a file name's 255 bytes are refused before `format!` (which panics on huge ones).
    let bounded = |n: usize| if n <= 255 { Ok(n) } else { Err(bad()) };
    if let Some(d) = spec.strip_suffix('d') {
        let zero = d.starts_with('0');
        let width: usize = bounded(if d.is_empty() { 0 } else { d.parse().map_err(|_| bad())? })?;
        let n = v.round() as i64;
        return Ok(if zero { format!("{n:0width$}") } else { format!("{n:width$}") });
    }
    if let Some(f) = spec.strip_suffix('f') {
        let (width, prec) = f.split_once('.').ok_or_else(bad)?;
        let prec: usize = bounded(prec.parse().map_err(|_| bad())?)?;
        let width: usize = bounded(if width.is_empty() { 0 } else { width.parse().map_err(|_| bad())? })?;
        return Ok(format!("{v:width$.prec$}"));
    }
    Err(bad())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCheckpointState {
    pub best: Option<f64>,
    pub last_saved: Option<String>,
    /// Lightning's bookkeeping (used when a Lightning option is given).
    #[serde(default)]
    pub keep: KeepState,
}

pub struct ModelCheckpoint {
    pub config: ModelCheckpointConfig,
    monitor: Monitor,
    pub state: ModelCheckpointState,
    restored: bool,
    /// Folder that relative paths are resolved in (the run folder from the CLI).
    pub base_dir: Option<PathBuf>,
    /// Lightning's `_last_time_checked` (train_time_interval), set at train begin.
    last_time_checked: Option<std::time::Instant>,
    /// Whether this process writes files (the context's `is_chief`, kept at train begin for the bookkeeping that
    /// runs without a context).
    chief: bool,
}

impl ModelCheckpoint {
    pub fn new(config: ModelCheckpointConfig) -> Result<Self> {
        config.check_template()?;
        check_extension(&config.filepath)?;
        let monitor = Monitor::new(&config.monitor, config.mode, 0.0)?;
        Ok(ModelCheckpoint {
            config,
            monitor,
            state: ModelCheckpointState::default(),
            restored: false,
            base_dir: None,
            last_time_checked: None,
            chief: true,
        })
    }
    fn path_for(&self, epoch: usize, logs: &Logs) -> Result<PathBuf> {
        let p = PathBuf::from(fill_template(&self.config.filepath, epoch, logs)?);
        Ok(match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        })
    }
    /// Asks for the model to be saved at `path` (the trainer writes it; in a distributed run every rank keeps the
    /// same state, since the logs are global, but only rank 0 writes).
    fn save(&self, path: &Path, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) {
        let what = if self.config.save_weights_only {
            Saved::Weights
        } else {
            Saved::Checkpoint { epoch: (epoch + 1) as i64, loss: logs.get("loss").copied().unwrap_or(f64::NAN) }
        };
        ctx.actions.push(Action::Save { path: path.to_path_buf(), what });
    }
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> &'static str {
        "model_checkpoint"
    }
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        self.chief = ctx.is_chief;
        // The template's folder is made now (as Lightning makes its dirpath at setup): a path that cannot be a
        // folder fails before the first epoch, not after it. A folder named by the template's keys waits.
        let folder = Path::new(&self.config.filepath).parent().filter(|p| !p.to_string_lossy().contains('{'));
        if let (true, Some(folder)) = (self.chief, folder) {
            let folder = match &self.base_dir {
                Some(base) if folder.is_relative() => base.join(folder),
                _ => folder.to_path_buf(),
            };
            crate::util::create_dir_all(&folder)?;
        }
        if !self.restored {
            self.state = ModelCheckpointState {
                best: self.config.initial_value_threshold,
                last_saved: None,
                keep: KeepState::default(),
            };
        }
        self.last_time_checked = Some(std::time::Instant::now());
        Ok(())
    }
    fn on_train_batch_end(&mut self, step: &StepInfo, ctx: &mut CallbackContext) -> Result<()> {
        if self.config.lightning() {
            self.lightning_batch_end(step, ctx)?;
        }
        Ok(())
    }
    fn on_train_end(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if self.config.lightning() {
            self.lightning_train_end(ctx)?;
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        if self.config.lightning() {
            return self.lightning_epoch_end(epoch, logs, ctx);
        }
        if !(epoch + 1).is_multiple_of(self.config.save_freq) || !logs_are_finite(logs) {
            return Ok(());
        }
        let path = self.path_for(epoch, logs)?;
        let verbose = self.config.verbose && ctx.is_chief;
        if self.config.save_best_only {
            let Some(&current) = logs.get(&self.config.monitor) else { return Ok(()) };
            let best = self.state.best.unwrap_or(self.monitor.worst());
            if self.monitor.is_improvement(current, best) {
                if verbose {
                    ctx.say(format!(
                        "Epoch {:05}: {} improved from {best:.5} to {current:.5}, saving model to {}",
                        epoch + 1,
                        self.config.monitor,
                        path.display()
                    ));
                }
                self.state.best = Some(current);
                self.save(&path, epoch, logs, ctx);
                self.state.last_saved = Some(path.display().to_string());
            } else if verbose {
                ctx.say(format!("Epoch {:05}: {} did not improve from {best:.5}", epoch + 1, self.config.monitor));
            }
        } else {
            if verbose {
                ctx.say(format!("Epoch {:05}: saving model to {}", epoch + 1, path.display()));
            }
            self.save(&path, epoch, logs, ctx);
            self.state.last_saved = Some(path.display().to_string());
        }
        Ok(())
    }
    fn monitors(&self) -> Vec<String> {
        let mut m = template_keys(&self.config.filepath).unwrap_or_default();
        if self.config.lightning() {
            // `{step}` is the global step, which Lightning's templates know.
            m.retain(|k| k != "step");
        }
        if self.config.save_best_only {
            m.push(self.config.monitor.clone());
        }
        m
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }
    /// A best-only checkpoint marks its monitor's best epoch.
    fn curve_mark(&self) -> Option<super::CurveMark> {
        self.config.save_best_only.then(|| super::CurveMark {
            monitor: (self.config.monitor.clone(), self.monitor.maximize),
            ends_run: false,
            stopped_epoch: None,
        })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.state =
            serde_json::from_value(state.clone()).map_err(|e| Error::config(format!("checkpoint state: {e}")))?;
        self.restored = true;
        Ok(())
    }
}
