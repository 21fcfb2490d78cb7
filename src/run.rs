//! The library's whole training run, which the CLI calls: config → data → model → trainer → run folder.
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::models;
use crate::nn::VarStore;
use crate::optim::Optimizer;
use crate::train::progress::Verbosity;
use crate::train::{Callback, FitConfig, History, Loss, Metric, Trainer};
use crate::util::write_atomic;

/// What a finished run reports.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub history: History,
    pub epochs_run: usize,
    pub seconds: f64,
    pub num_parameters: i64,
    pub device: String,
}

impl RunOutcome {
    /// The one-line summary printed at the end of `tchzoo train`.
    pub fn summary_line(&self, config: &RunConfig) -> String {
        let mut parts = vec![format!(
            "{} on {}: {} epochs in {:.1}s on {}",
            config.model, config.data, self.epochs_run, self.seconds, self.device
        )];
        for key in ["loss", "accuracy", "val_loss", "val_accuracy", "mae", "val_mae"] {
            if let Some(v) = self.history.last(key) {
                parts.push(format!("{key} {v:.4}"));
            }
        }
        if let Some(best) = self.history.get("val_accuracy").and_then(|v| v.iter().cloned().reduce(f64::max)) {
            parts.push(format!("best val_accuracy {best:.4}"));
        }
        parts.push(format!("→ {}", self.dir.display()));
        parts.join(", ")
    }
}

/// A model, its store and the loss it was set up for, built for a dataset.
pub struct Prepared {
    pub trainer: Trainer,
    pub train: Dataset,
    pub validation: Option<Dataset>,
    /// The parameters `--freeze` took out of training (for `--unfreeze-at`).
    pub frozen: Vec<String>,
}

/// Reads the data, builds the model and optimizer, and checks that the model takes the data, all before training.
pub fn prepare(config: &RunConfig) -> Result<Prepared> {
    config.validate()?;
    if let Some(t) = config.threads {
        tch::set_num_threads(t.max(1) as i32);
    }
    let mut device = crate::device::parse(&config.device)?;
    if let (Some(g), tch::Device::Cuda(_)) = (crate::dist::current(), device) {
        // One process per GPU: LOCAL_RANK picks it, as torchrun's users set `cuda:LOCAL_RANK`.
        device = crate::device::parse(&format!("cuda:{}", g.local_rank))?;
    }
    tch::manual_seed(config.seed as i64);
    let full = data::load(&config.data, config.seed)?;
    let (train, validation) = match (&config.validation_data, config.validation_split) {
        (Some(spec), _) => (full, Some(data::load(spec, config.seed)?)),
        (None, Some(f)) => {
            let (t, v) = full.split_validation(f)?;
            (t, Some(v))
        }
        (None, None) => (full, None),
    };
    let validation = validation.map(|v| conform_validation(v, &train)).transpose()?;
    if let Some(v) = &validation {
        if v.sample_shape() != train.sample_shape() {
            return Err(Error::data(
                &v.name,
                format!(
                    "validation samples have shape {:?}, training samples {:?}",
                    v.sample_shape(),
                    train.sample_shape()
                ),
            ));
        }
    }
    let loss = Loss::parse(&config.loss, train.task)?;
    let metrics = if config.metrics.is_empty() {
        Metric::defaults(loss)
    } else {
        config.metrics.iter().map(|m| Metric::parse(m)).collect::<Result<Vec<_>>>()?
    };
    for m in &metrics {
        m.check(loss, train.task)?;
    }
    let store = VarStore::new(device);
    let extra: Vec<(&str, &str)> = [("booster", &config.booster), ("booster_weights", &config.booster_weights)]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
    let model = models::build_with(&config.model, &store, loss.num_outputs(train.task), &train.sample_shape(), &extra)?;
    models::trace(model.as_ref(), &store, &train.sample_shape())
        .map_err(|e| Error::data(&train.name, e.to_string()))?;
    if let Some(w) = &config.weights {
        let report = crate::checkpoint::load_weights(&store, Path::new(w), config.strict)?;
        if !report.is_clean() {
            eprintln!(
                "warning: {w}: {}",
                report.describe().trim_end_matches("; use --strict false to load only what matches")
            );
        }
    }
    let entry = models::find(&crate::util::Spec::parse(&config.model, "model")?.source)?;
    let classifier = model.classifier().unwrap_or_else(|| entry.classifier.to_string());
    if let Some(w) = &config.pretrained {
        let report = crate::train::transfer::load_pretrained(&store, Path::new(w), &classifier)?;
        eprintln!("pretrained {w}: {}", report.describe());
    }
    let frozen = match &config.freeze {
        Some(spec) => {
            let names = crate::train::transfer::frozen_names(&store, spec, &classifier)?;
            crate::train::transfer::set_trainable(&store, &names, false);
            let count: i64 = names.iter().filter_map(|n| store.get(n)).map(|t| t.numel() as i64).sum();
            let until = config.unfreeze_at.map_or(String::new(), |e| format!(" until epoch {e}"));
            eprintln!("freeze {spec}: {count} parameters in {} tensors frozen{until}", names.len());
            names
        }
        None => vec![],
    };
    let optimizer = Optimizer::new(config.optimizer_config()?, store.parameters())?;
    let mut trainer = Trainer::new(model, store, optimizer, loss, metrics);
    trainer.set_precision(config.precision);
    if config.channels_last {
        trainer.set_channels_last()?;
    }
    Ok(Prepared { trainer, train, validation, frozen })
}

