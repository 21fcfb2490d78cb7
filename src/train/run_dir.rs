//! The run folder and its one writer. A `RunDir` chooses and checks the folder of a new run (a default name is
//! claimed by creating it; a folder that is not ours, or that holds a run, is refused), confines the paths read
//! back from it, holds its lock, and writes every file in it: `config.json`, `classes.json`, the learning-rate
//! finder's files, the resume state after each epoch (atomically), `history.json`/`.csv`, the final weights
//! (`model.pt`, `model.safetensors`, `model_ema.pt`), `curves.png`, and the checkpoints the callbacks ask for
//! ([`Action`]). Callbacks decide and name files; they never write: the trainer hands their actions here, as burn's
//! checkpointing strategies return save/delete actions to the learner. The streaming loggers (CSV, TensorBoard,
//! `steps.jsonl`) keep their open files, at paths placed by [`RunDir::place`].
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::callbacks::{state_key, Callback};
use super::history::History;
use super::resume::{self, ResumeState, RunLock, TrainingState, EMA_FILE, RESUME_FILE};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::nn::VarStore;
use crate::optim::Optimizer;
use crate::util::write_atomic;

/// The run's config as run, readable by `--resume`, `evaluate` and `predict`.
pub const CONFIG_FILE: &str = "config.json";
/// The class names of a run, index = label (written when the data names its classes).
pub const CLASSES_FILE: &str = "classes.json";

/// What a callback asks the trainer to do with a file; the trainer carries it out (in the chief process only)
/// right after the callback's hook returns, in the order asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the model to `path` (as the callback named it: inside the run folder, or where the user pointed),
    /// atomically, replacing a file there.
    Save { path: PathBuf, what: Saved },
    /// Delete the file at `path` (one the callback saved); a file already gone is not an error.
    Remove { path: PathBuf },
    /// Say this line (a callback's Keras-style `verbose` line), in its place among the file actions.
    Say(String),
}

/// What [`Action::Save`] writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Saved {
    /// The state dict (`.pt` or `.safetensors` by the extension).
    Weights,
    /// A general checkpoint: weights, optimizer state, the epoch (1-based) and the loss.
    Checkpoint { epoch: i64, loss: f64 },
}

/// Carries out file actions with the model and optimizer they save, and hands the lines to `output`.
pub fn apply(
    actions: impl IntoIterator<Item = Action>,
    store: &VarStore,
    optimizer: &Optimizer,
    output: &crate::report::Output,
) -> Result<()> {
    for action in actions {
        match action {
            Action::Say(line) => output.say(crate::report::Message::Callback(line)),
            Action::Save { path, what: Saved::Weights } => crate::checkpoint::save_weights(store, &path)?,
            Action::Save { path, what: Saved::Checkpoint { epoch, loss } } => {
                crate::checkpoint::save_checkpoint(&path, epoch, store, optimizer, loss)?
            }
            Action::Remove { path } => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            },
        }
    }
    Ok(())
}

