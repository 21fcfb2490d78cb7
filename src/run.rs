//! The library's whole training run, which the CLI calls: config → data → model → trainer → run folder.
use std::path::{Path, PathBuf};

use crate::config::{Run, RunConfig};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::models;
use crate::nn::VarStore;
use crate::optim::Optimizer;
use crate::report::{Message, Output, Verbosity};
use crate::train::run_dir::RunDir;
use crate::train::{Callback, FitConfig, History, Loss, Metric, Trainer};

/// What a finished run reports.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub history: History,
    pub epochs_run: usize,
    pub seconds: f64,
    pub num_parameters: i64,
    pub device: String,
    /// The value the curves mark as best, and whether larger is better (from the run's callbacks).
    pub marked: Option<(String, bool)>,
    /// The config the run recorded in its folder.
    pub config: RunConfig,
}

impl RunOutcome {
    /// The one-line summary printed at the end of `tchzoo train`.
    pub fn summary_line(&self, config: &RunConfig) -> String {
        let mut parts = vec![format!(
            "{} on {}: {} epoch{} in {:.1}s on {}",
            config.model,
            config.data,
            self.epochs_run,
            if self.epochs_run == 1 { "" } else { "s" },
            self.seconds,
            self.device
        )];
        for key in ["loss", "accuracy", "val_loss", "val_accuracy", "mae", "val_mae"] {
            if let Some(v) = self.history.last(key) {
                parts.push(format!("{key} {v:.4}"));
            }
        }
        // The value the curves mark as best (early stopping's monitor, else a best-only checkpoint's, else
        // val_loss or loss), so the line and the plot agree.
        if let Some((name, maximize)) = self.marked.clone() {
            let values =
                self.history.get(&name).map(|v| v.iter().cloned().filter(|v| v.is_finite()).collect::<Vec<_>>());
            let best = values.and_then(|v| v.into_iter().reduce(if maximize { f64::max } else { f64::min }));
            if let Some(best) = best {
                parts.push(format!("best {name} {best:.4}"));
            }
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
    /// The transforms of an image folder's pipeline (`None` for data held in memory).
    pub transforms: Option<crate::data::transforms::Transforms>,
    /// What preparing did that the user should hear of (a partial weights load, the pretrained and frozen
    /// tensors), for the caller to print or not (`-q`): the library does not print.
    pub notes: Vec<String>,
}

/// Reads the data, builds the model and optimizer, and checks that the model takes the data, all before training.
pub fn prepare(config: &RunConfig) -> Result<Prepared> {
    prepare_in(&config.resolve()?, None)
}

/// As `prepare`, for a resolved run; `dist` for one process of a distributed run: its GPU is `LOCAL_RANK`'s, and
/// with `--sync-bn` its batch norms are built synchronised over the group.
pub fn prepare_in(run: &Run, dist: Option<&crate::dist::Distributed>) -> Result<Prepared> {
    let config = &run.config;
    if let Some(t) = config.threads {
        tch::set_num_threads(t.max(1) as i32);
    }
    crate::train::features::set_determinism(config.deterministic, config.cudnn_benchmark)?;
    let mut device = run.device;
    if let (Some(d), tch::Device::Cuda(_)) = (dist, device) {
        // One process per GPU: LOCAL_RANK picks it, as torchrun's users set `cuda:LOCAL_RANK`.
        device = crate::device::parse(&format!("cuda:{}", d.group.local_rank))?;
    }
    tch::manual_seed(config.seed as i64);
    let mut notes = vec![];
    // An image folder is read lazily by workers, with the run's transforms; other data is loaded in memory.
    let data::inputs::RunData { train, validation, transforms } = data::inputs::run_data(run)?;
    if let data::Task::Classification { n_classes: 1 } = train.task {
        // Softmax over one class is 1 whatever the input: the loss is 0 from the start and nothing is learnt.
        let class = train.class_names.as_ref().and_then(|c| c.first()).map_or("0".to_string(), |c| format!("'{c}'"));
        return Err(Error::data(
            &train.name,
            format!(
                "every sample is of one class ({class}); a classifier needs at least 2: add samples (or a class \
                 folder) of another class"
            ),
        ));
    }
    let validation = validation.map(|v| conform_validation(v, &train)).transpose()?;
    if let (Some(v), None, None, Some(f)) = (&validation, &run.validation_data, &transforms, config.validation_split) {
        notes.extend(data::inputs::grouped_split_note(&train, v, f));
    }
    if let Some(v) = &validation {
        // A lazy folder's evaluation crop may differ from its training crop (models that pool globally take both).
        if v.sample_shape() != train.sample_shape() && transforms.is_none() {
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
    let metrics = if run.metrics.is_empty() { Metric::defaults(loss) } else { run.metrics.clone() };
    for m in &metrics {
        m.check(loss, train.task)?;
    }
    let store = match dist {
        Some(d) if d.sync_bn => VarStore::new(device).with_sync_bn(d.group.clone()),
        _ => VarStore::new(device),
    };
    let extra: Vec<(&str, &str)> = [("booster", &config.booster), ("booster_weights", &config.booster_weights)]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
    // A part's weights (`--booster-weights`) load as `--pretrained` does, by the library, reported in a note.
    let (model, parts) = crate::train::transfer::build_model(
        &config.model,
        &store,
        loss.num_outputs(train.task),
        &train.sample_shape(),
        &extra,
    )?;
    notes.extend(parts.iter().map(|p| format!("{} {}: {}", p.option, p.file, p.report.describe())));
    models::trace(model.as_ref(), &store, &train.sample_shape())
        .map_err(|e| Error::data(&train.name, e.to_string()))?;
    if let Some(w) = &config.weights {
        let report = crate::checkpoint::load_weights(&store, Path::new(w), config.strict)?;
        if !report.is_clean() {
            notes.push(format!("warning: {w}: {}", report.describe()));
        }
    }
    let classifier = model.classifier().unwrap_or_else(|| run.model.classifier.to_string());
    if let Some(w) = &config.pretrained {
        let report = crate::train::transfer::load_pretrained(&store, Path::new(w), &classifier)?;
        notes.push(format!("pretrained {w}: {}", report.describe()));
    }
    let frozen = match &config.freeze {
        Some(spec) => {
            let names = crate::train::transfer::frozen_names(&store, spec, &classifier)?;
            crate::train::transfer::set_trainable(&store, &names, false);
            let count: i64 = names.iter().filter_map(|n| store.get(n)).map(|t| t.numel() as i64).sum();
            let until = config.unfreeze_at.map_or(String::new(), |e| format!(" until epoch {e}"));
            notes.push(format!("freeze {spec}: {count} parameters in {} tensors frozen{until}", names.len()));
            names
        }
        None => vec![],
    };
    if config.cuda_graph {
        crate::train::cuda_graph::check_supported(device, config.optimizer, config.precision, dist.is_some())?;
        if config.accumulate_grad_batches > 1 || run.clip.is_some() || run.ema.is_some() {
            return Err(Error::config(
                "⟨cuda_graph⟩ captures one plain step a batch: it does not yet combine with \
                 ⟨accumulate_grad_batches⟩, ⟨clip_grad_norm⟩, ⟨clip_grad_value⟩ or ⟨ema⟩; leave out one of them",
            ));
        }
    }
    let optimizer = crate::optim::groups::optimizer_for(run, &store, &classifier)?;
    let mut trainer = Trainer::new(model, store, optimizer, loss, metrics);
    trainer.set_precision(config.precision);
    trainer.label_smoothing = config.label_smoothing;
    if config.channels_last {
        trainer.set_channels_last()?;
    }
    crate::train::features::configure_trainer(run, &mut trainer);
    Ok(Prepared { trainer, train, validation, frozen, transforms, notes })
}

/// Makes explicit validation data speak the training data's labels: the same task, class names mapped to the
/// training indices, and no label beyond the training classes (the model has outputs for those only).
fn conform_validation(v: Dataset, train: &Dataset) -> Result<Dataset> {
    conform_to(v, train.task, train.class_names.as_ref())
}

/// `v` with its labels renumbered to `class_names` by name (a folder of 3 of the 10 classes keeps their labels)
/// and checked against `task`: the data a model trained for `task` is validated or evaluated on.
pub fn conform_to(mut v: Dataset, task: crate::data::Task, class_names: Option<&Vec<String>>) -> Result<Dataset> {
    use crate::data::Task;
    let train_task = task;
    match (train_task, v.task) {
        (Task::Classification { n_classes }, Task::Classification { .. }) => {
            if let (Some(train_names), Some(val_names)) = (class_names, &v.class_names) {
                if train_names != val_names {
                    let mut index = Vec::with_capacity(val_names.len());
                    for name in val_names {
                        let i = train_names.iter().position(|t| t == name).ok_or_else(|| {
                            Error::data(
                                &v.name,
                                format!(
                                    "class '{name}' is not among the training classes ({})",
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
            v.task = train_task;
            if v.class_names.is_none() {
                v.class_names = class_names.cloned();
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

pub use crate::train::run_dir::CLASSES_FILE;

/// The class names recorded in a run folder, if any.
pub fn read_class_names(dir: &Path) -> Result<Option<Vec<String>>> {
    let path = dir.join(CLASSES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::config(format!("{}: not a list of class names: {e}", path.display())))
}

/// Keras' line before the first epoch: "Found 300 images of 3×32×32 in 10 classes; 240 for training, 60 for
/// validation; augment: affine".
pub fn data_summary(train: &Dataset, validation: Option<&Dataset>, augment: Option<&str>) -> String {
    let shape = train.sample_shape();
    let (t, v) = (train.len(), validation.map_or(0, |v| v.len()));
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
    let what = match shape.len() {
        3 => format!("{} images of {dims}", t + v),
        1 => format!("{} samples of {dims} features", t + v),
        _ => format!("{} samples of shape {dims}", t + v),
    };
    let targets = match train.task {
        crate::data::Task::Classification { n_classes } => format!("in {n_classes} classes"),
        crate::data::Task::Regression { n_outputs } => {
            format!("with {n_outputs} real target{}", if n_outputs == 1 { "" } else { "s" })
        }
    };
    let split = match validation {
        Some(_) => format!("{t} for training, {v} for validation"),
        None => format!("{t} for training, no validation"),
    };
    format!("Found {what} {targets}; {split}; augment: {}", augment.unwrap_or("none"))
}

/// A new folder `runs/<model>-<data>-<time>` for a run without `--out` (see [`RunDir::claim_default`]).
pub fn claim_default_dir(config: &RunConfig) -> Result<PathBuf> {
    Ok(RunDir::claim_default(config)?.path().to_path_buf())
}

/// The run folder: `config.out`, or `runs/<model>-<data>-<time>`.
pub fn run_dir(config: &RunConfig) -> PathBuf {
    RunDir::name_for(config)
}

/// The callbacks a run asks for, in a fixed order (a resume file keys their state by position and name).
pub fn config_callbacks(run: &Run, dir: &Path) -> Result<Vec<Box<dyn Callback>>> {
    config_callbacks_with(run, dir, true)
}

/// As `config_callbacks`; `verbose: false` (`-q`) silences the callbacks' own lines (checkpoint saved, early
/// stopping, learning rate reduced) whatever their `verbose` option says.
pub fn config_callbacks_with(run: &Run, dir: &Path, verbose: bool) -> Result<Vec<Box<dyn Callback>>> {
    use crate::train::callbacks::*;
    let c = &run.callbacks;
    let mut all: Vec<Box<dyn Callback>> = vec![];
    if let Some(s) = &c.lr_schedule {
        all.push(Box::new(LearningRateScheduler::from_schedule(s.clone())));
    }
    if c.terminate_on_nan {
        all.push(Box::new(TerminateOnNaN::default()));
    }
    if let Some(r) = &c.reduce_lr_on_plateau {
        all.push(Box::new(ReduceLrOnPlateau::new(ReduceLrOnPlateauConfig {
            verbose: r.verbose && verbose,
            ..r.clone()
        })?));
    }
    if let Some(e) = &c.early_stopping {
        all.push(Box::new(EarlyStopping::new(EarlyStoppingConfig { verbose: e.verbose && verbose, ..e.clone() })?));
    }
    if let Some(m) = &c.checkpoint {
        let mut mc = ModelCheckpoint::new(ModelCheckpointConfig { verbose: m.verbose && verbose, ..m.clone() })?;
        mc.base_dir = Some(dir.to_path_buf());
        all.push(Box::new(mc));
    }
    if let Some(path) = &c.csv_logger {
        all.push(Box::new(CsvLogger::new(RunDir::new(dir).place(path), false)));
    }
    if c.loggers {
        all.extend(crate::train::loggers::callbacks(&run.config, dir)?);
    }
    Ok(all)
}

/// Trains as `config` says and writes the run folder: `config.json`, `history.json`, `history.csv`, the final
/// weights as `model.pt` (for `torch.load`) and `model.safetensors`, `curves.png`, and after every epoch the
/// resume state (`resume.json`, `resume/`). `callbacks` run after the ones the config asks for.
pub fn train(config: &RunConfig, output: impl Into<Output>, callbacks: Vec<Box<dyn Callback>>) -> Result<RunOutcome> {
    train_in(config.resolve()?, output.into(), callbacks, None)
}

/// As `train`, for a resolved run, and for one process of a distributed run (`dist`): only rank 0 writes the run
/// folder.
pub fn train_in(
    mut run: Run,
    output: Output,
    callbacks: Vec<Box<dyn Callback>>,
    dist: Option<crate::dist::Distributed>,
) -> Result<RunOutcome> {
    // A folder this process makes (the default name, or a new --out) goes again if the run fails before writing
    // anything into it: bad data refused at the start leaves no empty folder behind.
    let made_here =
        crate::dist::is_chief(dist.as_ref()) && !run.config.out.as_ref().is_some_and(|o| Path::new(o).exists());
    let dir = RunDir::for_new_run(&run.config, dist.as_ref())?;
    run.config.out = Some(dir.path().display().to_string());
    let result = execute(run, output, callbacks, None, dist);
    if result.is_err() && made_here {
        dir.remove_if_unused();
    }
    result
}

/// Continues the run in `dir` from its last completed epoch: weights, optimizer state, learning rate, callbacks'
/// state and history come back; the shuffles and libtorch's generator depend on (seed, epoch) only, so the
/// continued run gives the same history as one that never stopped.
pub fn resume(dir: &Path, output: impl Into<Output>, callbacks: Vec<Box<dyn Callback>>) -> Result<RunOutcome> {
    resume_to(dir, None, output, callbacks)
}

/// As `resume`, to `epochs` in all when given (Keras' `initial_epoch`, Lightning's larger `max_epochs`): a run
/// that finished its epochs continues from its last one as if it had been asked for `epochs` from the start. The
/// learning-rate schedule is recomputed for the new total (the epochs already run keep the rates they had).
pub fn resume_to(
    dir: &Path,
    epochs: Option<usize>,
    output: impl Into<Output>,
    callbacks: Vec<Box<dyn Callback>>,
) -> Result<RunOutcome> {
    resume_in(dir, epochs, output.into(), callbacks, None)
}

/// As `resume_to`, for one process of a distributed run (`dist`).
pub fn resume_in(
    dir: &Path,
    epochs: Option<usize>,
    output: Output,
    callbacks: Vec<Box<dyn Callback>>,
    dist: Option<crate::dist::Distributed>,
) -> Result<RunOutcome> {
    let (run, recorded_epochs) = resume_config(dir, epochs)?;
    resume_run(dir, run, epochs, recorded_epochs, output, callbacks, dist)
}

/// How a `tchzoo train` process starts.
pub enum Start {
    /// A new run.
    New(Box<RunConfig>),
    /// The run in a folder, continued (to `epochs` in all when given).
    Resume { dir: PathBuf, epochs: Option<usize> },
}

/// `--distributed`'s process-group options (the device and `sync_bn` come from the run's config).
#[derive(Debug, Clone)]
pub struct DistOptions {
    pub backend: String,
    pub timeout_s: u64,
    /// Check after the first step that every rank holds the same weights.
    pub check: bool,
}

/// A whole `tchzoo train`: resolves the config (a new one, or the one a run folder recorded), joins the process
/// group when `dist` asks, and trains or resumes. Returns the outcome and whether this process reports it (the one
/// process, or rank 0); the other ranks run silent.
pub fn launch(start: Start, output: Output, dist: Option<DistOptions>) -> Result<(RunOutcome, bool)> {
    let (run, resume) = match start {
        Start::New(config) => (config.resolve()?, None),
        Start::Resume { dir, epochs } => {
            let (run, recorded_epochs) = resume_config(&dir, epochs)?;
            (run, Some((dir, epochs, recorded_epochs)))
        }
    };
    let dist = match dist {
        Some(o) => Some(crate::dist::start(&o.backend, run.device, o.timeout_s, run.config.sync_bn, o.check)?),
        None => None,
    };
    let chief = crate::dist::is_chief(dist.as_ref());
    let output = if chief { output } else { output.with_verbosity(Verbosity::Silent) };
    let outcome = match resume {
        Some((dir, epochs, recorded)) => resume_run(&dir, run, epochs, recorded, output, vec![], dist)?,
        None => train_in(run, output, vec![], dist)?,
    };
    Ok((outcome, chief))
}

/// The config a run folder recorded (`config.json`).
pub fn read_run_config(dir: &Path) -> Result<RunConfig> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(Error::config(format!("{} has no config.json: not a tchzoo run folder", dir.display())));
    }
    RunConfig::from_json_file(&config_path)
}

/// The config of the run in `dir`, resolved once with `out` = `dir` and, when `--epochs` extends it, the new
/// total (the schedule's length follows it), and the number of epochs the run was recorded with.
fn resume_config(dir: &Path, epochs: Option<usize>) -> Result<(Run, usize)> {
    let recorded = read_run_config(dir)?;
    let recorded_epochs = recorded.epochs;
    let config =
        RunConfig { out: Some(dir.display().to_string()), epochs: epochs.unwrap_or(recorded.epochs), ..recorded };
    Ok((config.resolve()?, recorded_epochs))
}

/// `resume_in` with the folder's config read and resolved by [`resume_config`] (`recorded_epochs`: what the
/// folder's `config.json` asked for, `epochs`: the new total, when given).
fn resume_run(
    dir: &Path,
    run: Run,
    epochs: Option<usize>,
    recorded_epochs: usize,
    output: Output,
    callbacks: Vec<Box<dyn Callback>>,
    dist: Option<crate::dist::Distributed>,
) -> Result<RunOutcome> {
    let folder = RunDir::existing(dir)?;
    let config = &run.config;
    // Paths read back from the folder are confined to it (a tampered config.json must not write elsewhere).
    if let Some(p) = &config.csv_logger {
        folder.confine(p, "csv_logger")?;
    }
    if let Some(p) = &config.tensorboard {
        folder.confine(p, "tensorboard")?;
    }
    if crate::dist::is_chief(dist.as_ref()) {
        drop(folder.lock()?);
    }
    let mut state = folder.read_resume()?;
    let complete = crate::train::resume::FINAL_FILES.iter().all(|f| dir.join(f).exists());
    let stopped_early = state.finished && state.epoch < recorded_epochs;
    match epochs {
        Some(e) if e <= state.epoch => {
            return Err(Error::config(format!(
                "the run in {} has already run {} epoch{}; give ⟨epochs⟩ more than that to continue it",
                dir.display(),
                state.epoch,
                if state.epoch == 1 { "" } else { "s" }
            )))
        }
        Some(_) if stopped_early => {
            return Err(Error::config(format!(
                "the run in {} was stopped by a callback after epoch {} of {}; a longer run would have stopped \
                 there too",
                dir.display(),
                state.epoch,
                recorded_epochs
            )))
        }
        Some(_) => {
            state.finished = false;
            state.ended = false;
        }
        None => {}
    }
    if state.finished && complete {
        return Err(Error::config(format!(
            "the run in {} already finished ({} epochs); nothing to resume (give ⟨epochs⟩ N to extend it)",
            dir.display(),
            state.epoch
        )));
    }
    if let Some(c) = &run.callbacks.checkpoint {
        folder.confine(&c.filepath, "checkpoint")?;
    }
    execute(run, output, callbacks, Some(state), dist)
}

fn execute(
    mut run: Run,
    output: Output,
    callbacks: Vec<Box<dyn Callback>>,
    resumed: Option<crate::train::resume::ResumeState>,
    dist: Option<crate::dist::Distributed>,
) -> Result<RunOutcome> {
    let started = std::time::Instant::now();
    let Prepared { mut trainer, train, validation, frozen, transforms, notes } = prepare_in(&run, dist.as_ref())?;
    for note in notes {
        output.say(Message::Note(note));
    }
    let mix = crate::data::mix::for_run(&run.config, &train, trainer.loss, trainer.model.num_outputs())?;
    crate::data::erase::check_applies(run.config.random_erase, transforms.is_some(), &train.name)?;
    crate::data::autoaugment::check_applies(run.auto_augment, transforms.is_some(), &train.name)?;
    run.resolve_augment(&train.sample_shape())?;
    // `--lr auto`: the range test picks a fresh run's learning rate (a resumed run keeps the one it recorded).
    if run.config.lr_auto && resumed.is_none() && dist.is_some() {
        return Err(Error::config(
            "the learning-rate finder runs in one process; give ⟨lr⟩ a number with ⟨distributed⟩",
        ));
    }
    let lr_found = match (&resumed, run.config.lr_auto) {
        (None, true) => Some(crate::train::lr_find::auto_lr(&mut run, &mut trainer, &train)?),
        _ => None,
    };
    // config.json records the learning rate the run used (the optimizer's default when none was given).
    run.config.hyper.lr = Some(run.optimizer.hyper.lr);
    // The run records the transforms it used, so `--run` and a resume see the same sizes and statistics.
    if let Some(t) = &transforms {
        let config = &mut run.config;
        config.train_crop_size = Some(t.train_crop_size);
        config.val_resize_size = Some(t.val_resize_size);
        config.val_crop_size = Some(t.val_crop_size);
        config.interpolation = Some(t.interpolation.name().to_string());
        config.mean = Some(t.mean.clone());
        config.std = Some(t.std.clone());
        config.decode_scaling = Some(t.decode_scaling);
        // RandomResizedCrop and the flip are the augmentation of an image folder.
        run.clear_augment();
    }
    let config = &run.config;
    let folder = RunDir::new(run_dir(config));
    let dir = folder.path().to_path_buf();
    let chief = crate::dist::is_chief(dist.as_ref());
    folder.create()?;
    // One process per run folder, for the run's life; the checks made before the lock are made again under it.
    let _lock = if chief { Some(folder.lock()?) } else { None };
    let resumed = match resumed {
        Some(passed) if chief => {
            let mut state = folder.read_resume()?;
            if !passed.finished && !passed.ended {
                // An extended run (`--resume RUN --epochs N`): its end was lifted by resume_to.
                state.finished = false;
                state.ended = false;
            }
            Some(state)
        }
        None if chief => {
            folder.refuse_held_run()?;
            None
        }
        other => other,
    };
    if chief {
        let recorded = RunConfig {
            environment: Some(crate::train::features::environment(config, trainer.device())),
            ..config.clone()
        };
        folder.write_config(&recorded)?;
        if let Some(names) = &train.class_names {
            folder.write_classes(names)?;
        }
        if let Some(found) = &lr_found {
            folder.write_lr_find(found)?;
            output.say(Message::Summary(found.summary_line()));
        }
    }
    let mut all = config_callbacks_with(&run, &dir, !output.is_silent())?;
    let swa = run.swa.map(crate::train::swa::Swa::new);
    all.extend(swa.as_ref().map(|s| s.callback()));
    if let Some(epoch) = config.unfreeze_at {
        all.push(Box::new(crate::train::transfer::Unfreeze { epoch, names: frozen }));
    }
    all.extend(callbacks);
    if chief && !output.is_silent() {
        // After fit's own checks, so that a run refused before its first epoch says only its error.
        trainer.check_fit(&train, validation.as_ref(), &all)?;
        output.say(Message::Summary(data_summary(&train, validation.as_ref(), config.augment.as_deref())));
    }
    let (initial_epoch, history) = match &resumed {
        Some(state) => {
            crate::train::resume::restore(&dir, state, &trainer.store, &mut trainer.optimizer, &mut all)?;
            if let (Some(scaler), Some(saved)) = (trainer.scaler.as_mut(), &state.grad_scaler) {
                scaler.load_state(saved);
            }
            if let (Some(ema), Some(n)) = (trainer.ema.as_mut(), state.ema_updates) {
                let path = dir.join(&state.dir).join(crate::train::resume::EMA_FILE);
                ema.load(&crate::checkpoint::read_state_dict(&path)?, n)?;
            }
            (state.epoch, state.history.clone())
        }
        None => (0, History::default()),
    };
    // A run whose training ended (a kill came before its final files were written) trains no further epoch.
    let epochs = match &resumed {
        Some(state) if state.ended || state.finished => state.epoch,
        _ => config.epochs,
    };
    let fit = crate::train::features::configure_fit(
        &run,
        FitConfig {
            epochs,
            batch_size: config.batch_size,
            shuffle: config.shuffle,
            initial_epoch,
            seed: config.seed,
            output,
            augment: run.augment.get(),
            run_dir: Some(folder.clone()),
            distributed: dist.as_ref().map(|d| d.group.clone()),
            check_replicas: dist.as_ref().is_some_and(|d| d.check_replicas),
            cuda_graph: config.cuda_graph,
            mix,
            ..FitConfig::default()
        },
    );
    let history = if config.deterministic {
        // An op without a deterministic kernel throws inside libtorch: one line naming it, not a panic.
        crate::util::catch_torch(|| trainer.fit_with_history(&train, validation.as_ref(), &fit, &mut all, history))
            .map_err(|e| Error::config(format!("⟨deterministic⟩: {e}")))??
    } else {
        trainer.fit_with_history(&train, validation.as_ref(), &fit, &mut all, history)?
    };
    if let Some(s) = &swa {
        s.finish(&trainer, &train, &fit, history.len())?;
    }
    let marks = crate::train::callbacks::curve_marks(&all, default_monitor(config));
    if chief {
        folder.write_final(&history, &trainer.store, trainer.ema.as_ref(), marks.clone())?;
        // Last: a kill before this leaves a state that `--resume` completes.
        folder.mark_finished()?;
    }
    if let Some(d) = &dist {
        let g = &d.group;
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
        marked: marks.monitor,
        config: run.config.clone(),
    })
}

/// A trained model loaded back for `evaluate` and `predict` (the seed's `load_model`).
pub struct LoadedModel {
    pub trainer: Trainer,
    /// The shape of one input sample.
    pub input_shape: Vec<i64>,
    /// The run's config, resolved, when loaded from a run folder.
    pub run: Option<Run>,
    /// The run's class names (index = label), when its data named them.
    pub class_names: Option<Vec<String>>,
    /// The task the model was trained for (from the run's data).
    pub task: Option<crate::data::Task>,
    /// What loading did that the user should hear of (the weights of an unfinished run's last epoch).
    pub notes: Vec<String>,
}

/// Loads `tensors` strictly; a mismatch says how to load the file for evaluation (the model it was saved from,
/// and `--num-classes` with its classifier's size), not `--strict false`, which would drop the classifier.
fn load_strict(store: &VarStore, tensors: &[(String, tch::Tensor)], origin: &Path, classifier: &str) -> Result<()> {
    store.load_state_dict(tensors, true, &origin.display().to_string()).map(|_| ()).map_err(|e| match e {
        Error::Checkpoint { path, msg } => {
            let outputs = tensors
                .iter()
                .find(|(k, _)| *k == format!("{classifier}.weight") || *k == format!("{classifier}.bias"))
                .and_then(|(_, t)| t.size().first().copied());
            let hint = match outputs {
                Some(n) => format!(
                    "; the file's classifier '{classifier}' has {n} outputs: give ⟨num_classes⟩ {n} (and the ⟨model⟩ \
                     it was saved from)"
                ),
                None => "; give the ⟨model⟩ the file was saved from (and ⟨num_classes⟩ N for its classifier)".into(),
            };
            Error::Checkpoint { path, msg: format!("{msg}{hint}") }
        }
        other => other,
    })
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
        // Resolved for the device it is loaded on (a run trained on a GPU evaluates on the CPU too).
        let device_spec = src.device.clone().unwrap_or_else(|| "auto".into());
        let resolved = RunConfig { device: device_spec, ..read_run_config(run)? }.resolve()?;
        let config = &resolved.config;
        // An image folder's run: the index and the recorded transforms give the classes and the input size.
        let lazy = Run {
            config: RunConfig { validation_data: None, validation_split: None, ..config.clone() },
            validation_data: None,
            ..resolved.clone()
        };
        let data = match data::workers::for_run(&lazy)? {
            Some((train, _, _)) => train,
            None => data::load_source(&resolved.data, config.seed)?,
        };
        let loss = Loss::parse(&config.loss, data.task)?;
        let input_shape = data.sample_shape();
        let mut notes = vec![];
        let weights = match &src.weights {
            Some(w) => w.clone(),
            // An interrupted run has no model.pt yet: its resume state holds the last completed epoch's weights.
            None if !run.join("model.pt").exists() && run.join(crate::train::resume::RESUME_FILE).exists() => {
                let state = crate::train::resume::read(run)?;
                notes.push(format!(
                    "note: {} has not finished; using the weights of its last completed epoch ({})",
                    run.display(),
                    state.epoch
                ));
                run.join(&state.dir).join("checkpoint.pt")
            }
            None => run.join("model.pt"),
        };
        if !weights.exists() {
            return Err(Error::config(format!(
                "{} does not exist (the run has not finished?); give ⟨weights⟩, e.g. a checkpoint of the run",
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
        let tensors = crate::checkpoint::strip_module_prefix(&store, tensors);
        let classifier = model.classifier().unwrap_or_else(|| lazy.model.classifier.to_string());
        load_strict(&store, &tensors, &weights, &classifier)?;
        let metrics = if lazy.metrics.is_empty() { Metric::defaults(loss) } else { lazy.metrics.clone() };
        let opt = Optimizer::new(resolved.optimizer.clone(), store.parameters())?;
        let class_names = read_class_names(run)?.or(data.class_names);
        return Ok(LoadedModel {
            trainer: Trainer::new(model, store, opt, loss, metrics),
            input_shape,
            run: Some(resolved),
            class_names,
            task: Some(data.task),
            notes,
        });
    }
    let spec =
        src.model.as_deref().ok_or_else(|| Error::config("give ⟨run⟩ DIR, or ⟨model⟩ NAME with ⟨weights⟩ FILE"))?;
    let entry = models::find(&crate::util::Spec::parse(spec, "model")?.source)?;
    let weights = src.weights.as_ref().ok_or_else(|| Error::config("⟨model⟩ needs ⟨weights⟩ FILE (a state dict)"))?;
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
    let (model, _) = crate::train::transfer::build_model(spec, &store, num_outputs, &input_shape, &[])?;
    let tensors = crate::checkpoint::strip_module_prefix(&store, crate::checkpoint::read_state_dict(weights)?);
    let classifier = model.classifier().unwrap_or_else(|| entry.classifier.to_string());
    load_strict(&store, &tensors, weights, &classifier)?;
    let opt = Optimizer::new(crate::optim::OptimizerConfig::new(crate::optim::OptimizerKind::Sgd), store.parameters())?;
    Ok(LoadedModel {
        trainer: Trainer::new(model, store, opt, loss, Metric::defaults(loss)),
        input_shape,
        run: None,
        class_names: None,
        task: None,
        notes: vec![],
    })
}

/// What the curves of a run mark, from the callbacks its config builds with their saved state (`callback_states`,
/// keyed as the resume file keys them): the best epoch of the value early stopping (or else the best-only
/// checkpoint, or else `val_loss`) monitors, and the epoch early stopping fired.
pub fn curve_marks(
    config: &RunConfig,
    callback_states: &std::collections::BTreeMap<String, serde_json::Value>,
) -> crate::plot::CurveMarks {
    let dir = Path::new(config.out.as_deref().unwrap_or("."));
    // Resolved on the CPU (the curves of a GPU run are drawn anywhere); a config that does not resolve marks the
    // default monitor only.
    let run = RunConfig { device: "cpu".into(), ..config.clone() }.resolve();
    let mut all = run.and_then(|run| config_callbacks_with(&run, dir, false)).unwrap_or_default();
    for (i, cb) in all.iter_mut().enumerate() {
        if let Some(state) = callback_states.get(&crate::train::callbacks::state_key(i, cb.as_ref())) {
            // A state that does not load marks as a fresh callback's.
            let _ = cb.load_state(state);
        }
    }
    crate::train::callbacks::curve_marks(&all, default_monitor(config))
}

/// The value the curves mark when no callback monitors one: `val_loss` with validation data, else `loss`.
fn default_monitor(config: &RunConfig) -> (String, bool) {
    let m = if config.validation_split.is_some() || config.validation_data.is_some() { "val_loss" } else { "loss" };
    let maximize = crate::train::callbacks::Monitor::new(m, crate::train::callbacks::Mode::Auto, 0.0)
        .map(|m| m.maximize)
        .unwrap_or(false);
    (m.to_string(), maximize)
}