/// Makes explicit validation data speak the training data's labels: the same task, class names mapped to the
/// training indices, and no label beyond the training classes (the model has outputs for those only).
fn conform_validation(mut v: Dataset, train: &Dataset) -> Result<Dataset> {
    use crate::data::Task;
    match (train.task, v.task) {
        (Task::Classification { n_classes }, Task::Classification { .. }) => {
            if let (Some(train_names), Some(val_names)) = (&train.class_names, &v.class_names) {
                if train_names != val_names {
                    let mut index = Vec::with_capacity(val_names.len());
                    for name in val_names {
                        let i = train_names.iter().position(|t| t == name).ok_or_else(|| {
                            Error::data(
                                &v.name,
                                format!(
                                    "validation class '{name}' is not among the training classes ({})",
                                    train_names.join(", ")
                                ),
                            )
                        })?;
                        index.push(i as i64);
                    }
                    v.ys = tch::Tensor::from_slice(&index).index_select(0, &v.ys);
                    v.class_names = Some(train_names.clone());
                }
            }
            let hi = v.ys.max().int64_value(&[]);
            if hi >= n_classes as i64 {
                return Err(Error::data(
                    &v.name,
                    format!(
                        "validation label {hi} is outside the training data's {n_classes} classes (0..={}); \
                         validate on data with the same classes",
                        n_classes - 1
                    ),
                ));
            }
            v.task = train.task;
            if v.class_names.is_none() {
                v.class_names = train.class_names.clone();
            }
            Ok(v)
        }
        (Task::Regression { n_outputs: a }, Task::Regression { n_outputs: b }) if a == b => Ok(v),
        (t, vt) => Err(Error::data(
            &v.name,
            format!("validation targets are {}, training targets {}; they must match", describe(vt), describe(t)),
        )),
    }
}

fn describe(task: crate::data::Task) -> String {
    match task {
        crate::data::Task::Classification { n_classes } => format!("class labels ({n_classes} classes)"),
        crate::data::Task::Regression { n_outputs } => format!("{n_outputs} real value(s) per sample"),
    }
}

/// The run folder: `config.out`, or `runs/<model>-<data>-<time>`.
pub fn run_dir(config: &RunConfig) -> PathBuf {
    if let Some(out) = &config.out {
        return PathBuf::from(out);
    }
    let clean = |s: &str| -> String {
        let s = s.split(':').next().unwrap_or(s);
        let s = Path::new(s).file_stem().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| s.to_string());
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
    };
    let time = chrono::Local::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("runs").join(format!("{}-{}-{}", clean(&config.model), clean(&config.data), time))
}