/// A run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The folder at `root` (nothing is checked or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// A path the user gave for a file of the run (`--csv-logger`, `--tensorboard`, a checkpoint): a relative one
    /// lies in the run folder, an absolute one where it points.
    pub fn place(&self, given: impl AsRef<Path>) -> PathBuf {
        let p = given.as_ref();
        if p.is_relative() {
            self.root.join(p)
        } else {
            p.to_path_buf()
        }
    }

    /// The folder of `config`: `config.out`, or `runs/<model>-<data>-<time>`.
    pub fn name_for(config: &RunConfig) -> PathBuf {
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

    /// A new folder `runs/<model>-<data>-<time>` for a run without `--out`, claimed by creating it: a run started
    /// in the same second gets `-2`, `-3`, … instead of failing.
    pub fn claim_default(config: &RunConfig) -> Result<RunDir> {
        let base = Self::name_for(&RunConfig { out: None, ..config.clone() });
        let parent = base.parent().unwrap_or(Path::new("."));
        crate::util::create_dir_all(parent)?;
        for n in 1.. {
            let dir = if n == 1 { base.clone() } else { PathBuf::from(format!("{}-{n}", base.display())) };
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RunDir::new(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        unreachable!("an unbounded range ends only by returning")
    }

    /// The folder of a new run, chosen and checked: `--out`, or a claimed default name (rank 0's in a distributed
    /// run). Refused: an empty name, a folder that is neither empty nor a tchzoo run folder, one another process
    /// trains in, one that already holds a run; a `--csv-logger` file outside the folder that exists.
    pub fn for_new_run(config: &RunConfig, dist: Option<&crate::dist::Distributed>) -> Result<RunDir> {
        let chief = crate::dist::is_chief(dist);
        let mut dir =
            if config.out.is_none() && chief { Self::claim_default(config)?.root } else { Self::name_for(config) };
        if let Some(d) = dist {
            // Every rank uses rank 0's folder (a default name holds the time, which differs between processes).
            dir = PathBuf::from(d.group.share_string("run_dir", &dir.display().to_string())?);
        }
        if dir.as_os_str().is_empty() {
            return Err(Error::config("⟨out⟩ '' names no folder; give the run folder, e.g. ⟨out⟩ runs/first"));
        }
        let run = RunDir::new(dir);
        if run.root.exists() && !run.root.is_dir() {
            return Err(Error::config(format!(
                "⟨out⟩ {} is a file, not a folder; give a new or empty folder for the run",
                run.root.display()
            )));
        }
        if run.root.is_dir() && chief {
            let not_ours = || {
                Error::config(format!(
                    "{} is a folder that is not a tchzoo run folder and is not empty; choose a new or empty ⟨out⟩ \
                     (tchzoo does not write into other folders)",
                    run.root.display()
                ))
            };
            if !run.holds_nothing()? && RunConfig::from_json_file(&run.join(CONFIG_FILE)).is_err() {
                return Err(not_ours());
            }
            // A folder another process trains in is refused naming that process.
            drop(run.lock()?);
        }
        run.refuse_held_run()?;
        if let Some(p) = &config.csv_logger {
            run.refuse_existing_outside(p, "⟨csv_logger⟩")?;
        }
        Ok(run)
    }

    /// An existing run folder, to continue: it must hold `config.json`.
    pub fn existing(dir: &Path) -> Result<RunDir> {
        if !dir.join(CONFIG_FILE).exists() {
            return Err(Error::config(format!("{} has no config.json: not a tchzoo run folder", dir.display())));
        }
        Ok(RunDir::new(dir))
    }

    /// Keras' CSVLogger overwrites; a file the user named outside the run folder is the user's, so it is refused,
    /// not replaced.
    fn refuse_existing_outside(&self, p: &str, flag: &str) -> Result<()> {
        let joined = self.place(p);
        // Lexically: the run folder may not exist yet, so `run/../x` cannot be resolved by the file system.
        let mut resolved = PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::ParentDir => {
                    resolved.pop();
                }
                c => resolved.push(c),
            }
        }
        if self.confine(p, flag).is_err() && resolved.exists() {
            return Err(Error::config(format!(
                "{flag} {p} already exists outside the run folder; tchzoo does not overwrite it: remove it or give \
                 a new file"
            )));
        }
        Ok(())
    }

    /// Whether the folder holds nothing but our lock file and temporary files (of a run killed before it wrote
    /// config.json).
    pub fn holds_nothing(&self) -> Result<bool> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        Ok(entries.flatten().all(|e| Self::is_ours_only(&e.file_name().to_string_lossy())))
    }

    fn is_ours_only(name: &str) -> bool {
        name == resume::LOCK_FILE || (name.starts_with('.') && name.contains(".tmp"))
    }

    /// Removes the folder of a run that failed before it wrote anything (a folder this process made, holding
    /// only the lock and temporary files), so a refused run leaves no empty `runs/…` behind. Anything else stays.
    pub fn remove_if_unused(&self) {
        if !self.holds_nothing().unwrap_or(false) {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.root);
    }

    /// A new run may not take a folder that holds one.
    pub fn refuse_held_run(&self) -> Result<()> {
        if self.holds_run() {
            return Err(Error::config(format!(
                "{} already holds a run; continue it with ⟨resume⟩ {0}, or choose another ⟨out⟩",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// Whether the folder holds a resume state (a run finished at least one epoch in it).
    pub fn holds_run(&self) -> bool {
        self.join(RESUME_FILE).exists()
    }

    /// `rel` (a path read back from the run folder) resolved inside it: not absolute, no `..`, and no symbolic
    /// link on the way (a tampered run folder must not make a resumed run write outside it).
    pub fn confine(&self, rel: &str, what: &str) -> Result<PathBuf> {
        use std::path::Component;
        let outside = || {
            Error::config(format!(
                "{what} '{rel}' in {} points outside the run folder; a resumed run writes only inside its folder \
                 (start a new run to write elsewhere)",
                self.join(CONFIG_FILE).display()
            ))
        };
        let mut at = self.root.clone();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(n) => {
                    at.push(n);
                    if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(outside());
                    }
                }
                Component::CurDir => {}
                _ => return Err(outside()),
            }
        }
        Ok(at)
    }

    /// Creates the folder (and its parents).
    pub fn create(&self) -> Result<()> {
        crate::util::create_dir_all(&self.root)
    }

    /// The folder's lock, held while the value lives (see [`resume::lock`]).
    pub fn lock(&self) -> Result<RunLock> {
        resume::lock(&self.root)
    }

    /// The resume state (`resume.json`).
    pub fn read_resume(&self) -> Result<ResumeState> {
        resume::read(&self.root)
    }

    /// `config.json`, atomically.
    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        write_atomic(&self.join(CONFIG_FILE), config.to_json()?.as_bytes())
    }

    /// `classes.json`: the class names, index = label.
    pub fn write_classes(&self, names: &[String]) -> Result<()> {
        let text = serde_json::to_string_pretty(names).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&self.join(CLASSES_FILE), text.as_bytes())
    }

    /// The learning-rate finder's JSON and plot.
    pub fn write_lr_find(&self, found: &crate::train::lr_find::LrFinderResult) -> Result<()> {
        found.save_json(&self.join(crate::train::lr_find::JSON_FILE))?;
        found.plot(&self.join(crate::train::lr_find::PLOT_FILE))
    }

    /// The final files of a run, after `fit`: `history.json`, `history.csv`, `model.pt`, `model.safetensors`,
    /// `model_ema.pt` (with `--ema`) and `curves.png` with `marks`.
    pub fn write_final(
        &self,
        history: &History,
        store: &VarStore,
        ema: Option<&crate::train::features::Ema>,
        marks: crate::plot::CurveMarks,
    ) -> Result<()> {
        history.save_json(&self.join("history.json"))?;
        history.save_csv(&self.join("history.csv"))?;
        crate::checkpoint::save_weights(store, &self.join("model.pt"))?;
        crate::checkpoint::save_weights(store, &self.join("model.safetensors"))?;
        if let Some(ema) = ema {
            crate::checkpoint::write_state_dict(&self.join("model_ema.pt"), &ema.state_dict())?;
        }
        let options = crate::plot::CurveOptions { metrics: None, marks };
        crate::plot::plot_runs(&[("", history)], &self.join("curves.png"), &options)
    }

    /// Marks the run complete, once its final files are written (a kill before this leaves a state that
    /// `--resume` completes); a folder without a resume state is left as it is.
    pub fn mark_finished(&self) -> Result<()> {
        if !self.holds_run() {
            return Ok(());
        }
        let mut state = self.read_resume()?;
        state.ended = true;
        state.finished = true;
        let text = crate::util::json::to_string_pretty(&state).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&self.join(RESUME_FILE), text.as_bytes())
    }

    /// Writes the resume state after `epoch` (0-based) completed; `ended`: training stops after this epoch.
    /// `resume/epoch-NNNNN/` first (`checkpoint.pt`, `callbacks.safetensors`, `ema.safetensors`), then
    /// `resume.json` naming it, atomically; then the older state folders are deleted.
    pub fn save_resume(
        &self,
        epoch: usize,
        ended: bool,
        state: TrainingState<'_>,
        history: &History,
        callbacks: &[Box<dyn Callback>],
    ) -> Result<()> {
        let rel = format!("resume/epoch-{:05}", epoch + 1);
        let dir = self.join(&rel);
        let state_root = self.join("resume");
        // Never write or delete through a symbolic link: `resume/` and the state folder must be real folders.
        resume::refuse_symlink(&state_root)?;
        if let Ok(m) = std::fs::symlink_metadata(&dir) {
            if !m.is_dir() {
                std::fs::remove_file(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
        crate::util::create_dir_all(&dir)?;
        let loss = history.last("loss").unwrap_or(f64::NAN);
        let TrainingState { store, optimizer, grad_scaler, ema } = state;
        if let Some(ema) = ema {
            crate::checkpoint::write_state_dict(&dir.join(EMA_FILE), &ema.state_dict())?;
        }
        crate::checkpoint::save_checkpoint(&dir.join("checkpoint.pt"), (epoch + 1) as i64, store, optimizer, loss)?;
        let mut tensors: Vec<(String, Tensor)> = vec![];
        let mut states = BTreeMap::new();
        for (i, cb) in callbacks.iter().enumerate() {
            let key = state_key(i, cb.as_ref());
            states.insert(key.clone(), cb.state());
            tensors.extend(cb.state_tensors().into_iter().map(|(k, t)| (format!("{key}.{k}"), t)));
        }
        crate::checkpoint::write_state_dict(&dir.join("callbacks.safetensors"), &tensors)?;
        let state = ResumeState {
            epoch: epoch + 1,
            finished: false,
            ended,
            dir: rel.clone(),
            lr: optimizer.lr(),
            history: history.clone(),
            callbacks: states,
            grad_scaler,
            ema_updates: ema.map(|e| e.n_averaged),
        };
        let text = crate::util::json::to_string_pretty(&state).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&self.join(RESUME_FILE), text.as_bytes())?;
        // Older states are no longer named by resume.json. Only what this code writes is deleted: real folders
        // named `epoch-NNNNN` (a symbolic link is never followed; `remove_dir_all` does not follow links inside).
        if let Ok(entries) = std::fs::read_dir(&state_root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let ours =
                    name.strip_prefix("epoch-").is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()));
                let real_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if ours && real_dir && name != rel.trim_start_matches("resume/") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}