/// The callbacks a config asks for, in a fixed order (a resume file keys their state by position and name).
pub fn config_callbacks(config: &RunConfig, dir: &Path) -> Result<Vec<Box<dyn Callback>>> {
    use crate::train::callbacks::*;
    let mut all: Vec<Box<dyn Callback>> = vec![];
    if let Some(s) = &config.lr_schedule {
        all.push(Box::new(LearningRateScheduler::from_schedule(LearningRateScheduler::parse(s, config.epochs)?)));
    }
    if config.terminate_on_nan {
        all.push(Box::new(TerminateOnNaN::default()));
    }
    if let Some(s) = &config.reduce_lr_on_plateau {
        all.push(Box::new(ReduceLrOnPlateau::new(ReduceLrOnPlateauConfig::parse(s)?)?));
    }
    if let Some(s) = &config.early_stopping {
        all.push(Box::new(EarlyStopping::new(EarlyStoppingConfig::parse(s)?)?));
    }
    if let Some(s) = &config.checkpoint {
        let mut mc = ModelCheckpoint::new(ModelCheckpointConfig::parse(s)?)?;
        mc.base_dir = Some(dir.to_path_buf());
        all.push(Box::new(mc));
    }
    if let Some(p) = &config.csv_logger {
        let path = Path::new(p);
        all.push(Box::new(CsvLogger::new(if path.is_relative() { dir.join(path) } else { path.to_path_buf() }, false)));
    }
    Ok(all)
}

/// Trains as `config` says and writes the run folder: `config.json`, `history.json`, `history.csv`, the final
/// weights as `model.pt` (for `torch.load`) and `model.safetensors`, `curves.png`, and after every epoch the
/// resume state (`resume.json`, `resume/`). `callbacks` run after the ones the config asks for.
pub fn train(config: &RunConfig, verbosity: Verbosity, callbacks: Vec<Box<dyn Callback>>) -> Result<RunOutcome> {
    let mut dir = run_dir(config);
    if let Some(g) = crate::dist::current() {
        // Every rank uses rank 0's folder (a default name holds the time, which differs between processes).
        dir = PathBuf::from(g.share_string("run_dir", &dir.display().to_string())?);
    }
    if dir.join(crate::train::resume::RESUME_FILE).exists() {
        return Err(Error::config(format!(
            "{} already holds a run; continue it with --resume {0}, or choose another --out",
            dir.display()
        )));
    }
    let config = RunConfig { out: Some(dir.display().to_string()), ..config.clone() };
    execute(&config, verbosity, callbacks, None)
}

/// Continues the run in `dir` from its last completed epoch: weights, optimizer state, learning rate, callbacks'
/// state and history come back; the shuffles and libtorch's generator depend on (seed, epoch) only, so the
/// continued run gives the same history as one that never stopped.
pub fn resume(dir: &Path, verbosity: Verbosity, callbacks: Vec<Box<dyn Callback>>) -> Result<RunOutcome> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(Error::config(format!("{} has no config.json: not a tchzoo run folder", dir.display())));
    }
    let config = RunConfig { out: Some(dir.display().to_string()), ..RunConfig::from_json_file(&config_path)? };
    let state = crate::train::resume::read(dir)?;
    if state.finished {
        return Err(Error::config(format!(
            "the run in {} already finished ({} epochs); nothing to resume",
            dir.display(),
            state.epoch
        )));
    }
    execute(&config, verbosity, callbacks, Some(state))
}

fn execute(
    config: &RunConfig,
    verbosity: Verbosity,
    callbacks: Vec<Box<dyn Callback>>,
    resumed: Option<crate::train::resume::ResumeState>,
) -> Result<RunOutcome> {
    let started = std::time::Instant::now();
    let Prepared { mut trainer, train, validation, frozen } = prepare(config)?;
    let dir = run_dir(config);
    let chief = crate::dist::writes_files();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if chief {
        write_atomic(&dir.join("config.json"), config.to_json()?.as_bytes())?;
    }
    let mut all = config_callbacks(config, &dir)?;
    if let Some(epoch) = config.unfreeze_at {
        all.push(Box::new(crate::train::transfer::Unfreeze { epoch, names: frozen }));
    }
    all.extend(callbacks);
    let (initial_epoch, history) = match &resumed {
        Some(state) => {
            crate::train::resume::restore(&dir, state, &trainer.store, &mut trainer.optimizer, &mut all)?;
            if let (Some(scaler), Some(saved)) = (trainer.scaler.as_mut(), &state.grad_scaler) {
                scaler.load_state(saved);
            }
            (state.epoch, state.history.clone())
        }
        None => (0, History::default()),
    };
    let fit = FitConfig {
        epochs: config.epochs,
        batch_size: config.batch_size,
        shuffle: config.shuffle,
        initial_epoch,
        seed: config.seed,
        verbosity,
        augment: config.augment.as_deref().map(crate::data::augment::Augment::parse).transpose()?,
        run_dir: Some(dir.clone()),
        distributed: crate::dist::current(),
        check_replicas: crate::dist::checks_replicas(),
        ..FitConfig::default()
    };
    crate::train::resume::install_signal_handler();
    let history = trainer.fit_with_history(&train, validation.as_ref(), &fit, &mut all, history)?;
    if chief {
        history.save_json(&dir.join("history.json"))?;
        history.save_csv(&dir.join("history.csv"))?;
        crate::checkpoint::save_weights(&trainer.store, &dir.join("model.pt"))?;
        crate::checkpoint::save_weights(&trainer.store, &dir.join("model.safetensors"))?;
        let states: std::collections::BTreeMap<String, serde_json::Value> =
            all.iter().enumerate().map(|(i, cb)| (format!("{i}.{}", cb.name()), cb.state())).collect();
        let options = crate::plot::CurveOptions { metrics: None, marks: curve_marks(config, &states) };
        crate::plot::plot_runs(&[("", &history)], &dir.join("curves.png"), &options)?;
    }
    if let Some(g) = crate::dist::current() {
        // The others wait until rank 0 has written the run folder, so a launcher sees it whole when all exit.
        g.barrier()?;
    }
    Ok(RunOutcome {
        dir,
        epochs_run: history.len(),
        history,
        seconds: started.elapsed().as_secs_f64(),
        num_parameters: trainer.store.num_parameters(),
        device: crate::device::name(trainer.device()),
    })
}

/// A trained model loaded back for `evaluate` and `predict` (the seed's `load_model`).
pub struct LoadedModel {
    pub trainer: Trainer,
    /// The shape of one input sample.
    pub input_shape: Vec<i64>,
    /// The run's config when loaded from a run folder.
    pub config: Option<RunConfig>,
}

/// Where a model comes from: a run folder (its config and `model.pt`, or other `weights`), or a registry spec with
/// weights, output count and input shape.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    pub run: Option<PathBuf>,
    pub model: Option<String>,
    pub weights: Option<PathBuf>,
    pub num_classes: Option<i64>,
    pub input_shape: Option<Vec<i64>>,
    pub loss: Option<String>,
    pub device: Option<String>,
}

pub fn load_model(src: &ModelSource) -> Result<LoadedModel> {
    let device = crate::device::parse(src.device.as_deref().unwrap_or("auto"))?;
    let store = VarStore::new(device);
    if let Some(run) = &src.run {
        let config_path = run.join("config.json");
        if !config_path.exists() {
            return Err(Error::config(format!("{} has no config.json: not a tchzoo run folder", run.display())));
        }
        let config = RunConfig::from_json_file(&config_path)?;
        let data = data::load(&config.data, config.seed)?;
        let loss = Loss::parse(&config.loss, data.task)?;
        let input_shape = data.sample_shape();
        let weights = src.weights.clone().unwrap_or_else(|| run.join("model.pt"));
        if !weights.exists() {
            return Err(Error::config(format!(
                "{} does not exist (the run has not finished?); give --weights, e.g. a checkpoint of the run",
                weights.display()
            )));
        }
        let tensors = crate::checkpoint::read_state_dict(&weights)?;
        let extra = match &config.booster {
            Some(b) => models::channel_boost::rebuild_options(b, &tensors)?,
            None => vec![],
        };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let model = models::build_with(&config.model, &store, loss.num_outputs(data.task), &input_shape, &extra)?;
        store.load_state_dict(&tensors, true, &weights.display().to_string())?;
        let metrics = if config.metrics.is_empty() {
            Metric::defaults(loss)
        } else {
            config.metrics.iter().map(|m| Metric::parse(m)).collect::<Result<Vec<_>>>()?
        };
        let opt = Optimizer::new(config.optimizer_config()?, store.parameters())?;
        return Ok(LoadedModel {
            trainer: Trainer::new(model, store, opt, loss, metrics),
            input_shape,
            config: Some(config),
        });
    }
    let spec =
        src.model.as_deref().ok_or_else(|| Error::config("give --run DIR, or --model NAME with --weights FILE"))?;
    let entry = models::find(&crate::util::Spec::parse(spec, "model")?.source)?;
    let weights = src.weights.as_ref().ok_or_else(|| Error::config("--model needs --weights FILE (a state dict)"))?;
    let input_shape = src.input_shape.clone().unwrap_or_else(|| entry.default_input.to_vec());
    let num_outputs = src.num_classes.unwrap_or(entry.default_classes);
    let loss = match src.loss.as_deref() {
        None | Some("auto") => {
            if num_outputs == 1 {
                Loss::BinaryCrossEntropy
            } else {
                Loss::CrossEntropy
            }
        }
        Some(name) => {
            Loss::parse(name, crate::data::Task::Regression { n_outputs: num_outputs as usize }).or_else(|_| {
                Loss::parse(name, crate::data::Task::Classification { n_classes: num_outputs.max(2) as usize })
            })?
        }
    };
    let model = models::build(spec, &store, num_outputs, &input_shape)?;
    crate::checkpoint::load_weights(&store, weights, true)?;
    let opt = Optimizer::new(crate::optim::OptimizerConfig::new(crate::optim::OptimizerKind::Sgd), store.parameters())?;
    Ok(LoadedModel {
        trainer: Trainer::new(model, store, opt, loss, Metric::defaults(loss)),
        input_shape,
        config: None,
    })
}

/// What the curves of a run mark: the best epoch of the value early stopping (or else the best-only checkpoint,
/// or else `val_loss`) monitors, and the epoch early stopping fired (from the callbacks' saved state).
pub fn curve_marks(
    config: &RunConfig,
    callback_states: &std::collections::BTreeMap<String, serde_json::Value>,
) -> crate::plot::CurveMarks {
    use crate::train::callbacks::{EarlyStoppingConfig, Mode, ModelCheckpointConfig, Monitor};
    let from_es = config.early_stopping.as_deref().and_then(|s| EarlyStoppingConfig::parse(s).ok());
    let from_mc =
        config.checkpoint.as_deref().and_then(|s| ModelCheckpointConfig::parse(s).ok()).filter(|c| c.save_best_only);
    let (monitor, mode) = match (from_es, from_mc) {
        (Some(es), _) => (es.monitor, es.mode),
        (None, Some(mc)) => (mc.monitor, mc.mode),
        (None, None) => {
            let m =
                if config.validation_split.is_some() || config.validation_data.is_some() { "val_loss" } else { "loss" };
            (m.to_string(), Mode::Auto)
        }
    };
    let maximize = Monitor::new(&monitor, mode, 0.0).map(|m| m.maximize).unwrap_or(false);
    let stopped_epoch = callback_states
        .iter()
        .filter(|(k, _)| k.ends_with(".early_stopping"))
        .find_map(|(_, v)| v.get("stopped_epoch").and_then(|e| e.as_u64()).map(|e| e as usize));
    crate::plot::CurveMarks { monitor: Some((monitor, maximize)), stopped_epoch }
}
